package atomic

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/bofhkit/bofh/internal/fsutil"
)

// ErrUntrusted wraps a refusal to use something in the state directory
// that bofh did not make: a directory or journal owned by another user or
// writable by others, a symlink, a FIFO, a file with other hard links.
// bofh trusts nothing there that it did not create itself.
var ErrUntrusted = fmt.Errorf("%w: untrusted state", ErrInvalid)

// pinned is a directory of the state tree opened once; names below it are
// resolved through its descriptor with O_NOFOLLOW, so a directory swapped
// for a symlink after the check redirects nothing.
type pinned struct {
	fd   int
	path string
}

func (p *pinned) close() {
	if p != nil && p.fd >= 0 {
		unix.Close(p.fd)
		p.fd = -1
	}
}

func (p *pinned) sync() error {
	if err := fsutil.IgnoringEINTR(func() error { return unix.Fsync(p.fd) }); err != nil {
		return fmt.Errorf("fsync %s: %w", p.path, err)
	}
	return nil
}

// trustDir checks a state directory's owner and mode: owned by this
// process's user, not writable by group or others.
func trustDir(st *unix.Stat_t, path string) error {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%w: %s is not a directory", ErrUntrusted, path)
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%w: %s is owned by uid %d, not by uid %d who runs bofh; refusing to use it", ErrUntrusted, path, st.Uid, os.Geteuid())
	}
	if st.Mode&0o022 != 0 {
		return fmt.Errorf("%w: %s is writable by group or others (mode %04o); refusing to use it", ErrUntrusted, path, st.Mode&0o7777)
	}
	return nil
}

// trustFile checks a journal (or other state file) opened without
// following symlinks: a regular file of this process's user, not writable
// by group or others, with no other hard link (a link to a file elsewhere
// would let bofh truncate or read it).
func trustFile(f *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("%w: %s is not a regular file", ErrUntrusted, f.Name())
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("%w: %s is owned by uid %d, not by uid %d who runs bofh", ErrUntrusted, f.Name(), st.Uid, os.Geteuid())
	case st.Mode&0o022 != 0:
		return fmt.Errorf("%w: %s is writable by group or others (mode %04o)", ErrUntrusted, f.Name(), st.Mode&0o7777)
	case st.Nlink > 1:
		return fmt.Errorf("%w: %s has %d hard links; a journal has one", ErrUntrusted, f.Name(), st.Nlink)
	}
	return nil
}

// openStateDir opens (and, with create, makes 0700) the state directory.
// The state directory itself may be reached through a symlink the
// operator made; it must be owned by bofh's user and not writable by
// others. An existing directory is never chmod'ed.
func openStateDir(stateDir string, create bool) (*pinned, error) {
	if stateDir == "" {
		return nil, fmt.Errorf("%w: no state directory", ErrInvalid)
	}
	if create {
		if _, err := os.Stat(stateDir); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(stateDir, 0o700); err != nil {
				return nil, fmt.Errorf("create %s: %w", stateDir, err)
			}
			if err := fsutil.SyncDir(filepath.Dir(stateDir)); err != nil {
				return nil, err
			}
		}
	}
	fd, err := unix.Open(stateDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("state directory %s: %w", stateDir, os.ErrNotExist)
		}
		return nil, fmt.Errorf("open state directory %s: %w", stateDir, err)
	}
	p := &pinned{fd: fd, path: stateDir}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		p.close()
		return nil, fmt.Errorf("stat %s: %w", stateDir, err)
	}
	if err := trustDir(&st, stateDir); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// sub opens the directory name below p without following a symlink and
// checks it; with create, a missing one is made 0700 and its creation
// synced into p.
func (p *pinned) sub(name string, create bool) (*pinned, error) {
	path := filepath.Join(p.path, name)
	fd, err := unix.Openat(p.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) && create {
		if err := unix.Mkdirat(p.fd, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create %s: %w", path, err)
		}
		if err := p.sync(); err != nil {
			return nil, err
		}
		fd, err = unix.Openat(p.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			return nil, fmt.Errorf("%s: %w", path, os.ErrNotExist)
		case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
			return nil, fmt.Errorf("%w: %s is not a directory bofh made (a symlink or a file)", ErrUntrusted, path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	d := &pinned{fd: fd, path: path}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		d.close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if err := trustDir(&st, path); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

// openJournalDir opens <state>/journal through pinned descriptors.
func openJournalDir(stateDir string, create bool) (*pinned, error) {
	s, err := openStateDir(stateDir, create)
	if err != nil {
		return nil, err
	}
	defer s.close()
	return s.sub("journal", create)
}

// openFile opens name in d with flags|O_NOFOLLOW|O_NONBLOCK (a FIFO never
// blocks) and checks it is a trusted regular file.
func (d *pinned) openFile(name string, flags int) (*os.File, error) {
	path := filepath.Join(d.path, name)
	fd, err := unix.Openat(d.fd, name, flags|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			return nil, fmt.Errorf("%s: %w", path, os.ErrNotExist)
		case errors.Is(err, unix.ELOOP):
			return nil, fmt.Errorf("%w: %s is a symlink", ErrUntrusted, path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	if err := trustFile(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// lockFile takes an exclusive open-file-description lock on f without
// waiting. OFD locks (not flock) let readers ask whether a journal is held
// (F_OFD_GETLK) without ever holding it themselves, so a reader can never
// make a writer's lock fail.
func lockFile(f *os.File) error {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	return unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
}

// heldByOther reports whether another open file description (a live
// process, or another transaction in this one) holds f's lock.
func heldByOther(f *os.File) (bool, error) {
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return false, fmt.Errorf("query the lock of %s: %w", f.Name(), err)
	}
	return lk.Type != unix.F_UNLCK, nil
}

// names lists the entries of d.
func (d *pinned) names() ([]string, error) {
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", d.path, err)
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	return f.Readdirnames(-1)
}

// removeData removes <state>/data/<id> (a transaction's backups) through
// pinned, checked directories: a data/ that is a symlink or not bofh's is
// refused, never followed.
func removeData(stateDir, id string) error {
	if err := ValidID(id); err != nil {
		return err
	}
	s, err := openStateDir(stateDir, false)
	if err != nil {
		return err
	}
	defer s.close()
	d, err := s.sub("data", false)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.close()
	// RemoveAll resolves through the pinned descriptor and removes a
	// symlink at the last element, never what it points to.
	if err := os.RemoveAll(fmt.Sprintf("/proc/self/fd/%d/%s", d.fd, id)); err != nil {
		return fmt.Errorf("remove backups of %s: %w", id, err)
	}
	return d.sync()
}

// sweepData removes the backups (data/<id>) of transactions that are over
// — committed, rolled back or forgotten — which a process killed between
// its last record and its cleanup left behind. It is idempotent; new
// transactions and tx list run it.
func sweepData(stateDir string) {
	s, err := openStateDir(stateDir, false)
	if err != nil {
		return
	}
	defer s.close()
	d, err := s.sub("data", false)
	if err != nil {
		return
	}
	names, err := d.names()
	d.close()
	if err != nil {
		return
	}
	jd, err := s.sub("journal", false)
	if err != nil {
		return
	}
	defer jd.close()
	for _, id := range names {
		if ValidID(id) != nil {
			continue
		}
		h, locked, err := readTxIn(jd, id)
		switch {
		case errors.Is(err, ErrNotFound):
		case err == nil && !locked && (h.state == StateCommitted || h.state == StateRolledBack):
		default:
			continue
		}
		_ = removeData(stateDir, id)
	}
}
