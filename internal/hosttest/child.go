package hosttest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/bofhkit/bofh/atomic"
)

// ApplyChild is the child half of a crash test: call it first in
// TestMain. When env is set to "apply", the test binary is a child that
// applies the recipe in $BOFH_HELPER_RECIPE with the state dir
// $BOFH_HELPER_STATE (a BOFH_FAIL kill failpoint SIGKILLs it mid-way),
// prints the transaction ID and exits with atomic.ExitCode. Otherwise it
// returns and the tests run.
func ApplyChild(env string) {
	if os.Getenv(env) != "apply" {
		return
	}
	r, err := atomic.ParseRecipe([]byte(os.Getenv("BOFH_HELPER_RECIPE")))
	if err == nil {
		var id string
		id, err = atomic.Apply(context.Background(), r, atomic.WithStateDir(os.Getenv("BOFH_HELPER_STATE")))
		fmt.Println(id)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(atomic.ExitCode(err))
	}
	os.Exit(0)
}

// RecipeOf turns steps into a recipe's JSON text, as a journal carries
// it, for ApplyChild.
func RecipeOf(t testing.TB, name string, ps ...atomic.Params) string {
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

// KillChild re-executes the test binary as ApplyChild(env) on recipe with
// the state dir state and BOFH_FAIL=fail, which must SIGKILL it, and
// returns the ID of the one transaction it left interrupted.
func KillChild(t testing.TB, env, state, recipe, fail string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env+"=apply", "BOFH_HELPER_RECIPE="+recipe, "BOFH_HELPER_STATE="+state, atomic.FailEnv+"="+fail)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("%s: child was not killed by SIGKILL: %v\n%s", fail, err, out)
	}
	txs, err := atomic.List(state)
	if err != nil || len(txs) != 1 || txs[0].State != atomic.StateInterrupted {
		t.Fatalf("%s: journals: %+v, %v", fail, txs, err)
	}
	return txs[0].ID
}
