package tree

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// tmpPrefix starts the names of bofh's temporary files in a target; a
// scan never reports them.
const tmpPrefix = ".~bofh~"

// Change is one difference between a tree and a target.
type Change struct {
	Path string `json:"path"`
	// Kind is "added" (in the target only), "removed" (in the tree only)
	// or "changed". In a test-upgrade or diff report, it is from the old
	// version's point of view: "added" is in the new version only (the
	// upgrade creates it), "removed" in the old one only.
	Kind string `json:"kind"`
	// Details says what changed: type, content, mode, owner, symlink,
	// xattrs, device, hardlink.
	Details []string `json:"details,omitempty"`
}

// Diff compares a tree (want) with a target (have). With content set,
// regular files of equal size are compared byte for byte (in parallel);
// otherwise a different mtime counts as changed content (rsync's quick
// check, which misses a file changed without a change of size or mtime:
// never use it to decide what to copy).
func Diff(want, have *Tree, content bool) ([]Change, error) {
	m := cmpQuick
	if content {
		m = cmpContent
	}
	return diff(want, have, m)
}

// How compare decides whether two regular files have the same content.
type cmpMode int

const (
	// cmpQuick: same size and mtime is same content (rsync's quick
	// check). Not safe for a sync: reproducible builds give every file
	// the same mtime.
	cmpQuick cmpMode = iota
	// cmpContent: files of the same size are compared byte for byte.
	cmpContent
	// cmpSync: what a sync needs. Another size or mtime: changed (the
	// file is copied again, which is right either way); the same inode
	// (a hard link between tree and target): identical; otherwise the
	// bytes are compared.
	cmpSync
)

func diff(want, have *Tree, mode cmpMode) ([]Change, error) {
	var out []Change
	type pair struct {
		i    int
		a, b string
		size int64
	}
	var pairs []pair
	for _, w := range want.Entries {
		h := have.Get(w.Rel)
		if h == nil {
			out = append(out, Change{Path: w.Rel, Kind: "removed"})
			continue
		}
		d, maybe := compare(w, h, mode)
		if maybe {
			pairs = append(pairs, pair{i: len(out), a: join(want.Root, w.Rel), b: join(have.Root, h.Rel), size: w.Size})
		}
		out = append(out, Change{Path: w.Rel, Kind: "changed", Details: d})
	}
	for _, h := range have.Entries {
		if want.Get(h.Rel) == nil {
			out = append(out, Change{Path: h.Rel, Kind: "added"})
		}
	}
	if mode == cmpContent {
		// verify and diff compare the hard-link structure; a sync
		// works its hard links out itself (planSync)
		var links []linkPair
		for _, w := range want.Entries {
			if h := have.Get(w.Rel); h != nil && w.Type == TypeFile && h.Type == TypeFile && (w.Nlink > 1 || h.Nlink > 1) {
				links = append(links, linkPair{rel: w.Rel, want: [2]uint64{w.Dev, w.Ino}, have: [2]uint64{h.Dev, h.Ino}})
			}
		}
		out = mergeChanges(out, linkChanges(links))
	}
	if len(pairs) > 0 {
		workers := 2 * runtime.NumCPU()
		if workers > len(pairs) {
			workers = len(pairs)
		}
		ch := make(chan pair)
		var mu sync.Mutex
		var firstErr error
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ba, bb := make([]byte, 128<<10), make([]byte, 128<<10)
				for p := range ch {
					same, err := sameContent(p.a, p.b, p.size, ba, bb)
					mu.Lock()
					if err != nil && firstErr == nil {
						firstErr = err
					}
					if !same {
						out[p.i].Details = append([]string{"content"}, out[p.i].Details...)
					}
					mu.Unlock()
				}
			}()
		}
		for _, p := range pairs {
			ch <- p
		}
		close(ch)
		wg.Wait()
		if firstErr != nil {
			return nil, firstErr
		}
	}
	res := out[:0]
	for _, c := range out {
		if c.Kind != "changed" || len(c.Details) > 0 {
			res = append(res, c)
		}
	}
	sort.SliceStable(res, func(i, j int) bool { return res[i].Path < res[j].Path })
	return res, nil
}

// compare lists the differences between two entries at the same path;
// maybe says the content must still be compared.
func compare(w, h *Entry, mode cmpMode) (d []string, maybe bool) {
	if w.Type != h.Type {
		return []string{"type"}, false
	}
	switch w.Type {
	case TypeFile:
		switch {
		case w.Size != h.Size:
			d = append(d, "content")
		case mode == cmpContent:
			maybe = w.Size > 0
		case w.Mtime != h.Mtime:
			d = append(d, "content")
		case mode == cmpSync:
			maybe = w.Size > 0 && (w.Dev != h.Dev || w.Ino != h.Ino)
		}
	case TypeSymlink:
		if w.Link != h.Link {
			d = append(d, "symlink")
		}
	case TypeChar, TypeBlock:
		if w.Rdev != h.Rdev {
			d = append(d, "device")
		}
	}
	if w.Type != TypeSymlink && w.Mode != h.Mode {
		d = append(d, "mode")
	}
	if w.UID != h.UID || w.GID != h.GID {
		d = append(d, "owner")
	}
	if !xattrsEqual(w.Xattrs, h.Xattrs) {
		d = append(d, "xattrs")
	}
	return d, maybe
}

func has(ds []string, s string) bool {
	for _, d := range ds {
		if d == s {
			return true
		}
	}
	return false
}

// Stats counts what a sync did.
type Stats struct {
	Created int   `json:"created"`
	Updated int   `json:"updated"`
	Meta    int   `json:"meta"`
	Removed int   `json:"removed"`
	Bytes   int64 `json:"bytes"`
	// Kept lists directories not removed because excluded data is in them.
	Kept []string `json:"kept,omitempty"`
}

// syncPlan is what a sync will do, worked out before acting.
type syncPlan struct {
	src, dst *Tree
	changes  []Change
	// pinned names below each root while the plan is applied
	srcPin, dstPin *pinner
}

// planSync works out what makes dstRoot match srcRoot, in one walk of
// both trees. Files alike in size and mtime are compared byte for byte
// (a file rebuilt with the same size and mtime, SOURCE_DATE_EPOCH, must
// not be skipped) unless pairs, when not nil, says the store's from and
// to versions have the same content at the path (see pairCache).
func planSync(srcRoot, dstRoot string, skip func(string, bool) bool, pairs *pairCache) (*syncPlan, error) {
	r, err := walkDiff(srcRoot, dstRoot, skip, cmpSync, true, pairs)
	if err != nil {
		return nil, err
	}
	src, dst, ch := r.want, r.have, r.changes
	p := &syncPlan{src: src, dst: dst}
	// hard links: a member of a group not linked to its leader in the
	// target must be relinked
	leaders := map[[2]uint64]*Entry{}
	changed := map[string]bool{}
	for _, c := range ch {
		changed[c.Path] = true
	}
	var extra []Change
	for _, e := range src.Entries {
		if e.Type != TypeFile || e.Nlink < 2 {
			continue
		}
		k := [2]uint64{e.Dev, e.Ino}
		l, ok := leaders[k]
		if !ok {
			leaders[k] = e
			continue
		}
		hl, hm := dst.Get(l.Rel), dst.Get(e.Rel)
		if changed[l.Rel] || hl == nil || hm == nil || hl.Ino != hm.Ino || hl.Dev != hm.Dev {
			if !changed[e.Rel] {
				extra = append(extra, Change{Path: e.Rel, Kind: "changed", Details: []string{"hardlink"}})
			}
		}
	}
	ch = append(ch, extra...)
	sort.SliceStable(ch, func(i, j int) bool { return ch[i].Path < ch[j].Path })
	p.changes = ch
	return p, nil
}

// paths returns every target path the plan touches, with the parents
// whose times change.
func (p *syncPlan) paths() []string {
	seen := map[string]bool{}
	for _, c := range p.changes {
		seen[c.Path] = true
		if c.Path != "" {
			d := path.Dir(c.Path)
			if d == "." {
				d = ""
			}
			seen[d] = true
		}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// apply carries the plan out on the target.
func (p *syncPlan) apply() (*Stats, error) {
	st := &Stats{}
	dstRoot := p.dst.Root
	// 1. removals, deepest first: paths only in the target, and the old
	// entry of a path whose type changes
	var rm []string
	for _, c := range p.changes {
		if c.Kind == "added" || (c.Kind == "changed" && has(c.Details, "type")) {
			rm = append(rm, c.Path)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(rm)))
	keep := map[string]bool{}
	rmPin, err := newPinner(dstRoot)
	if err != nil {
		return st, err
	}
	defer rmPin.close()
	for _, rel := range rm {
		e := p.dst.Get(rel)
		full, err := rmPin.path(rel)
		if err != nil {
			return st, err
		}
		if e.Type == TypeDir {
			if err := unix.Rmdir(full); err != nil {
				if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
					if p.src.Get(rel) != nil {
						return st, fmt.Errorf("%s: a directory holding excluded data would have to become a %s", join(dstRoot, rel), p.src.Get(rel).Type)
					}
					keep[rel] = true
					st.Kept = append(st.Kept, rel)
					continue
				}
				return st, fmt.Errorf("remove %s: %w", join(dstRoot, rel), err)
			}
		} else if err := unix.Unlink(full); err != nil && !errors.Is(err, unix.ENOENT) {
			return st, fmt.Errorf("remove %s: %w", join(dstRoot, rel), err)
		}
		st.Removed++
	}
	rmPin.close()
	// creations below pin directories made now
	if p.dstPin, err = newPinner(dstRoot); err != nil {
		return st, err
	}
	defer p.dstPin.close()
	if p.srcPin, err = newPinner(p.src.Root); err != nil {
		return st, err
	}
	defer p.srcPin.close()
	// 2. creations and updates: directories first, parents first; then
	// the entries that are not members of a hard-link group, in
	// parallel (each is made at its own temporary name beside its path
	// and renamed into place: no two touch the same name); then the
	// members of hard-link groups in order (a member links to the first
	// one made).
	dirMeta := map[string]bool{}
	var par, seq []Change
	for _, c := range p.changes {
		if c.Kind == "added" {
			continue
		}
		s := p.src.Get(c.Path)
		create := c.Kind == "removed" || has(c.Details, "type")
		if s.Type == TypeDir {
			if create {
				full, err := p.dstPin.path(c.Path)
				if err != nil {
					return st, err
				}
				if err := unix.Mkdir(full, 0o700); err != nil {
					return st, fmt.Errorf("mkdir %s: %w", join(dstRoot, c.Path), err)
				}
				st.Created++
			}
			dirMeta[c.Path] = true
			continue
		}
		if s.Type == TypeFile && s.Nlink > 1 {
			seq = append(seq, c)
		} else {
			par = append(par, c)
		}
	}
	if err := p.applyEntries(par, st); err != nil {
		return st, err
	}
	linkedTo := map[[2]uint64]string{}
	for _, c := range seq {
		s := p.src.Get(c.Path)
		k := [2]uint64{s.Dev, s.Ino}
		if err := p.applyEntry(c, s, linkedTo[k], st); err != nil {
			return st, err
		}
		if linkedTo[k] == "" {
			linkedTo[k] = c.Path
		}
	}
	// leaders that did not change still anchor their groups
	for _, s := range p.src.Entries {
		if s.Type == TypeFile && s.Nlink > 1 {
			k := [2]uint64{s.Dev, s.Ino}
			if linkedTo[k] == "" {
				linkedTo[k] = s.Rel
			}
		}
	}
	// 3. directory metadata and times, deepest first (creating children
	// changed the parents' mtimes)
	for _, rel := range p.paths() {
		if s := p.src.Get(rel); s != nil && s.Type == TypeDir && !keep[rel] {
			dirMeta[rel] = true
		}
	}
	dirs := make([]string, 0, len(dirMeta))
	for d := range dirMeta {
		dirs = append(dirs, d)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	for _, rel := range dirs {
		full, err := p.dstPin.path(rel)
		if err != nil {
			return st, err
		}
		if err := applyMeta(full, p.src.Get(rel)); err != nil {
			return st, fmt.Errorf("%s: %w", join(dstRoot, rel), err)
		}
	}
	return st, syncFS(dstRoot)
}

// applyEntry makes the target's entry at c.Path match the source entry
// s (not a directory): a new copy renamed into place, a hard link to
// linked (the first member made of s's hard-link group, "" if none) or
// metadata only, and counts it in st.
func (p *syncPlan) applyEntry(c Change, s *Entry, linked string, st *Stats) error {
	full, err := p.dstPin.path(c.Path)
	if err != nil {
		return err
	}
	create := c.Kind == "removed" || has(c.Details, "type")
	switch {
	case linked != "" && (create || has(c.Details, "hardlink") || has(c.Details, "content")):
		old, err := p.dstPin.path(linked)
		if err != nil {
			return err
		}
		if err := replaceWith(full, func(tmp string) error { return unix.Link(old, tmp) }); err != nil {
			return fmt.Errorf("%s: %w", join(p.dst.Root, c.Path), err)
		}
		st.Updated++
	case create || has(c.Details, "content") || has(c.Details, "symlink") || has(c.Details, "device") || has(c.Details, "hardlink"):
		if err := replaceWith(full, func(tmp string) error { return makeEntry(p.srcPin, s, tmp) }); err != nil {
			return fmt.Errorf("%s: %w", join(p.dst.Root, c.Path), err)
		}
		if create {
			st.Created++
		} else {
			st.Updated++
		}
		st.Bytes += s.Size
	default:
		if err := applyMeta(full, s); err != nil {
			return fmt.Errorf("%s: %w", join(p.dst.Root, c.Path), err)
		}
		st.Meta++
	}
	return nil
}

// applyEntries runs applyEntry on entries outside hard-link groups with
// a bounded pool of workers; the first error stops the work.
func (p *syncPlan) applyEntries(cs []Change, st *Stats) error {
	if len(cs) == 0 {
		return nil
	}
	nw := scanWorkers()
	if nw > len(cs) {
		nw = len(cs)
	}
	var next atomic.Int64
	var failed atomic.Bool
	errs := make([]error, nw)
	part := make([]Stats, nw)
	var wg sync.WaitGroup
	for w := range nw {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1)) - 1
				if i >= len(cs) {
					return
				}
				if err := p.applyEntry(cs[i], p.src.Get(cs[i].Path), "", &part[w]); err != nil {
					errs[w] = err
					failed.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, x := range part {
		st.Created += x.Created
		st.Updated += x.Updated
		st.Meta += x.Meta
		st.Bytes += x.Bytes
	}
	return errors.Join(errs...)
}

var tmpSeq atomic.Uint64

// replaceWith makes a new entry at a temporary name beside full with
// make, then renames it over full.
func replaceWith(full string, mk func(tmp string) error) error {
	tmp := path.Join(path.Dir(full), tmpPrefix+path.Base(full))
	if len(path.Base(tmp)) > 255 {
		// unique: entries are made in parallel
		tmp = path.Join(path.Dir(full), tmpPrefix+fmt.Sprintf("%d-%d", os.Getpid(), tmpSeq.Add(1)))
	}
	_ = unix.Unlink(tmp)
	if err := mk(tmp); err != nil {
		_ = unix.Unlink(tmp)
		return fmt.Errorf("create %s: %w", full, err)
	}
	if err := unix.Rename(tmp, full); err != nil {
		_ = unix.Unlink(tmp)
		return fmt.Errorf("rename into %s: %w", full, err)
	}
	// rename(2) of two links to one inode does nothing: drop the spare
	_ = unix.Unlink(tmp)
	return nil
}

// makeEntry creates a copy of the source entry s (content, owner, mode,
// xattrs, times) at dst, which must not exist; s.Rel is pinned below src.
func makeEntry(src *pinner, s *Entry, dst string) error { return copyEntry(src, s, dst, false) }

// cloneEntry is makeEntry that shares a regular file's extents with the
// source (FICLONE) where the file system can — a restore point's copy
// costs nothing until one side changes — and copies where it cannot.
func cloneEntry(src *pinner, s *Entry, dst string) error { return copyEntry(src, s, dst, true) }

func copyEntry(src *pinner, s *Entry, dst string, clone bool) error {
	switch s.Type {
	case TypeFile:
		sp, err := src.path(s.Rel)
		if err != nil {
			return err
		}
		in, err := os.OpenFile(sp, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		if !clone || unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) != nil {
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
		}
		if err := out.Close(); err != nil {
			return err
		}
	case TypeSymlink:
		if err := unix.Symlink(s.Link, dst); err != nil {
			return err
		}
	case TypeFifo:
		if err := unix.Mkfifo(dst, 0o600); err != nil {
			return err
		}
	case TypeChar, TypeBlock:
		m := uint32(unix.S_IFCHR)
		if s.Type == TypeBlock {
			m = unix.S_IFBLK
		}
		if err := unix.Mknod(dst, m|0o600, int(s.Rdev)); err != nil {
			return err
		}
	case TypeDir:
		if err := unix.Mkdir(dst, 0o700); err != nil {
			return err
		}
	default:
		return fmt.Errorf("cannot copy a %s", s.Type)
	}
	return applyMeta(dst, s)
}

// applyMeta sets owner, mode, xattrs and times of s on p (not following a
// symlink). Owner first: chown clears set-id bits.
func applyMeta(p string, s *Entry) error {
	if err := unix.Lchown(p, int(s.UID), int(s.GID)); err != nil {
		return fmt.Errorf("chown %s: %w", p, err)
	}
	if s.Type != TypeSymlink {
		if err := chmodNoFollow(p, s.Mode); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
	}
	if err := setXattrs(p, s.Xattrs); err != nil {
		return err
	}
	ts := []unix.Timespec{unix.NsecToTimespec(s.Atime), unix.NsecToTimespec(s.Mtime)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", p, err)
	}
	return nil
}

func setXattrs(p string, want map[string][]byte) error {
	have, err := readXattrs(p)
	if err != nil {
		return err
	}
	for k := range have {
		if _, ok := want[k]; !ok {
			if err := unix.Lremovexattr(p, k); err != nil && !errors.Is(err, unix.ENODATA) {
				return fmt.Errorf("remove xattr %s of %s: %w", k, p, err)
			}
		}
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if hv, ok := have[k]; ok && string(hv) == string(want[k]) {
			continue
		}
		if err := unix.Lsetxattr(p, k, want[k], 0); err != nil {
			return fmt.Errorf("set xattr %s of %s: %w", k, p, err)
		}
	}
	return nil
}

// syncFS flushes the filesystem holding dir (one syncfs instead of an
// fsync per file).
func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Syncfs(fd); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}
