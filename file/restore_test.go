package file

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
)

// fingerprint describes a file with the real tools, not with this
// package's code: content hash, stat's mode/owner/links/mtime, getfacl
// and getfattr (every namespace), and the content seen through the other
// hard link.
func fingerprint(t *testing.T, path, otherLink string) map[string]string {
	t.Helper()
	out := map[string]string{}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	out["sha256"] = hex.EncodeToString(sum[:])
	run := func(key string, argv ...string) {
		o, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", argv, err, o)
		}
		out[key] = string(o)
	}
	run("stat", "stat", "-c", "mode=%a uid=%u gid=%g links=%h mtime=%.9Y", path)
	run("acl", "getfacl", "-n", "--absolute-names", path)
	run("xattrs", "getfattr", "-d", "-m", "-", "-h", "-e", "hex", "--absolute-names", path)
	if otherLink != "" {
		o, _ := os.ReadFile(otherLink)
		out["other-link"] = string(o)
	}
	return out
}

// richFile makes a setuid 4750 file with an ACL (so st_mode's group bits
// are the ACL mask), user/trusted/security xattrs and a second hard link.
func richFile(t *testing.T, dir string) (path, other string) {
	t.Helper()
	path = filepath.Join(dir, "prog")
	other = filepath.Join(dir, "prog.link")
	if err := os.WriteFile(path, []byte("original\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{
		{"chown", "0:65534", path},
		{"setfacl", "-m", "u:65534:rwx,g::r-x,m::rwx", path},
		{"chmod", "4750", path}, // group bits = mask r-x
		{"setfattr", "-n", "user.bofh", "-v", "keep-me", path},
		{"setfattr", "-n", "trusted.bofh", "-v", "0x00ff", path},
		{"setfattr", "-n", "security.bofhtest", "-v", "label", path},
		{"ln", path, other},
		{"touch", "-d", "2001-02-03 04:05:06.123456789", path},
	} {
		if o, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", argv, err, o)
		}
	}
	return path, other
}

// TestRollbackRestoresExactly is issue 12 case 11: after a rolled-back
// file.write or file.remove the file is exactly what it was — ACLs,
// xattrs (security.* included), owner, mode (a 4750 file with an ACL came
// back 4770 before), mtime, and its other hard link — whether the state
// dir is on the target's file system (the original inode is kept) or not
// (a copy with every attribute).
func TestRollbackRestoresExactly(t *testing.T) {
	hosttest.RequireRoot(t)
	for _, where := range []string{"same-fs", "other-fs"} {
		for _, step := range []string{"write", "remove"} {
			t.Run(where+"/"+step, func(t *testing.T) {
				dir := t.TempDir()
				state := t.TempDir()
				if where == "other-fs" {
					state = hosttest.TempMount(t, "tmpfs", "tmpfs", "size=16m,mode=0700")
				}
				path, other := richFile(t, dir)
				before := fingerprint(t, path, other)
				var p atomic.Params = Write{Path: path, Content: "new content\n", Mode: "0644"}
				if step == "remove" {
					p = Remove{Path: path}
				}
				err := atomic.Run(context.Background(), "exact", func(tx *atomic.Tx) error {
					return tx.Do(context.Background(), p, nil)
				}, atomic.WithStateDir(state), atomic.WithFailpoints("1:after:error"))
				if atomic.ExitCode(err) != 1 || !strings.Contains(err.Error(), "failpoint") {
					t.Fatalf("want a rolled-back failpoint, got %v", err)
				}
				after := fingerprint(t, path, other)
				if d := cmp.Diff(before, after); d != "" {
					t.Errorf("not restored exactly (-before +after):\n%s", d)
				}
			})
		}
	}
}

// TestMissingBackupIsAnError is issue 12 case 5: after a done record, a
// missing backup is an error naming the file (exit 3), not "rolled back".
func TestMissingBackupIsAnError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.conf")
	os.WriteFile(path, []byte("v1\n"), 0o644)
	state := t.TempDir()
	err := atomic.Run(context.Background(), "t", func(tx *atomic.Tx) error {
		if err := tx.Do(context.Background(), Write{Path: path, Content: "v2\n"}, nil); err != nil {
			return err
		}
		// The backup vanishes (a disk problem, a hand cleanup).
		if err := os.RemoveAll(filepath.Join(state, "data", tx.ID(), "1", "backup")); err != nil {
			return err
		}
		return tx.Do(context.Background(), Write{Path: filepath.Join(dir, "other"), Content: "x"}, nil)
	}, atomic.WithStateDir(state), atomic.WithFailpoints("2:after:error"))
	if atomic.ExitCode(err) != atomic.ExitRollbackIncomplete || !strings.Contains(err.Error(), "backup") || !strings.Contains(err.Error(), path) {
		t.Fatalf("exit %d, %v; want exit 3 naming %s and its backup", atomic.ExitCode(err), err, path)
	}
	if b, _ := os.ReadFile(path); string(b) != "v2\n" {
		t.Errorf("content %q", b)
	}
}
