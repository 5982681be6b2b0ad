package tree

import (
	"context"
	"fmt"
	"testing"

	"github.com/bofhkit/bofh/atomic"
)

// TestCmdKillMidStep crashes the v1 → v2 upgrade of a btrfs target (where
// the steps run the btrfs tool) right before a step's btrfs command
// (BOFH_FAIL=1:cmd1:kill: the snapshot about to be taken) and inside the
// rollback of a failure: right before the snapshot step's undo
// (1:undo:kill), after the later steps were undone. A rollback from the
// journal alone then restores the target exactly (the oracle's
// fingerprint) and leaves no snapshot.
func TestCmdKillMidStep(t *testing.T) {
	requireRoot(t)
	l := newLab(t, "btrfs")
	ctx := context.Background()
	before := fingerprint(t, l.target)
	last := upgradeSteps(t, l)
	for i, fp := range []string{
		"1:cmd1:kill",
		fmt.Sprintf("%d:after:error,1:undo:kill", last-2), // the post hook fails: state, … undone, killed before the snapshot's undo
		"3:after:error,1:undo:kill",                       // tree.sync fails after copying
	} {
		what := fmt.Sprintf("kill %s", fp)
		id := fmt.Sprintf("cmdkill-%d", i)
		killedUpgrade(t, l, id, fp, what)
		// where it died: inside step 1 (uncertain), or before step 1's
		// undo (done) with every later step undone
		d, err := atomic.Show(l.state, id)
		if err != nil {
			t.Fatal(err)
		}
		want := atomic.StatusDone
		if i == 0 {
			want = atomic.StatusUncertain
		}
		if got := d.Steps[0].Status; got != want {
			t.Fatalf("%s: step 1 is %s, want %s", what, got, want)
		}
		for _, s := range d.Steps[1:] {
			if i > 0 && s.Status != atomic.StatusUndone {
				t.Fatalf("%s: step %d (%s) is %s, want undone", what, s.Step, s.Kind, s.Status)
			}
		}
		if err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(l.state)); err != nil {
			t.Fatalf("%s: rollback: %v", what, err)
		}
		sameFingerprint(t, what+", then rollback", before, fingerprint(t, l.target))
		noSnapshot(t, l, what)
		if st := txState(t, l, id); st != atomic.StateRolledBack {
			t.Fatalf("%s: transaction %s, want %s", what, st, atomic.StateRolledBack)
		}
	}
}
