package tree

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/bofhkit/bofh/atomic"
)

// swapForSymlink replaces the directory dir with a symlink to a fresh
// directory outside every tree, as a local attacker racing bofh would,
// and returns that directory.
func swapForSymlink(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	if err := os.Rename(dir, dir+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(out, dir); err != nil {
		t.Fatal(err)
	}
	return out
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("written outside the tree: %s/%s", dir, e.Name())
	}
}

// TestPinnedWrites: a directory of the target swapped for a symlink
// after the work was planned (the window a racing attacker has) makes
// the sync, a backup restore and the state step fail; nothing is ever
// written through the symlink.
func TestPinnedWrites(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	store := makeStore(t, dir, filepath.Join(dir, "marker"))
	v1, v2 := filepath.Join(store, "install/v1/web"), filepath.Join(store, "install/v2/web")

	t.Run("sync", func(t *testing.T) {
		target := filepath.Join(t.TempDir(), "t")
		sh(t, "cp", "-a", v1, target)
		p, err := planSync(v2, target, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		out := swapForSymlink(t, filepath.Join(target, "etc"))
		if _, err := p.apply(); err == nil {
			t.Fatal("apply wrote through a symlinked directory without an error")
		}
		assertEmpty(t, out)
	})
	t.Run("restore", func(t *testing.T) {
		target := filepath.Join(t.TempDir(), "t")
		sh(t, "cp", "-a", v1, target)
		bk := t.TempDir()
		rels := []string{"usr", "usr/bin", "usr/bin/tool", "usr/bin/new"}
		if err := takeBackup(target, rels, bk); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(target, "usr/bin/new"), "made by the upgrade", 0o644)
		out := swapForSymlink(t, filepath.Join(target, "usr/bin"))
		write(t, filepath.Join(out, "new"), "not bofh's to remove", 0o644)
		if err := restoreBackup(target, bk); err == nil {
			// the symlink itself is not in the manifest as a dir: the
			// restore may succeed only by replacing it, never through it
			if fi, err := os.Lstat(filepath.Join(target, "usr/bin")); err != nil || !fi.IsDir() {
				t.Fatalf("restore succeeded but usr/bin is %v %v", fi, err)
			}
		}
		b, err := os.ReadFile(filepath.Join(out, "new"))
		if err != nil || string(b) != "not bofh's to remove" {
			t.Fatalf("restore touched a file outside the target: %q %v", b, err)
		}
		if ents, _ := os.ReadDir(out); len(ents) != 1 {
			t.Fatalf("restore wrote outside the target: %v", ents)
		}
	})
	t.Run("state", func(t *testing.T) {
		target := t.TempDir()
		out := t.TempDir()
		os.Symlink(out, filepath.Join(target, "etc"))
		write(t, filepath.Join(out, "bofh-tree.json"), `{"role":"evil","version":"1"}`+"\n", 0o644)
		if st, err := ReadState(target); err == nil {
			t.Fatalf("ReadState read through a symlinked etc: %+v", st)
		}
		if _, err := doState(t.Context(), &atomic.Env{}, StateStep{Target: target, Role: "web", Version: "v1"}, stateUndo{}); err == nil {
			t.Fatal("the state step wrote through a symlinked etc")
		}
		b, _ := os.ReadFile(filepath.Join(out, "bofh-tree.json"))
		if string(b) != `{"role":"evil","version":"1"}`+"\n" {
			t.Fatalf("state written outside: %q", b)
		}
		if ents, _ := os.ReadDir(out); len(ents) != 1 {
			t.Fatalf("state step wrote outside the target: %v", ents)
		}
	})
}
