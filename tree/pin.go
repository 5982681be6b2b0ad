package tree

import (
	"fmt"
	"path"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// pinner names paths below a root through descriptors of their parent
// directories, each opened with no symlink on the way (openSub): a
// directory of the root swapped for a symlink while bofh works in it
// never leads a write out of the root. The name it returns for rel is
// /proc/self/fd/<parent>/<base>: the kernel resolves the parent through
// the descriptor and only the last component by name, which the caller
// handles without following (l* calls, O_NOFOLLOW, AT_SYMLINK_NOFOLLOW).
//
// A pinner caches the descriptors of parents; a directory removed
// while pinned stays pinned, so removals (deepest first) and creations
// (parents first) use pinners of their own.
type pinner struct {
	root   string
	rootfd int
	mu     sync.Mutex
	dirs   map[string]int
}

// newPinner opens root (which must be a directory, not a symlink).
func newPinner(root string) (*pinner, error) {
	fd, err := openDir(root)
	if err != nil {
		return nil, err
	}
	return &pinner{root: root, rootfd: fd, dirs: map[string]int{}}, nil
}

// path returns the pinned name of rel; the root itself ("") is its own
// path, the one the caller validated.
func (p *pinner) path(rel string) (string, error) {
	if rel == "" {
		return p.root, nil
	}
	dir, base := path.Split(rel)
	dir = path.Clean(dir)
	if dir == "." {
		dir = ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fd, ok := p.dirs[dir]
	if !ok {
		var err error
		if fd, err = openSub(p.rootfd, p.root, dir); err != nil {
			return "", fmt.Errorf("%s: parent directory: %w", join(p.root, rel), err)
		}
		p.dirs[dir] = fd
	}
	return "/proc/self/fd/" + strconv.Itoa(fd) + "/" + base, nil
}

// close releases every descriptor.
func (p *pinner) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, fd := range p.dirs {
		unix.Close(fd)
	}
	p.dirs = nil
	unix.Close(p.rootfd)
}

// chmodNoFollow sets the mode of p, never through a symlink at its last
// component: fchmodat2(AT_SYMLINK_NOFOLLOW) where the kernel has it
// (Linux 6.6), else a chmod through an O_PATH descriptor of p itself.
func chmodNoFollow(p string, mode uint32) error {
	err := unix.Fchmodat(unix.AT_FDCWD, p, mode, unix.AT_SYMLINK_NOFOLLOW)
	if err != unix.EOPNOTSUPP && err != unix.ENOSYS {
		return err
	}
	// no fchmodat2, or p is a symlink (which has no mode of its own)
	fd, err := unix.Open(p, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return fmt.Errorf("%s is a symlink now: %w", p, unix.ELOOP)
	}
	return unix.Chmod("/proc/self/fd/"+strconv.Itoa(fd), mode)
}
