package tree

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pairFiles lists the pair caches in a state dir.
func pairFiles(t *testing.T, state string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(state, "cache/tree-pairs/*.gob"))
	return m
}

// TestHostPairCache: an upgrade learns which files the store's two
// versions share, the next upgrade of another target trusts that for
// files passing the quick check (a target file edited in place keeping
// size and mtime is left, as rsync -a leaves it, unless Checksum), and
// never for a path whose content differs between the versions; a store
// file changed after it was learnt (same size and mtime, new ctime) is
// compared again; a corrupt cache is ignored.
func TestHostPairCache(t *testing.T) {
	requireRoot(t)
	defer func(w time.Duration) { pairRacyWindow = w }(pairRacyWindow)
	pairRacyWindow = 0
	mnt := newFS(t, "ext4", 256<<20)
	store := reproStore(t, mnt)
	state := filepath.Join(mnt, "state")
	ctx := context.Background()
	deploy := func(name string) string {
		t.Helper()
		target := filepath.Join(mnt, name)
		if err := os.Mkdir(target, 0o755); err != nil {
			t.Fatal(err)
		}
		if _, err := Deploy(ctx, Request{Store: store, Role: "web", Version: "r1", Target: target, StateDir: state}); err != nil {
			t.Fatal(err)
		}
		return target
	}
	upgrade := func(target string, checksum bool) {
		t.Helper()
		if _, err := Upgrade(ctx, Request{Store: store, Version: "r2", Target: target, StateDir: state, Checksum: checksum}); err != nil {
			t.Fatal(err)
		}
	}
	read := func(p string) string {
		b, _ := os.ReadFile(p)
		return string(b)
	}
	// a target file edited in place, keeping size and mtime
	tamper := func(p, content string) {
		t.Helper()
		writeAt(t, p, content, epoch)
	}

	t1 := deploy("t1")
	t2 := deploy("t2")
	t3 := deploy("t3")
	upgrade(t1, false)
	if r, err := Verify(store, t1); err != nil || len(r.Changes) != 0 {
		t.Fatalf("verify t1: %+v %v", r, err)
	}
	files := pairFiles(t, state)
	if len(files) != 1 {
		t.Fatalf("pair caches after the first upgrade: %v", files)
	}

	// warm: the shared file passes on the quick check, the files the
	// versions changed without changing size or mtime are still copied
	tamper(filepath.Join(t2, "usr/share/same"), "UNCHANGED")
	upgrade(t2, false)
	if got := read(filepath.Join(t2, "usr/share/same")); got != "UNCHANGED" {
		t.Errorf("warm upgrade rewrote a file passing the quick check that the versions share: %q", got)
	}
	for p, want := range map[string]string{"etc/version": "1.01", "usr/bin/tool": "#!/bin/sh\necho two\n"} {
		if got := read(filepath.Join(t2, p)); got != want {
			t.Errorf("warm upgrade: %s = %q, want %q", p, got, want)
		}
	}
	r, err := Verify(store, t2)
	if err != nil || len(r.Changes) != 1 || r.Changes[0].Path != "usr/share/same" {
		t.Fatalf("verify t2 should report exactly the edit: %+v %v", r, err)
	}
	// Checksum rewrites it
	tamper(filepath.Join(t3, "usr/share/same"), "UNCHANGED")
	upgrade(t3, true)
	if got := read(filepath.Join(t3, "usr/share/same")); got != "unchanged" {
		t.Errorf("checksum upgrade left an edited file: %q", got)
	}

	// the store changes a shared file after the cache learnt it: same
	// size and mtime, new ctime → compared again, copied
	time.Sleep(20 * time.Millisecond)
	writeAt(t, filepath.Join(store, "install/r2/web/usr/share/same"), "different", epoch)
	t4 := deploy("t4")
	upgrade(t4, false)
	if got := read(filepath.Join(t4, "usr/share/same")); got != "different" {
		t.Errorf("upgrade trusted a stale cache entry: usr/share/same = %q", got)
	}

	// a corrupt cache is ignored (and rewritten)
	if err := os.WriteFile(files[0], []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	t5 := deploy("t5")
	upgrade(t5, false)
	if r, err := Verify(store, t5); err != nil || len(r.Changes) != 0 {
		t.Fatalf("verify t5 after a corrupt cache: %+v %v", r, err)
	}
	if b := read(files[0]); strings.HasPrefix(b, "garbage") {
		t.Error("corrupt cache not rewritten")
	}
}

// TestPairCacheRacy: an answer about a file changed within the racy
// window is used but not kept.
func TestPairCacheRacy(t *testing.T) {
	dir := t.TempDir()
	store := reproStore(t, dir)
	c, err := openPairCache(t.TempDir(), store, "web", "r1", "r2")
	if err != nil || c == nil {
		t.Fatal(c, err)
	}
	old := fileSig{Ino: 1, Size: 1, Mtime: 1, Ctime: 1}
	c.put("old", pairEntry{A: old, B: old, Same: true})
	recent := fileSig{Ino: 2, Size: 1, Mtime: 1, Ctime: time.Now().UnixNano()}
	c.put("recent", pairEntry{A: old, B: recent, Same: true})
	if _, ok := c.get("recent"); ok {
		t.Error("a racy answer was kept")
	}
	file := c.file
	c.close()
	c2, _ := openPairCache(filepath.Dir(file), store, "web", "r1", "r2")
	defer c2.close()
	if e, ok := c2.get("old"); !ok || !e.Same || e.A != old {
		t.Errorf("saved answer not read back: %+v %v", e, ok)
	}
	// a torn or altered file is ignored, not half trusted
	b, _ := os.ReadFile(file)
	b[len(b)-1] ^= 1
	os.WriteFile(file, b, 0o600)
	c4, _ := openPairCache(filepath.Dir(file), store, "web", "r1", "r2")
	defer c4.close()
	if _, ok := c4.get("old"); ok {
		t.Error("an altered cache file was trusted")
	}
	// another pair of the same store does not see it
	c3, _ := openPairCache(filepath.Dir(file), store, "web", "r2", "r1")
	defer c3.close()
	if _, ok := c3.get("old"); ok {
		t.Error("a pair cache answered for another pair")
	}
}

// TestPrunePairCaches: pair caches unused for a month and temporaries
// older than an hour are deleted; recent ones, the cache in use and
// other files are kept.
func TestPrunePairCaches(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	for _, tc := range []struct {
		name string
		age  time.Duration
		kept bool
	}{
		{"old.gob", 31 * 24 * time.Hour, false},
		{"recent.gob", 29 * 24 * time.Hour, true},
		{"inuse.gob", 40 * 24 * time.Hour, true},
		{".pairs-123", 2 * time.Hour, false},
		{".pairs-456", time.Minute, true},
		{"notes.txt", 400 * 24 * time.Hour, true},
	} {
		p := filepath.Join(dir, tc.name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-tc.age), now.Add(-tc.age)); err != nil {
			t.Fatal(err)
		}
		defer func() {
			_, err := os.Stat(p)
			if kept := err == nil; kept != tc.kept {
				t.Errorf("%s (%s old): kept=%v, want %v", tc.name, tc.age, kept, tc.kept)
			}
		}()
	}
	prunePairCaches(dir, filepath.Join(dir, "inuse.gob"), now)
}
