package fsutil

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWriteFileSyncNew(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	if err := WriteFileSync(p, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil || string(b) != "hello" {
		t.Fatalf("content = %q, %v", b, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v, want 0644 whatever the umask", fi.Mode().Perm())
	}
	if _, err := os.Stat(p + TempSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
}

func TestWriteFileSyncReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("a much longer old content"), 0o666); err != nil {
		t.Fatal(err)
	}
	// a temporary file left by a crash is overwritten, not appended to
	if err := os.WriteFile(p+TempSuffix, []byte("stale stale stale stale stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileSync(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if string(b) != "new" {
		t.Fatalf("content = %q", b)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v", fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("dir holds %d entries, want 1", len(ents))
	}
}

func TestWriteFileSyncFailureLeavesOld(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	// rename onto a non-empty directory fails: the old entry stays, the
	// temporary file goes
	if err := os.MkdirAll(filepath.Join(p, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileSync(p, []byte("x"), 0o600); err == nil {
		t.Fatal("no error writing over a non-empty directory")
	}
	if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
		t.Errorf("old entry changed: %v %v", fi, err)
	}
	if _, err := os.Stat(p + TempSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
	// a missing directory: nothing created
	if err := WriteFileSync(filepath.Join(dir, "no", "f"), nil, 0o600); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want not-exist", err)
	}
}

func TestWriteSyncClose(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteSyncClose(f, []byte("data")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err == nil {
		t.Error("file still open after WriteSyncClose")
	}
	if b, _ := os.ReadFile(p); string(b) != "data" {
		t.Errorf("content = %q", b)
	}
	// a failing write still closes the file
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteSyncClose(r, []byte("x")); err == nil {
		t.Error("no error writing to a read-only file")
	}
	if err := r.Close(); err == nil {
		t.Error("file still open after a failed WriteSyncClose")
	}
}

func TestSyncDir(t *testing.T) {
	dir := t.TempDir()
	if err := SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing dir: err = %v", err)
	}
	f := filepath.Join(dir, "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(f); err == nil {
		t.Error("no error for a regular file")
	}
}
