package file

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// tempPrefix starts the name of every temporary file the file steps make
// beside a target. The rest of the name is the owning transaction and
// step, then random hex: an undo finds and removes its own step's
// temporaries, and nobody can guess a name in advance.
const tempPrefix = ".bofh-tmp-"

// tempTag is the part of a temporary name that identifies the step that
// made it (a transaction ID holds only [0-9a-z-]).
func tempTag(txID string, step int) string {
	return fmt.Sprintf("%s%s.%d.", tempPrefix, txID, step)
}

// pinnedDir is a directory opened once: every name below it is resolved
// through this descriptor, so a directory swapped for a symlink after it
// was opened redirects nothing.
type pinnedDir struct {
	fd   int
	path string
}

// openDir opens dir (which must be a directory) for *at calls.
func openDir(dir string) (*pinnedDir, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open directory %s: %w", dir, err)
	}
	return &pinnedDir{fd: fd, path: dir}, nil
}

func (d *pinnedDir) close() { unix.Close(d.fd) }

// sync fsyncs the directory, making a rename or unlink in it durable.
func (d *pinnedDir) sync() error {
	if err := unix.Fsync(d.fd); err != nil {
		return fmt.Errorf("sync directory %s: %w", d.path, err)
	}
	return nil
}

// createTemp creates a new private (0600) regular file named tag+random in
// d, with O_EXCL|O_NOFOLLOW: it is a file this process made, never one
// that somebody put there or a symlink to elsewhere.
func (d *pinnedDir) createTemp(tag string) (*os.File, string, error) {
	for try := 0; try < 16; try++ {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, "", err
		}
		name := tag + hex.EncodeToString(b[:])
		fd, err := unix.Openat(d.fd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("create a temporary file in %s: %w", d.path, err)
		}
		return os.NewFile(uintptr(fd), filepath.Join(d.path, name)), name, nil
	}
	return nil, "", fmt.Errorf("create a temporary file in %s: no free name", d.path)
}

// finish gives the open temporary f its owner, mode and, if mtime is
// set, its times, through the descriptor and the pinned directory (never
// by a path that could be a symlink), syncs and closes it. The owner is
// set before the mode: chown clears the setuid and setgid bits.
func (d *pinnedDir) finish(f *os.File, name string, m Meta, setTimes bool) error {
	fd := int(f.Fd())
	if err := unix.Fchown(fd, m.UID, m.GID); err != nil {
		f.Close()
		return fmt.Errorf("chown %s: %w", f.Name(), err)
	}
	if err := unix.Fchmod(fd, m.Mode&0o7777); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.Name(), err)
	}
	if setTimes {
		ts := []unix.Timespec{unix.NsecToTimespec(m.Atime), unix.NsecToTimespec(m.Mtime)}
		if err := unix.UtimesNanoAt(d.fd, name, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("set times of %s: %w", f.Name(), err)
		}
	}
	return nil
}

// replace renames the temporary name over target (both in d) and syncs
// d. (What lands at target is not checked: in a directory others can
// write, they can replace the target itself right after; what matters is
// that bofh never writes or chmods through a name they control.)
func (d *pinnedDir) replace(name, target string) error {
	if err := unix.Renameat(d.fd, name, d.fd, target); err != nil {
		return fmt.Errorf("rename into %s: %w", filepath.Join(d.path, target), err)
	}
	return d.sync()
}

// remove unlinks name in d (a missing name is success).
func (d *pinnedDir) remove(name string) {
	_ = unix.Unlinkat(d.fd, name, 0)
}

// removeTemps removes the temporary files of one step (names starting
// with tag) from d: regular files owned by this process's user only.
func (d *pinnedDir) removeTemps(tag string) error {
	dup, err := unix.Dup(d.fd)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", d.path, err)
	}
	f := os.NewFile(uintptr(dup), d.path)
	defer f.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("read directory %s: %w", d.path, err)
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", d.path, err)
	}
	for _, n := range names {
		if !strings.HasPrefix(n, tag) {
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(d.fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() {
			continue
		}
		d.remove(n)
	}
	return nil
}

// writeTemp writes data to a new temporary in d and gives it m.
func (d *pinnedDir) writeTemp(tag string, data []byte, m Meta, setTimes bool) (string, error) {
	f, name, err := d.createTemp(tag)
	if err != nil {
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		d.remove(name)
		return "", fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := d.finish(f, name, m, setTimes); err != nil {
		d.remove(name)
		return "", err
	}
	return name, nil
}

// copyTemp copies the regular file src (opened without following a
// symlink) to a new temporary in d and gives it m.
func (d *pinnedDir) copyTemp(tag, src string, m Meta, setTimes bool) (string, error) {
	in, err := openRegular(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	f, name, err := d.createTemp(tag)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, in); err != nil {
		f.Close()
		d.remove(name)
		return "", fmt.Errorf("copy %s: %w", src, err)
	}
	if err := d.finish(f, name, m, setTimes); err != nil {
		d.remove(name)
		return "", err
	}
	return name, nil
}

// openRegular opens path for reading without following a final symlink,
// and only if it is a regular file (a FIFO would block, a device would
// read something else entirely).
func openRegular(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	return f, nil
}
