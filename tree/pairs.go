package tree

import (
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bofhkit/bofh/internal/fsutil"
)

// An upgrade from version A to version B copies a target file when its
// type, size or mtime differs from B's (the quick check), and also when
// they match but the content may not: reproducible builds give files of
// both versions one mtime, so a file changed between A and B can keep
// its size and mtime. Comparing every such file byte for byte reads the
// whole tree twice; instead, the store's files of A and B are compared
// once per version pair and the result is remembered in a pair cache in
// the state dir, each answer with the stat signatures (inode, size,
// mtime, ctime) both files had. While both still have them, a target
// file that passes the quick check against B and whose path is the same
// in A and B is not read: it is A's file unchanged, which is B's (a
// target file edited in place keeping its size and mtime is not
// rewritten, as with rsync -a; verify reports it). Any other file of
// the same size and mtime is compared byte for byte.

// fileSig is what a pair cache checks before trusting an answer: a
// change to a file's content or metadata changes its ctime.
type fileSig struct {
	Ino   uint64
	Size  int64
	Mtime int64
	Ctime int64
}

func sigOf(st *unix.Stat_t) fileSig {
	return fileSig{Ino: st.Ino, Size: st.Size, Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}
}

// pairEntry says whether a path's files in A and B have the same
// content, as of the signatures.
type pairEntry struct {
	A, B fileSig
	Same bool
}

// pairFile is the gob-encoded cache file.
type pairFile struct {
	Magic string
	Key   string
	M     map[string]pairEntry
}

const pairMagic = "bofh-tree-pairs-1"

// pairRacyWindow: an answer about a file whose ctime is this recent is
// used but not kept (a change within the clock's granularity keeps the
// ctime). Tests shorten it.
var pairRacyWindow = 2 * time.Second

// pairCache is what is known of the content of one version pair's files.
// It is safe for concurrent use.
type pairCache struct {
	file     string // "" when not persisted
	key      string
	fromRoot string
	fromFD   int
	// racy is the time (ns) after which a ctime is too recent to trust:
	// a file changed again within the clock's granularity keeps its
	// ctime.
	racy int64

	mu    sync.Mutex
	m     map[string]pairEntry
	added int
}

// openPairCache opens the cache for role from → to of the store kept in
// dir ("" for none: answers last for this sync only). It returns nil,
// not an error, when the store no longer has the from version: every
// file of the same size and mtime is then compared byte for byte.
func openPairCache(dir, store, role, from, to string) (*pairCache, error) {
	fromRoot, err := (Store{Dir: store}).TreeDir(from, role)
	if err != nil {
		return nil, nil
	}
	fd, err := openDir(fromRoot)
	if err != nil {
		return nil, nil
	}
	sum := sha256.Sum256([]byte(store + "\x00" + role + "\x00" + from + "\x00" + to))
	c := &pairCache{key: hex.EncodeToString(sum[:]), fromRoot: fromRoot, fromFD: fd,
		racy: time.Now().Add(-pairRacyWindow).UnixNano(), m: map[string]pairEntry{}}
	if dir == "" {
		return c, nil
	}
	c.file = filepath.Join(dir, c.key[:32]+".gob")
	prunePairCaches(dir, c.file, time.Now())
	b, err := os.ReadFile(c.file)
	if err != nil || len(b) < sha256.Size {
		return c, nil // none yet, or unreadable: start empty
	}
	// sha256 of the gob payload, then the payload: a torn or mixed
	// file is ignored, never half trusted
	if sum := sha256.Sum256(b[sha256.Size:]); !bytes.Equal(sum[:], b[:sha256.Size]) {
		return c, nil
	}
	var pf pairFile
	if gob.NewDecoder(bytes.NewReader(b[sha256.Size:])).Decode(&pf) == nil && pf.Magic == pairMagic && pf.Key == c.key && pf.M != nil {
		c.m = pf.M
		// its mtime is its last use: prunePairCaches keeps it
		now := time.Now()
		os.Chtimes(c.file, now, now)
	}
	return c, nil
}

// Ages after which prunePairCaches deletes a cache file (last used that
// long ago: the version pair is most likely done with) and a temporary
// file (left by a crash while saving).
var (
	pairCacheMaxAge = 30 * 24 * time.Hour
	pairTempMaxAge  = time.Hour
)

// prunePairCaches deletes, in the cache directory dir, the version pair
// caches not used for pairCacheMaxAge and the temporary files older than
// pairTempMaxAge, but never keep (the cache about to be used). It is
// best effort: a file it cannot delete only takes space.
func prunePairCaches(dir, keep string, now time.Time) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		var max time.Duration
		switch {
		case strings.HasPrefix(name, ".pairs-"):
			max = pairTempMaxAge
		case strings.HasSuffix(name, ".gob"):
			max = pairCacheMaxAge
		default:
			continue
		}
		p := filepath.Join(dir, name)
		if p == keep || !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err == nil && now.Sub(fi.ModTime()) > max {
			os.Remove(p)
		}
	}
}

// close saves what was learnt (best effort: a cache that cannot be
// written only costs time) and releases the from tree.
func (c *pairCache) close() {
	if c == nil {
		return
	}
	unix.Close(c.fromFD)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.file == "" || c.added == 0 {
		return
	}
	var buf bytes.Buffer
	buf.Write(make([]byte, sha256.Size))
	if gob.NewEncoder(&buf).Encode(pairFile{Magic: pairMagic, Key: c.key, M: c.m}) != nil {
		return
	}
	b := buf.Bytes()
	sum := sha256.Sum256(b[sha256.Size:])
	copy(b, sum[:])
	// a private temporary name: two upgrades of one pair may save at once
	f, err := os.CreateTemp(filepath.Dir(c.file), ".pairs-*")
	if err != nil {
		return
	}
	if err := fsutil.WriteSyncClose(f, b); err != nil || os.Rename(f.Name(), c.file) != nil {
		os.Remove(f.Name())
		return
	}
	c.added = 0
}

func (c *pairCache) get(rel string) (pairEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[rel]
	return e, ok
}

// put records an answer; one involving a ctime too recent to be
// trusted later is used now but not kept.
func (c *pairCache) put(rel string, e pairEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.A.Ctime >= c.racy || e.B.Ctime >= c.racy {
		delete(c.m, rel)
		return
	}
	c.m[rel] = e
	c.added++
}

// openFromDir opens the from tree's directory rel (no symlink on the
// way); -1 when it has none.
func (c *pairCache) openFromDir(rel string) int {
	fd, err := openSub(c.fromFD, c.fromRoot, rel)
	if err != nil {
		return -1
	}
	return fd
}

// errNotRegular says a from-tree entry is not a regular file.
var errNotRegular = errors.New("not a regular file")

// sameAsFrom says whether the file name of directory rel in the to tree,
// open at fb with stat sb, has the content of the same path in the from
// tree (aDir: that directory open, -1 if none), from the cache when both
// files still have the signatures of the answer, else by reading both
// (and remembering). fb is read from its start and left anywhere.
func (c *pairCache) sameAsFrom(aDir int, name, rel string, fb int, sb *unix.Stat_t, bufA, bufB []byte) bool {
	if aDir < 0 {
		return false
	}
	var sa unix.Stat_t
	if e, ok := c.get(rel); ok && e.B == sigOf(sb) {
		if unix.Fstatat(aDir, name, &sa, unix.AT_SYMLINK_NOFOLLOW) == nil && sa.Mode&unix.S_IFMT == unix.S_IFREG && sigOf(&sa) == e.A {
			return e.Same
		}
	}
	fa, err := openReadAt(aDir, name)
	if err != nil {
		return false
	}
	defer unix.Close(fa)
	if unix.Fstat(fa, &sa) != nil || sa.Mode&unix.S_IFMT != unix.S_IFREG {
		return false
	}
	same := false
	if sa.Size == sb.Size {
		var err error
		same, err = sameContentFD(fa, fb, join(c.fromRoot, rel), rel, sb.Size, bufA, bufB)
		if err != nil {
			return false
		}
	}
	c.put(rel, pairEntry{A: sigOf(&sa), B: sigOf(sb), Same: same})
	return same
}
