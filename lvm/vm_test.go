//go:build vm

package lvm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
	"github.com/bofhkit/bofh/internal/vmtest"
	"github.com/bofhkit/bofh/run"
)

// loops attaches n fresh 64MiB loop devices, detached at the end.
func loops(t *testing.T, n int) []string {
	t.Helper()
	var devs []string
	for i := 0; i < n; i++ {
		devs = append(devs, hosttest.LoopFile(t, 64<<20))
	}
	return devs
}

var local = &run.Local{}

func state(t *testing.T) *Report {
	t.Helper()
	rep, err := Query(context.Background(), local)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// shape is a comparable summary of the LVM state, and of the signatures
// blkid finds on devs (pass none to skip blkid: it is slow in the guest).
func shape(t *testing.T, devs []string) string {
	t.Helper()
	return shapeOf(state(t), devs)
}

// shapeOf is shape of a report already queried.
func shapeOf(rep *Report, devs []string) string {
	var b strings.Builder
	for _, vg := range rep.VGs {
		fmt.Fprintf(&b, "vg %s pvs=%d tags=%v\n", vg.Name, vg.PVCount, vg.Tags)
	}
	for _, pv := range rep.PVs {
		fmt.Fprintf(&b, "pv %s vg=%s uuid=%s\n", pv.Name, pv.VG, pv.UUID)
	}
	for _, lv := range rep.LVs {
		fmt.Fprintf(&b, "lv %s %s size=%d active=%v tags=%v\n", lv.FullName(), lv.Type, lv.Size, lv.Active, lv.Tags)
	}
	for _, d := range devs {
		out, _ := exec.Command("blkid", "-p", "-o", "export", d).Output()
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "TYPE=") {
				fmt.Fprintf(&b, "blkid %s %s\n", d, l)
			}
		}
	}
	return b.String()
}

func wipeAll(t *testing.T, devs []string) {
	t.Helper()
	rep := state(t)
	for _, vg := range rep.VGs {
		exec.Command("vgremove", "-y", "-f", vg.Name).Run()
	}
	for _, d := range devs {
		exec.Command("pvremove", "-y", "-ff", d).Run()
	}
}

func doTx(t *testing.T, dir, fail string, steps ...atomic.Params) error {
	t.Helper()
	return doTxID(t, dir, atomic.NewID(), fail, steps...)
}

func doTxID(t *testing.T, dir, id, fail string, steps ...atomic.Params) error {
	t.Helper()
	return atomic.Run(context.Background(), "vm", func(tx *atomic.Tx) error {
		for _, p := range steps {
			if err := tx.Do(context.Background(), p, nil); err != nil {
				return err
			}
		}
		return nil
	}, atomic.WithStateDir(dir), atomic.WithID(id), atomic.WithFailpoints(fail), atomic.WithLogger(quiet))
}

// TestVMOperations runs every operation against real LVM twice: once
// failing right after its effect (the rollback must restore the state
// exactly), once for real.
func TestVMOperations(t *testing.T) {
	vmtest.Require(t)
	devs := loops(t, 3)
	t.Cleanup(func() { wipeAll(t, devs) })
	dir := t.TempDir()
	start := time.Now()
	defer func() { t.Logf("%d operations, each rolled back then done: %.1fs", 20, time.Since(start).Seconds()) }()
	ops := []struct {
		name  string
		steps []atomic.Params
		check func(r *Report) error
	}{
		{"pv.create", []atomic.Params{CreatePV{Device: devs[2]}}, func(r *Report) error {
			if findPV(r, devs[2]) == nil {
				return errors.New("no PV")
			}
			return nil
		}},
		{"pv.remove", []atomic.Params{RemovePV{Device: devs[2]}}, func(r *Report) error {
			if findPV(r, devs[2]) != nil {
				return errors.New("PV still there")
			}
			return nil
		}},
		{"vg.create", []atomic.Params{CreateVG{Name: "bofhvm", Devices: devs[:2], ExtentSize: "4M"}}, func(r *Report) error {
			if vg := r.VG("bofhvm"); vg == nil || vg.PVCount != 2 {
				return fmt.Errorf("vg = %+v", vg)
			}
			return nil
		}},
		{"vg.extend", []atomic.Params{ExtendVG{VG: "bofhvm", Devices: devs[2:]}}, func(r *Report) error {
			if vg := r.VG("bofhvm"); vg.PVCount != 3 {
				return fmt.Errorf("vg = %+v", vg)
			}
			return nil
		}},
		{"vg.reduce", []atomic.Params{ReduceVG{VG: "bofhvm", Devices: devs[2:]}}, func(r *Report) error {
			if vg := r.VG("bofhvm"); vg.PVCount != 2 {
				return fmt.Errorf("vg = %+v", vg)
			}
			return nil
		}},
		{"lv.create linear", []atomic.Params{CreateLV{VG: "bofhvm", Name: "web", Size: "16M"}}, nil},
		{"lv.create thin-pool", []atomic.Params{CreateLV{VG: "bofhvm", Name: "pool", Type: TypeThinPool, Size: "32M"}}, nil},
		{"lv.create thin", []atomic.Params{CreateLV{VG: "bofhvm", Name: "thin1", Type: TypeThin, Pool: "pool", Size: "64M"}}, nil},
		{"lv.resize", []atomic.Params{ResizeLV{VG: "bofhvm", Name: "web", Size: "+8M"}}, func(r *Report) error {
			if s := r.LV("bofhvm", "web").Size; s != 24<<20 {
				return fmt.Errorf("size %d", s)
			}
			return nil
		}},
		{"lv.create snapshot", []atomic.Params{CreateLV{VG: "bofhvm", Name: "websnap", Type: TypeSnapshot, Origin: "web", Size: "8M"}}, nil},
		{"lv.create thin snapshot", []atomic.Params{CreateLV{VG: "bofhvm", Name: "thinsnap", Type: TypeSnapshot, Origin: "thin1"}}, nil},
		{"lv.activate", []atomic.Params{ActivateLV{VG: "bofhvm", Name: "thinsnap"}}, func(r *Report) error {
			if !r.LV("bofhvm", "thinsnap").Active {
				return errors.New("not active")
			}
			return nil
		}},
		{"lv.deactivate", []atomic.Params{DeactivateLV{VG: "bofhvm", Name: "thinsnap"}}, nil},
		{"lv.rename", []atomic.Params{RenameLV{VG: "bofhvm", Name: "thin1", NewName: "data"}}, func(r *Report) error {
			if r.LV("bofhvm", "data") == nil || r.LV("bofhvm", "thin1") != nil {
				return errors.New("not renamed")
			}
			return nil
		}},
		{"lv.merge", []atomic.Params{MergeLV{VG: "bofhvm", Name: "websnap"}}, func(r *Report) error {
			if r.LV("bofhvm", "websnap") != nil {
				return errors.New("snapshot still there")
			}
			return nil
		}},
		{"lv.set-aside + remove, name reused", nil, func(r *Report) error {
			if l := r.LV("bofhvm", "thinsnap"); l == nil || l.Type != TypeLinear {
				return fmt.Errorf("new thinsnap: %+v", l)
			}
			if len(r.LVsOf("bofhvm")) != 4 { // web, pool, data, the new thinsnap
				return fmt.Errorf("LVs: %+v", r.LVsOf("bofhvm"))
			}
			return nil
		}},
		{"lv.remove", []atomic.Params{RemoveLV{VG: "bofhvm", Name: "web"}}, func(r *Report) error {
			if r.LV("bofhvm", "web") != nil {
				return errors.New("still there")
			}
			return nil
		}},
		{"lv.remove thin LVs", []atomic.Params{RemoveLV{VG: "bofhvm", Name: "thinsnap"}, RemoveLV{VG: "bofhvm", Name: "data"}}, nil},
		{"lv.remove pool", []atomic.Params{RemoveLV{VG: "bofhvm", Name: "pool"}}, func(r *Report) error {
			if n := len(r.LVsOf("bofhvm")); n != 0 {
				return fmt.Errorf("%d LVs left", n)
			}
			return nil
		}},
		{"vg.remove", []atomic.Params{RemoveVG{Name: "bofhvm"}}, func(r *Report) error {
			if r.VG("bofhvm") != nil || len(r.PVs) < 2 {
				return fmt.Errorf("VG still there or PVs gone: %+v", r)
			}
			return nil
		}},
	}
	aside := func(id string) []atomic.Params {
		return append([]atomic.Params{
			DeactivateLV{VG: "bofhvm", Name: "thinsnap"},
			SetAsideLV{VG: "bofhvm", Name: "thinsnap"},
			CreateLV{VG: "bofhvm", Name: "thinsnap", Size: "4M"},
		}, RemoveSteps(id, "bofhvm", "thinsnap", true)[1:]...)
	}
	// rep is the state after the previous operation's real run: its check
	// and the next operation's "before" share that one fullreport (nil
	// after a failed operation: query again)
	rep := state(t)
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			if rep == nil {
				rep = state(t)
			}
			before := shapeOf(rep, nil)
			rep = nil
			start := time.Now()
			failID, realID := atomic.NewID()+"-f", atomic.NewID()+"-r"
			steps, realSteps := op.steps, op.steps
			if steps == nil {
				steps, realSteps = aside(failID), aside(realID)
			}
			// fail right after the last step's effect; with irreversible
			// steps, at commit before the first of them acts (once one
			// has run, the transaction can only go forward)
			n, phase := len(steps), "after"
			for i, p := range steps {
				if k, _ := atomic.Kind(p.StepKind()); k.Irreversible {
					n, phase = i+1, "before"
					break
				}
			}
			err := doTxID(t, dir, failID, fmt.Sprintf("%d:%s:error", n, phase), steps...)
			if !errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != atomic.ExitRolledBack {
				t.Fatalf("failing run: %v", err)
			}
			if after := shape(t, nil); after != before {
				t.Fatalf("rollback did not restore the state:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if err := doTxID(t, dir, realID, "", realSteps...); err != nil {
				t.Fatalf("real run: %v", err)
			}
			rep = state(t)
			if op.check != nil {
				if err := op.check(rep); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("%s: %.1fs", op.name, time.Since(start).Seconds())
		})
	}
	// no orphans: every transaction above committed or rolled back
	txs, _ := atomic.List(dir)
	if rep == nil {
		rep = state(t)
	}
	if o := Orphans(rep, txs); len(o) != 0 {
		t.Errorf("orphans: %+v", o)
	}
}

// TestVMBadInput: errors from the real system are classified, and bad
// input changes nothing.
func TestVMBadInput(t *testing.T) {
	vmtest.Require(t)
	devs := loops(t, 2)
	t.Cleanup(func() { wipeAll(t, devs) })
	dir := t.TempDir()
	if err := doTx(t, dir, "", CreateVG{Name: "bofhbad", Devices: devs[:1]}); err != nil {
		t.Fatal(err)
	}
	before := shape(t, devs)
	for _, tt := range []struct {
		name string
		p    atomic.Params
		want error
	}{
		{"no space", CreateLV{VG: "bofhbad", Name: "big", Size: "1G"}, ErrNoSpace},
		{"missing vg", CreateLV{VG: "nope", Name: "x", Size: "4M"}, ErrNotFound},
		{"missing device", CreatePV{Device: "/dev/nosuchdev"}, atomic.ErrInvalid},
		{"device in use", CreateVG{Name: "bofhbad2", Devices: devs[:1]}, ErrInUse},
		{"reserved name", CreateLV{VG: "bofhbad", Name: "a_tdata", Size: "4M"}, ErrBadName},
		{"bad size", CreateLV{VG: "bofhbad", Name: "a", Size: "4X"}, ErrBadSize},
	} {
		err := doTx(t, dir, "", tt.p)
		if atomic.ExitCode(err) != atomic.ExitInvalid || !errors.Is(err, tt.want) {
			t.Errorf("%s: %v (exit %d), want exit 2 and %v", tt.name, err, atomic.ExitCode(err), tt.want)
		}
	}
	// past validation, lvcreate itself fails: classified from LVM's message
	s := &run.Local{}
	err := Classify(run.Mutate(context.Background(), s, "lvcreate", "-y", "-n", "big", "-L", "1G", "bofhbad"))
	if !errors.Is(err, ErrNoSpace) {
		t.Errorf("lvcreate 1G: %v, want ErrNoSpace", err)
	}
	if after := shape(t, devs); after != before {
		t.Errorf("bad input changed the state:\n%s\n%s", before, after)
	}
}

const recipeYAML = `name: lvm-vm
steps:
  - id: vg
    kind: lvm.vg.create
    with: {name: bofhrcp, devices: [%q, %q]}
  - id: web
    kind: lvm.lv.create
    with: {vg: bofhrcp, name: web, size: 16M}
  - id: pool
    kind: lvm.lv.create
    with: {vg: bofhrcp, name: pool, type: thin-pool, size: 24M}
  - id: thin
    kind: lvm.lv.create
    with: {vg: bofhrcp, name: thin1, type: thin, pool: pool, size: 64M}
  - id: grow
    kind: lvm.lv.resize
    with: {vg: bofhrcp, name: web, size: +8M}
  - id: ren
    kind: lvm.lv.rename
    with: {vg: bofhrcp, name: thin1, new_name: data}
`

const recipeSteps = 6

// TestHelperProcess runs the recipe for the crash tests in a child process
// (BOFH_FAIL kills it with SIGKILL).
func TestHelperProcess(t *testing.T) {
	if os.Getenv("BOFH_LVM_HELPER") != "1" {
		return
	}
	r, err := atomic.ParseRecipe([]byte(os.Getenv("BOFH_LVM_RECIPE")))
	if err == nil {
		_, err = atomic.Apply(context.Background(), r, atomic.WithID(os.Getenv("BOFH_LVM_ID")), atomic.WithLogger(quiet))
	}
	fmt.Println("helper:", err)
	os.Exit(atomic.ExitCode(err))
}

func endState(t *testing.T) error {
	r := state(t)
	vg := r.VG("bofhrcp")
	if vg == nil || vg.PVCount != 2 || vg.LVCount != 3 {
		return fmt.Errorf("vg: %+v", vg)
	}
	if w := r.LV("bofhrcp", "web"); w == nil || w.Size != 24<<20 {
		return fmt.Errorf("web: %+v", w)
	}
	if d := r.LV("bofhrcp", "data"); d == nil || d.Type != TypeThin || d.Pool != "pool" {
		return fmt.Errorf("data: %+v", d)
	}
	return nil
}

// TestVMRecipeCrashMatrix: VG → LV → thin pool → thin LV → resize → rename,
// with a failure at every step (vmtest.CrashCases: an in-process error, and a
// SIGKILL of a child finished from the journal). An error, or a kill then
// 'tx rollback', leaves nothing (no LV, no VG, no PV label); a kill then
// 'tx resume' reaches the end state.
func TestVMRecipeCrashMatrix(t *testing.T) {
	vmtest.Require(t)
	devs := loops(t, 2)
	t.Cleanup(func() { wipeAll(t, devs) })
	dir := t.TempDir()
	yaml := fmt.Sprintf(recipeYAML, devs[0], devs[1])
	empty := shape(t, devs)
	r, err := atomic.ParseRecipe([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := atomic.Apply(context.Background(), r, atomic.WithStateDir(dir), atomic.WithLogger(quiet)); err != nil {
		t.Fatal(err)
	}
	t.Logf("recipe (%d steps) wall time: %v", recipeSteps, time.Since(start))
	if err := endState(t); err != nil {
		t.Fatal(err)
	}
	wipeAll(t, devs)
	child := func(t *testing.T, id, fail string) {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), "BOFH_LVM_HELPER=1", "BOFH_LVM_RECIPE="+yaml, "BOFH_LVM_ID="+id,
			"BOFH_STATE_DIR="+dir, "BOFH_FAIL="+fail)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != -1 {
			t.Fatalf("child with %s: %v (want killed): %s", fail, err, out.String())
		}
	}
	for _, c := range vmtest.CrashCases(t, recipeSteps) {
		t.Run(c.String(), func(t *testing.T) {
			start := time.Now()
			// a failed case must not leave its state to the next one
			t.Cleanup(func() {
				if t.Failed() {
					wipeAll(t, devs)
				}
			})
			switch {
			case c.How == "error":
				_, err := atomic.Apply(context.Background(), r, atomic.WithStateDir(dir), atomic.WithLogger(quiet),
					atomic.WithFailpoints(c.Failpoint()))
				if !errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != atomic.ExitRolledBack {
					t.Fatalf("error at %s: %v", c.Failpoint(), err)
				}
				if got := shape(t, devs); got != empty {
					t.Fatalf("after rollback of an error at %s:\n%s", c.Failpoint(), got)
				}
			case c.Then == "rollback":
				id := "kill-" + c.String()
				child(t, id, c.Failpoint())
				if err := atomic.RollbackID(context.Background(), id, nil, atomic.WithStateDir(dir), atomic.WithLogger(quiet)); err != nil {
					t.Fatalf("rollback after a kill at %s: %v", c.Failpoint(), err)
				}
				if got := shape(t, devs); got != empty {
					t.Fatalf("after rollback of a kill at %s:\n%s", c.Failpoint(), got)
				}
			default:
				id := "kill-" + c.String()
				child(t, id, c.Failpoint())
				if err := atomic.ResumeID(context.Background(), id, atomic.WithStateDir(dir), atomic.WithLogger(quiet)); err != nil {
					t.Fatalf("resume after a kill at %s: %v", c.Failpoint(), err)
				}
				if err := endState(t); err != nil {
					t.Fatalf("after resume from a kill at %s: %v", c.Failpoint(), err)
				}
				wipeAll(t, devs)
			}
			t.Logf("%s: %.1fs", c, time.Since(start).Seconds())
		})
	}
}
