// Package btrfs wraps btrfs-progs (`btrfs subvolume …`) and the
// renameat2(2) system call: subvolumes, snapshots, the default subvolume,
// and an atomic swap of two subvolumes used for rollback.
//
// btrfs-progs 6.2 (Debian 12) has no JSON output for `subvolume list` or
// `subvolume show`, so both are parsed from their text form; the parsers
// are tested on output captured under testdata/btrfs and fuzzed.
//
// Step kinds registered:
//   - btrfs.subvol.create: create a subvolume; undo deletes it (only if it
//     is still the one created, checked by UUID).
//   - btrfs.subvol.delete: delete a subvolume; irreversible, runs at commit.
//   - btrfs.snapshot: snapshot a subvolume (read-only or writable); undo
//     deletes the snapshot.
//   - btrfs.set-default: make a subvolume the filesystem's default; undo
//     restores the previous default.
//   - btrfs.swap: exchange two subvolumes' places in one renameat2
//     RENAME_EXCHANGE call (a crash leaves either the old or the new
//     arrangement, both complete); undo exchanges them back.
package btrfs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bofhkit/bofh/run"
)

// Subvolume is one line of `btrfs subvolume list -a -p -u -q -R`.
type Subvolume struct {
	ID           uint64 `json:"id"`
	Gen          uint64 `json:"gen"`
	Parent       uint64 `json:"parent"`
	TopLevel     uint64 `json:"top_level"`
	ParentUUID   string `json:"parent_uuid,omitempty"`
	ReceivedUUID string `json:"received_uuid,omitempty"`
	UUID         string `json:"uuid"`
	// Path is relative to the top level of the filesystem (the
	// "<FS_TREE>/" prefix btrfs prints for subvolumes outside the mounted
	// one is removed).
	Path string `json:"path"`
}

// Info is the output of `btrfs subvolume show`.
type Info struct {
	Path          string   `json:"path"`
	Name          string   `json:"name"`
	UUID          string   `json:"uuid"`
	ParentUUID    string   `json:"parent_uuid,omitempty"`
	ReceivedUUID  string   `json:"received_uuid,omitempty"`
	Created       string   `json:"created,omitempty"`
	ID            uint64   `json:"id"`
	Generation    uint64   `json:"generation"`
	GenAtCreation uint64   `json:"gen_at_creation"`
	ParentID      uint64   `json:"parent_id"`
	TopLevelID    uint64   `json:"top_level_id"`
	Flags         []string `json:"flags,omitempty"`
	ReadOnly      bool     `json:"readonly"`
	Snapshots     []string `json:"snapshots,omitempty"`
}

// ErrParse marks output that does not have the expected shape.
var ErrParse = errors.New("btrfs: unexpected output")

func dash(s string) string {
	if s == "-" {
		return ""
	}
	return s
}

// ParseList parses `btrfs subvolume list -a -p -u -q -R` output. Lines
// starting with '#' (capture headers) and blank lines are ignored. A
// subvolume path holding a newline cannot be told apart from the next
// line and is reported as an error.
func ParseList(out []byte) ([]Subvolume, error) {
	var subs []Subvolume
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.Index(line, " path ")
		if i < 0 {
			return nil, fmt.Errorf("%w: line %d: no path: %q", ErrParse, n, line)
		}
		head, path := line[:i], line[i+len(" path "):]
		f := strings.Fields(head)
		want := []string{"ID", "", "gen", "", "parent", "", "top", "level", "", "parent_uuid", "", "received_uuid", "", "uuid", ""}
		if len(f) != len(want) {
			return nil, fmt.Errorf("%w: line %d: %d fields before path, want %d: %q", ErrParse, n, len(f), len(want), line)
		}
		for j, w := range want {
			if w != "" && f[j] != w {
				return nil, fmt.Errorf("%w: line %d: field %d is %q, want %q", ErrParse, n, j+1, f[j], w)
			}
		}
		var s Subvolume
		for j, dst := range map[int]*uint64{1: &s.ID, 3: &s.Gen, 5: &s.Parent, 8: &s.TopLevel} {
			v, err := strconv.ParseUint(f[j], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: %q is not a number", ErrParse, n, f[j])
			}
			*dst = v
		}
		s.ParentUUID, s.ReceivedUUID, s.UUID = dash(f[10]), dash(f[12]), dash(f[14])
		s.Path = strings.TrimPrefix(path, "<FS_TREE>/")
		if s.Path == "" {
			return nil, fmt.Errorf("%w: line %d: empty path", ErrParse, n)
		}
		subs = append(subs, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrParse, err)
	}
	return subs, nil
}

// ParseShow parses `btrfs subvolume show PATH` output.
func ParseShow(out []byte) (*Info, error) {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	// skip capture headers
	for len(lines) > 0 && strings.HasPrefix(lines[0], "#") {
		lines = lines[1:]
	}
	if len(lines) < 2 || strings.HasPrefix(lines[0], "\t") || lines[0] == "" {
		return nil, fmt.Errorf("%w: subvolume show: no header line", ErrParse)
	}
	info := &Info{Path: lines[0]}
	inSnaps := false
	seenUUID := false
	for i, line := range lines[1:] {
		if inSnaps && strings.HasPrefix(line, "\t\t") {
			info.Snapshots = append(info.Snapshots, strings.TrimLeft(line, "\t"))
			continue
		}
		inSnaps = false
		if !strings.HasPrefix(line, "\t") {
			return nil, fmt.Errorf("%w: subvolume show line %d: %q", ErrParse, i+2, line)
		}
		key, val, ok := strings.Cut(strings.TrimLeft(line, "\t"), ":")
		if !ok {
			return nil, fmt.Errorf("%w: subvolume show line %d: no key: %q", ErrParse, i+2, line)
		}
		val = strings.TrimSpace(val)
		num := func(dst *uint64) error {
			v, err := strconv.ParseUint(val, 10, 64)
			if err != nil {
				return fmt.Errorf("%w: subvolume show %s: %q is not a number", ErrParse, key, val)
			}
			*dst = v
			return nil
		}
		var err error
		switch key {
		case "Name":
			info.Name = val
		case "UUID":
			info.UUID, seenUUID = dash(val), true
		case "Parent UUID":
			info.ParentUUID = dash(val)
		case "Received UUID":
			info.ReceivedUUID = dash(val)
		case "Creation time":
			info.Created = dash(val)
		case "Subvolume ID":
			err = num(&info.ID)
		case "Generation":
			err = num(&info.Generation)
		case "Gen at creation":
			err = num(&info.GenAtCreation)
		case "Parent ID":
			err = num(&info.ParentID)
		case "Top level ID":
			err = num(&info.TopLevelID)
		case "Flags":
			if val != "-" {
				for _, f := range strings.Split(val, "|") {
					f = strings.TrimSpace(f)
					info.Flags = append(info.Flags, f)
					if f == "readonly" {
						info.ReadOnly = true
					}
				}
			}
		case "Snapshot(s)":
			inSnaps = true
		}
		if err != nil {
			return nil, err
		}
	}
	if !seenUUID || info.ID == 0 {
		return nil, fmt.Errorf("%w: subvolume show: no UUID or subvolume ID", ErrParse)
	}
	return info, nil
}

// ParseDefault parses `btrfs subvolume get-default` output ("ID 5
// (FS_TREE)" or "ID 256 gen 9 top level 5 path a") into the subvolume ID.
func ParseDefault(out []byte) (uint64, error) {
	f := strings.Fields(string(out))
	if len(f) < 2 || f[0] != "ID" {
		return 0, fmt.Errorf("%w: get-default: %q", ErrParse, string(out))
	}
	id, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: get-default: %q is not a number", ErrParse, f[1])
	}
	return id, nil
}

// List lists every subvolume of the filesystem holding path.
func List(ctx context.Context, r run.Runner, path string) ([]Subvolume, error) {
	out, err := run.Output(ctx, r, "btrfs", "subvolume", "list", "-a", "-p", "-u", "-q", "-R", path)
	if err != nil {
		return nil, fmt.Errorf("list subvolumes of %s: %w", path, err)
	}
	return ParseList(out)
}

// Show describes the subvolume at path.
func Show(ctx context.Context, r run.Runner, path string) (*Info, error) {
	out, err := run.Output(ctx, r, "btrfs", "subvolume", "show", path)
	if err != nil {
		return nil, fmt.Errorf("show subvolume %s: %w", path, err)
	}
	return ParseShow(out)
}

// GetDefault returns the ID of the default subvolume of the filesystem
// holding path.
func GetDefault(ctx context.Context, r run.Runner, path string) (uint64, error) {
	out, err := run.Output(ctx, r, "btrfs", "subvolume", "get-default", path)
	if err != nil {
		return 0, fmt.Errorf("get default subvolume of %s: %w", path, err)
	}
	return ParseDefault(out)
}

// IsNotSubvolume reports whether err is btrfs saying a path is not a
// subvolume (or not on btrfs at all).
func IsNotSubvolume(err error) bool {
	return run.StderrContains(err, "Not a Btrfs subvolume", "not a btrfs filesystem")
}

// superMagic is BTRFS_SUPER_MAGIC from statfs(2).
const superMagic = 0x9123683E

// firstFreeObjectID is the inode number of every subvolume's root.
const firstFreeObjectID = 256

// IsBtrfs reports whether path (not followed if a symlink) is on btrfs.
func IsBtrfs(path string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	return uint32(st.Type) == superMagic, nil
}

// IsSubvolume reports whether path is the root of a btrfs subvolume,
// with system calls only (no command runs). A missing path is (false,
// nil); a symlink is never a subvolume.
func IsSubvolume(path string) (bool, error) {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", path, err)
	}
	if !fi.IsDir() {
		return false, nil
	}
	if fi.Sys().(*syscall.Stat_t).Ino != firstFreeObjectID {
		return false, nil
	}
	return IsBtrfs(path)
}
