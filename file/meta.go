// Package file provides bofh's file-system step kinds, the first real steps
// of the transaction engine: it wraps no external tool, only system calls.
//
// Step kinds registered:
//   - dir.create: create a directory (and missing parents); undo removes
//     what it created, only if still empty.
//   - file.write: write a regular file atomically; undo restores the
//     previous content, owner, mode and mtime, or its absence. The backup
//     lives in the transaction's state directory.
//   - file.remove: remove a file or symlink; undo puts it back exactly.
//   - symlink.create: create a symlink; undo removes it.
//
// Every undo also restores the parent directory's mtime, so a rolled-back
// tree is the starting tree, metadata included.
package file

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/fsutil"
)

// Meta is the metadata bofh restores: mode, owner and times.
type Meta struct {
	Mode  uint32 `json:"mode"` // permission and special bits (07777)
	UID   int    `json:"uid"`
	GID   int    `json:"gid"`
	Mtime int64  `json:"mtime_ns"`
	Atime int64  `json:"atime_ns"`
}

func metaOf(fi os.FileInfo) Meta {
	st := fi.Sys().(*syscall.Stat_t)
	return Meta{
		Mode:  uint32(st.Mode) & 0o7777,
		UID:   int(st.Uid),
		GID:   int(st.Gid),
		Mtime: st.Mtim.Nano(),
		Atime: st.Atim.Nano(),
	}
}

// applyMeta sets owner, mode and times on path (not following a symlink;
// the mode of a symlink is not settable and is skipped).
func applyMeta(path string, m Meta, isLink bool) error {
	if err := os.Lchown(path, m.UID, m.GID); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	if !isLink {
		if err := unix.Chmod(path, m.Mode); err != nil {
			return fmt.Errorf("chmod %s: %w", path, err)
		}
	}
	return setTimes(path, m.Atime, m.Mtime)
}

func setTimes(path string, atime, mtime int64) error {
	ts := []unix.Timespec{unix.NsecToTimespec(atime), unix.NsecToTimespec(mtime)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", path, err)
	}
	return nil
}

// dirTimes records a directory's times so an undo can put them back.
type dirTimes struct {
	Path  string `json:"path"`
	Mtime int64  `json:"mtime_ns"`
	Atime int64  `json:"atime_ns"`
}

func timesOf(dir string) (*dirTimes, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", dir, err)
	}
	m := metaOf(fi)
	return &dirTimes{Path: dir, Mtime: m.Mtime, Atime: m.Atime}, nil
}

// parentTimes records the times of path's parent directory. In a dry run
// a missing parent is one an earlier step would have created: no error.
func parentTimes(env interface{ Dry(string, ...any) bool }, path string) (*dirTimes, error) {
	dir := filepath.Dir(path)
	d, err := timesOf(dir)
	if err != nil {
		if _, statErr := os.Lstat(dir); errors.Is(statErr, os.ErrNotExist) {
			if env.Dry("need %s (not there yet; an earlier step must create it)", dir) {
				return nil, nil
			}
			return nil, fmt.Errorf("%w: parent directory %s does not exist", atomic.ErrInvalid, dir)
		}
		return nil, fmt.Errorf("parent directory: %w", err)
	}
	return d, nil
}

func (d *dirTimes) restore() error {
	if d == nil {
		return nil
	}
	if _, err := os.Lstat(d.Path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := setTimes(d.Path, d.Atime, d.Mtime); err != nil {
		return err
	}
	// The undo's removals and renames in this directory, and its times,
	// must be on the disk before the rollback record says "rolled back".
	return fsutil.SyncDir(d.Path)
}

// Mode is a permission mode written in octal ("0644"); JSON and YAML
// take it as a string.
type Mode string

// Perm parses the mode, or returns def when it is empty.
func (m Mode) Perm(def uint32) (uint32, error) {
	if m == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(string(m), 8, 32)
	if err != nil || v > 0o7777 {
		return 0, fmt.Errorf("mode %q: want octal like \"0644\"", string(m))
	}
	return uint32(v), nil
}

func checkPath(p string) error {
	switch {
	case p == "":
		return errors.New("path is required")
	case strings.ContainsRune(p, 0):
		return errors.New("path contains a NUL byte")
	case !filepath.IsAbs(p):
		return fmt.Errorf("path %q is not absolute", p)
	case filepath.Clean(p) != p:
		return fmt.Errorf("path %q is not clean (use %q)", p, filepath.Clean(p))
	case p == "/":
		return errors.New("path is the root directory")
	}
	return nil
}

func exists(p string) (os.FileInfo, bool, error) {
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err // *PathError names the path
	}
	return fi, true, nil
}
