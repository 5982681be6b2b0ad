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
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bofhkit/bofh/internal/fsutil"
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
	if err := fsutil.IgnoringEINTR(func() error { return unix.Fsync(d.fd) }); err != nil {
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
func (d *pinnedDir) finish(f *os.File, name string, m Meta, setTimes bool, xattrsFrom *os.File) error {
	fd := int(f.Fd())
	if err := unix.Fchown(fd, m.UID, m.GID); err != nil {
		f.Close()
		return fmt.Errorf("chown %s: %w", f.Name(), err)
	}
	if err := unix.Fchmod(fd, m.Mode&0o7777); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", f.Name(), err)
	}
	if xattrsFrom != nil {
		// After chown (which drops security.capability) and chmod (whose
		// group bits an ACL's mask then sets back exactly).
		if err := copyXattrs(xattrsFrom, f); err != nil {
			f.Close()
			return err
		}
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
	if err := d.finish(f, name, m, setTimes, nil); err != nil {
		d.remove(name)
		return "", err
	}
	return name, nil
}

// copyTemp copies the regular file src (opened without following a
// symlink) to a new temporary in d and gives it m and src's extended
// attributes (ACLs and security.* among them).
func (d *pinnedDir) copyTemp(tag, src string, m Meta, setTimes bool) (string, error) {
	in, err := openRegular(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	return d.copyTempFrom(tag, in, m, setTimes)
}

// copyTempFrom is copyTemp from an open file.
func (d *pinnedDir) copyTempFrom(tag string, in *os.File, m Meta, setTimes bool) (string, error) {
	src := in.Name()
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("read %s: %w", src, err)
	}
	f, name, err := d.createTemp(tag)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(f, in); err != nil {
		f.Close()
		d.remove(name)
		return "", fmt.Errorf("copy %s: %w", src, err)
	}
	if err := d.finish(f, name, m, setTimes, in); err != nil {
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

// copyXattrs copies every extended attribute of src to dst (both open):
// POSIX ACLs (system.posix_acl_*), security.* (SELinux labels, file
// capabilities), trusted.* and user.*.
func copyXattrs(src, dst *os.File) error {
	names, err := listXattrs(int(src.Fd()))
	if err != nil {
		return fmt.Errorf("list extended attributes of %s: %w", src.Name(), err)
	}
	for _, n := range names {
		v, err := getXattr(int(src.Fd()), n)
		if err != nil {
			return fmt.Errorf("read extended attribute %s of %s: %w", n, src.Name(), err)
		}
		if err := unix.Fsetxattr(int(dst.Fd()), n, v, 0); err != nil {
			return fmt.Errorf("set extended attribute %s on %s: %w", n, dst.Name(), err)
		}
	}
	return nil
}

func listXattrs(fd int) ([]string, error) {
	for {
		sz, err := unix.Flistxattr(fd, nil)
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil || sz == 0 {
			return nil, err
		}
		buf := make([]byte, sz)
		n, err := unix.Flistxattr(fd, buf)
		if errors.Is(err, unix.ERANGE) {
			continue // grew meanwhile
		}
		if err != nil {
			return nil, err
		}
		var out []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				out = append(out, s)
			}
		}
		return out, nil
	}
}

func getXattr(fd int, name string) ([]byte, error) {
	for {
		sz, err := unix.Fgetxattr(fd, name, nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, sz)
		n, err := unix.Fgetxattr(fd, name, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

// inode identifies a file across a crash: recorded in undo data before Do.
type inode struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

func inodeOf(fi os.FileInfo) *inode {
	st := fi.Sys().(*syscall.Stat_t)
	return &inode{Dev: st.Dev, Ino: st.Ino}
}

// keepOriginal saves the regular file at path as bk in the step's
// directory before it is replaced or removed. Where bk can be a hard link
// to the very inode (the state dir on the same file system), it is: the
// original stays exactly as it was — content, owner, mode, ACLs, xattrs,
// times, and its other hard links — and restoring it is a rename. Else bk
// is a whole copy with owner, mode, times and every extended attribute.
// want, if set, is the inode Prepare saw: a different file at path now is
// refused rather than saved.
func keepOriginal(path, bk string, m Meta, want *inode) error {
	in, err := openRegular(path)
	if err != nil {
		return err
	}
	defer in.Close()
	if want != nil {
		fi, err := in.Stat()
		if err != nil {
			return fmt.Errorf("stat %s: %w", path, err)
		}
		if got := inodeOf(fi); *got != *want {
			return fmt.Errorf("%s was replaced since the step was planned (inode %d, planned %d)", path, got.Ino, want.Ino)
		}
	}
	d, err := openDir(filepath.Dir(bk))
	if err != nil {
		return err
	}
	defer d.close()
	err = unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", in.Fd()), d.fd, filepath.Base(bk), unix.AT_SYMLINK_FOLLOW)
	if err == nil {
		return d.sync()
	}
	if errors.Is(err, unix.ENOENT) { // the opened inode has no name left
		return fmt.Errorf("%s was replaced since the step was planned (removed while it was backed up)", path)
	}
	if !errors.Is(err, unix.EXDEV) {
		return fmt.Errorf("keep %s as %s: %w", path, bk, err)
	}
	name, err := d.copyTempFrom(filepath.Base(bk)+".part.", in, m, true)
	if err != nil {
		return err
	}
	if err := d.replace(name, filepath.Base(bk)); err != nil {
		d.remove(name)
		return fmt.Errorf("rename backup: %w", err)
	}
	return nil
}

// handle is a file handle (name_to_handle_at) of a file that has other
// hard links: while any of them lives, the very inode can be opened again
// and linked back, even when the backup had to be a copy on another file
// system.
type handle struct {
	Type  int32  `json:"type"`
	Bytes []byte `json:"bytes"`
}

// handleOf returns path's file handle when it has other hard links (nil
// otherwise, or where the file system has no handles).
func handleOf(path string, fi os.FileInfo) *handle {
	if fi.Sys().(*syscall.Stat_t).Nlink < 2 {
		return nil
	}
	fh, _, err := unix.NameToHandleAt(unix.AT_FDCWD, path, 0)
	if err != nil {
		return nil
	}
	return &handle{Type: fh.Type(), Bytes: fh.Bytes()}
}

// relink links the original inode (found by h, and only if it is still
// the inode want) back at path through a temporary named by tag in d.
func (d *pinnedDir) relink(h *handle, want *inode, path, tag string) error {
	fd, err := unix.OpenByHandleAt(d.fd, unix.NewFileHandle(h.Type, h.Bytes), unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open the original of %s by its handle: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if want == nil || st.Dev != want.Dev || st.Ino != want.Ino || st.Nlink == 0 || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("the original of %s is gone", path)
	}
	for try := 0; try < 16; try++ {
		var b [8]byte
		rand.Read(b[:])
		name := tag + hex.EncodeToString(b[:])
		err := unix.Linkat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), d.fd, name, unix.AT_SYMLINK_FOLLOW)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return fmt.Errorf("link the original of %s back: %w", path, err)
		}
		if err := d.replace(name, filepath.Base(path)); err != nil {
			d.remove(name)
			return err
		}
		return nil
	}
	return fmt.Errorf("link the original of %s back: no free name", path)
}

// restoreOriginal puts the saved bk back at path: by rename where bk is
// on path's file system (the original inode returns, with its other
// links); else, where the file had other links and h finds its inode
// still alive, by linking that inode back; else as a copy (content,
// owner, mode, times, every xattr) through a temporary named by tag.
func restoreOriginal(bk, path, tag string, m Meta, h *handle, want *inode) error {
	d, err := openDir(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.close()
	b, err := openDir(filepath.Dir(bk))
	if err != nil {
		return err
	}
	defer b.close()
	err = unix.Renameat(b.fd, filepath.Base(bk), d.fd, filepath.Base(path))
	if err == nil {
		if err := b.sync(); err != nil {
			return err
		}
		return d.sync()
	}
	if !errors.Is(err, unix.EXDEV) {
		return fmt.Errorf("put %s back: %w", path, err)
	}
	if h != nil && d.relink(h, want, path, tag) == nil {
		return nil
	}
	name, err := d.copyTemp(tag, bk, m, true)
	if err != nil {
		return err
	}
	if err := d.replace(name, filepath.Base(path)); err != nil {
		d.remove(name)
		return err
	}
	return nil
}
