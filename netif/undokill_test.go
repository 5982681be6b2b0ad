package netif

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

// TestUndoKillThenRollback fails the crash-matrix recipe's last step after
// its effect, then SIGKILLs the child in the middle of the rollback, right
// before the undo of step k (BOFH_FAIL=<last>:after:error,<k>:undo:kill):
// the steps after k are undone, k and those before are not. A second
// rollback from the journal alone finishes, and the namespace is back to
// its start as 'ip -j' shows it. (The netif steps talk netlink, not
// commands, so there is no cmd<k> failpoint inside them to crash.)
func TestUndoKillThenRollback(t *testing.T) {
	ns := newNS(t)
	baseline(t, ns)
	start := snapshot(t, ns)
	n := len(recipe(ns))
	for _, k := range []int{n, 8, 4, 1} {
		fp := fmt.Sprintf("%d:after:error,%d:undo:kill", n, k)
		dir := t.TempDir()
		id := fmt.Sprintf("netif-undo-kill-%d", k)
		spec, _ := json.Marshal(struct{ NS, StateDir, ID string }{ns, dir, id})
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"="+string(spec), atomic.FailEnv+"="+fp)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("%s: child was not killed by SIGKILL: %v\n%s", fp, err, out)
		}
		d, err := atomic.Show(dir, id)
		if err != nil || d.State != atomic.StateInterrupted {
			t.Fatalf("%s: after the kill: %+v %v", fp, d, err)
		}
		for _, s := range d.Steps {
			want := atomic.StatusDone
			switch {
			case s.Step == n && k == n:
				want = atomic.StatusUncertain // failed after its effect, not yet undone
			case s.Step > k:
				want = atomic.StatusUndone
			}
			if s.Status != want {
				t.Fatalf("%s: step %d (%s) is %s, want %s", fp, s.Step, s.Kind, s.Status, want)
			}
		}
		if err := atomic.RollbackID(context.Background(), id, nil, atomic.WithStateDir(dir), atomic.WithFailpoints("")); err != nil {
			t.Fatalf("%s: second rollback: %v", fp, err)
		}
		if now := snapshot(t, ns); now != start {
			t.Fatalf("%s: namespace not back to its starting state:\n%s", fp, diff(start, now))
		}
	}
}
