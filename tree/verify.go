package tree

import (
	"errors"
	"fmt"
	"os"
	"sort"

	"golang.org/x/sys/unix"
)

// Sides of a directory walked by diffContent.
const (
	sideBoth = iota // in both trees: compare
	sideWant        // in the tree only: everything below is "removed"
	sideHave        // in the target only: everything below is "added"
)

type diffJob struct {
	rel  string
	side int
}

// diffWorker is one worker's reusable state.
type diffWorker struct {
	sb         *scanBufs
	entsH      []dirent
	bufA, bufB []byte
	out        []Change
	links      []linkPair
	mode       cmpMode
	// collect: keep every entry met, for the trees a sync plan needs
	collect            bool
	wantEnts, haveEnts []*Entry
	// pairs (sync only, may be nil): what is known of the store's from
	// and to versions; aDir is the from tree's directory being compared
	pairs *pairCache
	aDir  int
}

// keepPair records the entries of a path in both trees when collecting.
func (w *diffWorker) keepPair(we, he *Entry) {
	if w.collect {
		w.wantEnts = append(w.wantEnts, we)
		w.haveEnts = append(w.haveEnts, he)
	}
}

// record notes what compare found for a path in both trees, and its
// inodes when a regular file has more than one link (hard-link check).
func (w *diffWorker) record(rel string, we, he *Entry, d []string) {
	if we.Type == TypeFile && he.Type == TypeFile && (we.Nlink > 1 || he.Nlink > 1) {
		w.links = append(w.links, linkPair{rel: rel, want: [2]uint64{we.Dev, we.Ino}, have: [2]uint64{he.Dev, he.Ino}})
	}
	if len(d) > 0 {
		w.out = append(w.out, Change{Path: rel, Kind: "changed", Details: d})
	}
}

// keepEntry records an entry of one side when collecting.
func (w *diffWorker) keepEntry(side int, e *Entry) {
	if side == sideWant {
		w.wantEnts = append(w.wantEnts, e)
	} else {
		w.haveEnts = append(w.haveEnts, e)
	}
}

// linkPair is a regular file present in both trees with more than one
// link on either side: its inode in each, for the hard-link check.
type linkPair struct {
	rel        string
	want, have [2]uint64
}

// linkChanges compares the hard-link structure of the files present in
// both trees: a path whose group (the other paths of the tree sharing
// its inode) differs between want and have is "changed" with detail
// "hardlink". Links to paths outside the trees do not count.
func linkChanges(ps []linkPair) []Change {
	if len(ps) == 0 {
		return nil
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].rel < ps[j].rel })
	want := map[[2]uint64][]string{}
	have := map[[2]uint64][]string{}
	for _, p := range ps {
		want[p.want] = append(want[p.want], p.rel)
		have[p.have] = append(have[p.have], p.rel)
	}
	var out []Change
	for _, p := range ps {
		a, b := want[p.want], have[p.have]
		same := len(a) == len(b)
		for i := 0; same && i < len(a); i++ {
			same = a[i] == b[i]
		}
		if !same {
			out = append(out, Change{Path: p.rel, Kind: "changed", Details: []string{"hardlink"}})
		}
	}
	return out
}

// diffContent returns what Diff(Scan(want), Scan(have), true) returns
// (skip must be safe for concurrent use), in one parallel walk of both
// trees: each directory pair is read once, entries are stat'ed and
// opened relative to their directory, and a regular file of the same
// size on both sides is compared byte for byte right away, both read to
// their end.
func diffContent(wantRoot, haveRoot string, skip func(rel string, isDir bool) bool) ([]Change, error) {
	r, err := walkDiff(wantRoot, haveRoot, skip, cmpContent, false, nil)
	if err != nil {
		return nil, err
	}
	return r.changes, nil
}

// walkResult is what walkDiff found.
type walkResult struct {
	changes []Change
	// want and have are the two trees, with collect only
	want, have *Tree
}

// walkDiff is the walk behind diffContent, comparing regular files as
// mode says (cmpContent: verify and diff, with the hard-link structure;
// cmpSync: what a sync copies), and with collect set also returning both
// trees as Scan would (for a sync plan), from the same single walk.
//
// In sync mode, pairs (may be nil) lets a file pass on the quick check
// when the store's from and to versions have the same content at its
// path (see pairCache); without it every file of the same size and
// mtime is compared byte for byte.
func walkDiff(wantRoot, haveRoot string, skip func(rel string, isDir bool) bool, mode cmpMode, collect bool, pairs *pairCache) (*walkResult, error) {
	for _, r := range []string{wantRoot, haveRoot} {
		if err := realDir(r); err != nil {
			return nil, err
		}
	}
	wr, err := lstatEntry(wantRoot, "")
	if err != nil {
		return nil, err
	}
	hr, err := lstatEntry(haveRoot, "")
	if err != nil {
		return nil, err
	}
	var out []Change
	if d, _ := compare(wr, hr, mode); len(d) > 0 {
		out = append(out, Change{Path: "", Kind: "changed", Details: d})
	}
	wfd, err := openDir(wantRoot)
	if err != nil {
		return nil, err
	}
	defer unix.Close(wfd)
	hfd, err := openDir(haveRoot)
	if err != nil {
		return nil, err
	}
	defer unix.Close(hfd)
	nw := scanWorkers()
	ws := make([]*diffWorker, nw)
	for i := range ws {
		ws[i] = &diffWorker{sb: newScanBufs(), bufA: make([]byte, 128<<10), bufB: make([]byte, 128<<10), mode: mode, collect: collect, aDir: -1}
		if mode == cmpSync {
			ws[i].pairs = pairs
		}
	}
	err = walkDirs(nw, []diffJob{{"", sideBoth}}, func(w int, j diffJob) ([]diffJob, error) {
		switch j.side {
		case sideWant:
			return ws[w].one(wfd, wantRoot, j, "removed", skip)
		case sideHave:
			return ws[w].one(hfd, haveRoot, j, "added", skip)
		}
		return ws[w].both(wfd, hfd, wantRoot, haveRoot, j.rel, skip)
	})
	if err != nil {
		return nil, err
	}
	var links []linkPair
	for _, w := range ws {
		out = append(out, w.out...)
		links = append(links, w.links...)
	}
	if mode == cmpContent {
		out = mergeChanges(out, linkChanges(links))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	res := &walkResult{changes: out}
	if collect {
		res.want = collected(wantRoot, wr, ws, func(w *diffWorker) []*Entry { return w.wantEnts })
		res.have = collected(haveRoot, hr, ws, func(w *diffWorker) []*Entry { return w.haveEnts })
	}
	return res, nil
}

// collected is the tree of one side's entries gathered by the workers.
func collected(root string, re *Entry, ws []*diffWorker, side func(*diffWorker) []*Entry) *Tree {
	n := 1
	for _, w := range ws {
		n += len(side(w))
	}
	t := &Tree{Root: root, Entries: make([]*Entry, 0, n), byRel: make(map[string]*Entry, n)}
	t.Entries = append(t.Entries, re)
	for _, w := range ws {
		t.Entries = append(t.Entries, side(w)...)
	}
	sort.Slice(t.Entries, func(i, j int) bool { return t.Entries[i].Rel < t.Entries[j].Rel })
	for _, e := range t.Entries {
		t.byRel[e.Rel] = e
	}
	return t
}

// mergeChanges adds extra to out: the details of a path already
// "changed" in out are extended, other paths appended.
func mergeChanges(out, extra []Change) []Change {
	if len(extra) == 0 {
		return out
	}
	at := make(map[string]int, len(extra))
	for _, c := range extra {
		at[c.Path] = -1
	}
	for i, c := range out {
		if _, ok := at[c.Path]; ok && c.Kind == "changed" {
			at[c.Path] = i
		}
	}
	for _, c := range extra {
		if i := at[c.Path]; i >= 0 {
			out[i].Details = append(out[i].Details, c.Details...)
			continue
		}
		out = append(out, c)
	}
	return out
}

func childRel(rel, name string) string {
	if rel == "" {
		return name
	}
	return rel + "/" + name
}

// isDirAt says whether a directory entry is a directory, from its d_type
// or, when the filesystem gives none, from fstatat.
func isDirAt(dirfd int, de dirent, root, rel string) (bool, error) {
	if de.typ != unix.DT_UNKNOWN {
		return de.typ == unix.DT_DIR, nil
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, de.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return false, fmt.Errorf("lstat %s: %w", join(root, rel), err)
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}

// one lists a directory found in one tree only: every entry below it is
// a change of the given kind.
func (w *diffWorker) one(rootfd int, root string, j diffJob, kind string, skip func(string, bool) bool) ([]diffJob, error) {
	dir := join(root, j.rel)
	fd, err := openSub(rootfd, root, j.rel)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	w.sb.ents, err = readDir(fd, w.sb.dirent, w.sb.ents[:0])
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", dir, err)
	}
	var subs []diffJob
	for _, de := range w.sb.ents {
		crel := childRel(j.rel, de.name)
		isDir, err := isDirAt(fd, de, root, crel)
		if err != nil {
			return nil, err
		}
		if skip != nil && skip(crel, isDir) {
			continue
		}
		if w.collect {
			e, err := w.entry(fd, root, crel, de.name)
			if err != nil {
				return nil, err
			}
			w.keepEntry(j.side, e)
			isDir = e.Type == TypeDir
		}
		w.out = append(w.out, Change{Path: crel, Kind: kind})
		if isDir {
			subs = append(subs, diffJob{crel, j.side})
		}
	}
	return subs, nil
}

// both compares a directory present in both trees.
func (w *diffWorker) both(wfd, hfd int, wantRoot, haveRoot, rel string, skip func(string, bool) bool) ([]diffJob, error) {
	dw, dh := join(wantRoot, rel), join(haveRoot, rel)
	fw, err := openSub(wfd, wantRoot, rel)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fw)
	fh, err := openSub(hfd, haveRoot, rel)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fh)
	if w.sb.ents, err = readDir(fw, w.sb.dirent, w.sb.ents[:0]); err != nil {
		return nil, fmt.Errorf("read directory %s: %w", dw, err)
	}
	if w.entsH, err = readDir(fh, w.sb.dirent, w.entsH[:0]); err != nil {
		return nil, fmt.Errorf("read directory %s: %w", dh, err)
	}
	if w.pairs != nil {
		w.aDir = w.pairs.openFromDir(rel)
		if w.aDir >= 0 {
			defer func() { unix.Close(w.aDir); w.aDir = -1 }()
		}
	}
	ew, eh := w.sb.ents, w.entsH
	byName := func(es []dirent) func(i, j int) bool { return func(i, j int) bool { return es[i].name < es[j].name } }
	sort.Slice(ew, byName(ew))
	sort.Slice(eh, byName(eh))
	// keep is an entry of one side, after skip
	keep := func(fd int, root string, de dirent) (bool, bool, error) {
		crel := childRel(rel, de.name)
		isDir, err := isDirAt(fd, de, root, crel)
		if err != nil {
			return false, false, err
		}
		return skip == nil || !skip(crel, isDir), isDir, nil
	}
	var subs []diffJob
	i, k := 0, 0
	for i < len(ew) || k < len(eh) {
		var a, b *dirent
		switch {
		case k >= len(eh) || (i < len(ew) && ew[i].name < eh[k].name):
			a = &ew[i]
			i++
		case i >= len(ew) || eh[k].name < ew[i].name:
			b = &eh[k]
			k++
		default:
			a, b = &ew[i], &eh[k]
			i++
			k++
		}
		aDir, bDir := false, false
		if a != nil {
			ok, d, err := keep(fw, wantRoot, *a)
			if err != nil {
				return nil, err
			}
			if !ok {
				a = nil
			}
			aDir = d
		}
		if b != nil {
			ok, d, err := keep(fh, haveRoot, *b)
			if err != nil {
				return nil, err
			}
			if !ok {
				b = nil
			}
			bDir = d
		}
		switch {
		case a == nil && b == nil:
			continue
		case b == nil:
			crel := childRel(rel, a.name)
			if w.collect {
				e, err := w.entry(fw, wantRoot, crel, a.name)
				if err != nil {
					return nil, err
				}
				w.keepEntry(sideWant, e)
				aDir = e.Type == TypeDir
			}
			w.out = append(w.out, Change{Path: crel, Kind: "removed"})
			if aDir {
				subs = append(subs, diffJob{crel, sideWant})
			}
			continue
		case a == nil:
			crel := childRel(rel, b.name)
			if w.collect {
				e, err := w.entry(fh, haveRoot, crel, b.name)
				if err != nil {
					return nil, err
				}
				w.keepEntry(sideHave, e)
				bDir = e.Type == TypeDir
			}
			w.out = append(w.out, Change{Path: crel, Kind: "added"})
			if bDir {
				subs = append(subs, diffJob{crel, sideHave})
			}
			continue
		}
		crel := childRel(rel, a.name)
		if a.typ == unix.DT_REG && b.typ == unix.DT_REG && w.aDir >= 0 {
			done, err := w.trustedPair(fw, fh, wantRoot, haveRoot, crel, a.name)
			if err != nil {
				return nil, err
			}
			if done {
				continue
			}
		}
		if a.typ == unix.DT_REG && b.typ == unix.DT_REG {
			done, err := w.regPair(fw, fh, wantRoot, haveRoot, crel, a.name)
			if err != nil {
				return nil, err
			}
			if done {
				continue
			}
		}
		we, err := w.entry(fw, wantRoot, crel, a.name)
		if err != nil {
			return nil, err
		}
		he, err := w.entry(fh, haveRoot, crel, b.name)
		if err != nil {
			return nil, err
		}
		w.keepPair(we, he)
		d, maybe := compare(we, he, w.mode)
		if maybe {
			same, err := sameContentAt(fw, a.name, wantRoot, crel, fh, b.name, haveRoot, crel, we.Size, w.bufA, w.bufB)
			if err != nil {
				return nil, err
			}
			if !same {
				d = append([]string{"content"}, d...)
			}
		}
		switch {
		case we.Type == TypeDir && he.Type == TypeDir:
			subs = append(subs, diffJob{crel, sideBoth})
		case we.Type == TypeDir:
			subs = append(subs, diffJob{crel, sideWant})
		case he.Type == TypeDir:
			subs = append(subs, diffJob{crel, sideHave})
		}
		w.record(crel, we, he, d)
	}
	return subs, nil
}

// entry stats name in the directory open at dirfd.
func (w *diffWorker) entry(dirfd int, root, rel, name string) (*Entry, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, fmt.Errorf("lstat %s: %w", join(root, rel), err)
	}
	return entryAt(dirfd, root, rel, name, &st, w.sb)
}

// regPair compares two entries that getdents says are regular files,
// working on open descriptors: one open each, then fstat, flistxattr
// and the content read on the descriptor, with no further lookup of the
// names. It returns false, having changed nothing, when either is not a
// regular file after all (replaced since the directory was read): the
// caller compares them by name then.
func (w *diffWorker) regPair(fw, fh int, wantRoot, haveRoot, rel, name string) (bool, error) {
	fa, err := openReadAt(fw, name)
	if err != nil {
		return false, &os.PathError{Op: "open", Path: join(wantRoot, rel), Err: err}
	}
	defer unix.Close(fa)
	fb, err := openReadAt(fh, name)
	if err != nil {
		return false, &os.PathError{Op: "open", Path: join(haveRoot, rel), Err: err}
	}
	defer unix.Close(fb)
	var sa, sb unix.Stat_t
	if err := unix.Fstat(fa, &sa); err != nil {
		return false, &os.PathError{Op: "fstat", Path: join(wantRoot, rel), Err: err}
	}
	if err := unix.Fstat(fb, &sb); err != nil {
		return false, &os.PathError{Op: "fstat", Path: join(haveRoot, rel), Err: err}
	}
	if sa.Mode&unix.S_IFMT != unix.S_IFREG || sb.Mode&unix.S_IFMT != unix.S_IFREG {
		return false, nil
	}
	we, he := statEntry(rel, &sa), statEntry(rel, &sb)
	if we.Xattrs, err = w.fdXattrs(fa, wantRoot, rel); err != nil {
		return false, err
	}
	if he.Xattrs, err = w.fdXattrs(fb, haveRoot, rel); err != nil {
		return false, err
	}
	w.keepPair(&we, &he)
	d, maybe := compare(&we, &he, w.mode)
	if maybe && w.aDir >= 0 {
		// the quick check passed: the file is as the store's versions
		// say, unless they differ at this path
		if w.pairs.sameAsFrom(w.aDir, name, rel, fa, &sa, w.bufA, w.bufB) {
			maybe = false
		} else if _, err := unix.Seek(fa, 0, 0); err != nil {
			return false, &os.PathError{Op: "seek", Path: join(wantRoot, rel), Err: err}
		}
	}
	if maybe {
		same, err := sameContentFD(fa, fb, join(wantRoot, rel), join(haveRoot, rel), we.Size, w.bufA, w.bufB)
		if err != nil {
			return false, err
		}
		if !same {
			d = append([]string{"content"}, d...)
		}
	}
	w.record(rel, &we, &he, d)
	return true, nil
}

// fdXattrs reads the xattrs of the file open at fd (nil when it has
// none, the usual case: one flistxattr).
func (w *diffWorker) fdXattrs(fd int, root, rel string) (map[string][]byte, error) {
	n, err := unix.Flistxattr(fd, w.sb.xattr)
	switch {
	case errors.Is(err, unix.ENOTSUP):
		return nil, nil
	case err != nil && !errors.Is(err, unix.ERANGE):
		return nil, fmt.Errorf("list xattrs of %s: %w", join(root, rel), err)
	case n == 0 && err == nil:
		return nil, nil
	}
	// some xattrs (rare): read them all
	return readXattrs(join(root, rel))
}

// trustedPair handles, with stats alone, a regular-file pair the pair
// cache vouches for: the store's from and to files at rel had the same
// content and still have the signatures they had then, and the target's
// file passes the quick check. It returns false, having recorded
// nothing, in every other case (the caller then opens both).
func (w *diffWorker) trustedPair(fw, fh int, wantRoot, haveRoot, rel, name string) (bool, error) {
	e, ok := w.pairs.get(rel)
	if !ok || !e.Same {
		return false, nil
	}
	var sb, st, sa unix.Stat_t
	if unix.Fstatat(fw, name, &sb, unix.AT_SYMLINK_NOFOLLOW) != nil || sb.Mode&unix.S_IFMT != unix.S_IFREG || sigOf(&sb) != e.B {
		return false, nil
	}
	if unix.Fstatat(w.aDir, name, &sa, unix.AT_SYMLINK_NOFOLLOW) != nil || sa.Mode&unix.S_IFMT != unix.S_IFREG || sigOf(&sa) != e.A {
		return false, nil
	}
	if unix.Fstatat(fh, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG ||
		st.Size != sb.Size || st.Mtim != sb.Mtim {
		return false, nil
	}
	we, err := entryAt(fw, wantRoot, rel, name, &sb, w.sb)
	if err != nil {
		return false, err
	}
	he, err := entryAt(fh, haveRoot, rel, name, &st, w.sb)
	if err != nil {
		return false, err
	}
	w.keepPair(we, he)
	d, _ := compare(we, he, w.mode) // the content is vouched for
	w.record(rel, we, he, d)
	return true, nil
}
