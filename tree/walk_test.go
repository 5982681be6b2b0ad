package tree

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestHostFastPathsMatch checks that the parallel scan gives the tree the
// sequential Scan gives, and that the content diff finds every kind of
// drift the reference Diff finds, on a store with hostile names,
// xattrs, ACLs, hard links, symlinks and special files.
func TestHostFastPathsMatch(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	store := makeStore(t, dir, filepath.Join(dir, "marker"))
	a := filepath.Join(store, "install/v1/web")
	b := filepath.Join(dir, "copy")
	sh(t, "cp", "-a", a, b)
	// more than a worker's share of directories and files
	for i := range 300 {
		write(t, filepath.Join(a, fmt.Sprintf("m/d%02d/f%03d", i%17, i)), strings.Repeat("x", i*37), 0o644)
		write(t, filepath.Join(b, fmt.Sprintf("m/d%02d/f%03d", i%17, i)), strings.Repeat("x", i*37), 0o644)
	}
	big := strings.Repeat("0123456789abcdef", 20000) // > the compare buffer
	write(t, filepath.Join(a, "big"), big, 0o644)
	write(t, filepath.Join(b, "big"), big[:len(big)-1]+"!", 0o644)
	write(t, filepath.Join(a, "big2"), big, 0o644)
	write(t, filepath.Join(b, "big2"), big, 0o644)
	for _, r := range []string{a, b} {
		if err := unix.Mkfifo(filepath.Join(r, "fifo"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mknod(filepath.Join(r, "null"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		os.Symlink("/etc/passwd", filepath.Join(r, "abs-link"))
		write(t, filepath.Join(r, "empty"), "", 0o644)
	}
	// drift in the copy
	write(t, filepath.Join(b, "etc/motd"), "hellO\n", 0o644) // same size, other content
	os.Chown(filepath.Join(b, "etc/motd"), 1234, 4321)
	unix.Lsetxattr(filepath.Join(b, "etc/motd"), "user.bofh", []byte("x-v1"), 0)
	write(t, filepath.Join(b, "etc/app.conf"), "conf v1 longer\n", 0o600)
	os.Chmod(filepath.Join(b, "usr/bin/tool"), 0o700)
	unix.Lsetxattr(filepath.Join(b, "usr/bin/suid"), "user.extra", []byte("y"), 0)
	os.Remove(filepath.Join(b, "link"))
	os.Symlink("elsewhere", filepath.Join(b, "link"))
	os.RemoveAll(filepath.Join(b, "usr/share"))
	write(t, filepath.Join(b, "usr/share"), "now a file", 0o644)
	write(t, filepath.Join(b, "new/dir/file"), "added", 0o644)
	os.Remove(filepath.Join(b, "m/d03/f020"))
	os.Chown(filepath.Join(b, "m/d04/f021"), 7, 7)
	// hard-link drift: a group split (same content and metadata), two
	// files joined
	sh(t, "cp", "-a", filepath.Join(b, "usr/bin/a"), filepath.Join(b, "usr/bin/a.tmp"))
	os.Rename(filepath.Join(b, "usr/bin/a.tmp"), filepath.Join(b, "usr/bin/b"))
	sh(t, "ln", "-f", filepath.Join(b, "m/d05/f022"), filepath.Join(b, "m/d05/f039"))

	skip := skipper(Rules{{Pattern: "*.log"}})
	for _, root := range []string{a, b} {
		want, err := Scan(root, skip)
		if err != nil {
			t.Fatal(err)
		}
		got, err := scanFast(root, skip)
		if err != nil {
			t.Fatal(err)
		}
		if len(want.Entries) != len(got.Entries) {
			t.Fatalf("%s: %d entries, scanFast %d", root, len(want.Entries), len(got.Entries))
		}
		for i := range want.Entries {
			if t := want.Entries[i].Type; t == TypeDir || t == TypeSymlink { // reading may update the atime
				want.Entries[i].Atime, got.Entries[i].Atime = 0, 0
			}
			if !reflect.DeepEqual(want.Entries[i], got.Entries[i]) {
				t.Fatalf("%s: entry %d:\n Scan     %+v\n scanFast %+v", root, i, want.Entries[i], got.Entries[i])
			}
		}
	}
	ta, _ := Scan(a, skip)
	tb, _ := Scan(b, skip)
	want, err := Diff(ta, tb, true)
	if err != nil {
		t.Fatal(err)
	}
	got, err := diffContent(a, b, skip)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(want, got) {
		t.Fatalf("diff:\n Diff        %q\n diffContent %q", want, got)
	}
	if len(want) < 10 {
		t.Fatalf("too few changes: %q", want)
	}
	for _, p := range []string{"usr/bin/a", "usr/bin/b", "m/d05/f022", "m/d05/f039"} {
		found := false
		for _, c := range got {
			found = found || (c.Path == p && has(c.Details, "hardlink"))
		}
		if !found {
			t.Errorf("%s: no hardlink change in %q", p, got)
		}
	}
	// and no change between a tree and itself
	if got, err := diffContent(a, a, skip); err != nil || len(got) != 0 {
		t.Fatalf("self: %q %v", got, err)
	}
	// a sync plan's single walk finds the trees of two scans and the
	// changes of diff in sync mode
	r, err := walkDiff(a, b, skip, cmpSync, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	sa, _ := scanFast(a, skip)
	sb, _ := scanFast(b, skip)
	wantSync, err := diff(sa, sb, cmpSync)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(wantSync, r.changes) {
		t.Fatalf("sync diff:\n diff     %q\n walkDiff %q", wantSync, r.changes)
	}
	for _, c := range []struct{ scan, walk *Tree }{{sa, r.want}, {sb, r.have}} {
		if len(c.scan.Entries) != len(c.walk.Entries) || c.scan.Root != c.walk.Root {
			t.Fatalf("%s: %d entries, walkDiff %d", c.scan.Root, len(c.scan.Entries), len(c.walk.Entries))
		}
		for i, e := range c.scan.Entries {
			g := *c.walk.Entries[i]
			if e.Type == TypeDir || e.Type == TypeSymlink {
				g.Atime = e.Atime
			}
			if !reflect.DeepEqual(*e, g) || c.walk.Get(e.Rel) != c.walk.Entries[i] {
				t.Fatalf("%s: entry %d:\n scan     %+v\n walkDiff %+v", c.scan.Root, i, *e, g)
			}
		}
	}
}

// TestSameContent: every path through sameContent, including a size that
// changed after the stat.
func TestSameContent(t *testing.T) {
	dir := t.TempDir()
	bufA, bufB := make([]byte, 64), make([]byte, 64)
	for _, c := range []struct {
		a, b string
		size int64
		same bool
	}{
		{"hello", "hello", 5, true},
		{"hello", "hellO", 5, false},
		{"hello!", "hello", 5, false}, // a grew after the stat
		{"hello!", "hello!", 5, true}, // both grew the same: compared to the end
		{"hell", "hell", 5, true},     // both shrank the same
		{strings.Repeat("a", 200), strings.Repeat("a", 200), 200, true},
		{strings.Repeat("a", 200), strings.Repeat("a", 199) + "b", 200, false},
		{strings.Repeat("a", 64), strings.Repeat("a", 64), 64, true},
		{strings.Repeat("a", 63), strings.Repeat("a", 63), 63, true},
	} {
		a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
		os.WriteFile(a, []byte(c.a), 0o644)
		os.WriteFile(b, []byte(c.b), 0o644)
		same, err := sameContent(a, b, c.size, bufA, bufB)
		if err != nil || same != c.same {
			t.Errorf("%q %q size %d: %v %v, want %v", c.a, c.b, c.size, same, err, c.same)
		}
	}
}

// TestOpenSubNoSymlinks: a symlink anywhere on the way to a directory
// is refused, with openat2 and with the per-component fallback.
func TestOpenSubNoSymlinks(t *testing.T) {
	root, out := t.TempDir(), t.TempDir()
	for _, d := range []string{"a/b/c", "real"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(out, "x"), 0o755)
	os.Symlink(out, filepath.Join(root, "esc"))
	os.Symlink("real", filepath.Join(root, "a/b/in"))
	rootfd, err := openDir(root)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(rootfd)
	defer noOpenat2.Store(false)
	for _, fallback := range []bool{false, true} {
		noOpenat2.Store(fallback)
		for _, c := range []struct {
			rel string
			ok  bool
		}{
			{"", true}, {"a", true}, {"a/b/c", true}, {"real", true},
			{"esc", false}, {"esc/x", false}, {"a/b/in", false}, {"a/missing", false},
		} {
			fd, err := openSub(rootfd, root, c.rel)
			if err == nil {
				unix.Close(fd)
			}
			if (err == nil) != c.ok {
				t.Errorf("fallback=%v %q: err %v, want ok=%v", fallback, c.rel, err, c.ok)
			}
		}
	}
}

// TestScanDirSwappedForSymlink swaps a directory of a tree with a
// symlink to a directory outside while scans and diffs run: no walk may
// ever list what is outside.
func TestScanDirSwappedForSymlink(t *testing.T) {
	root, out := t.TempDir(), t.TempDir()
	write(t, filepath.Join(out, "sub/OUTSIDE"), "secret", 0o600)
	for i := range 50 {
		write(t, filepath.Join(root, fmt.Sprintf("d/sub/f%02d", i)), "x", 0o644)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		d, moved, link := filepath.Join(root, "d"), filepath.Join(root, "d.moved"), filepath.Join(root, "d.link")
		os.Symlink(out, link)
		for {
			select {
			case <-stop:
				return
			default:
			}
			// d becomes a symlink to out, then the directory again
			unix.Renameat2(unix.AT_FDCWD, d, unix.AT_FDCWD, moved, 0)
			unix.Renameat2(unix.AT_FDCWD, link, unix.AT_FDCWD, d, 0)
			unix.Renameat2(unix.AT_FDCWD, d, unix.AT_FDCWD, link, 0)
			unix.Renameat2(unix.AT_FDCWD, moved, unix.AT_FDCWD, d, 0)
		}
	}()
	defer func() { close(stop); <-done }()
	for range 300 {
		if tr, err := scanFast(root, nil); err == nil {
			for _, e := range tr.Entries {
				if strings.HasSuffix(e.Rel, "OUTSIDE") {
					t.Fatalf("scan followed a symlink out of the tree: %s", e.Rel)
				}
			}
		}
		if ch, err := diffContent(root, root, nil); err == nil {
			for _, c := range ch {
				if strings.HasSuffix(c.Path, "OUTSIDE") {
					t.Fatalf("diff followed a symlink out of the tree: %s", c.Path)
				}
			}
		}
	}
}
