package file

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
)

// TestDiskFull is issue 12 case 7: with the state dir and the target on a
// file system that fills up mid-run, the run still rolls back completely
// (the journal reserved room for its undo records), and later attempts on
// the full disk leave no empty "interrupted" journal behind.
func TestDiskFull(t *testing.T) {
	hosttest.RequireRoot(t)
	mnt := hosttest.TempMount(t, "tmpfs", "tmpfs", "size=1m,mode=0700")
	state := filepath.Join(mnt, "state")
	dir := filepath.Join(mnt, "etc")
	os.Mkdir(dir, 0o755)
	// 20 files that exist (their backups are hard links: free) and new
	// files of 64 KiB each until the disk is full.
	for i := range 20 {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("old%02d", i)), []byte("original\n"), 0o644)
	}
	err := atomic.Run(context.Background(), "fill", func(tx *atomic.Tx) error {
		for i := range 20 {
			if err := tx.Do(context.Background(), Write{Path: filepath.Join(dir, fmt.Sprintf("old%02d", i)), Content: "changed\n"}, nil); err != nil {
				return err
			}
		}
		// Something else fills the disk to the last byte.
		fill(t, filepath.Join(mnt, "filler"))
		return tx.Do(context.Background(), Write{Path: filepath.Join(dir, "new"), Content: "more\n"}, nil)
	}, atomic.WithStateDir(state), atomic.WithFailpoints(""))
	if atomic.ExitCode(err) != 1 {
		t.Fatalf("want a failure rolled back completely (exit 1), got exit %d: %v", atomic.ExitCode(err), err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 20 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("after the rollback %s holds %d entries, want the 20 originals: %v", dir, len(ents), names)
	}
	for i := range 20 {
		if b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("old%02d", i))); string(b) != "original\n" {
			t.Errorf("old%02d = %q after the rollback", i, b)
		}
	}
	// Try again on the full disk: refused, and no journal is left for an
	// operator to forget by hand.
	fill(t, filepath.Join(mnt, "filler2"))
	before, _ := atomic.List(state)
	for range 3 {
		err := atomic.Run(context.Background(), "again", func(tx *atomic.Tx) error {
			return tx.Do(context.Background(), Write{Path: filepath.Join(dir, "old00"), Content: "x"}, nil)
		}, atomic.WithStateDir(state), atomic.WithFailpoints(""))
		if err == nil {
			t.Fatal("a write on a full disk committed")
		}
	}
	after, _ := atomic.List(state)
	for _, s := range after[len(before):] {
		if s.State != atomic.StateRolledBack {
			t.Errorf("a full-disk attempt left transaction %s %s (%s)", s.ID, s.State, s.Error)
		}
	}
}

// fill writes to path until the file system is full.
func fill(t *testing.T, path string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return // already full
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	for {
		if _, err := f.Write(buf[:1]); err != nil {
			return
		}
	}
}

// TestLeftoverBackupsSwept is issue 12 cases 10 and 14: backups a process
// killed between its terminal record and its cleanup left are removed by
// the next tx list; a reused --id never adopts an old backup.
func TestLeftoverBackupsSwept(t *testing.T) {
	state := t.TempDir()
	dir := t.TempDir()
	path := filepath.Join(dir, "app.conf")
	os.WriteFile(path, []byte("v1\n"), 0o644)
	var id string
	err := atomic.Run(context.Background(), "t", func(tx *atomic.Tx) error {
		id = tx.ID()
		return tx.Do(context.Background(), Write{Path: path, Content: "v2\n"}, nil)
	}, atomic.WithStateDir(state), atomic.WithFailpoints(""))
	if err != nil {
		t.Fatal(err)
	}
	// What a kill right after the committed record leaves.
	left := filepath.Join(state, "data", id, "1")
	os.MkdirAll(left, 0o700)
	os.WriteFile(filepath.Join(left, "backup"), []byte("v1\n"), 0o600)
	if _, err := atomic.List(state); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(state, "data", id)); !os.IsNotExist(err) {
		t.Errorf("data/%s of a committed transaction survived tx list: %v", id, err)
	}

	// A stale backup under an ID that is used again.
	stale := filepath.Join(state, "data", "reused", "1")
	os.MkdirAll(stale, 0o700)
	os.WriteFile(filepath.Join(stale, "backup"), []byte("stale\n"), 0o600)
	err = atomic.Run(context.Background(), "t", func(tx *atomic.Tx) error {
		return tx.Do(context.Background(), Write{Path: path, Content: "v3\n"}, nil)
	}, atomic.WithStateDir(state), atomic.WithID("reused"), atomic.WithFailpoints("1:after:error"))
	if atomic.ExitCode(err) != 1 {
		t.Fatalf("want rolled back, got %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "v2\n" {
		t.Errorf("rollback under a reused ID restored %q, want the content before it (v2)", b)
	}
}
