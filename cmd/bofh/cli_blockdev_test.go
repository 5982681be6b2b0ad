package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/internal/hosttest"
)

func TestCLIBlockdevBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badInput(t, nil, []cliCase{
		bad("probe without devices", "takes one or more devices", "blockdev", "probe"),
		bad("probe of a directory", "not a block device", "blockdev", "probe", dir),
		bad("mkfs relative", `device "relative" must be a clean absolute path`, "blockdev", "mkfs", "relative", "--type", "ext4"),
		bad("mkfs type", `type "zfs"`, "blockdev", "mkfs", "/dev/loop0", "--type", "zfs"),
		bad("mkfs without type", `type ""`, "blockdev", "mkfs", "/dev/loop0"),
		bad("mkfs missing device", "not a block device", "blockdev", "mkfs", "/dev/bofh-cli-test-missing", "--type", "ext4"),
		bad("table type", `type "bsd"`, "blockdev", "part", "table", "/dev/loop0", "--type", "bsd"),
		bad("partition size", `size "10Q"`, "blockdev", "part", "create", "/dev/loop0", "--size", "10Q"),
		bad("partition number", `partition number "two"`, "blockdev", "part", "delete", "/dev/loop0", "two"),
		bad("mount without target", "give either a TARGET or --pool", "blockdev", "mount", "/dev/loop0"),
		bad("mount relative target", `"relative" must be a clean absolute path`, "blockdev", "mount", "/dev/loop0", "relative"),
		bad("loop file missing", "no such file or directory", "blockdev", "loop", "attach", filepath.Join(dir, "missing.img")),
	})
}

func TestCLIBlockdevDryRunAndJSON(t *testing.T) {
	t.Parallel()
	dev := hosttest.LoopFile(t, 16<<20)
	dryRun(t, nil, "", []string{"blockdev", "mkfs", dev, "--type", "ext4"}, "would run: mkfs.ext4 -q -F "+dev)
	dryRun(t, nil, "", []string{"blockdev", "part", "table", dev, "--type", "gpt"}, "would write an empty gpt table on "+dev)
	img := filepath.Join(t.TempDir(), "free.img")
	os.WriteFile(img, make([]byte, 1<<20), 0o600)
	dryRun(t, nil, "", []string{"blockdev", "loop", "attach", img}, "would run: losetup --find --show --partscan "+img)
	if out := hosttest.Cmd(t, "losetup", "-j", img); out != "" {
		t.Fatalf("dry run attached %s: %s", img, out)
	}
	var devs []struct {
		Path       string
		Type       string
		Size       int64
		Signatures []any
	}
	jsonOut(t, nil, &devs, "blockdev", "probe", dev)
	if len(devs) != 1 || devs[0].Path != dev || devs[0].Size != 16<<20 || len(devs[0].Signatures) != 0 {
		t.Fatalf("probe after dry runs: %+v", devs)
	}
	if out := hosttest.Cmd(t, "wipefs", "--no-act", "--noheadings", dev); strings.TrimSpace(out) != "" {
		t.Errorf("signature after dry runs: %s", out)
	}
	helpExample(t, []string{"blockdev"}, []string{"blockdev", "probe"}, []string{"blockdev", "part", "create"})
}
