package blockdev

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
)

// TestCmdKillMidStep SIGKILLs a child applying the loop → GPT → partition
// → mkfs → mount recipe right before a step's first mutating command
// (BOFH_FAIL=<n>:cmd1:kill: the partition table is written but the kernel
// not told, …), and during the rollback of a failure: right before an
// undo's first command (undocmd1: the saved table is written back but the
// kernel not told, …) or before an undo (undo:kill). A rollback from the
// journal alone then brings the file back to its start, byte for byte, as
// the real tools see it (observe: losetup, findmnt, wipefs, blkid, the
// sha256 of every MiB).
func TestCmdKillMidStep(t *testing.T) {
	requireRoot(t)
	requireTools(t, "losetup", "wipefs", "blkid", "mkfs.ext4", "partx", "findmnt")
	ctx := context.Background()
	file := sparseFile(t, 96<<20)
	mnt := t.TempDir()
	clean := observe(t, file, mnt)
	fails := []struct{ fail, uncertain string }{
		{"1:cmd1:kill", "1"},                  // losetup
		{"2:cmd1:kill", "2"},                  // partx -u after the table is written
		{"3:cmd1:kill", "3"},                  // partx -u after the partition is added
		{"4:cmd1:kill", "4"},                  // mkfs.ext4
		{"5:cmd1:kill", "5"},                  // mount
		{"5:after:error,4:undocmd1:kill", ""}, // wipefs --all of the new ext4, the mount undone
		{"5:after:error,2:undocmd1:kill", ""}, // partx -u after the old bytes are back
		{"5:after:error,1:undocmd1:kill", ""}, // losetup --detach
		{"5:after:error,3:undo:kill", ""},
	}
	for _, tc := range fails {
		t.Run(tc.fail, func(t *testing.T) {
			sd := t.TempDir()
			id := hosttest.KillChild(t, helperEnv, sd, recipeText(file, mnt), tc.fail)
			d, err := atomic.Show(sd, id)
			if err != nil {
				t.Fatal(err)
			}
			if tc.uncertain != "" {
				// killed inside step n: n is uncertain, the steps before done
				var got []string
				for _, s := range d.Steps {
					got = append(got, s.Status)
				}
				var want []string
				for i := range d.Steps {
					if fmt.Sprint(i+1) == tc.uncertain {
						want = append(want, atomic.StatusUncertain)
					} else {
						want = append(want, atomic.StatusDone)
					}
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("step statuses after the kill (-want +got):\n%s", diff)
				}
			}
			if err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(sd), atomic.WithFailpoints("")); err != nil {
				cleanupFile(t, file)
				t.Fatalf("rollback: %v", err)
			}
			// as in TestRecipeCrashMatrix: mkfs's undo wipes the
			// filesystem's signatures, not every block mkfs wrote, so once
			// mkfs acted (step 4 done, or killed inside step 5 or a
			// rollback) only the partition's MiB may differ; the table at
			// the start and its backup at the end must be byte for byte
			now := observe(t, file, mnt)
			mkfsActed := tc.uncertain == "" || tc.uncertain == "5"
			var bad []int
			for _, mib := range changedMiB(clean, now) {
				if !mkfsActed || mib < partOffset>>20 || mib >= (partOffset+partSize)>>20 {
					bad = append(bad, mib)
				}
			}
			start := clean
			start.chunks, now.chunks = nil, nil // compared by MiB above
			if diff := cmp.Diff(start, now, cmp.AllowUnexported(state{})); diff != "" || len(bad) > 0 {
				cleanupFile(t, file)
				t.Fatalf("after the rollback, not back to the start: MiB %v differ (mkfs acted: %v); loops, mount, signatures (-start +now):\n%s", bad, mkfsActed, diff)
			}
		})
	}
}

// TestCmdKillTeardown applies the smoke recipe, then crashes a child
// taking it apart — umount, wipe the filesystem's signatures, delete the
// partition, detach the loop device — right before each step's first
// mutating command (BOFH_FAIL=<n>:cmd1:kill), and inside the rollback of
// a failure (undocmd1:kill). A rollback from the journal alone brings back
// the mount, the loop device, the table and the signatures, as the real
// tools see them; the partition's MiB may differ (mounting ext4 again
// writes its superblock), the table at the start and its backup at the
// end must not.
func TestCmdKillTeardown(t *testing.T) {
	requireRoot(t)
	requireTools(t, "losetup", "wipefs", "blkid", "mkfs.ext4", "partx", "findmnt")
	ctx := context.Background()
	file := sparseFile(t, 96<<20)
	mnt := t.TempDir()
	if _, err := atomic.Apply(ctx, recipeFor(t, file, mnt), atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints("")); err != nil {
		t.Fatal(err)
	}
	up := observe(t, file, mnt)
	if len(up.loops) != 1 || !up.mounted {
		t.Fatalf("after the smoke recipe: %+v", up)
	}
	dev := up.loops[0]
	teardown := fmt.Sprintf(`name: blockdev-teardown
steps:
  - {kind: umount, with: {target: %q}}
  - {kind: fs.wipe, with: {device: %q}}
  - {kind: part.delete, with: {device: %q, number: 1}}
  - {kind: loop.detach, with: {device: %q}}
  - {kind: dir.create, with: {path: %q}}
`, mnt, dev+"p1", dev, dev, filepath.Join(t.TempDir(), "last"))
	for _, fail := range []string{
		"1:cmd1:kill",                   // umount
		"2:cmd1:kill",                   // wipefs --all --backup
		"3:cmd1:kill",                   // partx after the partition is gone from the table
		"4:cmd1:kill",                   // losetup --detach
		"5:after:error,4:undocmd1:kill", // losetup again
		"5:after:error,3:undocmd1:kill", // partx after the table is back
		"5:after:error,1:undocmd1:kill", // mount again
	} {
		t.Run(fail, func(t *testing.T) {
			sd := t.TempDir()
			id := hosttest.KillChild(t, helperEnv, sd, teardown, fail)
			if n, ok := strings.CutSuffix(fail, ":cmd1:kill"); ok {
				d, err := atomic.Show(sd, id)
				if err != nil {
					t.Fatal(err)
				}
				if s := d.Steps[len(d.Steps)-1]; fmt.Sprint(s.Step) != n || s.Status != atomic.StatusUncertain {
					t.Fatalf("killed in step %s: the journal's last step is %d %s", n, s.Step, s.Status)
				}
			}
			if err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(sd), atomic.WithFailpoints("")); err != nil {
				t.Fatalf("rollback: %v", err)
			}
			now := observe(t, file, mnt)
			var bad []int
			for _, mib := range changedMiB(up, now) {
				if mib < partOffset>>20 || mib >= (partOffset+partSize)>>20 {
					bad = append(bad, mib)
				}
			}
			start := up
			start.chunks, now.chunks = nil, nil // compared by MiB above
			if diff := cmp.Diff(start, now, cmp.AllowUnexported(state{})); diff != "" || len(bad) > 0 {
				t.Fatalf("after the rollback, not back to the start: MiB %v differ; loops, mount, signatures (-start +now):\n%s", bad, diff)
			}
		})
	}
}

// TestCmdKillResize crashes an offline ext4 grow by 32 MiB between its
// commands (truncate, losetup --set-capacity, e2fsck, resize2fs): fs.resize
// killed before the k-th is rolled back from the journal to the old size;
// fs.grow (irreversible, run at commit) killed there is resumed to the new
// size. Either way the loop device's capacity (blockdev), the filesystem
// (e2fsck) and a file's content are checked with the real tools
// (killLabCheck).
func TestCmdKillResize(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		kind string
		k    int
	}{{"fs.resize", 2}, {"fs.resize", 4}, {"fs.grow", 2}, {"fs.grow", 3}} {
		t.Run(fmt.Sprintf("%s-cmd%d", tc.kind, tc.k), func(t *testing.T) {
			l := newResizeLab(t, 64*mib, "ext4")
			data := killLabData(t, l, false)
			rec := atomic.Recipe{Name: "resize", Steps: []atomic.RecipeStep{{Kind: tc.kind, With: map[string]any{"file": l.file, "type": "ext4", "size": "+32M"}}}}
			text, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			sd := t.TempDir()
			id := hosttest.KillChild(t, helperEnv, sd, string(text), fmt.Sprintf("1:cmd%d:kill", tc.k))
			if tc.kind == "fs.grow" {
				if err := atomic.ResumeID(ctx, id, atomic.WithStateDir(sd), atomic.WithFailpoints("")); err != nil {
					t.Fatalf("resume: %v", err)
				}
				killLabCheck(t, l, "resume", 96*mib, "ext4", false, data)
				return
			}
			if err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(sd), atomic.WithFailpoints("")); err != nil {
				t.Fatalf("rollback: %v", err)
			}
			killLabCheck(t, l, "rollback", 64*mib, "ext4", false, data)
		})
	}
}
