// Package tree deploys, upgrades and verifies file trees the eDeploy way,
// made transactional. It wraps no external tool for the tree work itself
// (the sync is Go code that honours exclude and add_only exactly); it uses
// package btrfs to snapshot and swap a target that is a btrfs subvolume,
// and runs the operator's pre and post hooks through the Runner.
//
// A tree store is a directory holding install/<version>/<role>/ (the
// trees) and metadata/<from>/<role>/<to>/ with the files exclude (paths
// never synced), add_only (paths copied only when absent) and the
// optional executables pre and post (post exiting 100 means "reboot
// needed"). A target is a root directory; its role and version live in
// <target>/etc/bofh-tree.json, written last, as the single commit point.
//
// A store is a local directory or a remote one reached over rsync
// (rsync://host[:port]/module[/path], host::module[/path], or
// [user@]host:/path over ssh; see IsRemote). A remote store is used
// through a local mirror, <state-dir>/tree-stores/<first 16 hex digits of
// sha256(url)>/store (the directory above holds a "url" file and the lock
// file): LocalStore refreshes metadata/ and the install/ skeleton, fetches
// the trees a command needs with everything preserved, and the steps then
// read the mirror like any local store. A daemon password comes from a
// password file (StoreOptions, given to rsync as --password-file) or
// from RSYNC_PASSWORD in the environment, never from the URL.
//
// Step kinds registered:
//   - tree.snapshot: take a restore point of a target before an upgrade:
//     a btrfs snapshot beside it when it is a subvolume (undo: swap the
//     snapshot back into place with renameat2 and move the upgraded
//     tree aside to .<target>.bofh-trash-<uuid>: constant time; the next
//     upgrade of the target deletes it), otherwise a hard-link copy (a copy across
//     filesystems) of every path the upgrade will change, with its
//     metadata, in the step's state directory (undo: put them back).
//   - tree.hook: run a pre or post script with a timeout; undo: nothing
//     (hooks are the operator's; a post exiting 100 reports reboot_needed).
//   - tree.sync: make the target match a version's tree, with deletes,
//     honouring exclude; in an upgrade its undo is tree.snapshot's (no
//     undo of its own); in a first deploy its undo empties the target again.
//     A file is copied when its type, size or mtime differs from the
//     tree's, or when they match but the store's current and new versions
//     differ in content at its path (reproducible builds keep sizes and
//     mtimes): the store's two files are compared byte for byte once per
//     version pair and the answer kept in <state dir>/cache/tree-pairs
//     with both files' inode, size, mtime and ctime, trusted only while
//     they are unchanged. With checksum set every such file is compared
//     with the target's byte for byte.
//   - tree.add-only: copy add_only paths that are absent; undo as tree.sync.
//   - tree.state: write the target's role and version (the commit point);
//     undo puts back the previous state file.
package tree

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bofhkit/bofh/atomic"
)

// Store is a tree store on the local machine.
type Store struct {
	// Dir holds install/ and metadata/.
	Dir string
}

// Meta is the upgrade metadata for one (from, role, to).
type Meta struct {
	From    string `json:"from"`
	Role    string `json:"role"`
	To      string `json:"to"`
	Exclude Rules  `json:"exclude"`
	AddOnly Rules  `json:"add_only"`
	Pre     string `json:"pre,omitempty"`
	Post    string `json:"post,omitempty"`
}

// ErrNoMetadata says the store has no upgrade metadata for a pair.
var ErrNoMetadata = errors.New("no upgrade metadata")

// ErrNoVersion says the store has no tree for a version and role.
var ErrNoVersion = errors.New("version not in the tree store")

// CheckName validates a role or version name: one path element, no
// "..", no leading dot, no NUL or slash.
func CheckName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: %s is empty", atomic.ErrInvalid, what)
	case s == "." || s == ".." || strings.HasPrefix(s, "."):
		return fmt.Errorf("%w: %s %q may not start with a dot", atomic.ErrInvalid, what, s)
	case strings.ContainsAny(s, "/\x00\n"):
		return fmt.Errorf("%w: %s %q contains '/', a newline or NUL", atomic.ErrInvalid, what, s)
	case len(s) > 200:
		return fmt.Errorf("%w: %s is longer than 200 bytes", atomic.ErrInvalid, what)
	}
	return nil
}

// CheckRoot validates a target or store path: absolute, clean, not "/".
func CheckRoot(what, p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: %s is required", atomic.ErrInvalid, what)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%w: %s contains NUL", atomic.ErrInvalid, what)
	case !filepath.IsAbs(p) || filepath.Clean(p) != p:
		return fmt.Errorf("%w: %s %q must be an absolute, clean path", atomic.ErrInvalid, what, p)
	case p == "/":
		return fmt.Errorf("%w: %s may not be /", atomic.ErrInvalid, what)
	}
	return nil
}

// realDir checks that p is a directory and not a symlink.
func realDir(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory (%s)", p, fi.Mode().Type())
	}
	return nil
}

// TreeDir returns the directory of a version's tree for role, checking
// that it exists and that neither it nor its parents inside the store are
// symlinks.
func (s Store) TreeDir(version, role string) (string, error) {
	if err := CheckName("version", version); err != nil {
		return "", err
	}
	if err := CheckName("role", role); err != nil {
		return "", err
	}
	for _, p := range []string{s.Dir, filepath.Join(s.Dir, "install"), filepath.Join(s.Dir, "install", version)} {
		if err := realDir(p); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("%w: %s/%s (%v)", ErrNoVersion, version, role, err)
			}
			return "", err
		}
	}
	d := filepath.Join(s.Dir, "install", version, role)
	if err := realDir(d); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%w: %s/%s", ErrNoVersion, version, role)
		}
		return "", err
	}
	return d, nil
}

// MetaDir returns metadata/<from>/<role>/<to>.
func (s Store) MetaDir(from, role, to string) string {
	return filepath.Join(s.Dir, "metadata", from, role, to)
}

// Metadata reads the upgrade metadata for from → to of role. A missing
// directory is ErrNoMetadata; a bad exclude or add_only file is
// atomic.ErrInvalid. A missing exclude or add_only file is an empty list.
func (s Store) Metadata(from, role, to string) (*Meta, error) {
	for _, n := range [][2]string{{"from", from}, {"role", role}, {"to", to}} {
		if err := CheckName(n[0], n[1]); err != nil {
			return nil, err
		}
	}
	dir := s.MetaDir(from, role, to)
	for _, p := range []string{filepath.Join(s.Dir, "metadata"), filepath.Join(s.Dir, "metadata", from),
		filepath.Join(s.Dir, "metadata", from, role), dir} {
		if err := realDir(p); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%w for %s %s → %s in %s", ErrNoMetadata, role, from, to, s.Dir)
			}
			return nil, err
		}
	}
	m := &Meta{From: from, Role: role, To: to}
	for _, f := range []struct {
		name string
		dst  *Rules
	}{{"exclude", &m.Exclude}, {"add_only", &m.AddOnly}} {
		p := filepath.Join(dir, f.name)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%w: %s is not a regular file", atomic.ErrInvalid, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		r, err := ParseRules(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		*f.dst = r
	}
	for _, h := range []struct {
		name string
		dst  *string
	}{{"pre", &m.Pre}, {"post", &m.Post}} {
		p := filepath.Join(dir, h.name)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return nil, fmt.Errorf("%w: hook %s must be an executable regular file (not a symlink)", atomic.ErrInvalid, p)
		}
		*h.dst = p
	}
	return m, nil
}

// Versions lists the versions of the store that have a tree for role.
func (s Store) Versions(role string) ([]string, error) {
	if err := CheckName("role", role); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(s.Dir, "install"))
	if err != nil {
		return nil, fmt.Errorf("read tree store: %w", err)
	}
	var out []string
	for _, e := range ents {
		if CheckName("version", e.Name()) != nil || !e.IsDir() {
			continue
		}
		if realDir(filepath.Join(s.Dir, "install", e.Name(), role)) == nil {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// Upgrades lists the "to" versions with metadata from version from.
func (s Store) Upgrades(from, role string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.Dir, "metadata", from, role))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && CheckName("version", e.Name()) == nil {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}
