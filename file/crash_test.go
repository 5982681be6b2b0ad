package file

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
)

// helperEnv selects the child mode of the test binary (hosttest.ApplyChild).
const helperEnv = "BOFH_FILE_HELPER"

func TestMain(m *testing.M) {
	hosttest.ApplyChild(helperEnv)
	os.Exit(m.Run())
}

// crashRecipe changes dir with every file step kind: a new directory, a
// new file in it, an existing file overwritten, a symlink, an existing
// file removed.
func crashRecipe(t *testing.T, dir string) string {
	t.Helper()
	writeFile(t, filepath.Join(dir, "conf"), "old conf\n", 0o640)
	writeFile(t, filepath.Join(dir, "gone"), "to be removed\n", 0o600)
	rec := atomic.Recipe{Name: "file crash", Steps: []atomic.RecipeStep{
		{ID: "d", Kind: "dir.create", With: map[string]any{"path": filepath.Join(dir, "d", "e"), "parents": true}},
		{ID: "new", Kind: "file.write", With: map[string]any{"path": filepath.Join(dir, "d", "e", "new"), "content": "new\n"}},
		{ID: "conf", Kind: "file.write", With: map[string]any{"path": filepath.Join(dir, "conf"), "content": "new conf\n", "mode": "0600"}},
		{ID: "link", Kind: "symlink.create", With: map[string]any{"path": filepath.Join(dir, "d", "link"), "target": "../conf"}},
		{ID: "gone", Kind: "file.remove", With: map[string]any{"path": filepath.Join(dir, "gone")}},
	}}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestUndoKillThenRollback fails the last step of a file recipe after its
// effect, then SIGKILLs the process in the middle of the rollback, right
// before one step's undo (BOFH_FAIL=<n>:undo:kill): the steps after it are
// undone, it and those before are not. A second rollback, from the journal
// alone, finishes: the directory is back to its start (snapshot: every
// entry's type, mode, owner, mtime and content).
func TestUndoKillThenRollback(t *testing.T) {
	for _, n := range []int{5, 4, 3, 1} {
		fail := fmt.Sprintf("5:after:error,%d:undo:kill", n)
		t.Run(fail, func(t *testing.T) {
			dir, state := t.TempDir(), t.TempDir()
			text := crashRecipe(t, dir)
			start := snapshot(t, dir)
			id := hosttest.KillChild(t, helperEnv, state, text, fail)
			d, err := atomic.Show(state, id)
			if err != nil {
				t.Fatal(err)
			}
			var got, want []string
			for i, s := range d.Steps {
				got = append(got, s.Status)
				switch {
				case i+1 == 5:
					want = append(want, map[bool]string{true: atomic.StatusUncertain, false: atomic.StatusUndone}[n == 5])
				case i+1 > n:
					want = append(want, atomic.StatusUndone)
				default:
					want = append(want, atomic.StatusDone)
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("step statuses after the kill (-want +got):\n%s", diff)
			}
			if snapshot(t, dir) == start {
				t.Fatal("the kill left the directory as it started: nothing was left to roll back")
			}
			if err := atomic.RollbackID(context.Background(), id, nil, atomic.WithStateDir(state), atomic.WithFailpoints("")); err != nil {
				t.Fatalf("second rollback: %v", err)
			}
			if diff := cmp.Diff(strings.Split(start, "\n"), strings.Split(snapshot(t, dir), "\n")); diff != "" {
				t.Fatalf("after the second rollback (-start +now):\n%s", diff)
			}
			if d, err := atomic.Show(state, id); err != nil || d.State != atomic.StateRolledBack {
				t.Fatalf("after the second rollback: %+v %v", d, err)
			}
		})
	}
}
