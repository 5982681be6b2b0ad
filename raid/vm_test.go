//go:build vm

package raid_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
	"github.com/bofhkit/bofh/internal/vmtest"
	"github.com/bofhkit/bofh/raid"
	"github.com/bofhkit/bofh/run"
)

const helperEnv = "BOFH_RAID_HELPER"

func TestMain(m *testing.M) {
	hosttest.ApplyChild(helperEnv)
	os.Exit(m.Run())
}

func sh(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func setSpeed(t *testing.T, min, max int) {
	t.Helper()
	os.WriteFile("/proc/sys/dev/raid/speed_limit_max", []byte(fmt.Sprint(max)), 0o644)
	if err := os.WriteFile("/proc/sys/dev/raid/speed_limit_min", []byte(fmt.Sprint(min)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// loops attaches n fresh image files of size MiB; they are stopped and
// detached at cleanup.
func loops(t *testing.T, n, mib int) []string {
	t.Helper()
	dir := t.TempDir()
	var devs []string
	for i := 0; i < n; i++ {
		f := filepath.Join(dir, fmt.Sprintf("d%d.img", i))
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(f, int64(mib)<<20); err != nil {
			t.Fatal(err)
		}
		devs = append(devs, sh(t, "losetup", "-f", "--show", f))
	}
	t.Cleanup(func() {
		for _, d := range devs {
			exec.Command("losetup", "-d", d).Run()
		}
	})
	return devs
}

func stopAtCleanup(t *testing.T, md string) {
	t.Cleanup(func() { exec.Command("mdadm", "--stop", md).Run() })
}

func do(t *testing.T, steps ...atomic.Params) {
	t.Helper()
	ctx := context.Background()
	err := atomic.Run(ctx, "raid-vm", func(tx *atomic.Tx) error {
		for _, p := range steps {
			if err := tx.Do(ctx, p, nil); err != nil {
				return err
			}
		}
		return nil
	}, atomic.WithStateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
}

func detail(t *testing.T, md string) *raid.Array {
	t.Helper()
	a, err := raid.Detail(context.Background(), &run.Local{}, md)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// waitProgress waits for the array's sync and returns how many progress
// events it saw.
func waitProgress(t *testing.T, md string) []raid.Progress {
	t.Helper()
	var got []raid.Progress
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := raid.Wait(ctx, &run.Local{}, md, raid.WaitOptions{Interval: 100 * time.Millisecond,
		Progress: func(p raid.Progress) { got = append(got, p) }})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func noSuperblock(t *testing.T, devs ...string) {
	t.Helper()
	for _, d := range devs {
		sb, err := raid.Examine(context.Background(), &run.Local{}, d)
		if err != nil || sb != nil {
			t.Errorf("%s: superblock %+v, err %v; want none", d, sb, err)
		}
	}
}

func lifecycle(t *testing.T, level string, n int, md string) {
	vmtest.Require(t)
	devs := loops(t, n, 32)
	stopAtCleanup(t, md)
	setSpeed(t, 5000, 8000) // slow enough to see progress, 32 MiB in ~5 s
	do(t, raid.Create{Device: md, Level: level, Devices: devs})
	a := detail(t, md)
	if len(a.Members) != n || a.Level != "raid"+level {
		t.Fatalf("created %+v", a)
	}
	if p := waitProgress(t, md); len(p) == 0 {
		t.Error("no progress reported for the initial sync")
	} else {
		t.Logf("initial %s: %d events, last %.1f%% at %d KiB/s", p[0].Action, len(p), p[len(p)-1].Percent, p[len(p)-1].Speed)
	}
	victim := devs[n-1]
	do(t, raid.Fail{Device: md, Member: victim})
	a = detail(t, md)
	if m, ok := a.Member(victim); !a.Degraded || !ok || !m.Faulty {
		t.Fatalf("after fail: degraded %v member %+v", a.Degraded, m)
	}
	do(t, raid.Remove{Device: md, Member: victim})
	if _, ok := detail(t, md).Member(victim); ok {
		t.Fatal("member still there after remove")
	}
	do(t, raid.Add{Device: md, Member: victim})
	if p := waitProgress(t, md); len(p) == 0 {
		t.Error("no progress reported for the recovery")
	} else if p[0].Action != "recovery" {
		t.Errorf("rebuild action %q, want recovery", p[0].Action)
	}
	if a = detail(t, md); a.Degraded || len(a.Active()) != n {
		t.Fatalf("after rebuild: %+v", a)
	}
	do(t, raid.Stop{Device: md})
	if _, err := raid.Detail(context.Background(), &run.Local{}, md); !errors.Is(err, raid.ErrNotActive) {
		t.Fatalf("after stop: %v", err)
	}
	do(t, raid.Assemble{Device: md, Devices: devs})
	if a = detail(t, md); len(a.Active()) != n || a.Degraded {
		t.Fatalf("after assemble: %+v", a)
	}
	setSpeed(t, 200000, 200000)
}

func TestVMRaid1Lifecycle(t *testing.T) { lifecycle(t, "1", 2, "/dev/md21") }

// TestVMAssumeClean: a raid1 and a raid10 created with assume_clean are
// in sync at once (no resync runs, even at a crawling sync speed), and
// the create's undo still zeroes their superblocks.
func TestVMAssumeClean(t *testing.T) {
	vmtest.Require(t)
	setSpeed(t, 1, 1)
	defer setSpeed(t, 200000, 200000)
	for _, tc := range []struct {
		level, md string
	}{{"1", "/dev/md25"}, {"10", "/dev/md26"}} {
		devs := loops(t, 2, 32)
		stopAtCleanup(t, tc.md)
		do(t, raid.Create{Device: tc.md, Level: tc.level, Devices: devs, AssumeClean: true})
		a := detail(t, tc.md)
		if a.Sync != nil || a.Degraded || len(a.Active()) != 2 {
			t.Fatalf("raid%s with assume_clean: sync %+v degraded %v active %d", tc.level, a.Sync, a.Degraded, len(a.Active()))
		}
		b, err := os.ReadFile("/sys/block/" + filepath.Base(tc.md) + "/md/sync_action")
		if err != nil || strings.TrimSpace(string(b)) != "idle" {
			t.Fatalf("raid%s sync_action %q, %v; want idle", tc.level, b, err)
		}
		do(t, raid.Stop{Device: tc.md})
		// a rolled back create with assume_clean leaves no superblock
		err = atomic.Run(context.Background(), "raid-vm", func(tx *atomic.Tx) error {
			if err := tx.Do(context.Background(), raid.Create{Device: tc.md, Level: tc.level, Devices: devs, AssumeClean: true, Force: true}, nil); err != nil {
				return err
			}
			return errors.New("injected")
		}, atomic.WithStateDir(t.TempDir()))
		if err == nil || !strings.Contains(err.Error(), "injected") {
			t.Fatalf("rollback run: %v", err)
		}
		if _, err := raid.Detail(context.Background(), &run.Local{}, tc.md); !errors.Is(err, raid.ErrNotActive) {
			t.Fatalf("after rollback: %v", err)
		}
		noSuperblock(t, devs...)
	}
}
func TestVMRaid5Lifecycle(t *testing.T) { lifecycle(t, "5", 3, "/dev/md22") }

// TestVMRollbackAndBadInput: a failure after create rolls back to no
// array and no superblock; bad input changes nothing.
func TestVMRollbackAndBadInput(t *testing.T) {
	vmtest.Require(t)
	devs := loops(t, 4, 32)
	stopAtCleanup(t, "/dev/md23")
	ctx := context.Background()
	for _, phase := range []string{"1:after:error", "2:after:error"} {
		err := atomic.Run(ctx, "rollback", func(tx *atomic.Tx) error {
			if err := tx.Do(ctx, raid.Create{Device: "/dev/md23", Level: "5", Devices: devs[:3]}, nil); err != nil {
				return err
			}
			return tx.Do(ctx, raid.Add{Device: "/dev/md23", Member: devs[3]}, nil)
		}, atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints(phase))
		if !errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != 1 {
			t.Fatalf("%s: %v", phase, err)
		}
		if _, err := raid.Detail(ctx, &run.Local{}, "/dev/md23"); !errors.Is(err, raid.ErrNotActive) {
			t.Errorf("%s: array left: %v", phase, err)
		}
		noSuperblock(t, devs...)
	}
	// a member holding a filesystem is refused, and nothing is written
	sh(t, "mkfs.ext4", "-q", devs[0])
	before := sh(t, "blkid", "-p", "-o", "export", devs[0])
	err := atomic.Run(ctx, "bad", func(tx *atomic.Tx) error {
		return tx.Do(ctx, raid.Create{Device: "/dev/md23", Level: "1", Devices: devs[:2]}, nil)
	}, atomic.WithStateDir(t.TempDir()))
	if atomic.ExitCode(err) != 2 || !strings.Contains(err.Error(), "ext4 signature") {
		t.Fatalf("create over ext4: %v", err)
	}
	// a member in use (mounted) is refused even with force
	mnt := t.TempDir()
	sh(t, "mount", devs[0], mnt)
	err = atomic.Run(ctx, "busy", func(tx *atomic.Tx) error {
		return tx.Do(ctx, raid.Create{Device: "/dev/md23", Level: "1", Devices: devs[:2], Force: true}, nil)
	}, atomic.WithStateDir(t.TempDir()))
	sh(t, "umount", mnt)
	if atomic.ExitCode(err) != 2 || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("create over a mounted device: %v", err)
	}
	if after := sh(t, "blkid", "-p", "-o", "export", devs[0]); after != before {
		t.Errorf("refused create changed %s:\n%s\n%s", devs[0], before, after)
	}
	noSuperblock(t, devs...)
}

// The stacked recipe: loop, loop → raid1 → ext4 → mount.
func recipeText(a, b, md, mnt string) string {
	// the guest runs the test binary from /, not the package directory
	_, self, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(self), "..", "recipes", "raid", "raid1-ext4.yaml"))
	if err != nil {
		panic(err)
	}
	s := strings.NewReplacer("/var/tmp/bofh-raid-a.img", a, "/var/tmp/bofh-raid-b.img", b,
		"/dev/md100", md, "target: /mnt}", "target: "+mnt+"}").Replace(string(data))
	return s
}

const recipeSteps = 5

type observed struct {
	loops   []string
	arrays  int
	mounted bool
	sigs    []string
}

func observe(t *testing.T, files []string, mnt string) observed {
	t.Helper()
	var o observed
	for _, f := range files {
		out, _ := exec.Command("losetup", "-j", f, "-O", "NAME", "-n").Output()
		o.loops = append(o.loops, strings.Fields(string(out))...)
		if b, _ := exec.Command("blkid", "-p", "-o", "value", "-s", "TYPE", f).Output(); len(bytes.TrimSpace(b)) > 0 {
			o.sigs = append(o.sigs, f+":"+strings.TrimSpace(string(b)))
		}
	}
	st, err := raid.ReadMDStat(context.Background(), &run.Local{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range st.Arrays {
		if a.Name == "md24" {
			o.arrays++
		}
	}
	o.mounted = exec.Command("findmnt", "-n", mnt).Run() == nil
	return o
}

// TestVMStackedRecipeCrash: a failure at every step of the stacked recipe
// (vmtest.CrashCases: an error in-process and a SIGKILL of a child, at every
// step) rolls back to no array, no superblock, no loop device, no mount; a
// killed run resumes to the end.
func TestVMStackedRecipeCrash(t *testing.T) {
	vmtest.Require(t)
	setSpeed(t, 1000, 200000)
	ctx := context.Background()
	dir := t.TempDir()
	files := []string{filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")}
	for _, f := range files {
		os.WriteFile(f, nil, 0o600)
		os.Truncate(f, 32<<20)
	}
	mnt := t.TempDir()
	md := "/dev/md24"
	text := recipeText(files[0], files[1], md, mnt)
	assertClean := func(t *testing.T, what string) {
		t.Helper()
		if o := observe(t, files, mnt); len(o.loops) != 0 || o.arrays != 0 || o.mounted || len(o.sigs) != 0 {
			t.Fatalf("%s: not clean: %+v", what, o)
		}
	}
	assertEnd := func(t *testing.T, what string) {
		t.Helper()
		o := observe(t, files, mnt)
		if len(o.loops) != 2 || o.arrays != 1 || !o.mounted {
			t.Fatalf("%s: want 2 loops, the array and the mount, got %+v", what, o)
		}
	}
	teardown := func(t *testing.T) {
		t.Helper()
		o := observe(t, files, mnt)
		exec.Command("umount", mnt).Run()
		exec.Command("mdadm", "--stop", md).Run()
		for _, l := range o.loops {
			exec.Command("losetup", "-d", l).Run()
		}
		for _, f := range files {
			os.Truncate(f, 0)
			os.Truncate(f, 32<<20)
		}
		assertClean(t, "teardown")
	}
	assertClean(t, "start")
	for _, c := range vmtest.CrashCases(t, recipeSteps) {
		t.Run(c.String(), func(t *testing.T) {
			if c.How == "error" {
				r, err := atomic.ParseRecipe([]byte(text))
				if err != nil {
					t.Fatal(err)
				}
				_, err = atomic.Apply(ctx, r, atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints(c.Failpoint()))
				if !errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != 1 {
					t.Fatalf("want a rolled-back failpoint, got %v", err)
				}
				assertClean(t, "after rollback")
				return
			}
			state := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"=apply", "BOFH_HELPER_RECIPE="+text, "BOFH_HELPER_STATE="+state,
				atomic.FailEnv+"="+c.Failpoint())
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != -1 {
				t.Fatalf("child was not killed: %v\n%s", err, out)
			}
			list, err := atomic.List(state)
			if err != nil || len(list) != 1 {
				t.Fatalf("journals: %v %v", list, err)
			}
			id := list[0].ID
			if c.Then == "rollback" {
				if err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(state), atomic.WithFailpoints("")); err != nil {
					t.Fatalf("rollback: %v", err)
				}
				assertClean(t, "after tx rollback")
				return
			}
			if err := atomic.ResumeID(ctx, id, atomic.WithStateDir(state), atomic.WithFailpoints("")); err != nil {
				t.Fatalf("resume: %v", err)
			}
			assertEnd(t, "after resume")
			teardown(t)
		})
	}
}
