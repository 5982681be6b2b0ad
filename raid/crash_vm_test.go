//go:build vm

package raid_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
	"github.com/bofhkit/bofh/internal/vmtest"
	"github.com/bofhkit/bofh/raid"
)

// The crash child of TestVMKindsCrash: a re-exec of this test binary that
// applies the recipe in $BOFH_RAID_KINDS_RECIPE, or rolls back the
// transaction, with BOFH_FAIL from its environment (a kill).
const (
	kindsModeEnv   = "BOFH_RAID_KINDS_MODE" // apply or rollback
	kindsRecipeEnv = "BOFH_RAID_KINDS_RECIPE"
	kindsStateEnv  = "BOFH_RAID_KINDS_STATE"
	kindsIDEnv     = "BOFH_RAID_KINDS_ID"
)

func init() {
	if mode := os.Getenv(kindsModeEnv); mode != "" {
		os.Exit(kindsChild(mode))
	}
}

func kindsChild(mode string) int {
	ctx := context.Background()
	opts := []atomic.Option{atomic.WithStateDir(os.Getenv(kindsStateEnv))}
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

// exportKeys keeps the lines of mdadm's --export output whose key is in
// keys or starts with MD_DEVICE_ and ends with _ROLE, sorted.
func exportKeys(out string, keys ...string) []string {
	var kept []string
	for _, l := range strings.Split(out, "\n") {
		k, _, _ := strings.Cut(l, "=")
		if slices.Contains(keys, k) || (strings.HasPrefix(k, "MD_DEVICE_") && strings.HasSuffix(k, "_ROLE")) {
			kept = append(kept, l)
		}
	}
	slices.Sort(kept)
	return kept
}

// mdProbe describes arrays and members with mdadm itself (not this
// package's parsers): every member's superblock (mdadm --examine: array
// UUID, level, devices, or none), every array's detail (level, devices,
// UUID, each member's role, or not running) and its mdstat status line,
// after any resync or recovery has finished (mdadm --wait).
func mdProbe(t *testing.T, devs, arrays []string) string {
	t.Helper()
	var b strings.Builder
	for _, md := range arrays {
		exec.Command("mdadm", "--wait", md).Run()
		out, err := exec.Command("mdadm", "--detail", "--export", md).Output()
		if err != nil {
			fmt.Fprintf(&b, "%s not running\n", md)
			continue
		}
		fmt.Fprintf(&b, "%s %v\n", md, exportKeys(string(out), "MD_LEVEL", "MD_DEVICES", "MD_UUID"))
	}
	stat, err := os.ReadFile("/proc/mdstat")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(stat), "\n")
	for i, l := range lines {
		for _, md := range arrays {
			if strings.HasPrefix(l, strings.TrimPrefix(md, "/dev/")+" :") && i+1 < len(lines) {
				f := strings.Fields(lines[i+1])
				fmt.Fprintf(&b, "mdstat %s %v\n", md, f[len(f)-2:])
			}
		}
	}
	for _, d := range devs {
		out, err := exec.Command("mdadm", "--examine", "--export", d).Output()
		if err != nil {
			fmt.Fprintf(&b, "%s no superblock\n", d)
			continue
		}
		fmt.Fprintf(&b, "%s %v\n", d, exportKeys(string(out), "MD_LEVEL", "MD_DEVICES", "MD_UUID"))
	}
	return b.String()
}

// TestVMKindsCrash crashes every md RAID step kind in the middle of its
// effect against the real mdadm and md, and rolls back to the starting
// state. A child applies the step and is SIGKILLed right after its command
// (an irreversible one at commit, before it runs); a first 'tx rollback'
// is SIGKILLed in the step's undo (undo:kill), a second one finishes; then
// mdadm --detail, --examine of every member and /proc/mdstat must show the
// starting state.
func TestVMKindsCrash(t *testing.T) {
	vmtest.Require(t)
	setSpeed(t, 50000, 200000)
	ctx := context.Background()
	d := loops(t, 7, 16)
	md30, md31, md32 := "/dev/md30", "/dev/md31", "/dev/md32"
	arrays := []string{md30, md31, md32}
	for _, md := range arrays {
		stopAtCleanup(t, md)
	}
	// the starting state: md30 (raid1 on d0, d1) running, md32 (raid1 on
	// d5, d6) stopped, d2, d3, d4 blank
	do(t, raid.Create{Device: md30, Level: "1", Devices: d[:2], AssumeClean: true},
		raid.Create{Device: md32, Level: "1", Devices: d[5:7], AssumeClean: true})
	do(t, raid.Stop{Device: md32})
	start := mdProbe(t, d, arrays)
	if !strings.Contains(start, md32+" not running") || strings.Contains(start, md30+" not running") {
		t.Fatalf("unexpected starting state:\n%s", start)
	}
	cases := []struct {
		name  string
		steps []atomic.Params
		fail  string // where the apply child is killed
		undo  string // where the first rollback is killed
	}{
		{"create", []atomic.Params{raid.Create{Device: md31, Level: "1", Devices: d[3:5], AssumeClean: true}}, "1:after:kill", "1:undo:kill"},
		{"stop", []atomic.Params{raid.Stop{Device: md30}}, "1:after:kill", "1:undo:kill"},
		{"assemble", []atomic.Params{raid.Assemble{Device: md32, Devices: d[5:7]}}, "1:after:kill", "1:undo:kill"},
		{"add", []atomic.Params{raid.Add{Device: md30, Member: d[2]}}, "1:after:kill", "1:undo:kill"},
		{"fail", []atomic.Params{raid.Fail{Device: md30, Member: d[1]}}, "1:after:kill", "1:undo:kill"},
		// a spare (d2, added by step 1) taken out
		{"remove", []atomic.Params{raid.Add{Device: md30, Member: d[2]}, raid.Remove{Device: md30, Member: d[2]}}, "2:after:kill", "2:undo:kill"},
		// irreversible: killed at commit, before it runs
		{"grow", []atomic.Params{raid.Add{Device: md30, Member: d[2]}, raid.Grow{Device: md30, RaidDevices: 3}}, "2:before:kill", "1:undo:kill"},
	}
	total := time.Now()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t0 := time.Now()
			state, id := t.TempDir(), atomic.NewID()
			killedChild(t, "apply", state, id, hosttest.RecipeOf(t, "raid-kinds-crash", c.steps...), c.fail)
			killedChild(t, "rollback", state, id, "", c.undo)
			if err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(state), atomic.WithFailpoints("")); err != nil {
				t.Fatalf("second rollback: %v", err)
			}
			if got := mdProbe(t, d, arrays); got != start {
				t.Fatalf("after a kill at %s, a kill at %s in the rollback and a second rollback:\n got:\n%s\nwant:\n%s", c.fail, c.undo, got, start)
			}
			t.Logf("%s: %.1fs", c.name, time.Since(t0).Seconds())
		})
		if t.Failed() {
			break // the starting state is gone
		}
	}
	t.Logf("%d cases: %.1fs", len(cases), time.Since(total).Seconds())
}
