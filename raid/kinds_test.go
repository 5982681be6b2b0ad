package raid

import (
	"fmt"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/kindtest"
	"github.com/bofhkit/bofh/run"
)

// The array /dev/md0 (raid1 on loop0 and loop1) as mdadm --detail --export
// and /proc/mdstat show it in each state the kind cases pass through
// (mdadm 4.2, as in testdata/capture/raid).
const (
	kDetailHead = "MD_LEVEL=raid1\nMD_DEVICES=2\nMD_METADATA=1.2\nMD_UUID=0088aa75:2d81cf8c:dfa63e5f:c2a768f6\nMD_NAME=bofh-lab:0\n"
	kLoop0      = "MD_DEVICE_dev_loop0_ROLE=0\nMD_DEVICE_dev_loop0_DEV=/dev/loop0\n"
	kStatHead   = "Personalities : [raid6] [raid5] [raid4] [raid0] [raid1] [raid10] \n"
	kStatTail   = "      \nunused devices: <none>\n"
	kExamine    = "MD_LEVEL=raid1\nMD_DEVICES=2\nMD_NAME=bofh-lab:0\nMD_ARRAY_SIZE=66.06MB\nMD_UUID=0088aa75:2d81cf8c:dfa63e5f:c2a768f6\n" +
		"MD_UPDATE_TIME=1795277328\nMD_DEV_UUID=6dd5389b:d239341a:e8ac3d13:b6303cea\nMD_EVENTS=39\n"
)

// kState is the array in one state: detail export and mdstat.
type kState struct{ detail, stat string }

var (
	kClean = kState{kDetailHead + kLoop0 + "MD_DEVICE_dev_loop1_ROLE=1\nMD_DEVICE_dev_loop1_DEV=/dev/loop1\n",
		kStatHead + "md0 : active raid1 loop1[1] loop0[0]\n      64512 blocks super 1.2 [2/2] [UU]\n" + kStatTail}
	kFailed = kState{kDetailHead + kLoop0 + "MD_DEVICE_dev_loop1_ROLE=spare\nMD_DEVICE_dev_loop1_DEV=/dev/loop1\n",
		kStatHead + "md0 : active raid1 loop1[1](F) loop0[0]\n      64512 blocks super 1.2 [2/1] [U_]\n" + kStatTail}
	kRemoved = kState{kDetailHead + kLoop0,
		kStatHead + "md0 : active raid1 loop0[0]\n      64512 blocks super 1.2 [2/1] [U_]\n" + kStatTail}
	kRecovery = kState{kDetailHead + kLoop0 + "MD_DEVICE_dev_loop1_ROLE=1\nMD_DEVICE_dev_loop1_DEV=/dev/loop1\n",
		kStatHead + "md0 : active raid1 loop1[2] loop0[0]\n      64512 blocks super 1.2 [2/1] [U_]\n" +
			"      [===>.................]  recovery = 18.8% (12288/64512) finish=0.0min speed=12288K/sec\n" + kStatTail}
	// clean, with loop2 added as a spare
	kSpare = kState{kClean.detail + "MD_DEVICE_dev_loop2_ROLE=spare\nMD_DEVICE_dev_loop2_DEV=/dev/loop2\n",
		kStatHead + "md0 : active raid1 loop2[2](S) loop1[1] loop0[0]\n      64512 blocks super 1.2 [2/2] [UU]\n" + kStatTail}
)

// md0 expects Detail of /dev/md0 in state s.
func md0(s kState) func(f *run.Fake) {
	return func(f *run.Fake) {
		f.Expect("mdadm", "--detail", "--export", "/dev/md0").Out(s.detail).Kind(run.Query)
		f.Expect("cat", "/proc/mdstat").Out(s.stat).Kind(run.Query)
	}
}

// md0Stopped expects Detail of /dev/md0 when it is not running.
func md0Stopped(f *run.Fake) {
	f.Expect("mdadm", "--detail", "--export", "/dev/md0").Fail(1, "mdadm: cannot open /dev/md0: No such file or directory").Kind(run.Query)
}

func examine(dev string, sb bool) func(f *run.Fake) {
	return func(f *run.Fake) {
		e := f.Expect("mdadm", "--examine", "--export", dev).Kind(run.Query)
		if sb {
			e.Out(kExamine)
		} else {
			e.Fail(1, fmt.Sprintf("mdadm: No md superblock detected on %s.", dev))
		}
	}
}

func blank(dev string) func(f *run.Fake) {
	return func(f *run.Fake) { f.Expect("blkid", "-p", "-o", "export", dev).Fail(2, "").Kind(run.Query) }
}

func mdadm(args ...string) func(f *run.Fake) {
	return func(f *run.Fake) { f.Expect(append([]string{"mdadm"}, args...)...).Kind(run.Mutation) }
}

func seq(fs ...func(f *run.Fake)) func(f *run.Fake) {
	return func(f *run.Fake) {
		for _, fn := range fs {
			fn(f)
		}
	}
}

// kscript makes a kindtest.Script from the commands of each "<step>
// <phase>" ("1 undo"); a phase not listed runs nothing.
func kscript(m map[string]func(f *run.Fake)) kindtest.Script {
	return func(f *run.Fake, step int, phase kindtest.Phase) {
		if fn := m[fmt.Sprint(step, " ", phase)]; fn != nil {
			fn(f)
		}
	}
}

// TestKinds makes every md RAID step kind fail before Do, after Do and in
// its undo with the fake runner (internal/kindtest): the exact commands of
// each phase, and the exact reverse undo sequence.
func TestKinds(t *testing.T) {
	devs := []string{"/dev/loop0", "/dev/loop1"}
	setup := func(t *testing.T) { fakeDevices(t) }
	kindtest.Cover(t, []string{"raid."}, []kindtest.Case{
		// a raid1 on two blank devices; undo stops it and zeroes the two
		// superblocks it wrote
		{Kind: "raid.create", Setup: setup, Steps: []atomic.Params{Create{Device: "/dev/md0", Level: "1", Devices: devs}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare": seq(md0Stopped, blank(devs[0]), examine(devs[0], false), blank(devs[1]), examine(devs[1], false)),
				"1 do": seq(mdadm("--create", "/dev/md0", "--run", "--level=raid1", "--raid-devices=2", "--metadata=1.2", devs[0], devs[1]),
					md0(kClean)),
				"1 check-absent":  seq(md0Stopped, examine(devs[0], false), examine(devs[1], false)),
				"1 check-present": md0(kClean),
				"1 undo": seq(md0(kClean), mdadm("--stop", "/dev/md0"), examine(devs[0], true), mdadm("--zero-superblock", devs[0]),
					examine(devs[1], true), mdadm("--zero-superblock", devs[1])),
			})},
		{Kind: "raid.assemble", Steps: []atomic.Params{Assemble{Device: "/dev/md0", Devices: devs}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare":       md0Stopped,
				"1 do":            seq(mdadm("--assemble", "/dev/md0", devs[0], devs[1]), md0(kClean)),
				"1 check-absent":  md0Stopped,
				"1 check-present": md0(kClean),
				"1 undo":          seq(md0(kClean), mdadm("--stop", "/dev/md0")),
			})},
		// undo assembles it again from the members it had
		{Kind: "raid.stop", Steps: []atomic.Params{Stop{Device: "/dev/md0"}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare":       md0(kClean),
				"1 do":            mdadm("--stop", "/dev/md0"),
				"1 check-absent":  md0(kClean),
				"1 check-present": md0Stopped,
				"1 undo":          seq(md0Stopped, mdadm("--assemble", "/dev/md0", "--run", devs[0], devs[1])),
			})},
		// loop1 (which kept its superblock) back into the degraded array;
		// undo fails and removes it and keeps its superblock
		{Kind: "raid.add", Setup: setup, Steps: []atomic.Params{Add{Device: "/dev/md0", Member: devs[1]}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare": seq(md0(kRemoved), func(f *run.Fake) {
					f.Expect("blkid", "-p", "-o", "export", devs[1]).Out("TYPE=linux_raid_member\nUSAGE=raid\n")
				}, examine(devs[1], true)),
				"1 do":            seq(mdadm("/dev/md0", "--add", devs[1]), md0(kRecovery)),
				"1 check-absent":  md0(kRemoved),
				"1 check-present": md0(kRecovery),
				"1 undo":          seq(md0(kRecovery), mdadm("/dev/md0", "--fail", devs[1]), mdadm("/dev/md0", "--remove", devs[1])),
			})},
		// a blank loop2 becomes a spare; undo removes it (a spare is not
		// failed first) and zeroes the superblock the add wrote
		{Name: "raid.add-blank", Kind: "raid.add", Setup: setup, Steps: []atomic.Params{Add{Device: "/dev/md0", Member: "/dev/loop2"}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare":       seq(md0(kClean), blank("/dev/loop2"), examine("/dev/loop2", false)),
				"1 do":            seq(mdadm("/dev/md0", "--add", "/dev/loop2"), md0(kSpare)),
				"1 check-absent":  md0(kClean),
				"1 check-present": md0(kSpare),
				"1 undo": seq(md0(kSpare), mdadm("/dev/md0", "--remove", "/dev/loop2"), examine("/dev/loop2", true),
					mdadm("--zero-superblock", "/dev/loop2")),
			})},
		// the failed loop1 out; undo puts it back with --re-add
		{Kind: "raid.remove", Steps: []atomic.Params{Remove{Device: "/dev/md0", Member: devs[1]}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare":       md0(kFailed),
				"1 do":            mdadm("/dev/md0", "--remove", devs[1]),
				"1 check-absent":  md0(kFailed),
				"1 check-present": md0(kRemoved),
				"1 undo":          seq(md0(kRemoved), mdadm("/dev/md0", "--re-add", devs[1])),
			})},
		// undo removes the failed member and re-adds it
		{Kind: "raid.fail", Steps: []atomic.Params{Fail{Device: "/dev/md0", Member: devs[1]}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare":       md0(kClean),
				"1 do":            mdadm("/dev/md0", "--fail", devs[1]),
				"1 check-absent":  md0(kClean),
				"1 check-present": md0(kFailed),
				"1 undo":          seq(md0(kFailed), mdadm("/dev/md0", "--remove", devs[1]), mdadm("/dev/md0", "--re-add", devs[1])),
			})},
		// irreversible: runs at commit, without a Check
		{Kind: "raid.grow", Steps: []atomic.Params{Grow{Device: "/dev/md0", RaidDevices: 3}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare": md0(kClean),
				"1 do":      mdadm("--grow", "/dev/md0", "--raid-devices=3"),
			})},
	}, kindtest.Allow{})
}
