package vmtest

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// FullMatrixEnv selects the exhaustive crash matrix (make test-full).
const FullMatrixEnv = "BOFH_FULL_MATRIX"

// CrashCase is one failure injected into a recipe of a VM crash test.
type CrashCase struct {
	Step  int
	Phase string // before, after
	How   string // error, kill
	Then  string // kill only: rollback, resume
}

// String names the case for a subtest: "3-after-kill-resume".
func (c CrashCase) String() string {
	if c.How == "kill" {
		return fmt.Sprintf("%d-%s-kill-%s", c.Step, c.Phase, c.Then)
	}
	return fmt.Sprintf("%d-%s-error", c.Step, c.Phase)
}

// Failpoint is the case as a BOFH_FAIL value.
func (c CrashCase) Failpoint() string { return fmt.Sprintf("%d:%s:%s", c.Step, c.Phase, c.How) }

// CrashCases is the failure matrix of a recipe of n steps. Every step gets
// an error AND a kill. By default (sized for the TCG budget of make test)
// that is an error after the effect and one kill whose phase alternates
// with the step (after, before, …) and whose finish alternates every two
// steps (rollback, rollback, resume, resume, …), so the four (phase ×
// finish) kill combinations come round every four steps. With
// BOFH_FULL_MATRIX=1 it is the full cross product at every step: error
// before and after, kill before and after × rollback and resume. Any other
// value of BOFH_FULL_MATRIX fails the test (labtest forwards only 1). The
// cases are logged.
func CrashCases(t testing.TB, n int) []CrashCase {
	t.Helper()
	v := os.Getenv(FullMatrixEnv)
	if v != "" && v != "1" {
		t.Fatalf("%s=%q: want 1 (the full matrix) or unset", FullMatrixEnv, v)
	}
	full := v == "1"
	var cs []CrashCase
	for i := 1; i <= n; i++ {
		if full {
			for _, phase := range []string{"before", "after"} {
				cs = append(cs, CrashCase{i, phase, "error", ""})
				for _, then := range []string{"rollback", "resume"} {
					cs = append(cs, CrashCase{i, phase, "kill", then})
				}
			}
			continue
		}
		cs = append(cs, CrashCase{i, "after", "error", ""},
			CrashCase{i, []string{"after", "before"}[(i-1)%2], "kill", []string{"rollback", "resume"}[(i-1)/2%2]})
	}
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.String()
	}
	mode := "default matrix (" + FullMatrixEnv + "=1 for the full cross product)"
	if full {
		mode = "full matrix (" + FullMatrixEnv + "=1)"
	}
	t.Logf("%s, %d steps, %d cases: %s", mode, n, len(cs), strings.Join(names, " "))
	return cs
}
