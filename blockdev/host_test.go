package blockdev

// Host test helpers. The root check is internal/hosttest's; the loop
// helpers stay here because they do what hosttest.LoopFile does not:
// sparseFile hands out the backing FILE (the steps under test attach, grow
// and mount it themselves) and its cleanup detaches every loop device and
// unmounts everything the code under test made of it; attach uses
// --partscan, so partition devices appear.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/internal/hosttest"
	"github.com/bofhkit/bofh/run"
)

// requireRoot fails a root test when not root, or skips it loudly when the
// runner opted out with BOFH_SKIP_ROOT=1 (the name the package's tests
// call it by).
var requireRoot = hosttest.RequireRoot

// requireTools fails when a program the test needs is missing.
func requireTools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s is not installed (see deps/blockdev.txt; 'make deps')", n)
		}
	}
}

// sparseFile creates a sparse file of size bytes and, at cleanup,
// unmounts anything of it and detaches every loop device backed by it.
func sparseFile(t *testing.T, size int64) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupFile(t, p) })
	return p
}

func cleanupFile(t *testing.T, p string) {
	ctx := context.Background()
	r := &run.Local{}
	loops, _ := LoopsOf(ctx, r, p)
	ms, _ := Mounts(ctx, r)
	for _, l := range loops {
		for i := len(ms) - 1; i >= 0; i-- {
			if strings.HasPrefix(ms[i].Source, l.Device) {
				exec.Command("umount", "-l", ms[i].Target).Run()
			}
		}
		exec.Command("losetup", "-d", l.Device).Run()
	}
}

// attach attaches a file for a test (outside any transaction).
func attach(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command("losetup", "--find", "--show", "--partscan", file).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func sh(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}
