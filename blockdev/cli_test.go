package blockdev

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/run"
)

// TestCLIBadInput runs the built bofh binary on bad input: each is a clear
// error, exit 2, and changes nothing.
func TestCLIBadInput(t *testing.T) {
	requireRoot(t)
	bin := filepath.Join(t.TempDir(), "bofh")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/bofh").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	file := sparseFile(t, 64<<20)
	dev := attach(t, file)
	sh(t, "mkfs.ext4", "-q", "-L", "keep", dev)
	mnt := t.TempDir()
	sh(t, "mount", dev, mnt)
	defer exec.Command("umount", mnt).Run()
	state := t.TempDir()
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"missing device", []string{"blockdev", "mkfs", "/dev/nonexistent-bofh", "--type", "ext4"}, "not a block device"},
		{"bad size", []string{"blockdev", "part", "create", dev, "--size", "12 parsecs"}, "size"},
		{"bad type", []string{"blockdev", "mkfs", dev, "--type", "ntfs"}, "want one of"},
		{"mounted", []string{"blockdev", "mkfs", dev, "--type", "xfs", "--force"}, "mounted"},
		{"signature without force", []string{"blockdev", "part", "table", dev}, "mounted"},
		{"relative file", []string{"blockdev", "loop", "attach", "disk.img"}, "absolute"},
		{"empty pool", []string{"blockdev", "mount", "--pool", dev}, "mount_pool"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, append(tc.args, "--state-dir", state, "--site", "/dev/null")...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("want exit 2, got %v\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.msg) {
				t.Errorf("message %q lacks %q", out, tc.msg)
			}
		})
	}
	b, _ := Identify(context.Background(), &run.Local{}, dev)
	if b["TYPE"] != "ext4" || b["LABEL"] != "keep" {
		t.Fatalf("bad input changed the device: %v", b)
	}
	sh(t, "umount", mnt)
	// unmounted, still ext4: mkfs without force refused, with exit 2
	out, err := exec.Command(bin, "blockdev", "mkfs", dev, "--type", "xfs", "--state-dir", state).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "without force") {
		t.Fatalf("mkfs over ext4 without force: %v %s", err, out)
	}
	// dry run prints the commands and changes nothing
	out, err = exec.Command(bin, "--dry-run", "blockdev", "mkfs", dev, "--type", "xfs", "--force", "--state-dir", state).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "would run: mkfs.xfs") {
		t.Fatalf("dry run: %v %s", err, out)
	}
	if b, _ := Identify(context.Background(), &run.Local{}, dev); b["TYPE"] != "ext4" {
		t.Fatalf("dry run changed the device: %v", b)
	}
}
