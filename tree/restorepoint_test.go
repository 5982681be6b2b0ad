package tree

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/bofhkit/bofh/atomic"
)

// TestRestorePointIsACopy is issue 12 case 9: a pre hook that appends to
// a file the upgrade changes must not change the restore point. With a
// hard-link backup the rollback put back the edited content (with the old
// mtime); the backup is now a copy (reflink where the file system can).
func TestRestorePointIsACopy(t *testing.T) {
	for _, fstype := range []string{"ext4"} { // a btrfs target is a subvolume: its restore point is a snapshot
		t.Run(fstype, func(t *testing.T) {
			l := newLab(t, fstype)
			pre := filepath.Join(l.store, "metadata/v1/web/v2/pre")
			if err := os.WriteFile(pre, []byte("#!/bin/sh\necho appended by the hook >> \"$BOFH_TREE_TARGET/etc/app.conf\"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			conf := filepath.Join(l.target, "etc/app.conf")
			before, err := os.ReadFile(conf)
			if err != nil {
				t.Fatal(err)
			}
			kinds := upgradeKinds(t, l)
			sync := 0
			for i, k := range kinds {
				if k.Kind == "tree.sync" {
					sync = i + 1
				}
			}
			// Fail after the hook, before the sync: the hook's append is
			// the only change, and the rollback must undo it.
			_, err = Upgrade(context.Background(), l.req(), atomic.WithFailpoints(fmt.Sprintf("%d:before:error", sync)))
			if atomic.ExitCode(err) != atomic.ExitRolledBack {
				t.Fatalf("want rolled back, got %v", err)
			}
			after, _ := os.ReadFile(conf)
			if string(after) != string(before) {
				t.Errorf("after the rollback etc/app.conf = %q, want %q (the restore point shared the live inode)", after, before)
			}
		})
	}
}
