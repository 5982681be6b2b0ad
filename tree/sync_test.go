package tree

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// epoch is a SOURCE_DATE_EPOCH: every file of a reproducible build has
// this mtime.
var epoch = time.Unix(1700000000, 0)

func writeAt(t testing.TB, p, content string, mtime time.Time) {
	t.Helper()
	write(t, p, content, 0o644)
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// TestPlanSyncSameSizeSameMtime: a file whose old and new versions have
// the same size and mtime but other bytes is changed content; a file
// that is the same inode on both sides is not.
func TestPlanSyncSameSizeSameMtime(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	writeAt(t, filepath.Join(src, "a/f"), "new!", epoch)
	writeAt(t, filepath.Join(dst, "a/f"), "old!", epoch)
	writeAt(t, filepath.Join(src, "a/same"), "same", epoch)
	writeAt(t, filepath.Join(dst, "a/same"), "same", epoch)
	writeAt(t, filepath.Join(src, "a/linked"), "link", epoch)
	os.MkdirAll(filepath.Join(dst, "a"), 0o755)
	if err := os.Link(filepath.Join(src, "a/linked"), filepath.Join(dst, "a/linked")); err != nil {
		t.Fatal(err)
	}
	// same size and mtime, other bytes, and another mode: not metadata only
	writeAt(t, filepath.Join(src, "a/mode"), "AAAA", epoch)
	writeAt(t, filepath.Join(dst, "a/mode"), "BBBB", epoch)
	os.Chmod(filepath.Join(dst, "a/mode"), 0o600)
	for _, d := range []string{"a", ""} {
		for _, r := range []string{src, dst} {
			os.Chtimes(filepath.Join(r, d), epoch, epoch)
		}
	}
	p, err := planSync(src, dst, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range p.changes {
		got[c.Path] = c.Kind + ":" + strings.Join(c.Details, ",")
	}
	want := map[string]string{"a/f": "changed:content", "a/mode": "changed:content,mode"}
	if len(got) != len(want) {
		t.Fatalf("plan %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("plan %s = %q, want %q", k, got[k], v)
		}
	}
	if _, err := p.apply(); err != nil {
		t.Fatal(err)
	}
	if ch, err := diffContent(src, dst, nil); err != nil || len(ch) != 0 {
		t.Fatalf("after sync: %q %v", ch, err)
	}
}

// reproStore builds a store whose versions r1 and r2 of role web were
// made by a reproducible build: every mtime is the same, and r2 changes
// files without changing their size.
func reproStore(t testing.TB, dir string) string {
	store := filepath.Join(dir, "store")
	files := map[string][2]string{
		"etc/version":      {"1.00", "1.01"},
		"usr/bin/tool":     {"#!/bin/sh\necho one\n", "#!/bin/sh\necho two\n"},
		"usr/lib/big.so":   {strings.Repeat("x", 300<<10) + "1", strings.Repeat("x", 300<<10) + "2"},
		"usr/share/same":   {"unchanged", "unchanged"},
		"usr/share/gone":   {"only in r1", ""},
		"usr/share/fresh":  {"", "only in r2"},
		"etc/defaults.cfg": {"", "add_only default"},
	}
	for i, v := range []string{"r1", "r2"} {
		root := filepath.Join(store, "install", v, "web")
		for p, c := range files {
			if c[i] != "" {
				writeAt(t, filepath.Join(root, p), c[i], epoch)
			}
		}
		for _, d := range []string{"etc", "usr/bin", "usr/lib", "usr/share", "usr", ""} {
			os.Chtimes(filepath.Join(root, d), epoch, epoch)
		}
	}
	write(t, filepath.Join(store, "metadata/r1/web/r2/exclude"), "", 0o644)
	write(t, filepath.Join(store, "metadata/r1/web/r2/add_only"), "/etc/defaults.cfg\n", 0o644)
	return store
}

// TestHostUpgradeReproducibleBuild: an upgrade between two builds with
// identical mtimes installs every changed file (verify finds no drift),
// and test-upgrade names what it adds "added" and what it deletes
// "removed".
func TestHostUpgradeReproducibleBuild(t *testing.T) {
	for _, fstype := range []string{"btrfs", "ext4"} {
		t.Run(fstype, func(t *testing.T) {
			mnt := newFS(t, fstype, 512<<20)
			store := reproStore(t, mnt)
			target := newTarget(t, mnt, fstype)
			state := filepath.Join(mnt, "state")
			ctx := context.Background()
			if _, err := Deploy(ctx, Request{Store: store, Role: "web", Version: "r1", Target: target, StateDir: state}); err != nil {
				t.Fatal(err)
			}
			rep, err := TestUpgrade(Request{Store: store, Version: "r2", Target: target})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, c := range rep.Changes {
				got[c.Path] = c.Kind + ":" + strings.Join(c.Details, ",")
			}
			want := map[string]string{
				"etc/version": "changed:content", "usr/bin/tool": "changed:content", "usr/lib/big.so": "changed:content",
				"usr/share/gone": "removed:", "usr/share/fresh": "added:", "etc/defaults.cfg": "added:add_only",
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("test-upgrade %s = %q, want %q", k, got[k], v)
				}
			}
			for k, v := range got {
				if _, ok := want[k]; !ok && !strings.HasPrefix(v, "changed:") {
					t.Errorf("test-upgrade: unexpected %s %q", k, v)
				}
				if k == "usr/share/same" {
					t.Errorf("test-upgrade: unchanged file reported: %q", v)
				}
			}
			if _, err := Upgrade(ctx, Request{Store: store, Version: "r2", Target: target, StateDir: state}); err != nil {
				t.Fatal(err)
			}
			if r, err := Verify(store, target); err != nil || len(r.Changes) != 0 {
				t.Fatalf("verify after upgrade: %+v %v", r, err)
			}
			if b, _ := os.ReadFile(filepath.Join(target, "etc/version")); string(b) != "1.01" {
				t.Fatalf("etc/version = %q after the upgrade", b)
			}
		})
	}
}
