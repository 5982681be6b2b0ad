package file

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/kindtest"
)

// snapshot lists every entry below dir (dir included) with its type, mode,
// owner, modification time and content (a symlink's target, a file's
// sha256): what the file steps change and must put back on rollback. It
// reads the directory with the standard library only, not with this
// package's code.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(&b, "%s %s %d:%d %d", rel, fi.Mode(), st.Uid, st.Gid, fi.ModTime().UnixNano())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " -> %s", l)
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %x", sha256.Sum256(data))
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// TestKinds makes every file step kind fail before, after and in its undo
// (internal/kindtest): the directory below the test's temp dir is back to
// its first snapshot after every rollback. These kinds run no command.
func TestKinds(t *testing.T) {
	kindtest.Cover(t, []string{"dir.", "file.", "symlink."}, []kindtest.Case{
		{Kind: "dir.create", Snapshot: snapshot, InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			return []atomic.Params{
				Write{Path: filepath.Join(dir, "pre"), Content: "x"},
				Dir{Path: filepath.Join(dir, "a", "b", "c"), Parents: true, Mode: "0700"},
			}, nil
		}},
		{Kind: "file.write", Snapshot: snapshot, InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			return []atomic.Params{
				Dir{Path: filepath.Join(dir, "d")},
				Write{Path: filepath.Join(dir, "d", "f"), Content: "new\n", Mode: "0640"},
			}, nil
		}},
		{Name: "file.write-over", Kind: "file.write", Snapshot: snapshot, InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			writeFile(t, filepath.Join(dir, "f"), "old content\n", 0o600)
			return []atomic.Params{
				Dir{Path: filepath.Join(dir, "d")},
				Write{Path: filepath.Join(dir, "f"), ContentBase64: "AAEC/w==", Mode: "0755"},
			}, nil
		}},
		{Kind: "file.remove", Snapshot: snapshot, InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			writeFile(t, filepath.Join(dir, "f"), "keep me\n", 0o640)
			return []atomic.Params{
				Dir{Path: filepath.Join(dir, "d")},
				Remove{Path: filepath.Join(dir, "f")},
			}, nil
		}},
		{Name: "file.remove-symlink", Kind: "file.remove", Snapshot: snapshot, InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			if err := os.Symlink("../elsewhere", filepath.Join(dir, "l")); err != nil {
				t.Fatal(err)
			}
			return []atomic.Params{
				Write{Path: filepath.Join(dir, "f"), Content: "x"},
				Remove{Path: filepath.Join(dir, "l")},
			}, nil
		}},
		{Kind: "symlink.create", Snapshot: snapshot, InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			return []atomic.Params{
				Dir{Path: filepath.Join(dir, "d")},
				Symlink{Path: filepath.Join(dir, "d", "l"), Target: "../target"},
			}, nil
		}},
	}, nil)
}
