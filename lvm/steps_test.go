package lvm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

// fakeDevices lets transcript tests name devices that do not exist.
func fakeDevices(t *testing.T) {
	old := checkBlockDevice
	checkBlockDevice = func(string) error { return nil }
	t.Cleanup(func() { checkBlockDevice = old })
}

const txID = "20261121T101500-ab12cd"

var (
	txTag = TxTag(txID)
	quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
)

func runSteps(t *testing.T, r run.Runner, fail string, steps ...atomic.Params) error {
	t.Helper()
	return atomic.Run(context.Background(), "lvm-test", func(tx *atomic.Tx) error {
		for _, p := range steps {
			if err := tx.Do(context.Background(), p, nil); err != nil {
				return err
			}
		}
		return nil
	}, atomic.WithStateDir(t.TempDir()), atomic.WithID(txID), atomic.WithRunner(r), atomic.WithFailpoints(fail), atomic.WithLogger(quiet))
}

// baseReport: vg0 on /dev/loop0 (31 free extents of 4MiB), with LV web
// (4 extents, tagged by another transaction), and an orphan PV /dev/loop1.
func baseReport() *Report {
	rep := &Report{
		VGs: []VG{{Name: "vg0", UUID: "V1", ExtentSize: simExtent}},
		PVs: []PV{{Name: "/dev/loop0", VG: "vg0", UUID: "P0"}, {Name: "/dev/loop1", UUID: "P1"}},
		LVs: []LV{{VG: "vg0", Name: "web", UUID: "L1", Type: TypeLinear, Size: 16 << 20, Active: true, Tags: []string{"bofh_tx_other"}}},
	}
	s := &sim{rep: *rep}
	s.fixup()
	return &s.rep
}

func with(rep *Report, f func(r *Report)) string {
	c := &Report{VGs: slices.Clone(rep.VGs), PVs: slices.Clone(rep.PVs), LVs: slices.Clone(rep.LVs)}
	f(c)
	s := &sim{rep: *c}
	s.fixup()
	return encodeReport(&s.rep)
}

func all(vgs ...string) []string { return ReportArgs(vgs...) }

// TestTranscripts checks the exact argv of every operation: the probe,
// the command, the result query, and for a failure the undo.
func TestTranscripts(t *testing.T) {
	fakeDevices(t)
	base := baseReport()
	same := encodeReport(base)
	vg0 := encodeReport(&Report{VGs: base.VGs, PVs: base.PVsOf("vg0"), LVs: base.LVs})
	tests := []struct {
		name   string
		step   atomic.Params
		script func(f *run.Fake)
	}{
		{"pv.create", CreatePV{Device: "/dev/loop2"}, func(f *run.Fake) {
			f.Expect(all()...).Out(same).Kind(run.Query)
			f.Expect("pvcreate", "/dev/loop2").Kind(run.Mutation)
			f.Expect(all()...).Out(with(base, func(r *Report) { r.PVs = append(r.PVs, PV{Name: "/dev/loop2"}) }))
		}},
		{"pv.create noop", CreatePV{Device: "/dev/loop1"}, func(f *run.Fake) {
			f.Expect(all()...).Out(same)
		}},
		{"pv.create force", CreatePV{Device: "/dev/loop2", Force: true}, func(f *run.Fake) {
			f.Expect(all()...).Out(same)
			f.Expect("pvcreate", "-y", "/dev/loop2")
			f.Expect(all()...).Out(with(base, func(r *Report) { r.PVs = append(r.PVs, PV{Name: "/dev/loop2"}) }))
		}},
		{"pv.remove", RemovePV{Device: "/dev/loop1"}, func(f *run.Fake) {
			f.Expect(all()...).Out(same)
			f.Expect("pvremove", "-y", "/dev/loop1")
		}},
		{"vg.create", CreateVG{Name: "vg1", Devices: []string{"/dev/loop1", "/dev/loop2"}, ExtentSize: "8M", Tags: []string{"web"}}, func(f *run.Fake) {
			f.Expect(all()...).Out(same)
			f.Expect("vgcreate", "--addtag", txTag, "--addtag", "web", "-s", "8192k", "vg1", "/dev/loop1", "/dev/loop2")
			f.Expect(all("vg1")...).Out(with(base, func(r *Report) { r.VGs = append(r.VGs, VG{Name: "vg1"}) }))
		}},
		{"vg.extend", ExtendVG{VG: "vg0", Devices: []string{"/dev/loop1"}}, func(f *run.Fake) {
			f.Expect(all()...).Out(same)
			f.Expect("vgextend", "vg0", "/dev/loop1")
			f.Expect(all("vg0")...).Out(vg0)
		}},
		{"vg.reduce", ReduceVG{VG: "vg0", Devices: []string{"/dev/loop1"}}, func(f *run.Fake) {
			twoPVs := with(base, func(r *Report) { r.PVs[1].VG = "vg0" })
			f.Expect(all("vg0")...).Out(twoPVs)
			f.Expect("vgreduce", "vg0", "/dev/loop1")
			f.Expect(all("vg0")...).Out(vg0)
		}},
		{"vg.remove", RemoveVG{Name: "vg0"}, func(f *run.Fake) {
			f.Expect(all("vg0")...).Out(with(base, func(r *Report) { r.LVs = nil }))
			f.Expect("vgremove", "vg0")
		}},
		{"lv.create linear", CreateLV{VG: "vg0", Name: "db", Size: "10M", Tags: []string{"role=db"}}, func(f *run.Fake) {
			f.Expect(all("vg0")...).Out(vg0)
			f.Expect("lvcreate", "-y", "-n", "db", "-L", "10485760b", "--addtag", txTag, "--addtag", "role=db", "vg0")
			f.Expect(all("vg0")...).Out(with(base, func(r *Report) { r.LVs = append(r.LVs, LV{VG: "vg0", Name: "db", Type: TypeLinear, Size: 12 << 20}) }))
		}},
		{"lv.create percent", CreateLV{VG: "vg0", Name: "db", Size: "100%FREE"}, func(f *run.Fake) {
			f.Expect(all("vg0")...).Out(vg0)
			f.Expect("lvcreate", "-y", "-n", "db", "-l", "100%FREE", "--addtag", txTag, "vg0")
			f.Expect(all("vg0")...).Out(with(base, func(r *Report) { r.LVs = append(r.LVs, LV{VG: "vg0", Name: "db", Type: TypeLinear, Size: 4 << 20}) }))
		}},
		{"lv.create noop", CreateLV{VG: "vg0", Name: "web", Size: "16M"}, func(f *run.Fake) {
			f.Expect(all("vg0")...).Out(vg0)
		}},
		{"lv.create thin-pool", CreateLV{VG: "vg0", Name: "pool", Type: TypeThinPool, Size: "8"}, func(f *run.Fake) {
			f.Expect(all("vg0")...).Out(vg0)
			f.Expect("lvcreate", "-y", "-n", "pool", "--type", "thin-pool", "-l", "8", "--addtag", txTag, "vg0")
			f.Expect(all("vg0")...).Out(with(base, func(r *Report) { r.LVs = append(r.LVs, LV{VG: "vg0", Name: "pool", Type: TypeThinPool}) }))
		}},
		{"lv.create thin", CreateLV{VG: "vg0", Name: "t1", Type: TypeThin, Size: "1G", Pool: "pool"}, func(f *run.Fake) {
			withPool := with(base, func(r *Report) { r.LVs = append(r.LVs, LV{VG: "vg0", Name: "pool", Type: TypeThinPool}) })
			f.Expect(all("vg0")...).Out(withPool)
			f.Expect("lvcreate", "-y", "-n", "t1", "--type", "thin", "-V", "1073741824b", "--thinpool", "pool", "--addtag", txTag, "vg0")
			f.Expect(all("vg0")...).Out(with(base, func(r *Report) { r.LVs = append(r.LVs, LV{VG: "vg0", Name: "t1", Type: TypeThin}) }))
		}},
		{"lv.create snapshot", CreateLV{VG: "vg0", Name: "websnap", Type: TypeSnapshot, Origin: "web", Size: "8M"}, func(f *run.Fake) {
			f.Expect(all("vg0")...).Out(vg0)
			f.Expect("lvcreate", "-y", "-n", "websnap", "-s", "-L", "8388608b", "--addtag", txTag, "vg0/web")
			f.Expect(all("vg0")...).Out(with(base, func(r *Report) { r.LVs = append(r.LVs, LV{VG: "vg0", Name: "websnap", Type: TypeSnapshot}) }))
		}},
		{"lv.create thin snapshot", CreateLV{VG: "vg0", Name: "s1", Type: TypeSnapshot, Origin: "t1"}, func(f *run.Fake) {
			f.Expect(all("vg0")...).Out(with(base, func(r *Report) { r.LVs = append(r.LVs, LV{VG: "vg0", Name: "t1", Type: TypeThin, Pool: "pool"}) }))
			f.Expect("lvcreate", "-y", "-n", "s1", "-s", "--addtag", txTag, "vg0/t1")
			f.Expect(all("vg0")...).Out(with(base, func(r *Report) { r.LVs = append(r.LVs, LV{VG: "vg0", Name: "s1", Type: TypeThin}) }))
		}},
		{"lv.create fails, nothing to undo", CreateLV{VG: "vg0", Name: "db", Size: "4M"}, func(f *run.Fake) {
			f.Expect(all("vg0")...).Out(vg0)
			f.Expect("lvcreate", "-y", "-n", "db", "-L", "4194304b", "--addtag", txTag, "vg0").Fail(5, "  Volume group \"vg0\" has insufficient free space (0 extents): 1 required.")
			f.Expect(all("vg0")...).Out(vg0) // rollback: Check finds no tagged LV
		}},
		{"lv.remove (at commit)", RemoveLV{VG: "vg0", Name: "web"}, func(f *run.Fake) {
			f.Expect(all("vg0")...).Out(vg0)
			f.Expect("lvremove", "-y", "vg0/web")
		}},
		{"lv.set-aside", SetAsideLV{VG: "vg0", Name: "web"}, func(f *run.Fake) {
			aside := AsideName(txID, "web")
			f.Expect(all("vg0")...).Out(vg0)
			f.Expect("lvchange", "-an", "vg0/web")
			f.Expect("lvrename", "vg0", "web", aside)
			f.Expect("lvchange", "--addtag", txTag, "vg0/"+aside)
			f.Expect(all("vg0")...).Out(with(base, func(r *Report) { r.LVs[0].Name = aside }))
		}},
		{"lv.rename", RenameLV{VG: "vg0", Name: "web", NewName: "www"}, func(f *run.Fake) {
			f.Expect(all("vg0")...).Out(vg0)
			f.Expect("lvrename", "vg0", "web", "www")
			f.Expect(all("vg0")...).Out(with(base, func(r *Report) { r.LVs[0].Name = "www" }))
		}},
		{"lv.resize", ResizeLV{VG: "vg0", Name: "web", Size: "+8M"}, func(f *run.Fake) {
			f.Expect(all("vg0")...).Out(vg0)
			f.Expect("lvresize", "-y", "-l", "6", "vg0/web")
			f.Expect(all("vg0")...).Out(with(base, func(r *Report) { r.LVs[0].Size = 24 << 20 }))
		}},
		{"lv.resize shrink", ResizeLV{VG: "vg0", Name: "web", Size: "1", Shrink: true}, func(f *run.Fake) {
			f.Expect(all("vg0")...).Out(vg0)
			f.Expect("lvresize", "-y", "-l", "1", "vg0/web")
			f.Expect(all("vg0")...).Out(with(base, func(r *Report) { r.LVs[0].Size = 4 << 20 }))
		}},
		{"lv.deactivate", DeactivateLV{VG: "vg0", Name: "web"}, func(f *run.Fake) {
			f.Expect(all("vg0")...).Out(vg0)
			f.Expect("lvchange", "-an", "vg0/web")
			f.Expect(all("vg0")...).Out(with(base, func(r *Report) { r.LVs[0].Active = false }))
		}},
		{"lv.activate", ActivateLV{VG: "vg0", Name: "web"}, func(f *run.Fake) {
			f.Expect(all("vg0")...).Out(with(base, func(r *Report) { r.LVs[0].Active = false }))
			f.Expect("lvchange", "-ay", "-K", "vg0/web")
			f.Expect(all("vg0")...).Out(vg0)
		}},
		{"lv.merge (at commit)", MergeLV{VG: "vg0", Name: "websnap"}, func(f *run.Fake) {
			f.Expect(all("vg0")...).Out(with(base, func(r *Report) {
				r.LVs = append(r.LVs, LV{VG: "vg0", Name: "websnap", Type: TypeSnapshot, Origin: "web"})
			}))
			f.Expect("lvconvert", "-y", "--merge", "vg0/websnap")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := run.NewFake(t)
			tt.script(f)
			err := runSteps(t, f, "", tt.step)
			if strings.Contains(tt.name, "fails") {
				if atomic.ExitCode(err) != atomic.ExitRolledBack || !errors.Is(err, ErrNoSpace) {
					t.Errorf("err = %v (exit %d), want a rolled-back ErrNoSpace", err, atomic.ExitCode(err))
				}
			} else if err != nil {
				t.Fatal(err)
			}
			f.Done()
		})
	}
}

// TestBadInput: invalid names, sizes, missing objects and no space are bad
// input (exit 2) and run no mutation.
func TestBadInput(t *testing.T) {
	fakeDevices(t)
	base := baseReport()
	tests := []struct {
		name string
		step atomic.Params
		want error
	}{
		{"bad vg name", CreateVG{Name: "-vg", Devices: []string{"/dev/loop1"}}, ErrBadName},
		{"bad lv name", CreateLV{VG: "vg0", Name: "a/b", Size: "1G"}, ErrBadName},
		{"reserved", CreateLV{VG: "vg0", Name: "x_tmeta", Size: "1G"}, ErrBadName},
		{"bad tag", CreateLV{VG: "vg0", Name: "x", Size: "1G", Tags: []string{"a b"}}, ErrBadName},
		{"bad size", CreateLV{VG: "vg0", Name: "x", Size: "10Q"}, ErrBadSize},
		{"relative create", CreateLV{VG: "vg0", Name: "x", Size: "+1G"}, ErrBadSize},
		{"thin percent", CreateLV{VG: "vg0", Name: "x", Type: TypeThin, Pool: "p", Size: "50%VG"}, ErrBadSize},
		{"bad extent size", CreateVG{Name: "vg1", Devices: []string{"/dev/loop1"}, ExtentSize: "3M"}, ErrBadSize},
		{"relative device", CreatePV{Device: "loop1"}, atomic.ErrInvalid},
		{"shrink not allowed", ResizeLV{VG: "vg0", Name: "web", Size: "-1"}, ErrBadSize},
		{"no space", CreateLV{VG: "vg0", Name: "big", Size: "10G"}, ErrNoSpace},
		{"missing vg", CreateLV{VG: "nope", Name: "x", Size: "1G"}, ErrNotFound},
		{"exists, other size", CreateLV{VG: "vg0", Name: "web", Size: "1G"}, ErrExists},
		{"missing lv", RenameLV{VG: "vg0", Name: "nope", NewName: "x"}, ErrNotFound},
		{"vg in use", CreateVG{Name: "vg1", Devices: []string{"/dev/loop0"}}, ErrInUse},
		{"vg exists", CreateVG{Name: "vg0", Devices: []string{"/dev/loop1"}}, ErrExists},
		{"vg not empty", RemoveVG{Name: "vg0"}, ErrInUse},
		{"pv in vg", RemovePV{Device: "/dev/loop0"}, ErrInUse},
		{"shrink by size", ResizeLV{VG: "vg0", Name: "web", Size: "4M"}, ErrBadSize},
		{"grow past free", ResizeLV{VG: "vg0", Name: "web", Size: "+1G"}, ErrNoSpace},
	}
	snap := *base
	snap.LVs = append(slices.Clone(base.LVs), LV{VG: "vg0", Name: "websnap", Type: TypeSnapshot, Origin: "web", Size: 4 << 20})
	tests = append(tests, struct {
		name string
		step atomic.Params
		want error
	}{"resize active origin", ResizeLV{VG: "vg0", Name: "web", Size: "+4M"}, ErrInUse})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := *base
			if strings.Contains(tt.name, "origin") {
				rep = snap
			}
			s := &sim{rep: rep}
			err := runSteps(t, s, "", tt.step)
			if atomic.ExitCode(err) != atomic.ExitInvalid || !errors.Is(err, tt.want) {
				t.Errorf("err = %v (exit %d), want exit 2 and %v", err, atomic.ExitCode(err), tt.want)
			}
			if m := s.mutations(); len(m) > 0 {
				t.Errorf("bad input ran %q", m)
			}
		})
	}
}

// workflow: VG → linear LV → thin pool → thin LV → snapshot → resize →
// rename → deactivate, with per-step commands and undo commands.
var workflow = []struct {
	step     atomic.Params
	do, undo []string
}{
	{CreateVG{Name: "vg9", Devices: []string{"/dev/loop5", "/dev/loop6"}},
		[]string{"vgcreate --addtag " + txTag + " vg9 /dev/loop5 /dev/loop6"},
		[]string{"vgremove vg9", "pvremove -y /dev/loop5 /dev/loop6"}},
	{CreateLV{VG: "vg9", Name: "web", Size: "16M"},
		[]string{"lvcreate -y -n web -L 16777216b --addtag " + txTag + " vg9"},
		[]string{"lvremove -y vg9/web"}},
	{CreateLV{VG: "vg9", Name: "pool", Type: TypeThinPool, Size: "32M"},
		[]string{"lvcreate -y -n pool --type thin-pool -L 33554432b --addtag " + txTag + " vg9"},
		[]string{"lvremove -y vg9/pool"}},
	{CreateLV{VG: "vg9", Name: "thin1", Type: TypeThin, Size: "64M", Pool: "pool"},
		[]string{"lvcreate -y -n thin1 --type thin -V 67108864b --thinpool pool --addtag " + txTag + " vg9"},
		[]string{"lvremove -y vg9/thin1"}},
	{CreateLV{VG: "vg9", Name: "websnap", Type: TypeSnapshot, Origin: "web", Size: "8M"},
		[]string{"lvcreate -y -n websnap -s -L 8388608b --addtag " + txTag + " vg9/web"},
		[]string{"lvremove -y vg9/websnap"}},
	{ResizeLV{VG: "vg9", Name: "thin1", Size: "+64M"},
		[]string{"lvresize -y -l 32 vg9/thin1"},
		[]string{"lvresize -y -l 16 vg9/thin1"}},
	{RenameLV{VG: "vg9", Name: "thin1", NewName: "data"},
		[]string{"lvrename vg9 thin1 data"},
		[]string{"lvrename vg9 data thin1"}},
	{DeactivateLV{VG: "vg9", Name: "data"},
		[]string{"lvchange -an vg9/data"},
		[]string{"lvchange -ay -K vg9/data"}},
}

// TestWorkflowFailureMatrix fails the workflow at every step, before and
// after the step's effect, and checks the commands: the steps' commands in
// order up to the failure, then exactly the reverse undo sequence; and
// that the simulated LVM is back where it started.
func TestWorkflowFailureMatrix(t *testing.T) {
	fakeDevices(t)
	var steps []atomic.Params
	for _, w := range workflow {
		steps = append(steps, w.step)
	}
	for k := 1; k <= len(workflow); k++ {
		for _, phase := range []string{"before", "after"} {
			t.Run(fmt.Sprintf("%d-%s", k, phase), func(t *testing.T) {
				s := newSim()
				err := runSteps(t, s, fmt.Sprintf("%d:%s:error", k, phase), steps...)
				if atomic.ExitCode(err) != atomic.ExitRolledBack || !errors.Is(err, atomic.ErrFailpoint) {
					t.Fatalf("err = %v (exit %d)", err, atomic.ExitCode(err))
				}
				var want []string
				last := k - 1
				if phase == "after" {
					last = k
				}
				for i := 0; i < last; i++ {
					want = append(want, workflow[i].do...)
				}
				for i := last - 1; i >= 0; i-- {
					want = append(want, workflow[i].undo...)
				}
				if got := s.mutations(); !slices.Equal(got, want) {
					t.Errorf("commands:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
				}
				if len(s.rep.VGs)+len(s.rep.PVs)+len(s.rep.LVs) != 0 {
					t.Errorf("left behind: %+v", s.rep)
				}
			})
		}
	}
	t.Run("success", func(t *testing.T) {
		s := newSim()
		if err := runSteps(t, s, "", steps...); err != nil {
			t.Fatal(err)
		}
		if lv := s.rep.LV("vg9", "data"); lv == nil || lv.Active || lv.Size != 128<<20 || !hasTag(lv.Tags, txTag) {
			t.Errorf("data = %+v", lv)
		}
	})
}

// TestUndoRefusesForeignLV: an LV without this transaction's tag is never
// removed by an undo, even if it has the name the step created.
func TestUndoRefusesForeignLV(t *testing.T) {
	s := &sim{rep: *baseReport()}
	env := &atomic.Env{Runner: s, TxID: txID}
	err := undoLVCreate(context.Background(), env, CreateLV{VG: "vg0", Name: "web", Size: "16M"}, struct{}{}, LV{})
	if err == nil || !strings.Contains(err.Error(), "not the one this transaction created") {
		t.Errorf("err = %v", err)
	}
	if m := s.mutations(); len(m) > 0 {
		t.Errorf("ran %q", m)
	}
}

// TestCommandCounts measures external commands per operation against the
// naive approach (one query per object: pvs/vgs/lvs for the probe and the
// result) and per state query.
func TestCommandCounts(t *testing.T) {
	fakeDevices(t)
	for i, w := range workflow {
		s := newSim()
		var prev []atomic.Params
		for _, x := range workflow[:i] {
			prev = append(prev, x.step)
		}
		if err := runSteps(t, s, "", prev...); err != nil {
			t.Fatal(err)
		}
		s.reset()
		if err := atomic.Run(context.Background(), "count", func(tx *atomic.Tx) error { return tx.Do(context.Background(), w.step, nil) },
			atomic.WithStateDir(t.TempDir()), atomic.WithRunner(s), atomic.WithLogger(quiet)); err != nil {
			t.Fatal(err)
		}
		q := len(s.calls) - len(s.mutations())
		t.Logf("%-18s %d commands: %d mutation, %d fullreport", w.step.StepKind(), len(s.calls), len(s.mutations()), q)
		if len(s.calls) > 3 {
			t.Errorf("%s ran %d commands, want at most 3", w.step.StepKind(), len(s.calls))
		}
	}
	var steps []atomic.Params
	for _, w := range workflow {
		steps = append(steps, w.step)
	}
	s := newSim()
	if err := runSteps(t, s, "", steps...); err != nil {
		t.Fatal(err)
	}
	t.Logf("workflow of %d steps: %d commands (%d mutations)", len(steps), len(s.calls), len(s.mutations()))
	s = newSim()
	if err := runSteps(t, s, fmt.Sprintf("%d:after:error", len(steps)), steps...); !errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != atomic.ExitRolledBack {
		t.Fatalf("failing after the last step: %v (exit %d), want the failpoint, rolled back", err, atomic.ExitCode(err))
	}
	t.Logf("same, failing after the last step and rolled back: %d commands (%d mutations)", len(s.calls), len(s.mutations()))
}

// TestRecipesValid: the example recipes under recipes/lvm validate.
func TestRecipesValid(t *testing.T) {
	files, _ := filepath.Glob("../recipes/lvm/*.yaml")
	if len(files) == 0 {
		t.Fatal("no recipes under recipes/lvm")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r, err := atomic.ParseRecipe(b)
		if err == nil {
			err = r.Validate()
		}
		if err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestDryRun: a dry run probes, prints the commands and changes nothing.
func TestDryRun(t *testing.T) {
	fakeDevices(t)
	s := &sim{rep: *baseReport()}
	var out strings.Builder
	err := atomic.Run(context.Background(), "dry", func(tx *atomic.Tx) error {
		for _, p := range []atomic.Params{
			CreateLV{VG: "vg0", Name: "db", Size: "8M"},
			RenameLV{VG: "vg0", Name: "web", NewName: "www"},
			RemoveLV{VG: "vg0", Name: "web"},
		} {
			if err := tx.Do(context.Background(), p, nil); err != nil {
				return err
			}
		}
		return nil
	}, atomic.WithStateDir(t.TempDir()), atomic.WithRunner(s), atomic.WithDryRun(&out), atomic.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	if m := s.mutations(); len(m) > 0 {
		t.Errorf("a dry run ran %q", m)
	}
	for _, want := range []string{"would run: lvcreate -y -n db -L 8388608b --addtag bofh_tx_dry-run-", "would run: lvrename vg0 web www", "would run: lvremove -y vg0/web"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestOrphans: tagged objects of transactions that did not commit.
func TestOrphans(t *testing.T) {
	rep := &Report{
		VGs: []VG{{Name: "vg0", Tags: []string{TxTag("committed")}}, {Name: "vg1", Tags: []string{TxTag("gone")}}},
		LVs: []LV{{VG: "vg0", Name: "a", Tags: []string{"x", TxTag("crashed")}}, {VG: "vg0", Name: "b", Tags: []string{TxTag("running")}},
			{VG: "vg0", Name: "c"}, {VG: "vg0", Name: "d", Tags: []string{TxTag("rb")}}},
	}
	got := Orphans(rep, []atomic.Summary{{ID: "committed", State: atomic.StateCommitted}, {ID: "crashed", State: atomic.StateInterrupted},
		{ID: "running", State: atomic.StateRunning}, {ID: "rb", State: atomic.StateRollbackFailed}})
	want := []Orphan{{"lv", "vg0/a", "crashed", "interrupted"}, {"lv", "vg0/d", "rb", "rollback-failed"}, {"vg", "vg1", "gone", StateUnknown}}
	if !slices.Equal(got, want) {
		t.Errorf("Orphans = %+v, want %+v", got, want)
	}
}
