package tree

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/btrfs"
	"github.com/bofhkit/bofh/run"
)

// TestHostRollbackMovesAside: a rollback on btrfs swaps the snapshot back
// and moves the upgraded tree aside (no deletion on the rollback path);
// the next upgrade deletes it, and leaves alone a subvolume that only
// looks like one.
func TestHostRollbackMovesAside(t *testing.T) {
	l := newLab(t, "btrfs")
	ctx := context.Background()
	before := fingerprint(t, l.target)
	info, err := btrfs.Show(ctx, &run.Local{}, l.target)
	if err != nil {
		t.Fatal(err)
	}
	// fail at the state step: snapshot, sync, add_only ran
	n := upgradeSteps(t, l)
	if _, err := Upgrade(ctx, l.req(), atomic.WithFailpoints(fmt.Sprintf("%d:before:error", n-1))); !errors.Is(err, atomic.ErrFailpoint) {
		t.Fatal(err)
	}
	sameFingerprint(t, "after rollback", before, fingerprint(t, l.target))
	trash := trashPath(l.target, info.UUID)
	if ok, err := btrfs.IsSubvolume(trash); err != nil || !ok {
		t.Fatalf("upgraded tree not moved aside to %s: %v %v", trash, ok, err)
	}
	if b, _ := os.ReadFile(filepath.Join(trash, "usr/share/doc/new.txt")); string(b) != "new" {
		t.Fatalf("%s does not hold the upgraded tree", trash)
	}
	decoy := trashPath(l.target, "00000000-0000-0000-0000-000000000000")
	sh(t, "btrfs", "subvolume", "create", decoy)
	if _, err := Upgrade(ctx, l.req()); err != nil {
		t.Fatal(err)
	}
	if ok, _ := btrfs.IsSubvolume(trash); ok {
		t.Fatalf("%s not deleted by the next upgrade", trash)
	}
	if ok, _ := btrfs.IsSubvolume(decoy); !ok {
		t.Fatalf("decoy %s deleted", decoy)
	}
	ents, _ := os.ReadDir(l.mnt)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".bofh-") && filepath.Join(l.mnt, e.Name()) != decoy {
			t.Errorf("%s left after commit", e.Name())
		}
	}

	// a rollback killed between the swap and the move aside: rerun
	before = fingerprint(t, l.target)
	info, err = btrfs.Show(ctx, &run.Local{}, l.target)
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(l.store, "metadata/v2"))
	md := filepath.Join(l.store, "metadata/v2/web/v1")
	write(t, filepath.Join(md, "exclude"), "/var/lib/data\n*.log\n/etc/local.conf\n", 0o644)
	rec, _, err := UpgradeRecipe(Request{Store: l.store, Version: "v1", Target: l.target, StateDir: l.state})
	if err != nil {
		t.Fatal(err)
	}
	id, err := applyKill(ctx, rec, l.state, len(rec.Steps)-1)
	if err != nil {
		t.Fatal(err)
	}
	var sp SnapshotStep
	if err := json.Unmarshal(mustJSON(rec.Steps[0].With), &sp); err != nil {
		t.Fatal(err)
	}
	// the rollback undoes every step but the snapshot's, whose undo then
	// swaps and is killed before moving the upgraded tree aside
	if err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(l.state), atomic.WithFailpoints("1:undo:error")); err == nil {
		t.Fatal("undo failpoint did not fire")
	}
	if err := btrfs.Exchange(l.target, sp.Snapshot); err != nil {
		t.Fatal(err)
	}
	if err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(l.state)); err != nil {
		t.Fatal(err)
	}
	sameFingerprint(t, "after the rerun rollback", before, fingerprint(t, l.target))
	if ok, _ := btrfs.IsSubvolume(trashPath(l.target, info.UUID)); !ok {
		t.Fatal("upgraded tree not moved aside by the rerun")
	}
	if ok, _ := btrfs.IsSubvolume(sp.Snapshot); ok {
		t.Fatalf("%s left", sp.Snapshot)
	}
}
