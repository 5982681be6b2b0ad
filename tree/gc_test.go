package tree

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/btrfs"
	"github.com/bofhkit/bofh/run"
)

// gcActions maps every entry GC reported to its action.
func gcActions(rep *GCReport) map[string]string {
	m := map[string]string{}
	for _, e := range rep.Entries {
		m[e.Path] = e.Action
	}
	return m
}

func wantGC(t *testing.T, what string, rep *GCReport, want map[string]string) {
	t.Helper()
	got := gcActions(rep)
	for p, a := range want {
		if got[p] != a {
			t.Errorf("%s: %s: action %q, want %q", what, p, got[p], a)
		}
	}
	for p, a := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: unexpected entry %s (%s)", what, p, a)
		}
	}
	if t.Failed() {
		for _, e := range rep.Entries {
			t.Logf("  %+v", e)
		}
		t.FailNow()
	}
}

func isSubvol(t *testing.T, p string) bool {
	t.Helper()
	ok, err := btrfs.IsSubvolume(p)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestHostGC: on btrfs, GC deletes the tree a rollback moved aside and the
// restore point a committed transaction left, keeps look-alikes (a
// subvolume whose UUID is not the one in its name, a plain directory, a
// restore-point name no journal records), and keeps the restore point of
// an interrupted upgrade, which its rollback then still uses.
func TestHostGC(t *testing.T) {
	l := newLab(t, "btrfs")
	ctx := context.Background()
	r := &run.Local{}
	opts := GCOptions{StateDir: l.state}
	before := fingerprint(t, l.target)
	info, err := btrfs.Show(ctx, r, l.target)
	if err != nil {
		t.Fatal(err)
	}

	// nothing to collect
	rep, err := GC(ctx, r, l.target, opts)
	if err != nil || len(rep.Entries) != 0 {
		t.Fatalf("gc of a clean target: %+v %v", rep, err)
	}

	// a committed transaction that took a restore point and left it
	rec, _, err := UpgradeRecipe(l.req())
	if err != nil {
		t.Fatal(err)
	}
	var sp SnapshotStep
	if err := json.Unmarshal(mustJSON(rec.Steps[0].With), &sp); err != nil {
		t.Fatal(err)
	}
	// (named apart from the v1 → v2 upgrade's, which must be free; taken
	// before the failed upgrade, whose snapshot step sweeps the trash)
	stale := sp
	stale.From, stale.To = "v0", "v1"
	stale.Snapshot = filepath.Join(l.mnt, ".target.bofh-v0-v1")
	err = atomic.Run(ctx, "snapshot only", func(tx *atomic.Tx) error { return tx.Do(ctx, stale, nil) }, atomic.WithStateDir(l.state))
	if err != nil || !isSubvol(t, stale.Snapshot) {
		t.Fatalf("committed snapshot: %v", err)
	}

	// an upgrade that fails and rolls back leaves the upgraded tree aside
	n := upgradeSteps(t, l)
	if _, err := Upgrade(ctx, l.req(), atomic.WithFailpoints(fmt.Sprintf("%d:before:error", n-1))); !errors.Is(err, atomic.ErrFailpoint) {
		t.Fatal(err)
	}
	trash := trashPath(l.target, info.UUID)
	if !isSubvol(t, trash) {
		t.Fatalf("rollback left no %s", trash)
	}

	// look-alikes
	decoy := trashPath(l.target, "00000000-0000-0000-0000-000000000000")
	sh(t, "btrfs", "subvolume", "create", decoy)
	plain := trashPath(l.target, "11111111-1111-1111-1111-111111111111")
	if err := os.Mkdir(plain, 0o755); err != nil {
		t.Fatal(err)
	}
	orphan := filepath.Join(l.mnt, ".target.bofh-v7-v8")
	sh(t, "btrfs", "subvolume", "snapshot", l.target, orphan)

	kept := map[string]string{decoy: GCKept, plain: GCKept, orphan: GCKept}
	want := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range kept {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}

	rep, err = GC(ctx, r, l.target, GCOptions{StateDir: l.state, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	wantGC(t, "dry run", rep, want(map[string]string{trash: GCWouldDelete, stale.Snapshot: GCWouldDelete}))
	if !isSubvol(t, trash) || !isSubvol(t, stale.Snapshot) {
		t.Fatal("dry run deleted")
	}

	rep, err = GC(ctx, r, l.target, opts)
	if err != nil {
		t.Fatal(err)
	}
	wantGC(t, "gc", rep, want(map[string]string{trash: GCDeleted, stale.Snapshot: GCDeleted}))
	if rep.Deleted != 2 || rep.Kept != 3 {
		t.Fatalf("counts: %+v", rep)
	}
	if isSubvol(t, trash) || isSubvol(t, stale.Snapshot) {
		t.Fatal("garbage left")
	}
	if !isSubvol(t, decoy) || !isSubvol(t, orphan) {
		t.Fatal("a look-alike was deleted")
	}
	sameFingerprint(t, "after gc", before, fingerprint(t, l.target))

	// an interrupted upgrade (snapshot, pre, sync done): its restore
	// point stays, and its rollback still works after GC
	// (the first rollback swapped the snapshot in: the target is another
	// subvolume now, and the next trash is named after it)
	if info, err = btrfs.Show(ctx, r, l.target); err != nil {
		t.Fatal(err)
	}
	trash = trashPath(l.target, info.UUID)
	id, err := applyKill(ctx, rec, l.state, 3)
	if err != nil {
		t.Fatal(err)
	}
	rep, err = GC(ctx, r, l.target, opts)
	if err != nil {
		t.Fatal(err)
	}
	wantGC(t, "gc with an interrupted upgrade", rep, want(map[string]string{sp.Snapshot: GCKept}))
	for _, e := range rep.Entries {
		if e.Path == sp.Snapshot && e.TxID != id {
			t.Fatalf("restore point kept for %q, want the interrupted %s: %+v", e.TxID, id, e)
		}
	}
	if err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(l.state)); err != nil {
		t.Fatal(err)
	}
	sameFingerprint(t, "rollback after gc", before, fingerprint(t, l.target))
	if !isSubvol(t, trash) {
		t.Fatalf("rollback left no %s", trash)
	}
	rep, err = GC(ctx, r, l.target, opts)
	if err != nil {
		t.Fatal(err)
	}
	wantGC(t, "gc after the rollback", rep, want(map[string]string{trash: GCDeleted}))
	sameFingerprint(t, "end", before, fingerprint(t, l.target))

	// bad input changes nothing
	if _, err := GC(ctx, r, "relative/path", opts); !errors.Is(err, atomic.ErrInvalid) {
		t.Fatalf("relative target: %v", err)
	}
}

// TestHostGCUnreadableJournal: a journal GC cannot read could need
// anything, so nothing is deleted.
func TestHostGCUnreadableJournal(t *testing.T) {
	l := newLab(t, "btrfs")
	ctx := context.Background()
	r := &run.Local{}
	info, err := btrfs.Show(ctx, r, l.target)
	if err != nil {
		t.Fatal(err)
	}
	n := upgradeSteps(t, l)
	if _, err := Upgrade(ctx, l.req(), atomic.WithFailpoints(fmt.Sprintf("%d:before:error", n-1))); !errors.Is(err, atomic.ErrFailpoint) {
		t.Fatal(err)
	}
	trash := trashPath(l.target, info.UUID)
	bad := filepath.Join(l.state, "journal", "garbled.jsonl")
	if err := os.WriteFile(bad, []byte("not a journal\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := GC(ctx, r, l.target, GCOptions{StateDir: l.state})
	if err != nil {
		t.Fatal(err)
	}
	wantGC(t, "unreadable journal", rep, map[string]string{trash: GCKept})
	if !isSubvol(t, trash) {
		t.Fatal("deleted despite an unreadable journal")
	}
	os.Remove(bad)
	rep, err = GC(ctx, r, l.target, GCOptions{StateDir: l.state})
	if err != nil {
		t.Fatal(err)
	}
	wantGC(t, "journal removed", rep, map[string]string{trash: GCDeleted})
}
