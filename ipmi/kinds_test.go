package ipmi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
)

// The crash child of TestKindsSimCrash: a re-exec of this test binary that
// applies the recipe in $BOFH_IPMI_KINDS_RECIPE with BOFH_FAIL from its
// environment (a kill) and a journal under $BOFH_IPMI_KINDS_STATE.
const (
	kindsRecipeEnv = "BOFH_IPMI_KINDS_RECIPE"
	kindsStateEnv  = "BOFH_IPMI_KINDS_STATE"
)

func init() {
	if text := os.Getenv(kindsRecipeEnv); text != "" {
		os.Exit(kindsChild(text))
	}
}

func kindsChild(text string) int {
	r, err := atomic.ParseRecipe([]byte(text))
	if err == nil {
		_, err = atomic.Apply(context.Background(), r, atomic.WithStateDir(os.Getenv(kindsStateEnv)))
	}
	fmt.Fprintln(os.Stderr, "kinds crash child: not killed:", err)
	return 5
}

// recipeOf turns steps into a recipe, as a journal would carry them.
func recipeOf(t *testing.T, name string, ps ...atomic.Params) string {
	t.Helper()
	r := atomic.Recipe{Name: name}
	for _, p := range ps {
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var with map[string]any
		if err := json.Unmarshal(raw, &with); err != nil {
			t.Fatal(err)
		}
		r.Steps = append(r.Steps, atomic.RecipeStep{Kind: p.StepKind(), With: with})
	}
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// killChild applies recipe in a child process with BOFH_FAIL=fail, which
// must SIGKILL it; it returns the state dir and the interrupted
// transaction's ID.
func killChild(t *testing.T, recipe, fail string) (state, id string) {
	t.Helper()
	state = t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), kindsRecipeEnv+"="+recipe, kindsStateEnv+"="+state, atomic.FailEnv+"="+fail)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != -1 {
		t.Fatalf("%s: child not killed: %v\n%s", fail, err, out)
	}
	txs, err := atomic.List(state)
	if err != nil || len(txs) != 1 || txs[0].State != atomic.StateInterrupted {
		t.Fatalf("%s: journal: %+v, %v", fail, txs, err)
	}
	return state, txs[0].ID
}

// ipmitoolState asks the simulator with ipmitool itself (not this
// package's client or parsers) for the power state and the boot device
// selector.
func ipmitoolState(t *testing.T, b BMC) string {
	t.Helper()
	base := []string{"-I", "lanplus", "-H", b.Address, "-p", strconv.Itoa(b.Port), "-U", b.User, "-f", b.PasswordFile, "-C", "3"}
	var parts []string
	for _, q := range []struct {
		args   []string
		prefix string
	}{
		{[]string{"chassis", "power", "status"}, "Chassis Power is"},
		{[]string{"chassis", "bootparam", "get", "5"}, "- Boot Device Selector :"},
	} {
		out, err := exec.Command("ipmitool", append(append([]string{}, base...), q.args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ipmitool %s: %v\n%s", strings.Join(q.args, " "), err, out)
		}
		found := false
		for _, l := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), q.prefix); ok {
				parts, found = append(parts, strings.TrimSpace(v)), true
			}
		}
		if !found {
			t.Fatalf("ipmitool %s: no %q line in\n%s", strings.Join(q.args, " "), q.prefix, out)
		}
	}
	return strings.Join(parts, " | ")
}

// TestKindsSimCrash crashes every ipmi kind mid-step against ipmi_sim
// (each step sends one mutating command, so before/after the effect is
// "mid-step"): a SIGKILLed child's journal is rolled back and ipmitool
// must see the starting power state and boot device again. The
// irreversible power cycle, killed after it ran at commit, cannot be
// rolled back: the rollback says so and one that skips it restores the
// rest. A kill in an undo is followed by a second rollback.
func TestKindsSimCrash(t *testing.T) {
	s := startSim(t)
	ctx := context.Background()
	b := s.bmc
	recipe := recipeOf(t, "ipmi-kinds",
		BootDev{BMC: b, Device: "pxe", Persistent: true, EFI: true}, // 1
		Power{BMC: b, Action: "on"},                                 // 2
		PowerCycle{BMC: b, Action: "reset"},                         // 3 (at commit)
		BootDev{BMC: b, Device: "cdrom"},                            // 4
		Power{BMC: b, Action: "off"},                                // 5
	)
	start := ipmitoolState(t, b)
	if start != "off | No override" {
		t.Fatalf("simulator starts at %q", start)
	}
	for _, c := range []struct {
		fail string
		skip []int // steps the first rollback refuses (irreversible, ran)
	}{
		{fail: "1:after:kill"},  // ipmi.bootdev
		{fail: "2:before:kill"}, // ipmi.power
		{fail: "5:after:kill"},  // ipmi.power (off, undo turns it on again… then off by step 2's undo)
		{fail: "3:before:kill"}, // ipmi.power.cycle at commit, before it ran
		{fail: "3:after:kill", skip: []int{3}},
		{fail: "4:after:error,2:undo:kill"}, // rollback killed in an undo
	} {
		t.Run(strings.ReplaceAll(c.fail, ",", "+"), func(t *testing.T) {
			state, id := killChild(t, recipe, c.fail)
			if mid := ipmitoolState(t, b); mid == start && !strings.Contains(c.fail, "before") {
				t.Errorf("after the kill the simulator is still at %q: did the step act?", mid)
			}
			if c.skip != nil {
				err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(state), atomic.WithFailpoints(""))
				if !errors.Is(err, atomic.ErrRollbackIncomplete) || !strings.Contains(err.Error(), "irreversible") {
					t.Fatalf("rollback over a power cycle that ran: %v, want refused as irreversible", err)
				}
			}
			if err := atomic.RollbackID(ctx, id, c.skip, atomic.WithStateDir(state), atomic.WithFailpoints("")); err != nil {
				t.Fatalf("rollback: %v", err)
			}
			if got := ipmitoolState(t, b); got != start {
				t.Fatalf("after rollback ipmitool sees %q, want %q", got, start)
			}
			txs, err := atomic.List(state)
			if err != nil || len(txs) != 1 || txs[0].State != atomic.StateRolledBack {
				t.Fatalf("journal after rollback: %+v %v", txs, err)
			}
		})
	}
}
