package tree

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Type is a file type.
type Type uint8

// File types a tree holds.
const (
	TypeFile Type = iota + 1
	TypeDir
	TypeSymlink
	TypeFifo
	TypeChar
	TypeBlock
	TypeSocket
)

func (t Type) String() string {
	return [...]string{"?", "file", "dir", "symlink", "fifo", "char", "block", "socket"}[t]
}

// Entry is one file of a tree, as found by Lstat (never following a
// symlink).
type Entry struct {
	Rel    string // relative to the root, "" for the root itself
	Type   Type
	Mode   uint32 // permission and special bits (07777)
	UID    uint32
	GID    uint32
	Size   int64
	Mtime  int64 // ns
	Atime  int64 // ns
	Link   string
	Rdev   uint64
	Dev    uint64
	Ino    uint64
	Nlink  uint64
	Xattrs map[string][]byte
}

// entryJSON is Entry as JSON: names and symlink targets are bytes
// (base64), so non-UTF-8 names survive a journal or manifest.
type entryJSON struct {
	Rel    []byte            `json:"rel"`
	Type   Type              `json:"type"`
	Mode   uint32            `json:"mode"`
	UID    uint32            `json:"uid"`
	GID    uint32            `json:"gid"`
	Size   int64             `json:"size"`
	Mtime  int64             `json:"mtime"`
	Atime  int64             `json:"atime"`
	Link   []byte            `json:"link,omitempty"`
	Rdev   uint64            `json:"rdev,omitempty"`
	Xattrs map[string][]byte `json:"xattrs,omitempty"`
}

// MarshalJSON encodes names as bytes.
func (e *Entry) MarshalJSON() ([]byte, error) {
	return json.Marshal(entryJSON{Rel: []byte(e.Rel), Type: e.Type, Mode: e.Mode, UID: e.UID, GID: e.GID, Size: e.Size,
		Mtime: e.Mtime, Atime: e.Atime, Link: []byte(e.Link), Rdev: e.Rdev, Xattrs: e.Xattrs})
}

// UnmarshalJSON decodes what MarshalJSON wrote.
func (e *Entry) UnmarshalJSON(b []byte) error {
	var j entryJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*e = Entry{Rel: string(j.Rel), Type: j.Type, Mode: j.Mode, UID: j.UID, GID: j.GID, Size: j.Size,
		Mtime: j.Mtime, Atime: j.Atime, Link: string(j.Link), Rdev: j.Rdev, Xattrs: j.Xattrs}
	return nil
}

func typeOf(m uint32) Type {
	switch m & unix.S_IFMT {
	case unix.S_IFREG:
		return TypeFile
	case unix.S_IFDIR:
		return TypeDir
	case unix.S_IFLNK:
		return TypeSymlink
	case unix.S_IFIFO:
		return TypeFifo
	case unix.S_IFCHR:
		return TypeChar
	case unix.S_IFBLK:
		return TypeBlock
	case unix.S_IFSOCK:
		return TypeSocket
	}
	return 0
}

// StateFile is where a target's role and version are recorded, relative
// to the target root. Sync, verify and diff never touch it.
const StateFile = "etc/bofh-tree.json"

func join(root, rel string) string {
	if rel == "" {
		return root
	}
	return root + "/" + rel
}

// lstatEntry reads one entry, with its xattrs.
func lstatEntry(root, rel string) (*Entry, error) {
	return lstatPath(join(root, rel), rel)
}

// lstatPath is lstatEntry of the entry at p (a pinned name, or a path
// the caller trusts), recorded as rel.
func lstatPath(p, rel string) (*Entry, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	e := &Entry{Rel: rel, Type: typeOf(st.Mode), Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid,
		Size: st.Size, Mtime: st.Mtim.Nano(), Atime: st.Atim.Nano(), Rdev: st.Rdev, Dev: st.Dev, Ino: st.Ino, Nlink: st.Nlink}
	if e.Type == TypeSymlink {
		l, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
		e.Link = l
	}
	x, err := readXattrs(p)
	if err != nil {
		return nil, err
	}
	e.Xattrs = x
	return e, nil
}

func readXattrs(p string) (map[string][]byte, error) {
	buf := make([]byte, 1024)
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.ERANGE) {
		sz, err2 := unix.Llistxattr(p, nil)
		if err2 != nil {
			return nil, fmt.Errorf("list xattrs of %s: %w", p, err2)
		}
		buf = make([]byte, sz)
		n, err = unix.Llistxattr(p, buf)
	}
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list xattrs of %s: %w", p, err)
	}
	if n == 0 {
		return nil, nil
	}
	out := map[string][]byte{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 256)
		m, err := unix.Lgetxattr(p, name, v)
		if errors.Is(err, unix.ERANGE) {
			sz, _ := unix.Lgetxattr(p, name, nil)
			v = make([]byte, sz)
			m, err = unix.Lgetxattr(p, name, v)
		}
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read xattr %s of %s: %w", name, p, err)
		}
		out[name] = append([]byte(nil), v[:m]...)
	}
	return out, nil
}

// Tree is a scanned tree: its entries sorted by path, parents first.
type Tree struct {
	Root    string
	Entries []*Entry
	byRel   map[string]*Entry
}

// Get returns the entry at rel, or nil.
func (t *Tree) Get(rel string) *Entry { return t.byRel[rel] }

// Scan walks root without following symlinks. skip, when not nil, is
// asked for every path below the root; a skipped directory is not
// entered. The root must be a real directory.
func Scan(root string, skip func(rel string, isDir bool) bool) (*Tree, error) {
	if err := realDir(root); err != nil {
		return nil, err
	}
	t := &Tree{Root: root, byRel: map[string]*Entry{}}
	var walk func(rel string) error
	walk = func(rel string) error {
		e, err := lstatEntry(root, rel)
		if err != nil {
			return err
		}
		t.Entries = append(t.Entries, e)
		t.byRel[rel] = e
		if e.Type != TypeDir {
			return nil
		}
		f, err := os.OpenFile(join(root, rel), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		ents, err := f.ReadDir(-1)
		f.Close()
		if err != nil {
			return fmt.Errorf("read directory %s: %w", join(root, rel), err)
		}
		for _, de := range ents {
			crel := de.Name()
			if rel != "" {
				crel = rel + "/" + de.Name()
			}
			if skip != nil && skip(crel, de.IsDir()) {
				continue
			}
			if err := walk(crel); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(""); err != nil {
		return nil, err
	}
	sort.Slice(t.Entries, func(i, j int) bool { return t.Entries[i].Rel < t.Entries[j].Rel })
	return t, nil
}

// skipper returns the skip function for a sync or verify: the state file,
// bofh's temporary files and every path matched by the rules.
func skipper(rules ...Rules) func(rel string, isDir bool) bool {
	return func(rel string, isDir bool) bool {
		if rel == StateFile || strings.HasPrefix(path.Base(rel), tmpPrefix) {
			return true
		}
		for _, r := range rules {
			if r.Match(rel, isDir) {
				return true
			}
		}
		return false
	}
}

func xattrsEqual(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// rel2abs joins and cleans, refusing any escape from root.
func within(root, rel string) (string, error) {
	p := filepath.Join(root, rel)
	if p != root && !strings.HasPrefix(p, root+"/") {
		return "", fmt.Errorf("%q escapes %s", rel, root)
	}
	return p, nil
}

// mountID returns the mount ID of path (statx STATX_MNT_ID), or 0.
func mountID(p string) uint64 {
	var sx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &sx); err != nil {
		return 0
	}
	return sx.Mnt_id
}
