package tree

import (
	"fmt"
	"os"
	"path/filepath"

	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/kindtest"
)

// TestKinds makes every tree step kind fail before Do, after Do and in its
// undo (internal/kindtest). Each run deploys v1 on a fresh ext4 lab
// (newLab) and runs the v1 → v2 upgrade recipe's steps up to the first one
// of the kind under test; the snapshot is the target's fingerprint (the
// oracle, not tree.Scan), with everything an upgrade changes. The state
// dir is on the target's filesystem, as newLab has it, but for one case.
func TestKinds(t *testing.T) {
	requireRoot(t)
	var mu sync.Mutex
	labs := map[string]*lab{} // a run's temp dir → its lab
	upTo := func(kind string, nth int) func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
		return func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			l := newLab(t, "ext4")
			mu.Lock()
			labs[dir] = l
			mu.Unlock()
			rec, _, err := UpgradeRecipe(l.req())
			if err != nil {
				t.Fatal(err)
			}
			var steps []atomic.Params
			nth := nth
			for _, s := range rec.Steps {
				p, err := decodeStep(s)
				if err != nil {
					t.Fatal(err)
				}
				steps = append(steps, p)
				if s.Kind == kind {
					if nth--; nth == 0 {
						return steps, nil
					}
				}
			}
			t.Fatalf("the upgrade recipe has no step %s", kind)
			return nil, nil
		}
	}
	snapshot := func(t *testing.T, dir string) string {
		mu.Lock()
		l := labs[dir]
		mu.Unlock()
		fp := fingerprint(t, l.target)
		var lines []string
		for k, v := range fp {
			lines = append(lines, fmt.Sprintf("%q %s", k, v))
		}
		sort.Strings(lines)
		return strings.Join(lines, "\n")
	}
	// the state dir on the target's filesystem, as newLab has it
	sameFS := func(t *testing.T, dir string) string {
		mu.Lock()
		l := labs[dir]
		mu.Unlock()
		d := filepath.Join(l.mnt, "kindtest-state")
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		return d
	}
	kindtest.Cover(t, []string{"tree."}, []kindtest.Case{
		{Kind: "tree.snapshot", InDir: upTo("tree.snapshot", 1), Snapshot: snapshot, StateDir: sameFS,
			Unseen: "the backup is made outside the target"},
		{Kind: "tree.hook", InDir: upTo("tree.hook", 1), Snapshot: snapshot, StateDir: sameFS,
			Unseen: "the pre hook writes outside the target; its undo does nothing"},
		{Name: "tree.hook-post", Kind: "tree.hook", InDir: upTo("tree.hook", 2), Snapshot: snapshot, StateDir: sameFS,
			Unseen: "the post hook writes outside the target; its undo does nothing"},
		{Kind: "tree.sync", InDir: upTo("tree.sync", 1), Snapshot: snapshot, StateDir: sameFS},
		{Kind: "tree.add-only", InDir: upTo("tree.add-only", 1), Snapshot: snapshot, StateDir: sameFS},
		{Kind: "tree.state", InDir: upTo("tree.state", 1), Snapshot: snapshot, StateDir: sameFS},
		{Name: "tree.sync-state-elsewhere", Kind: "tree.sync", InDir: upTo("tree.sync", 1), Snapshot: snapshot},
	}, nil)
}
