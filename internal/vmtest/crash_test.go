package vmtest

import (
	"fmt"
	"testing"
)

func TestCrashCases(t *testing.T) {
	t.Setenv(FullMatrixEnv, "")
	cs := CrashCases(t, 6)
	errs, kills := map[int]bool{}, map[int]bool{}
	combos := map[string]int{}
	for _, c := range cs {
		if c.How == "error" {
			errs[c.Step] = true
		} else {
			kills[c.Step] = true
			combos[c.Phase+"/"+c.Then]++
		}
	}
	for i := 1; i <= 6; i++ {
		if !errs[i] || !kills[i] {
			t.Errorf("step %d lacks an error or a kill: %v", i, cs)
		}
	}
	for _, k := range []string{"before/rollback", "after/rollback", "before/resume", "after/resume"} {
		if combos[k] == 0 {
			t.Errorf("default matrix never runs a kill %s: %v", k, combos)
		}
	}
	if got := fmt.Sprint(cs[1]); got != "1-after-kill-rollback" || cs[1].Failpoint() != "1:after:kill" {
		t.Errorf("case 2 = %s (%s)", got, cs[1].Failpoint())
	}
	t.Setenv(FullMatrixEnv, "1")
	if n := len(CrashCases(t, 6)); n != 6*6 {
		t.Errorf("full matrix: %d cases, want 36", n)
	}
	for _, v := range []string{"0", "yes", "true"} {
		t.Setenv(FullMatrixEnv, v)
		ft := &fakeT{TB: t}
		func() {
			defer func() { recover() }()
			CrashCases(ft, 6)
		}()
		if !ft.failed {
			t.Errorf("%s=%q: CrashCases did not fail", FullMatrixEnv, v)
		}
	}
}
