//go:build vm

package lvm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
	"github.com/bofhkit/bofh/internal/vmtest"
)

// The crash child of TestVMKindsCrash: a re-exec of this test binary that
// applies the recipe in $BOFH_LVM_KINDS_RECIPE, or rolls back the
// transaction, with BOFH_FAIL from its environment (a kill).
const (
	kindsModeEnv   = "BOFH_LVM_KINDS_MODE" // apply or rollback
	kindsRecipeEnv = "BOFH_LVM_KINDS_RECIPE"
	kindsStateEnv  = "BOFH_LVM_KINDS_STATE"
	kindsIDEnv     = "BOFH_LVM_KINDS_ID"
)

func init() {
	if mode := os.Getenv(kindsModeEnv); mode != "" {
		os.Exit(kindsChild(mode))
	}
}

func kindsChild(mode string) int {
	ctx := context.Background()
	opts := []atomic.Option{atomic.WithStateDir(os.Getenv(kindsStateEnv)), atomic.WithLogger(quiet)}
	var err error
	switch mode {
	case "apply":
		var r *atomic.Recipe
		if r, err = atomic.ParseRecipe([]byte(os.Getenv(kindsRecipeEnv))); err == nil {
			_, err = atomic.Apply(ctx, r, append(opts, atomic.WithID(os.Getenv(kindsIDEnv)))...)
		}
	case "rollback":
		err = atomic.RollbackID(ctx, os.Getenv(kindsIDEnv), nil, opts...)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	fmt.Fprintf(os.Stderr, "kinds crash child (%s): not killed: %v\n", mode, err)
	return 5
}

// killedChild runs the crash child in mode with BOFH_FAIL=fail; it must
// die of SIGKILL.
func killedChild(t *testing.T, mode, state, id, recipe, fail string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), kindsModeEnv+"="+mode, kindsRecipeEnv+"="+recipe, kindsStateEnv+"="+state,
		kindsIDEnv+"="+id, atomic.FailEnv+"="+fail)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != -1 {
		t.Fatalf("%s child with %s was not killed: %v\n%s", mode, fail, err, out)
	}
}

// TestVMKindsCrash crashes every LVM step kind in the middle of its effect
// against the real LVM and rolls back to the starting state. A child
// applies the step and is SIGKILLed mid-step (before the k-th command of
// a step of several, else right after its command); a first 'tx rollback'
// is SIGKILLed in the step's undo (undo:kill), a second one finishes; then
// lvm fullreport and blkid -p must show exactly the starting state. The
// irreversible kinds are killed at commit, before they run, after a
// reversible step whose undo is killed the same way.
func TestVMKindsCrash(t *testing.T) {
	vmtest.Require(t)
	devs := loops(t, 5)
	t.Cleanup(func() { wipeAll(t, devs) })
	ctx := context.Background()
	// the starting state: VG bofhk on devs[0] and devs[3] (unused) with
	// web and its snapshot websnap, app and old active, cold inactive;
	// devs[1] an orphan PV; devs[2] blank; an empty VG bofhe on devs[4]
	setup := []atomic.Params{
		CreateVG{Name: "bofhk", Devices: []string{devs[0], devs[3]}},
		CreateVG{Name: "bofhe", Devices: devs[4:]},
		CreatePV{Device: devs[1]},
		CreateLV{VG: "bofhk", Name: "web", Size: "8M"},
		CreateLV{VG: "bofhk", Name: "websnap", Type: TypeSnapshot, Origin: "web", Size: "4M"},
		CreateLV{VG: "bofhk", Name: "app", Size: "4M"},
		CreateLV{VG: "bofhk", Name: "old", Size: "4M"},
		CreateLV{VG: "bofhk", Name: "cold", Size: "4M"},
		DeactivateLV{VG: "bofhk", Name: "cold"},
	}
	if err := doTx(t, t.TempDir(), "", setup...); err != nil {
		t.Fatal(err)
	}
	start := shape(t, devs)
	if pv := findPV(state(t), devs[3]); pv == nil || pv.PEAlloc != 0 {
		t.Fatalf("%s must hold no extents for vg.reduce: %+v", devs[3], pv)
	}
	cases := []struct {
		name  string
		steps func(id string) []atomic.Params
		fail  string // where the apply child is killed
		undo  string // where the first rollback is killed ("" for none)
	}{
		{"pv.create", one(CreatePV{Device: devs[2]}), "1:after:kill", "1:undo:kill"},
		{"pv.remove", one(RemovePV{Device: devs[1]}), "1:after:kill", "1:undo:kill"},
		{"vg.create", one(CreateVG{Name: "bofhk2", Devices: devs[2:3]}), "1:after:kill", "1:undo:kill"},
		{"vg.extend", one(ExtendVG{VG: "bofhk", Devices: devs[2:3]}), "1:after:kill", "1:undo:kill"},
		{"vg.reduce", one(ReduceVG{VG: "bofhk", Devices: devs[3:4]}), "1:after:kill", "1:undo:kill"},
		{"vg.remove", one(RemoveVG{Name: "bofhe"}), "1:after:kill", "1:undo:kill"},
		{"lv.create", one(CreateLV{VG: "bofhk", Name: "db", Size: "8M"}), "1:after:kill", "1:undo:kill"},
		{"lv.resize", one(ResizeLV{VG: "bofhk", Name: "app", Size: "+4M"}), "1:after:kill", "1:undo:kill"},
		{"lv.rename", one(RenameLV{VG: "bofhk", Name: "app", NewName: "app2"}), "1:after:kill", "1:undo:kill"},
		{"lv.deactivate", one(DeactivateLV{VG: "bofhk", Name: "app"}), "1:after:kill", "1:undo:kill"},
		{"lv.activate", one(ActivateLV{VG: "bofhk", Name: "cold"}), "1:after:kill", "1:undo:kill"},
		// set-aside runs lvchange -an, lvrename, lvchange --addtag
		{"lv.set-aside cmd2", one(SetAsideLV{VG: "bofhk", Name: "old"}), "1:cmd2:kill", "1:undo:kill"},
		{"lv.set-aside cmd3", one(SetAsideLV{VG: "bofhk", Name: "old"}), "1:cmd3:kill", "1:undo:kill"},
		// irreversible: killed at commit, before the command runs
		{"lv.remove", func(id string) []atomic.Params {
			return []atomic.Params{SetAsideLV{VG: "bofhk", Name: "old"}, RemoveLV{VG: "bofhk", Name: AsideName(id, "old")}}
		}, "2:before:kill", "1:undo:kill"},
		{"lv.merge", one(MergeLV{VG: "bofhk", Name: "websnap"}), "1:before:kill", ""},
	}
	total := time.Now()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t0 := time.Now()
			state, id := t.TempDir(), atomic.NewID()
			killedChild(t, "apply", state, id, hosttest.RecipeOf(t, "lvm-kinds-crash", c.steps(id)...), c.fail)
			if c.undo != "" {
				killedChild(t, "rollback", state, id, "", c.undo)
			}
			if err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(state), atomic.WithLogger(quiet), atomic.WithFailpoints("")); err != nil {
				t.Fatalf("rollback: %v", err)
			}
			if got := shape(t, devs); got != start {
				t.Fatalf("after a kill at %s, a kill at %q in the rollback and a second rollback:\n got:\n%s\nwant:\n%s", c.fail, c.undo, got, start)
			}
			t.Logf("%s: %.1fs", c.name, time.Since(t0).Seconds())
		})
		if t.Failed() {
			break // the starting state is gone
		}
	}
	t.Logf("%d cases: %.1fs", len(cases), time.Since(total).Seconds())
	if t.Failed() {
		return
	}
	// an irreversible step killed after it started at commit (its run
	// record written, lvconvert not run yet) can only go forward: a
	// resume checks it, runs it and commits
	t.Run("lv.merge cmd1 resume", func(t *testing.T) {
		dir, id := t.TempDir(), atomic.NewID()
		killedChild(t, "apply", dir, id, hosttest.RecipeOf(t, "lvm-kinds-crash", MergeLV{VG: "bofhk", Name: "websnap"}), "1:cmd1:kill")
		if got := shape(t, devs); got != start {
			t.Fatalf("killed before lvconvert, the state changed:\n got:\n%s\nwant:\n%s", got, start)
		}
		opts := []atomic.Option{atomic.WithStateDir(dir), atomic.WithLogger(quiet), atomic.WithFailpoints("")}
		if err := atomic.ResumeID(ctx, id, opts...); err != nil {
			t.Fatalf("resume: %v", err)
		}
		rep := state(t)
		if s := rep.LV("bofhk", "websnap"); (s != nil && !s.Merging) || rep.LV("bofhk", "web") == nil {
			t.Fatalf("after resume: want websnap merged into web, got %s", shapeOf(rep, nil))
		}
	})
}

// one is a transaction of one step.
func one(p atomic.Params) func(string) []atomic.Params {
	return func(string) []atomic.Params { return []atomic.Params{p} }
}
