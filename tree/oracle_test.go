package tree

// The tests' oracle for "this tree is exactly that tree": it reads the
// file system with the os and unix calls alone, sharing no code with the
// package it checks (Scan, lstatEntry, readXattrs, the walk), so a bug
// there cannot hide itself.

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// fingerprint describes every path below root (root itself as ""), one
// string per path: type, permission and special bits, owner, size and
// sha256 of a file's content, a symlink's target, a device's number,
// every xattr by name and value (POSIX ACLs included: they are the
// system.posix_acl_* xattrs), the hard-link group (the first path of
// the group in lexical order, for every member) and last, so that a
// caller can cut it off, the mtime in ns (" mtime=").
func fingerprint(t testing.TB, root string) map[string]string {
	t.Helper()
	type ent struct {
		rel string
		st  unix.Stat_t
		s   string
	}
	var ents []*ent
	groups := map[[2]uint64][]string{} // dev, ino → paths, for regular files
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if rel == "." {
			rel = ""
		}
		e := &ent{rel: rel}
		if err := unix.Lstat(p, &e.st); err != nil {
			return fmt.Errorf("lstat %s: %w", p, err)
		}
		s, err := describe(p, &e.st)
		if err != nil {
			return err
		}
		e.s = s
		ents = append(ents, e)
		if e.st.Mode&unix.S_IFMT == unix.S_IFREG && e.st.Nlink > 1 {
			k := [2]uint64{e.st.Dev, e.st.Ino}
			groups[k] = append(groups[k], rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("fingerprint %s: %v", root, err)
	}
	out := make(map[string]string, len(ents))
	for _, e := range ents {
		s := e.s
		if g := groups[[2]uint64{e.st.Dev, e.st.Ino}]; len(g) > 1 {
			sort.Strings(g)
			s += " link=" + g[0]
		}
		out[e.rel] = s + fmt.Sprintf(" mtime=%d", e.st.Mtim.Nano())
	}
	return out
}

// describe is everything fingerprint records of one path but its mtime
// and hard-link group.
func describe(p string, st *unix.Stat_t) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %04o %d:%d", fileType(st.Mode), st.Mode&0o7777, st.Uid, st.Gid)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		sum, err := sha256File(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, " size=%d sha256=%x", st.Size, sum)
	case unix.S_IFLNK:
		l, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, " -> %q", l)
	case unix.S_IFCHR, unix.S_IFBLK:
		fmt.Fprintf(&b, " rdev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	xs, err := listXattrs(p)
	if err != nil {
		return "", err
	}
	for _, x := range xs {
		fmt.Fprintf(&b, " %s", x)
	}
	return b.String(), nil
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFCHR:
		return "char"
	case unix.S_IFBLK:
		return "block"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("type%o", mode&unix.S_IFMT)
}

// sha256File hashes a file's content, opened without following a
// symlink.
func sha256File(p string) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return h.Sum(nil), nil
}

// listXattrs returns "name=hexvalue" for every xattr of p (not following
// a symlink), sorted.
func listXattrs(p string) ([]string, error) {
	var names []byte
	for {
		n, err := unix.Llistxattr(p, nil)
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("llistxattr %s: %w", p, err)
		}
		if n == 0 {
			return nil, nil
		}
		names = make([]byte, n)
		n, err = unix.Llistxattr(p, names)
		if errors.Is(err, unix.ERANGE) {
			continue // grew meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("llistxattr %s: %w", p, err)
		}
		names = names[:n]
		break
	}
	var out []string
	for _, name := range strings.Split(string(names), "\x00") {
		if name == "" {
			continue
		}
		n, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, fmt.Errorf("lgetxattr %s %s: %w", p, name, err)
		}
		v := make([]byte, n)
		if n > 0 {
			if n, err = unix.Lgetxattr(p, name, v); err != nil {
				return nil, fmt.Errorf("lgetxattr %s %s: %w", p, name, err)
			}
		}
		out = append(out, fmt.Sprintf("%s=%x", name, v[:n]))
	}
	sort.Strings(out)
	return out, nil
}

// sameFingerprint fails the test with the differences when a and b
// (fingerprints, want and got) differ.
func sameFingerprint(t testing.TB, what string, want, got map[string]string) {
	t.Helper()
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("%s (-want +got):\n%s", what, d)
	}
}

// TestHostOracle checks the oracle itself: every attribute it claims to
// record changes the fingerprint when it alone changes, and the xattrs it
// reads are the ones getfattr(1) shows.
func TestHostOracle(t *testing.T) {
	requireRoot(t)
	mnt := newFS(t, "ext4", 64<<20)
	mk := func(t *testing.T) string {
		root := filepath.Join(mnt, strings.ReplaceAll(t.Name(), "/", "_"))
		write(t, filepath.Join(root, "d/f"), "content\n", 0o644)
		write(t, filepath.Join(root, "d/g"), "linked\n", 0o644)
		if err := os.Link(filepath.Join(root, "d/g"), filepath.Join(root, "d/h")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("d/f", filepath.Join(root, "l")); err != nil {
			t.Fatal(err)
		}
		if err := unix.Lsetxattr(filepath.Join(root, "d/f"), "user.k", []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
		sh(t, "setfacl", "-m", "u:1234:r", filepath.Join(root, "d/f"))
		return root
	}
	same := func(t *testing.T, root string) {}
	changes := []struct {
		name   string
		change func(t *testing.T, root string)
		path   string // the fingerprint entry that must differ
	}{
		{"content same size", func(t *testing.T, r string) {
			fi, _ := os.Stat(filepath.Join(r, "d/f"))
			write(t, filepath.Join(r, "d/f"), "CONTENT\n", 0o644)
			os.Chtimes(filepath.Join(r, "d/f"), fi.ModTime(), fi.ModTime())
		}, "d/f"},
		{"mode", func(t *testing.T, r string) { unix.Chmod(filepath.Join(r, "d/f"), 0o4644) }, "d/f"},
		{"owner", func(t *testing.T, r string) { os.Lchown(filepath.Join(r, "d/f"), 7, 0) }, "d/f"},
		{"group", func(t *testing.T, r string) { os.Lchown(filepath.Join(r, "d/f"), 0, 7) }, "d/f"},
		{"mtime by 1ns", func(t *testing.T, r string) {
			fi, _ := os.Lstat(filepath.Join(r, "d/f"))
			m := fi.ModTime().Add(1)
			os.Chtimes(filepath.Join(r, "d/f"), m, m)
		}, "d/f"},
		{"root mtime", func(t *testing.T, r string) {
			fi, _ := os.Lstat(r)
			m := fi.ModTime().Add(1)
			os.Chtimes(r, m, m)
		}, ""},
		{"xattr value", func(t *testing.T, r string) { unix.Lsetxattr(filepath.Join(r, "d/f"), "user.k", []byte("w"), 0) }, "d/f"},
		{"acl", func(t *testing.T, r string) { sh(t, "setfacl", "-m", "u:1234:rw", filepath.Join(r, "d/f")) }, "d/f"},
		{"symlink target", func(t *testing.T, r string) {
			os.Remove(filepath.Join(r, "l"))
			os.Symlink("d/g", filepath.Join(r, "l"))
		}, "l"},
		{"hard link split", func(t *testing.T, r string) {
			sh(t, "cp", "-a", filepath.Join(r, "d/h"), filepath.Join(r, "d/h.new"))
			os.Rename(filepath.Join(r, "d/h.new"), filepath.Join(r, "d/h"))
		}, "d/g"},
		{"nothing", same, ""},
	}
	for _, tc := range changes {
		t.Run(tc.name, func(t *testing.T) {
			root := mk(t)
			before := fingerprint(t, root)
			tc.change(t, root)
			after := fingerprint(t, root)
			if tc.name == "nothing" {
				sameFingerprint(t, "an unchanged tree", before, after)
				return
			}
			if before[tc.path] == after[tc.path] {
				t.Fatalf("%s: the fingerprint of %q did not change: %s", tc.name, tc.path, after[tc.path])
			}
		})
	}
	t.Run("xattrs as getfattr shows them", func(t *testing.T) {
		root := mk(t)
		p := filepath.Join(root, "d/f")
		out, err := exec.Command("getfattr", "--absolute-names", "-d", "-m", "-", "-h", "-e", "hex", p).Output()
		if err != nil {
			t.Fatalf("getfattr: %v", err)
		}
		var want []string
		for _, line := range strings.Split(string(out), "\n") {
			if name, val, ok := strings.Cut(line, "=0x"); ok {
				want = append(want, name+"="+val)
			}
		}
		sort.Strings(want)
		got, err := listXattrs(p)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("xattrs of %s (-getfattr +oracle):\n%s", p, d)
		}
		if !strings.Contains(strings.Join(got, " "), "system.posix_acl_access=") {
			t.Fatalf("the ACL is not among the xattrs: %v", got)
		}
	})
}
