package main

import (
	"os"
	"path/filepath"
	"testing"

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
