package tree

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// scanWorkers is how many directories are read at once by a parallel
// scan: a few per core, so one waiting on the disk does not idle a core.
func scanWorkers() int {
	n := 2 * runtime.GOMAXPROCS(0)
	if n < 2 {
		n = 2
	}
	return n
}

// dirPool runs fn on every directory of a tree with a bounded number of
// workers. fn returns the subdirectories to visit (relative paths). The
// first error stops the walk (directories already started finish).
type dirPool[T any] struct {
	mu     sync.Mutex
	cond   *sync.Cond
	queue  []T
	active int
	err    error
}

func walkDirs[T any](workers int, start []T, fn func(w int, job T) ([]T, error)) error {
	p := &dirPool[T]{queue: append([]T(nil), start...)}
	p.cond = sync.NewCond(&p.mu)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p.mu.Lock()
				for len(p.queue) == 0 && p.active > 0 && p.err == nil {
					p.cond.Wait()
				}
				if len(p.queue) == 0 || p.err != nil {
					p.cond.Broadcast()
					p.mu.Unlock()
					return
				}
				rel := p.queue[len(p.queue)-1]
				p.queue = p.queue[:len(p.queue)-1]
				p.active++
				p.mu.Unlock()
				subs, err := fn(w, rel)
				p.mu.Lock()
				p.active--
				if err != nil && p.err == nil {
					p.err = err
				}
				p.queue = append(p.queue, subs...)
				p.cond.Broadcast()
				p.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return p.err
}

// dirent is one name of a directory with its d_type.
type dirent struct {
	name string
	typ  uint8
}

// readDir reads every entry of the directory open at fd (but "." and
// "..") with getdents64 into buf, appending to ents.
func readDir(fd int, buf []byte, ents []dirent) ([]dirent, error) {
	for {
		n, err := unix.ReadDirent(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return ents, err
		}
		if n <= 0 {
			return ents, nil
		}
		b := buf[:n]
		for len(b) > 0 {
			// struct linux_dirent64 { u64 ino; s64 off; u16 reclen; u8 type; char name[]; }
			reclen := int(*(*uint16)(unsafe.Pointer(&b[16])))
			if reclen == 0 || reclen > len(b) {
				return ents, errors.New("getdents64: bad record length")
			}
			typ := b[18]
			nb := b[19:reclen]
			l := 0
			for l < len(nb) && nb[l] != 0 {
				l++
			}
			name := string(nb[:l])
			b = b[reclen:]
			if name == "." || name == ".." {
				continue
			}
			ents = append(ents, dirent{name: name, typ: typ})
		}
	}
}

// openDir opens a directory of a tree, never following a symlink at its
// last component.
func openDir(p string) (int, error) {
	for {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: p, Err: err}
		}
		return fd, nil
	}
}

// noOpenat2 is set once the kernel said it has no openat2(2) (before
// Linux 5.6).
var noOpenat2 atomic.Bool

// openSub opens the directory rel below the directory open at rootfd
// (root is its path, for errors) without following a symlink anywhere
// on the way: openat2 with RESOLVE_NO_SYMLINKS|RESOLVE_BENEATH, or one
// O_NOFOLLOW openat per component where the kernel lacks openat2. A
// directory swapped for a symlink during a walk is an error (ELOOP or
// ENOTDIR), never a way out of the tree.
func openSub(rootfd int, root, rel string) (int, error) {
	if rel == "" {
		rel = "."
	}
	flags := uint64(unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC)
	if !noOpenat2.Load() {
		how := unix.OpenHow{Flags: flags, Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_BENEATH}
		for {
			fd, err := unix.Openat2(rootfd, rel, &how)
			switch err {
			case nil:
				return fd, nil
			case unix.EINTR, unix.EAGAIN:
				continue
			case unix.ENOSYS:
				noOpenat2.Store(true)
			default:
				return -1, &os.PathError{Op: "open", Path: join(root, rel), Err: err}
			}
			break
		}
	}
	fd, err := unix.Dup(rootfd)
	if err != nil {
		return -1, err
	}
	for _, name := range strings.Split(rel, "/") {
		if name == "." {
			continue
		}
		nfd, err := unix.Openat(fd, name, int(flags), 0)
		for err == unix.EINTR {
			nfd, err = unix.Openat(fd, name, int(flags), 0)
		}
		unix.Close(fd)
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: join(root, rel), Err: err}
		}
		fd = nfd
	}
	return fd, nil
}

// scanBufs are one worker's reusable buffers.
type scanBufs struct {
	dirent []byte
	ents   []dirent
	xattr  []byte
	link   []byte
	out    []*Entry
}

func newScanBufs() *scanBufs {
	return &scanBufs{dirent: make([]byte, 32<<10), xattr: make([]byte, 1024), link: make([]byte, 4096)}
}

// scanFast is Scan with the directories read in parallel and entries
// stat'ed relative to their directory. skip must be safe for concurrent
// use and must not depend on the order of the calls. It returns the same
// tree as Scan.
func scanFast(root string, skip func(rel string, isDir bool) bool) (*Tree, error) {
	if err := realDir(root); err != nil {
		return nil, err
	}
	re, err := lstatEntry(root, "")
	if err != nil {
		return nil, err
	}
	if re.Type != TypeDir {
		return nil, fmt.Errorf("%s is not a directory", root)
	}
	rootfd, err := openDir(root)
	if err != nil {
		return nil, err
	}
	defer unix.Close(rootfd)
	nw := scanWorkers()
	bufs := make([]*scanBufs, nw)
	for i := range bufs {
		bufs[i] = newScanBufs()
	}
	err = walkDirs(nw, []string{""}, func(w int, rel string) ([]string, error) {
		b := bufs[w]
		dir := join(root, rel)
		fd, err := openSub(rootfd, root, rel)
		if err != nil {
			return nil, err
		}
		defer unix.Close(fd)
		b.ents, err = readDir(fd, b.dirent, b.ents[:0])
		if err != nil {
			return nil, fmt.Errorf("read directory %s: %w", dir, err)
		}
		var subs []string
		for _, de := range b.ents {
			crel := de.name
			if rel != "" {
				crel = rel + "/" + de.name
			}
			var st unix.Stat_t
			statted := false
			isDir := de.typ == unix.DT_DIR
			if de.typ == unix.DT_UNKNOWN {
				if err := unix.Fstatat(fd, de.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					return nil, &os.PathError{Op: "lstat", Path: join(root, crel), Err: err}
				}
				statted = true
				isDir = st.Mode&unix.S_IFMT == unix.S_IFDIR
			}
			if skip != nil && skip(crel, isDir) {
				continue
			}
			if !statted {
				if err := unix.Fstatat(fd, de.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					return nil, &os.PathError{Op: "lstat", Path: join(root, crel), Err: err}
				}
			}
			e, err := entryAt(fd, root, crel, de.name, &st, b)
			if err != nil {
				return nil, err
			}
			b.out = append(b.out, e)
			if e.Type == TypeDir {
				subs = append(subs, crel)
			}
		}
		return subs, nil
	})
	if err != nil {
		return nil, err
	}
	n := 1
	for _, b := range bufs {
		n += len(b.out)
	}
	t := &Tree{Root: root, Entries: make([]*Entry, 0, n), byRel: make(map[string]*Entry, n)}
	t.Entries = append(t.Entries, re)
	for _, b := range bufs {
		t.Entries = append(t.Entries, b.out...)
	}
	sort.Slice(t.Entries, func(i, j int) bool { return t.Entries[i].Rel < t.Entries[j].Rel })
	for _, e := range t.Entries {
		t.byRel[e.Rel] = e
	}
	return t, nil
}

// statEntry is the entry a stat describes (no symlink target, no xattrs).
func statEntry(rel string, st *unix.Stat_t) Entry {
	return Entry{Rel: rel, Type: typeOf(st.Mode), Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid,
		Size: st.Size, Mtime: st.Mtim.Nano(), Atime: st.Atim.Nano(), Rdev: st.Rdev, Dev: st.Dev, Ino: st.Ino, Nlink: st.Nlink}
}

// entryAt makes the entry of name in the directory open at dirfd from
// its stat, reading the symlink target and xattrs.
func entryAt(dirfd int, root, rel, name string, st *unix.Stat_t, b *scanBufs) (*Entry, error) {
	se := statEntry(rel, st)
	e := &se
	if e.Type == TypeSymlink {
		for {
			n, err := unix.Readlinkat(dirfd, name, b.link)
			if err != nil {
				return nil, &os.PathError{Op: "readlink", Path: join(root, rel), Err: err}
			}
			if n < len(b.link) {
				e.Link = string(b.link[:n])
				break
			}
			b.link = make([]byte, 2*len(b.link))
		}
	}
	n, err := listxattrAt(dirfd, name, root, rel, b.xattr)
	switch {
	case errors.Is(err, unix.ENOTSUP):
	case err != nil && !errors.Is(err, unix.ERANGE):
		return nil, fmt.Errorf("list xattrs of %s: %w", join(root, rel), err)
	case n > 0 || err != nil:
		// some xattrs (rare): read them by path
		if e.Xattrs, err = readXattrs(join(root, rel)); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// noListxattrat is set once the kernel said it has no listxattrat(2)
// (before Linux 6.13).
var noListxattrat atomic.Bool

// listxattrAt lists the xattr names of name in the directory open at
// dirfd without following a symlink: listxattrat(2) where the kernel
// has it (no path walk from the root), else llistxattr on the full path.
func listxattrAt(dirfd int, name, root, rel string, buf []byte) (int, error) {
	if !noListxattrat.Load() {
		nb, err := unix.BytePtrFromString(name)
		if err != nil {
			return 0, err
		}
		for {
			r, _, e := unix.Syscall6(unix.SYS_LISTXATTRAT, uintptr(dirfd), uintptr(unsafe.Pointer(nb)), unix.AT_SYMLINK_NOFOLLOW,
				uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0)
			switch e {
			case 0:
				return int(r), nil
			case unix.EINTR:
				continue
			case unix.ENOSYS:
				noListxattrat.Store(true)
			default:
				return 0, e
			}
			break
		}
	}
	return unix.Llistxattr(join(root, rel), buf)
}

// openRead opens a file of a tree for reading without following a
// symlink, without updating its access time when allowed (root, owner),
// and never blocking on a FIFO swapped in meanwhile.
func openRead(p string) (int, error) {
	fd, err := openReadAt(unix.AT_FDCWD, p)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return fd, nil
}

// openReadAt is openRead of name in the directory open at dirfd.
func openReadAt(dirfd int, name string) (int, error) {
	flags := unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOATIME
	for {
		fd, err := unix.Openat(dirfd, name, flags, 0)
		switch {
		case err == nil:
			return fd, nil
		case err == unix.EINTR:
			continue
		case err == unix.EPERM && flags&unix.O_NOATIME != 0:
			flags &^= unix.O_NOATIME
			continue
		}
		return -1, err
	}
}

// readOnce is one read(2), retried on EINTR.
func readOnce(fd int, buf []byte) (int, error) {
	for {
		n, err := unix.Read(fd, buf)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// readFull reads into buf until it is full or at end of file.
func readFull(fd int, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}

// sameContent compares two regular files' content byte for byte, reading
// both to their end with the caller's buffers. size is the size both had
// when stat'ed: a file smaller than the buffers is read with one read of
// size+1 bytes, which returns size bytes at the end of the file (a read
// of a regular file is short only there), saving the read that returns
// 0; any other count falls back to reading until 0.
func sameContent(a, b string, size int64, bufA, bufB []byte) (bool, error) {
	return sameContentAt(unix.AT_FDCWD, a, a, "", unix.AT_FDCWD, b, b, "", size, bufA, bufB)
}

// sameContentAt is sameContent for name na in the directory open at dfa
// (path rootA/relA, for errors) and nb in dfb.
func sameContentAt(dfa int, na, rootA, relA string, dfb int, nb, rootB, relB string, size int64, bufA, bufB []byte) (bool, error) {
	fa, err := openReadAt(dfa, na)
	if err != nil {
		return false, &os.PathError{Op: "open", Path: join(rootA, relA), Err: err}
	}
	defer unix.Close(fa)
	fb, err := openReadAt(dfb, nb)
	if err != nil {
		return false, &os.PathError{Op: "open", Path: join(rootB, relB), Err: err}
	}
	defer unix.Close(fb)
	return sameContentFD(fa, fb, join(rootA, relA), join(rootB, relB), size, bufA, bufB)
}

// sameContentFD is sameContent of two files open at fa and fb (named pa
// and pb in errors), read from their current offsets.
func sameContentFD(fa, fb int, pa, pb string, size int64, bufA, bufB []byte) (bool, error) {
	errA := func(op string, err error) error { return &os.PathError{Op: op, Path: pa, Err: err} }
	errB := func(op string, err error) error { return &os.PathError{Op: op, Path: pb, Err: err} }
	if size >= 0 && size < int64(len(bufA)) && size < int64(len(bufB)) {
		ra, err := readOnce(fa, bufA[:size+1])
		if err != nil {
			return false, errA("read", err)
		}
		rb, err := readOnce(fb, bufB[:size+1])
		if err != nil {
			return false, errB("read", err)
		}
		if ra == int(size) && rb == int(size) {
			return string(bufA[:ra]) == string(bufB[:rb]), nil
		}
		// a size changed meanwhile: compare from the start, to the end
		if _, err := unix.Seek(fa, 0, 0); err != nil {
			return false, errA("seek", err)
		}
		if _, err := unix.Seek(fb, 0, 0); err != nil {
			return false, errB("seek", err)
		}
	}
	for {
		ra, err := readFull(fa, bufA)
		if err != nil {
			return false, errA("read", err)
		}
		rb, err := readFull(fb, bufB)
		if err != nil {
			return false, errB("read", err)
		}
		if ra != rb || string(bufA[:ra]) != string(bufB[:rb]) {
			return false, nil
		}
		if ra < len(bufA) {
			return true, nil // both at their end
		}
	}
}
