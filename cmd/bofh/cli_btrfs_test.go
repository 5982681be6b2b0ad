package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bofhkit/bofh/internal/hosttest"
)

func TestCLIBtrfsBadInput(t *testing.T) {
	t.Parallel()
	badInput(t, nil, []cliCase{
		bad("relative path", `path "relative/path" is not absolute`, "btrfs", "subvolume", "create", "relative/path"),
		bad("unclean path", `is not clean (use "/etc/x")`, "btrfs", "subvolume", "create", "/srv/../etc/x"),
		bad("swap with itself", "path and with are the same", "btrfs", "swap", "/srv/a", "/srv/a"),
		bad("list relative", `path "relative" is not absolute`, "btrfs", "subvolume", "list", "relative"),
		bad("set-default relative", `path "relative" is not absolute`, "btrfs", "set-default", "relative"),
		bad("snapshot to relative", "not absolute", "btrfs", "snapshot", "/srv/vol", "snap"),
	})
}

// Bad input found only by looking at the system (in Prepare): exit 2,
// nothing journaled.
func TestCLIBtrfsBadInputOnHost(t *testing.T) {
	t.Parallel()
	dev := hosttest.LoopFile(t, 128<<20)
	hosttest.Cmd(t, "mkfs.btrfs", "-q", dev)
	mnt := hosttest.TempMount(t, dev, "btrfs", "")
	vol := filepath.Join(mnt, "vol")
	hosttest.Cmd(t, "btrfs", "subvolume", "create", vol)
	plain := filepath.Join(mnt, "plain")
	if err := os.Mkdir(plain, 0o755); err != nil {
		t.Fatal(err)
	}
	notBtrfs := t.TempDir() // not on this filesystem; checked below
	if out, err := exec.Command("stat", "-f", "-c", "%T", notBtrfs).Output(); err != nil || strings.TrimSpace(string(out)) == "btrfs" {
		t.Fatalf("%s: want a directory not on btrfs (%q %v)", notBtrfs, out, err)
	}
	// what bad input must not change: the tree, its subvolumes (without
	// their generation: reading the tree updates atimes), the default
	gen := regexp.MustCompile(` gen [0-9]+ `)
	state := func() string {
		subs := gen.ReplaceAllString(hosttest.Cmd(t, "btrfs", "subvolume", "list", "-a", mnt), " ")
		return snapshot(t, mnt, true) + "\n" + subs + hosttest.Cmd(t, "btrfs", "subvolume", "get-default", mnt)
	}
	before := state()
	badInput(t, nil, []cliCase{
		bad("create: missing parent", "no such file or directory", "btrfs", "subvolume", "create", filepath.Join(mnt, "nodir/vol")),
		bad("create: not on btrfs", "is not on a btrfs filesystem", "btrfs", "subvolume", "create", filepath.Join(notBtrfs, "vol")),
		bad("create: a plain directory is there", "exists and is not a subvolume", "btrfs", "subvolume", "create", plain),
		bad("snapshot: missing source", "is not a btrfs subvolume", "btrfs", "snapshot", filepath.Join(mnt, "nosuch"), filepath.Join(mnt, "snap")),
		bad("snapshot: source not a subvolume", "is not a btrfs subvolume", "btrfs", "snapshot", plain, filepath.Join(mnt, "snap")),
		bad("snapshot: missing parent of dest", "no such file or directory", "btrfs", "snapshot", vol, filepath.Join(mnt, "nodir/snap")),
		bad("snapshot: dest not on btrfs", "is not on a btrfs filesystem", "btrfs", "snapshot", vol, filepath.Join(notBtrfs, "snap")),
		bad("snapshot: dest exists", "already exists", "btrfs", "snapshot", vol, plain),
		bad("delete: not a subvolume", "is not a btrfs subvolume", "btrfs", "subvolume", "delete", plain),
		bad("set-default: not a subvolume", "is not a btrfs subvolume", "btrfs", "set-default", plain),
		bad("swap: not a subvolume", "is not a btrfs subvolume", "btrfs", "swap", vol, plain),
	})
	if d := cmp.Diff(strings.Split(before, "\n"), strings.Split(state(), "\n")); d != "" {
		t.Fatalf("bad input changed %s (-before +after):\n%s", mnt, d)
	}
}

// btrfs is in this host's kernel: a small filesystem on a loop mount.
func TestCLIBtrfsDryRunAndJSON(t *testing.T) {
	t.Parallel()
	dev := hosttest.LoopFile(t, 128<<20)
	hosttest.Cmd(t, "mkfs.btrfs", "-q", dev)
	mnt := hosttest.TempMount(t, dev, "btrfs", "")
	vol := filepath.Join(mnt, "vol")
	dryRun(t, nil, "", []string{"btrfs", "subvolume", "create", vol}, "would run: btrfs subvolume create "+vol)
	if _, err := os.Lstat(vol); err == nil {
		t.Fatal("dry run created the subvolume")
	}
	var subs []map[string]any
	jsonOut(t, nil, &subs, "btrfs", "subvolume", "list", mnt)
	if len(subs) != 0 {
		t.Fatalf("subvolume list of a new filesystem: %v", subs)
	}
	helpExample(t, []string{"btrfs"}, []string{"btrfs", "subvolume", "create"}, []string{"btrfs", "swap"})
}
