package tree

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"golang.org/x/sys/unix"
)

// A backup is the restore point of a target that is not a btrfs
// subvolume: for every path an upgrade will touch, its entry (type,
// metadata, xattrs, symlink target) and, for a regular file, a copy of
// it — a reflink where the file system can — never a hard link: a pre
// hook that appends to a file the upgrade changes would change a linked
// "backup" too. Metadata changed in place is put back from the manifest.
type bkEntry struct {
	Rel    string `json:"-"`
	RelB   []byte `json:"rel"` // bytes: non-UTF-8 names survive
	Absent bool   `json:"absent,omitempty"`
	Entry  *Entry `json:"entry,omitempty"`
	Data   string `json:"data,omitempty"`
}

const manifestName = "manifest.json"

// notBelow says a path's parent is missing or not a directory (a
// symlink, a file): nothing is at that path in the root's own namespace.
func notBelow(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR)
}

func takeBackup(root string, rels []string, dir string) error {
	pin, err := newPinner(root)
	if err != nil {
		return err
	}
	defer pin.close()
	var man []bkEntry
	copied := map[[2]uint64]string{} // inode → its copy's name
	for i, rel := range rels {
		full, err := pin.path(rel)
		var e *Entry
		if err == nil {
			e, err = lstatPath(full, rel)
		}
		if notBelow(err) {
			man = append(man, bkEntry{Rel: rel, Absent: true})
			continue
		}
		if err != nil {
			return err
		}
		b := bkEntry{Rel: rel, Entry: e}
		if e.Type == TypeFile {
			// A copy, never a hard link: a hook (or anyone) writing into
			// the live file in place must not change its restore point.
			// cloneEntry reflinks where the file system can (btrfs, xfs),
			// so only what later diverges costs space and time.
			// Paths that are hard links of one inode share one copy, so the
			// restore links them together again.
			var st unix.Stat_t
			if err := unix.Lstat(full, &st); err != nil {
				return fmt.Errorf("back up %s: %w", rel, err)
			}
			id := [2]uint64{st.Dev, st.Ino}
			if name, ok := copied[id]; ok && st.Nlink > 1 {
				b.Data = name
				man = append(man, b)
				continue
			}
			b.Data = strconv.Itoa(i)
			copied[id] = b.Data
			dst := filepath.Join(dir, b.Data)
			_ = os.Remove(dst)
			c := *e
			c.Rel = rel
			if err := cloneEntry(pin, &c, dst); err != nil {
				return fmt.Errorf("back up %s: %w", rel, err)
			}
		}
		man = append(man, b)
	}
	for i := range man {
		man[i].RelB = []byte(man[i].Rel)
	}
	data, err := json.Marshal(man)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, manifestName+".part")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := syncFS(dir); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, manifestName)); err != nil {
		return err
	}
	return syncFS(dir)
}

func readManifest(dir string) ([]bkEntry, error) {
	data, err := os.ReadFile(filepath.Join(dir, manifestName))
	if err != nil {
		return nil, err
	}
	var man []bkEntry
	if err := json.Unmarshal(data, &man); err != nil {
		return nil, fmt.Errorf("backup manifest: %w", err)
	}
	for i := range man {
		man[i].Rel = string(man[i].RelB)
		if _, err := within("/r", man[i].Rel); err != nil {
			return nil, fmt.Errorf("backup manifest: %w", err)
		}
	}
	return man, nil
}

// restoreBackup puts every path of the manifest back as it was. It is
// idempotent.
func restoreBackup(root, dir string) error {
	man, err := readManifest(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil // the backup was never complete: nothing after it ran
	}
	if err != nil {
		return err
	}
	sort.Slice(man, func(i, j int) bool { return man[i].Rel < man[j].Rel })
	// 1. deepest first: remove what did not exist, or has another type
	rmPin, err := newPinner(root)
	if err != nil {
		return err
	}
	defer rmPin.close()
	for i := len(man) - 1; i >= 0; i-- {
		b := man[i]
		full, err := rmPin.path(b.Rel)
		if notBelow(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		var st unix.Stat_t
		if err := unix.Lstat(full, &st); err != nil {
			continue
		}
		cur := typeOf(st.Mode)
		if !b.Absent && cur == b.Entry.Type {
			continue
		}
		if b.Rel == "" {
			return fmt.Errorf("target root %s changed type", root)
		}
		if cur == TypeDir {
			err = os.RemoveAll(full) // never follows symlinks
		} else {
			err = unix.Unlink(full)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("restore: remove %s: %w", join(root, b.Rel), err)
		}
	}
	rmPin.close()
	// 2. parents first: put entries back
	pin, err := newPinner(root)
	if err != nil {
		return err
	}
	defer pin.close()
	bkPin, err := newPinner(dir)
	if err != nil {
		return err
	}
	defer bkPin.close()
	restored := map[string]string{} // backup copy → the first path put back from it
	for _, b := range man {
		if b.Absent {
			continue
		}
		full, err := pin.path(b.Rel)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		e := b.Entry
		switch e.Type {
		case TypeDir:
			if err := unix.Mkdir(full, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("restore: mkdir %s: %w", join(root, b.Rel), err)
			}
			continue // metadata in pass 3
		case TypeFile:
			bk := filepath.Join(dir, b.Data)
			if first, ok := restored[b.Data]; ok {
				// Another path of the same inode was put back already (from
				// a copy on another file system): link to it.
				bk = first
			}
			if err := replaceWith(full, func(tmp string) error {
				if err := unix.Link(bk, tmp); errors.Is(err, unix.EXDEV) {
					c := *e
					c.Rel = b.Data
					return makeEntry(bkPin, &c, tmp)
				} else if err != nil {
					return err
				}
				return nil
			}); err != nil {
				return fmt.Errorf("restore %s: %w", join(root, b.Rel), err)
			}
			if _, ok := restored[b.Data]; !ok {
				restored[b.Data] = full
			}
		default:
			if cur, err := lstatPath(full, b.Rel); err == nil && cur.Type == e.Type && cur.Link == e.Link && cur.Rdev == e.Rdev {
				break
			}
			// not a regular file: made from the entry alone
			if err := replaceWith(full, func(tmp string) error { return makeEntry(pin, e, tmp) }); err != nil {
				return fmt.Errorf("restore %s: %w", join(root, b.Rel), err)
			}
		}
		if err := applyMeta(full, e); err != nil {
			return fmt.Errorf("restore %s: %w", join(root, b.Rel), err)
		}
	}
	// 3. deepest first: directory metadata and times
	for i := len(man) - 1; i >= 0; i-- {
		b := man[i]
		if !b.Absent && b.Entry.Type == TypeDir {
			full, err := pin.path(b.Rel)
			if err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			if err := applyMeta(full, b.Entry); err != nil {
				return fmt.Errorf("restore %s: %w", join(root, b.Rel), err)
			}
		}
	}
	return syncFS(root)
}
