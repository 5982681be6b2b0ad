package btrfs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/file"
	"github.com/bofhkit/bofh/internal/kindtest"
	"github.com/bofhkit/bofh/run"
)

// genRe matches the generation field of 'btrfs subvolume list', which
// grows with every commit and is left out of snapshots.
var genRe = regexp.MustCompile(` gen [0-9]+ `)

// realFS is one real btrfs filesystem for every run of TestKinds: each run
// gets a fresh directory in it (runDir), and the snapshot is what the btrfs
// tool itself says about the whole filesystem.
type realFS struct {
	mnt  string
	mu   sync.Mutex
	dirs map[string]string // the run's temp dir → its directory on btrfs
}

// runDir returns the btrfs directory of the run whose temp dir is dir,
// making it on first use.
func (r *realFS) runDir(t *testing.T, dir string) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if d, ok := r.dirs[dir]; ok {
		return d
	}
	d := filepath.Join(r.mnt, fmt.Sprintf("run%d", len(r.dirs)+1))
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	r.dirs[dir] = d
	return d
}

func btrfsOut(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command("btrfs", argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("btrfs %s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// snapshot is every subvolume of the filesystem (ID, parent, UUIDs, path,
// read-only or not, generation left out), the default subvolume, and every
// entry of the run's directory with its inode number and, for a marker
// file, its content: from the btrfs tool and system calls, not from this
// package's parsers.
func (r *realFS) snapshot(t *testing.T, dir string) string {
	t.Helper()
	d := r.runDir(t, dir)
	var b strings.Builder
	b.WriteString(genRe.ReplaceAllString(btrfsOut(t, "subvolume", "list", "-a", "-p", "-u", "-q", r.mnt), " "))
	b.WriteString("read-only: " + btrfsOut(t, "subvolume", "list", "-r", r.mnt))
	b.WriteString("default: " + btrfsOut(t, "subvolume", "get-default", r.mnt))
	err := filepath.Walk(d, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %s ino=%d", strings.TrimPrefix(p, d), fi.Mode(), fi.Sys().(*syscall.Stat_t).Ino)
		if fi.Name() == "marker" {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %q", data)
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestKinds makes every btrfs step kind fail before Do, after Do and in
// its undo (internal/kindtest) against a real btrfs filesystem: the steps
// look at the filesystem with system calls as well as commands, so a fake
// runner cannot stand in for the tool. Every case runs with the real
// runner (Wrap), and the snapshot is compared instead of a transcript.
func TestKinds(t *testing.T) {
	fs := &realFS{mnt: newBtrfs(t), dirs: map[string]string{}}
	real := func(string, run.Runner) run.Runner { return &run.Local{} }
	in := func(build func(d string) []atomic.Params) func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
		return func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			return build(fs.runDir(t, dir)), nil
		}
	}
	kindtest.Cover(t, []string{"btrfs."}, []kindtest.Case{
		{Kind: "btrfs.subvol.create", Wrap: real, Snapshot: fs.snapshot, InDir: in(func(d string) []atomic.Params {
			return []atomic.Params{file.Dir{Path: filepath.Join(d, "d")}, CreateSubvol{Path: filepath.Join(d, "d", "sv")}}
		})},
		{Kind: "btrfs.snapshot", Wrap: real, Snapshot: fs.snapshot, InDir: in(func(d string) []atomic.Params {
			src := filepath.Join(d, "src")
			return []atomic.Params{
				CreateSubvol{Path: src},
				file.Write{Path: filepath.Join(src, "marker"), Content: "src"},
				Snapshot{Source: src, Dest: filepath.Join(d, "snap"), ReadOnly: true},
			}
		})},
		{Kind: "btrfs.set-default", Wrap: real, Snapshot: fs.snapshot, InDir: in(func(d string) []atomic.Params {
			return []atomic.Params{CreateSubvol{Path: filepath.Join(d, "sv")}, SetDefault{Path: filepath.Join(d, "sv")}}
		})},
		{Kind: "btrfs.swap", Wrap: real, Snapshot: fs.snapshot, InDir: in(func(d string) []atomic.Params {
			a, b := filepath.Join(d, "live"), filepath.Join(d, "next")
			return []atomic.Params{
				CreateSubvol{Path: a},
				file.Write{Path: filepath.Join(a, "marker"), Content: "live"},
				CreateSubvol{Path: b},
				file.Write{Path: filepath.Join(b, "marker"), Content: "next"},
				Swap{Path: a, With: b},
			}
		})},
		{Kind: "btrfs.subvol.delete", Wrap: real, Snapshot: fs.snapshot, InDir: in(func(d string) []atomic.Params {
			return []atomic.Params{CreateSubvol{Path: filepath.Join(d, "sv")}, DeleteSubvol{Path: filepath.Join(d, "sv")}}
		})},
	}, nil)
}
