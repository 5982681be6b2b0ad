package blockdev

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

// resizeLab is a loop file with a filesystem, for resize host tests.
type resizeLab struct {
	file, dev, mnt string
}

func newResizeLab(t *testing.T, size int64, fsType string) *resizeLab {
	t.Helper()
	requireRoot(t)
	requireTools(t, "losetup", "truncate", "stat", "blockdev", "findmnt", "blkid", "dumpe2fs", "resize2fs", "e2fsck", "xfs_info", "xfs_growfs", "btrfs")
	l := &resizeLab{file: sparseFile(t, size), mnt: t.TempDir()}
	l.dev = attach(t, l.file)
	switch fsType {
	case "ext4":
		sh(t, "mkfs.ext4", "-q", "-F", l.dev)
	case "xfs":
		sh(t, "mkfs.xfs", "-q", "-f", l.dev)
	case "btrfs":
		sh(t, "mkfs.btrfs", "-q", "-f", l.dev)
	}
	t.Cleanup(func() { exec.Command("umount", l.mnt).Run() })
	return l
}

func (l *resizeLab) mount(t *testing.T) {
	t.Helper()
	sh(t, "mount", l.dev, l.mnt)
}

func (l *resizeLab) umount(t *testing.T) {
	t.Helper()
	sh(t, "umount", l.mnt)
}

// sizes returns the size of the file, the loop device and the filesystem.
func (l *resizeLab) sizes(t *testing.T) []int64 {
	t.Helper()
	ctx := context.Background()
	s, err := OpenLoopStack(ctx, &run.Local{}, l.dev, "", "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Sizes(ctx, &run.Local{})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(l.file)
	if err != nil {
		t.Fatal(err)
	}
	return append([]int64{fi.Size()}, got...)
}

func (l *resizeLab) want(t *testing.T, what string, file, fs int64) {
	t.Helper()
	if got := l.sizes(t); !slices.Equal(got, []int64{file, file, fs}) {
		t.Fatalf("%s: file, device, fs = %v; want %d, %d, %d", what, got, file, file, fs)
	}
}

func runResize(t *testing.T, p atomic.Params, extra ...atomic.Option) (Resized, error) {
	t.Helper()
	var res Resized
	ctx := context.Background()
	err := atomic.Run(ctx, "resize", func(tx *atomic.Tx) error { return tx.Do(ctx, p, &res) }, opts(t, extra...)...)
	return res, err
}

func wantInvalid(t *testing.T, err error, msg string) {
	t.Helper()
	if atomic.ExitCode(err) != atomic.ExitInvalid || !strings.Contains(err.Error(), msg) {
		t.Fatalf("want a bad-input error (exit 2) saying %q, got exit %d: %v", msg, atomic.ExitCode(err), err)
	}
}

const mib = 1 << 20

// hasCap reports whether this process has capability bit in its
// effective set.
func hasCap(t *testing.T, bit uint) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n&(1<<bit) != 0
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return false
}

func TestResizeExt4Offline(t *testing.T) {
	l := newResizeLab(t, 64*mib, "ext4")
	// grow, rolled back: every layer back to 64 MiB
	if err := doFail(t, Resize{File: l.file, Size: "+64M"}); err != nil {
		t.Fatal(err)
	}
	l.want(t, "grow rolled back", 64*mib, 64*mib)
	// grow, committed (by device, type checked)
	res, err := runResize(t, Resize{Device: l.dev, Type: "ext4", Size: "128MiB"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Size != 128*mib || res.FSSize != 128*mib || res.Before != 64*mib {
		t.Fatalf("result %+v", res)
	}
	l.want(t, "grown", 128*mib, 128*mib)
	// the same size again: a no-op
	if _, err := runResize(t, Resize{Device: l.dev, Size: "128M"}); err != nil {
		t.Fatal(err)
	}
	// data written, then shrunk: still there and fsck-clean
	l.mount(t)
	data := make([]byte, 6*mib)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(l.mnt, "data"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	// mounted: shrink refused, nothing changed
	_, err = runResize(t, Resize{File: l.file, Size: "48M"})
	wantInvalid(t, err, "shrinks only unmounted")
	l.want(t, "refused mounted shrink", 128*mib, 128*mib)
	l.umount(t)
	// below the minimum: refused, nothing changed
	_, err = runResize(t, Resize{File: l.file, Size: "4M"})
	wantInvalid(t, err, "would cut data")
	l.want(t, "refused shrink below minimum", 128*mib, 128*mib)
	// an odd size is rounded down to the block size (1 KiB here)
	if _, err := runResize(t, Resize{File: l.file, Size: "49153K"}); err != nil {
		t.Fatal(err)
	}
	l.want(t, "shrunk", 48*mib+1024, 48*mib+1024)
	sh(t, "e2fsck", "-f", "-n", l.dev)
	l.mount(t)
	got, err := os.ReadFile(filepath.Join(l.mnt, "data"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("data after shrink: %v (equal %v)", err, bytes.Equal(got, data))
	}
	l.umount(t)
}

func TestResizeExt4Online(t *testing.T) {
	l := newResizeLab(t, 64*mib, "ext4")
	l.mount(t)
	// a reversible grow of a mounted ext4 is refused: it could not shrink back
	_, err := runResize(t, Resize{File: l.file, Size: "+32M"})
	wantInvalid(t, err, "use fs.grow")
	l.want(t, "refused online reversible grow", 64*mib, 64*mib)
	// fs.grow does it online, at commit. The kernel allows an online ext4
	// resize only with CAP_SYS_RESOURCE; without it (a confined root) the
	// grow fails and must leave every layer as it was.
	res, err := runResize(t, Grow{File: l.file, Size: "+32M"})
	if !hasCap(t, 24) { // CAP_SYS_RESOURCE
		t.Log("LAB LIMIT: this root lacks CAP_SYS_RESOURCE: checking that the refused online grow changes nothing, not the grow itself")
		if err == nil || !strings.Contains(err.Error(), "Permission denied") || !strings.Contains(err.Error(), "put back") {
			t.Fatalf("online grow without CAP_SYS_RESOURCE: %v", err)
		}
		l.want(t, "refused online grow", 64*mib, 64*mib)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.FSSize != 96*mib {
		t.Fatalf("result %+v", res)
	}
	l.want(t, "grown online", 96*mib, 96*mib)
	// fs.grow refuses a shrink
	_, err = runResize(t, Grow{File: l.file, Size: "64M"})
	wantInvalid(t, err, "only grows")
	l.want(t, "refused fs.grow shrink", 96*mib, 96*mib)
}

func TestResizeXFS(t *testing.T) {
	l := newResizeLab(t, 320*mib, "xfs")
	// unmounted: xfs_growfs needs a mount
	_, err := runResize(t, Grow{Device: l.dev, Size: "+64M"})
	wantInvalid(t, err, "mount it first")
	l.mount(t)
	_, err = runResize(t, Resize{Device: l.dev, Size: "+64M"})
	wantInvalid(t, err, "use fs.grow")
	_, err = runResize(t, Resize{Device: l.dev, Size: "256M"})
	wantInvalid(t, err, "cannot shrink")
	l.want(t, "refused", 320*mib, 320*mib)
	if _, err := runResize(t, Grow{Device: l.dev, Type: "xfs", Size: "384M"}); err != nil {
		t.Fatal(err)
	}
	l.want(t, "grown", 384*mib, 384*mib)
	// wrong type named: refused
	_, err = runResize(t, Grow{Device: l.dev, Type: "ext4", Size: "400M"})
	wantInvalid(t, err, `holds "xfs"`)
}

func TestResizeBtrfs(t *testing.T) {
	l := newResizeLab(t, 256*mib, "btrfs")
	_, err := runResize(t, Resize{File: l.file, Size: "+64M"})
	wantInvalid(t, err, "mount it first")
	l.mount(t)
	data := make([]byte, 4*mib)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(l.mnt, "data"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	// grow rolled back (online shrink back)
	if err := doFail(t, Resize{File: l.file, Size: "+64M"}); err != nil {
		t.Fatal(err)
	}
	l.want(t, "grow rolled back", 256*mib, 256*mib)
	if _, err := runResize(t, Resize{File: l.file, Size: "384M"}); err != nil {
		t.Fatal(err)
	}
	l.want(t, "grown", 384*mib, 384*mib)
	// below the kernel's 256 MiB floor: refused
	_, err = runResize(t, Resize{File: l.file, Size: "16M"})
	wantInvalid(t, err, "no less than 256M")
	l.want(t, "refused shrink", 384*mib, 384*mib)
	// shrink, rolled back, then committed
	if err := doFail(t, Resize{File: l.file, Size: "-96M"}); err != nil {
		t.Fatal(err)
	}
	l.want(t, "shrink rolled back", 384*mib, 384*mib)
	if _, err := runResize(t, Resize{File: l.file, Size: "288M"}); err != nil {
		t.Fatal(err)
	}
	l.want(t, "shrunk", 288*mib, 288*mib)
	sh(t, "sync")
	if got, err := os.ReadFile(filepath.Join(l.mnt, "data")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("data after shrink: %v", err)
	}
}

// TestResizeFailpoints fails the resize after its effect, before its done
// record (the step is uncertain: Check finds it done, the undo resizes
// back), and in its undo (rollback incomplete; a second rollback finishes).
func TestResizeFailpoints(t *testing.T) {
	tests := []struct {
		name, fs, size string
		start          int64
		mount          bool
	}{
		{"ext4 grow", "ext4", "+32M", 64 * mib, false},
		{"ext4 shrink", "ext4", "-16M", 64 * mib, false},
		{"btrfs grow", "btrfs", "+32M", 256 * mib, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newResizeLab(t, tc.start, tc.fs)
			if tc.mount {
				l.mount(t)
			}
			_, err := runResize(t, Resize{File: l.file, Size: tc.size}, atomic.WithFailpoints("1:after:error"))
			if !errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != atomic.ExitRolledBack {
				t.Fatalf("want a failpoint, rolled back: %v", err)
			}
			l.want(t, "rolled back after the effect", tc.start, tc.start)

			state := t.TempDir()
			ctx := context.Background()
			var id string
			err = atomic.Run(ctx, "resize", func(tx *atomic.Tx) error {
				id = tx.ID()
				if err := tx.Do(ctx, Resize{File: l.file, Size: tc.size}, nil); err != nil {
					return err
				}
				return errors.New("boom")
			}, atomic.WithStateDir(state), atomic.WithFailpoints("1:undo:error"))
			if atomic.ExitCode(err) != atomic.ExitRollbackIncomplete {
				t.Fatalf("want rollback incomplete: %v", err)
			}
			if got := l.sizes(t); got[2] == tc.start {
				t.Fatalf("resize did not happen before the failed undo: %v", got)
			}
			if err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(state), atomic.WithFailpoints("")); err != nil {
				t.Fatal(err)
			}
			l.want(t, "second rollback", tc.start, tc.start)
		})
	}
}

// TestResizeCLI runs the built binary: bad input exits 2 and changes
// nothing; a dry run prints the commands; a real run resizes.
func TestResizeCLI(t *testing.T) {
	l := newResizeLab(t, 64*mib, "ext4")
	bin := filepath.Join(t.TempDir(), "bofh")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/bofh").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	state := t.TempDir()
	bofh := func(args ...string) (string, int) {
		cmd := exec.Command(bin, append([]string{"--state-dir", state, "--site", "/dev/null"}, args...)...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	bad := []struct {
		name string
		args []string
		msg  string
	}{
		{"bad size", []string{"resize", l.file, "12 parsecs"}, "size"},
		{"double sign", []string{"resize", l.file, "+-1G"}, "size"},
		{"zero", []string{"resize", l.dev, "0"}, "zero"},
		{"below minimum", []string{"resize", l.dev, "2M"}, "would cut data"},
		{"shrink by more than the size", []string{"resize", l.dev, "--", "-1G"}, "cannot shrink"},
		{"wrong type", []string{"resize", l.dev, "+1M", "--type", "xfs"}, `holds "ext4"`},
		{"bad type", []string{"resize", l.dev, "+1M", "--type", "ntfs"}, "want one of"},
		{"missing", []string{"resize", "/nonexistent/disk.img", "1G"}, "no such file"},
		{"relative", []string{"resize", "disk.img", "1G"}, "absolute"},
		{"not a loop", []string{"resize", "/dev/null", "1G"}, "not a"},
		{"grow shrinks", []string{"resize", "--irreversible", l.dev, "--", "-1M"}, "only grows"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			out, code := bofh(tc.args...)
			if code != 2 || !strings.Contains(out, tc.msg) {
				t.Fatalf("want exit 2 saying %q, got %d: %s", tc.msg, code, out)
			}
		})
	}
	l.want(t, "after bad input", 64*mib, 64*mib)
	out, code := bofh("--dry-run", "resize", l.file, "+16M")
	if code != 0 || !strings.Contains(out, "would run: truncate") || !strings.Contains(out, "would run: resize2fs") {
		t.Fatalf("dry run: %d %s", code, out)
	}
	l.want(t, "after dry run", 64*mib, 64*mib)
	out, code = bofh("resize", l.file, "+16M", "-o", "json")
	if code != 0 || !strings.Contains(out, `"fs_size": 83886080`) {
		t.Fatalf("resize: %d %s", code, out)
	}
	l.want(t, "after resize", 80*mib, 80*mib)
}
