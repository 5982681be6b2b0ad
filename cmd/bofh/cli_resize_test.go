package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/bofhkit/bofh/internal/hosttest"
)

func TestCLIResizeBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	os.WriteFile(img, make([]byte, 1<<20), 0o600)
	badInput(t, nil, []cliCase{
		bad("relative", `"relative.img" must be a clean absolute path`, "resize", "relative.img", "10G"),
		bad("unclean", "must be a clean absolute path", "resize", dir+"/../x.img", "10G"),
		bad("missing", "no such file or directory", "resize", filepath.Join(dir, "missing.img"), "10G"),
		bad("directory", "is not a loop device nor a backing file", "resize", dir, "10G"),
		bad("size unit", `size "10Q"`, "resize", img, "10Q"),
		bad("fs type", `type "zfs"`, "resize", img, "10G", "--type", "zfs"),
		bad("file on no loop device", "attached to 0 loop devices", "resize", img, "--", "-5G"),
	})
}

// Growing an unmounted ext4 on a loop device: the dry run prints the whole
// stack bottom-up and changes neither the file nor the device.
func TestCLIResizeDryRun(t *testing.T) {
	t.Parallel()
	dev := hosttest.LoopFile(t, 64<<20)
	hosttest.Cmd(t, "mkfs.ext4", "-q", dev)
	size := hosttest.Cmd(t, "blockdev", "--getsize64", dev)
	dryRun(t, nil, "", []string{"resize", dev, "+32M"},
		"would run: truncate --no-create --size=100663296 ",
		"would run: losetup --set-capacity "+dev,
		"would run: resize2fs "+dev+" 98304K")
	if got := hosttest.Cmd(t, "blockdev", "--getsize64", dev); got != size {
		t.Fatalf("dry run resized %s: %s → %s", dev, size, got)
	}
	helpExample(t, []string{"resize"})
}
