package attack

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bofhkit/bofh/internal/hosttest"
)

// TestCase09RestorePointIsACopy is issue 12 case 9: the tree's hard-link
// restore point shared inodes with the live tree, so a pre hook appending
// to a file the upgrade changes also changed the "backup", and the
// rollback (here: the post hook fails) restored the edited content with
// the old mtime. The target and the state dir share a file system, where
// the old restore point was made of hard links.
func TestCase09RestorePointIsACopy(t *testing.T) {
	hosttest.RequireRoot(t)
	base := baseDir(t)
	store := filepath.Join(base, "store")
	for _, v := range []string{"v1", "v2"} {
		root := filepath.Join(store, "install", v, "web", "etc")
		os.MkdirAll(root, 0o755)
		write(t, filepath.Join(root, "app.conf"), "conf "+v+"\n", 0o644)
		write(t, filepath.Join(root, "keep"), "keep\n", 0o644)
	}
	md := filepath.Join(store, "metadata", "v1", "web", "v2")
	os.MkdirAll(md, 0o755)
	write(t, filepath.Join(md, "exclude"), "", 0o644)
	write(t, filepath.Join(md, "pre"), "#!/bin/sh\necho appended by the hook >> \"$BOFH_TREE_TARGET/etc/app.conf\"\n", 0o755)
	write(t, filepath.Join(md, "post"), "#!/bin/sh\nexit 1\n", 0o755)
	target := filepath.Join(base, "target")
	os.Mkdir(target, 0o755)
	state := filepath.Join(base, "state")
	if r := bofh(t, nil, "--state-dir", state, "tree", "--store", store, "deploy", "web", "v1", target); r.code != 0 {
		t.Fatalf("deploy: %s", r)
	}
	want := snapshot(t, target)
	r := bofh(t, nil, "--state-dir", state, "tree", "--store", store, "upgrade", "v2", target)
	if r.code != 1 {
		t.Fatalf("upgrade with a failing post hook: %s; want 1", r)
	}
	if got := snapshot(t, target); got != want {
		t.Errorf("after the rollback the target differs (the restore point shared the live inode):\n got %s\nwant %s", got, want)
	}
	if r := bofh(t, nil, "tree", "--store", store, "verify", target); r.code != 0 {
		t.Errorf("tree verify after the rollback: %s", r)
	}
}

// TestCase08KilledTreeUpgradeLeavesNoTemporary is issue 12 case 8 for a
// tree: an upgrade SIGKILLed while copying a big file left its
// .~bofh~ temporary in the target, which tree verify cannot see. After
// tx rollback the target is as it was and holds no temporary.
func TestCase08KilledTreeUpgradeLeavesNoTemporary(t *testing.T) {
	hosttest.RequireRoot(t)
	base := baseDir(t)
	store := filepath.Join(base, "store")
	big := bytes.Repeat([]byte("0123456789abcdef"), 48<<20/16)
	for _, v := range []string{"v1", "v2"} {
		root := filepath.Join(store, "install", v, "web")
		os.MkdirAll(filepath.Join(root, "etc"), 0o755)
		os.MkdirAll(filepath.Join(root, "usr"), 0o755)
		write(t, filepath.Join(root, "etc", "app.conf"), "conf "+v+"\n", 0o644)
		if v == "v2" {
			if err := os.WriteFile(filepath.Join(root, "usr", "big"), big, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	md := filepath.Join(store, "metadata", "v1", "web", "v2")
	os.MkdirAll(md, 0o755)
	write(t, filepath.Join(md, "exclude"), "", 0o644)
	target := filepath.Join(base, "target")
	os.Mkdir(target, 0o755)
	state := filepath.Join(base, "state")
	if r := bofh(t, nil, "--state-dir", state, "tree", "--store", store, "deploy", "web", "v1", target); r.code != 0 {
		t.Fatalf("deploy: %s", r)
	}
	want := snapshot(t, target)
	temp := func() bool {
		found := false
		filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), ".~bofh~") {
				found = true
			}
			return nil
		})
		return found
	}
	caught := false
	for try := 0; try < 10 && !caught; try++ {
		cmd := exec.Command(bin, "--state-dir", state, "tree", "--store", store, "upgrade", "v2", target)
		cmd.Env = append(os.Environ(), "BOFH_SITE=/dev/null", "BOFH_FAIL=")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		caught = waitFor(10*time.Second, temp)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		for _, row := range list(t, state) {
			if row.State == "interrupted" {
				if r := bofh(t, nil, "--state-dir", state, "tx", "rollback", row.ID); r.code != 0 {
					t.Fatalf("tx rollback: %s", r)
				}
			}
		}
		if got := snapshot(t, target); got != want {
			t.Fatalf("after the kill (temporary seen: %v) and the rollback the target differs:\n got %s\nwant %s", caught, got, want)
		}
	}
	if !caught {
		t.Fatal("never caught the upgrade with its temporary on disk")
	}
	if r := bofh(t, nil, "tree", "--store", store, "verify", target); r.code != 0 {
		t.Errorf("tree verify after the rollback: %s", r)
	}
}
