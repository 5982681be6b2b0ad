// Package fsutil holds the small file-system helpers that several bofh
// step packages need to be crash-safe: writing a private file atomically
// and durably, fsyncing a directory after an entry in it changed, and
// writing an already open file out to disk. It is internal: helpers for
// bofh's own packages, not an API for site scripts.
package fsutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// TempSuffix is appended to a path to name the temporary file that
// WriteFileSync renames over it. A crash can leave one behind; an undo
// that wants to tidy up removes path+TempSuffix.
const TempSuffix = ".bofh-tmp"

// WriteFileSync replaces path with data atomically and durably: it writes
// path+TempSuffix with mode perm (exactly perm, whatever the umask), fsyncs
// and closes it, renames it over path and fsyncs path's directory. A reader
// sees the old content or the whole new one, never a torn file; once it
// returns nil the new content survives a power cut. On failure the
// temporary file is removed and path is left as it was (unless only the
// final directory fsync failed: then path holds the new content).
func WriteFileSync(path string, data []byte, perm os.FileMode) error {
	tmp := path + TempSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := WriteSyncClose(f, data); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// WriteSyncClose writes data to f, fsyncs f and closes it. f is closed
// whatever happens; the first error is returned. It is the common tail of
// every "create a temporary file, then rename or link it into place"
// sequence, whatever flags and name the caller opened f with.
func WriteSyncClose(f *os.File, data []byte) error {
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// SyncDir fsyncs the directory dir, so that entries created, renamed or
// removed in it survive a crash. It fails when dir is not a directory.
func SyncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := IgnoringEINTR(func() error { return unix.Fsync(fd) }); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// IgnoringEINTR runs a system call again while a signal interrupts it (the
// Go runtime's own preemption signals can): golang.org/x/sys/unix, unlike
// package os, does not retry for its callers. fallocate was seen to fail
// with "interrupted system call" in the lab guest.
func IgnoringEINTR(call func() error) error {
	for {
		if err := call(); !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
