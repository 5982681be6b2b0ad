package btrfs

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
)

// cmdKillEnv selects the crash child of the cmd-kill tests: a re-exec of
// this test binary that applies a recipe (hosttest.ApplyChild) until
// BOFH_FAIL kills it.
const cmdKillEnv = "BOFH_BTRFS_CMDKILL_CHILD"

func init() { hosttest.ApplyChild(cmdKillEnv) }

// TestCmdKillMidStep SIGKILLs a child applying subvolume create, a file in
// it, a read-only snapshot, set-default and a swap on a real btrfs, right
// before a step's first btrfs command (BOFH_FAIL=<n>:cmd1:kill) and inside
// the rollback of a failure, right before an undo's first btrfs command
// (undocmd1:kill). A rollback from the journal alone then brings the
// filesystem back to its start as the btrfs tool reports it.
func TestCmdKillMidStep(t *testing.T) {
	fs := &realFS{mnt: newBtrfs(t), dirs: map[string]string{}}
	ctx := context.Background()
	for _, fail := range []string{
		"1:cmd1:kill",                   // btrfs subvolume create
		"3:cmd1:kill",                   // btrfs subvolume snapshot -r
		"4:cmd1:kill",                   // btrfs subvolume set-default
		"6:after:error,4:undocmd1:kill", // set-default back to the old default
		"6:after:error,3:undocmd1:kill", // delete the snapshot
		"6:after:error,1:undocmd1:kill", // delete the subvolume
	} {
		t.Run(fail, func(t *testing.T) {
			key := t.TempDir()
			d := fs.runDir(t, key)
			sv, snap, other := filepath.Join(d, "sv"), filepath.Join(d, "snap"), filepath.Join(d, "other")
			if out, err := exec.Command("btrfs", "subvolume", "create", other).CombinedOutput(); err != nil {
				t.Fatalf("%v %s", err, out)
			}
			rec := atomic.Recipe{Name: "btrfs cmd kill", Steps: []atomic.RecipeStep{
				{Kind: "btrfs.subvol.create", With: map[string]any{"path": sv}},
				{Kind: "file.write", With: map[string]any{"path": filepath.Join(sv, "marker"), "content": "sv"}},
				{Kind: "btrfs.snapshot", With: map[string]any{"source": sv, "dest": snap, "readonly": true}},
				{Kind: "btrfs.set-default", With: map[string]any{"path": snap}},
				{Kind: "btrfs.swap", With: map[string]any{"path": sv, "with": other}},
				{Kind: "dir.create", With: map[string]any{"path": filepath.Join(d, "last")}},
			}}
			text, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			start := fs.snapshot(t, key)
			state := t.TempDir()
			id := hosttest.KillChild(t, cmdKillEnv, state, string(text), fail)
			if n, ok := strings.CutSuffix(fail, ":cmd1:kill"); ok {
				det, err := atomic.Show(state, id)
				if err != nil {
					t.Fatal(err)
				}
				if s := det.Steps[len(det.Steps)-1]; fmt.Sprint(s.Step) != n || s.Status != atomic.StatusUncertain {
					t.Fatalf("killed in step %s: the journal's last step is %d %s", n, s.Step, s.Status)
				}
			}
			if err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(state), atomic.WithFailpoints("")); err != nil {
				t.Fatalf("rollback: %v", err)
			}
			if diff := cmp.Diff(strings.Split(start, "\n"), strings.Split(fs.snapshot(t, key), "\n")); diff != "" {
				t.Fatalf("after the rollback (-start +now):\n%s", diff)
			}
		})
	}
}

// TestCmdKillDelete SIGKILLs a child at commit, right before the btrfs
// command of an irreversible subvolume delete (2:cmd1:kill), past the
// point of no return: a resume from the journal deletes the subvolume and
// keeps the one step 1 made.
func TestCmdKillDelete(t *testing.T) {
	fs := &realFS{mnt: newBtrfs(t), dirs: map[string]string{}}
	ctx := context.Background()
	d := fs.runDir(t, t.TempDir())
	old, sv := filepath.Join(d, "old"), filepath.Join(d, "sv")
	if out, err := exec.Command("btrfs", "subvolume", "create", old).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	rec := atomic.Recipe{Name: "btrfs delete kill", Steps: []atomic.RecipeStep{
		{Kind: "btrfs.subvol.create", With: map[string]any{"path": sv}},
		{Kind: "btrfs.subvol.delete", With: map[string]any{"path": old}},
	}}
	text, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	id := hosttest.KillChild(t, cmdKillEnv, state, string(text), "2:cmd1:kill")
	if !strings.Contains(btrfsOut(t, "subvolume", "list", fs.mnt), "/old\n") {
		t.Fatal("the subvolume is gone although the kill came before the delete command")
	}
	if err := atomic.ResumeID(ctx, id, atomic.WithStateDir(state), atomic.WithFailpoints("")); err != nil {
		t.Fatalf("resume: %v", err)
	}
	list2 := btrfsOut(t, "subvolume", "list", fs.mnt)
	if strings.Contains(list2, "/old\n") || !strings.Contains(list2, "/sv\n") {
		t.Fatalf("after resume, want sv and not old:\n%s", list2)
	}
}
