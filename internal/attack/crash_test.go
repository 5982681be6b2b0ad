package attack

import (
	"syscall"
	"testing"

	"github.com/bofhkit/bofh/internal/hosttest"
)

// TestCrashMatrixRollbacks grows the crash matrix (issue 12, "tests that
// must exist"): a kill inside an undo (during the failure's own rollback
// or during tx rollback), and a kill during the rollback of a rollback.
// Each run is SIGKILLed where the row says; the last tx rollback must
// finish (exit 0) and leave the directory byte for byte, mode, owner and
// mtime as it was before the apply. The kill between the terminal record
// and the cleanup has no failpoint: TestCase10KillBeforeCleanup makes it
// by hand.
func TestCrashMatrixRollbacks(t *testing.T) {
	hosttest.RequireRoot(t)
	for _, tc := range []struct {
		name  string
		apply string   // failpoints of the apply, which is killed
		kills []string // failpoints of the rollbacks that are killed in turn
	}{
		{"kill inside the failure's undo", "3:after:error,2:undo:kill", nil},
		{"kill inside the failure's last undo", "3:after:error,1:undo:kill", nil},
		{"kill inside tx rollback's undo", "3:after:kill", []string{"2:undo:kill"}},
		{"kill during the rollback of a rollback", "3:after:error,3:undo:kill", []string{"2:undo:kill"}},
		{"kill during the rollback of a rollback of a rollback", "3:after:kill", []string{"3:undo:kill", "2:undo:kill", "1:undo:kill"}},
		{"kill twice in the same undo", "3:after:error,2:undo:kill", []string{"2:undo:kill"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			start := snapshot(t, f.dir)
			id := f.interrupt(t, tc.apply)
			for i, fp := range tc.kills {
				r := bofh(t, []string{"BOFH_FAIL=" + fp}, "--state-dir", f.state, "tx", "rollback", id)
				if r.code != -int(syscall.SIGKILL) {
					t.Fatalf("rollback %d with %s: %s; want SIGKILL", i+1, fp, r)
				}
				if rows := list(t, f.state); len(rows) != 1 || rows[0].State != "interrupted" && rows[0].State != "rollback-failed" {
					t.Fatalf("after rollback %d was killed: %+v", i+1, rows)
				}
			}
			r := bofh(t, nil, "--state-dir", f.state, "tx", "rollback", id)
			if r.code != 0 {
				t.Fatalf("rollback %d: %s; want 0", len(tc.kills)+1, r)
			}
			if got := snapshot(t, f.dir); got != start {
				t.Errorf("after the rollbacks the directory differs:\n got %s\nwant %s", got, start)
			}
			if rows := list(t, f.state); len(rows) != 1 || rows[0].State != "rolled-back" {
				t.Errorf("tx list: %+v, want rolled-back", rows)
			}
			// One more rollback is idempotent: it changes nothing.
			if r := bofh(t, nil, "--state-dir", f.state, "tx", "rollback", id); r.code != 0 {
				t.Errorf("a rollback of the rolled-back transaction: %s; want 0", r)
			}
			if got := snapshot(t, f.dir); got != start {
				t.Errorf("a rollback of the rolled-back transaction changed the directory:\n got %s\nwant %s", got, start)
			}
		})
	}
}
