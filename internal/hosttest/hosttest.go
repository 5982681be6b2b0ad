// Package hosttest holds helpers for tests that run natively on the host as
// root (testing tier 4): root checks, loop devices over sparse files,
// temporary mounts and network namespaces, each undone in t.Cleanup even when
// the test fails, and by the next test process when this one was killed
// (see owner.go); daemons (sshd, rsync) die with the test binary. They also
// work inside the VM lab guest.
//
// The rule everywhere: a test that needs root FAILS when it is not root,
// unless BOFH_SKIP_ROOT=1 is set (then it skips loudly). Never a silent pass.
package hosttest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// RequireRoot fails the test unless it runs as root; with BOFH_SKIP_ROOT=1
// it skips instead.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("BOFH_SKIP_ROOT") == "1" {
		t.Skip("SKIPPED: needs root (BOFH_SKIP_ROOT=1 set)")
	}
	t.Fatal("this test needs root: run it as root, or set BOFH_SKIP_ROOT=1 to skip")
}

// Cmd runs argv and returns its trimmed stdout; it fails the test with
// stderr when the command fails.
func Cmd(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := output(argv...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func output(argv ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// LoopFile creates a sparse file of size bytes in a test temp dir, attaches
// it with `losetup --find --show` and returns the loop device. The device is
// detached and the file removed in t.Cleanup, even when the test fails.
func LoopFile(t testing.TB, size int64) string {
	t.Helper()
	RequireRoot(t)
	sweep()
	f, err := os.CreateTemp("", ownedName("loop", "*.img"))
	if err != nil {
		t.Fatalf("hosttest: %v", err)
	}
	name := f.Name()
	if err := f.Truncate(size); err != nil {
		f.Close()
		t.Fatalf("hosttest: truncate %s: %v", name, err)
	}
	f.Close()
	dev, err := output("losetup", "--find", "--show", name)
	if err != nil {
		os.Remove(name)
		t.Fatalf("hosttest: %v", err)
	}
	t.Cleanup(func() {
		if _, err := output("losetup", "--detach", dev); err != nil {
			t.Errorf("hosttest: cleanup: %v", err)
		}
		os.Remove(name)
	})
	return dev
}

// TempMount mounts source (a device, or a pseudo filesystem name) of type
// fstype with the given options (may be empty) on a fresh temporary
// directory and returns it. It is unmounted in t.Cleanup (lazily if busy)
// and the directory removed.
func TempMount(t testing.TB, source, fstype, options string) string {
	t.Helper()
	RequireRoot(t)
	sweep()
	dir, err := os.MkdirTemp("", ownedName("mnt", "*"))
	if err != nil {
		t.Fatalf("hosttest: %v", err)
	}
	argv := []string{"mount"}
	if fstype != "" {
		argv = append(argv, "-t", fstype)
	}
	if options != "" {
		argv = append(argv, "-o", options)
	}
	argv = append(argv, source, dir)
	if _, err := output(argv...); err != nil {
		os.Remove(dir)
		t.Fatalf("hosttest: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			if err2 := unix.Unmount(dir, unix.MNT_DETACH); err2 != nil {
				t.Errorf("hosttest: cleanup: umount %s: %v", dir, err)
				return
			}
		}
		if err := os.Remove(dir); err != nil {
			t.Errorf("hosttest: cleanup: %v", err)
		}
	})
	return dir
}

// NS is a network namespace created for a test.
type NS struct {
	// Name is the namespace's name under /run/netns.
	Name string
	// Path is /run/netns/<name>.
	Path string
}

// NetNS creates a network namespace with `ip netns add name` and deletes it
// in t.Cleanup. name must be unique among concurrently running tests. A
// marker file names this process as its owner, so that the next test
// process deletes the namespace if this one is killed before its cleanup.
func NetNS(t testing.TB, name string) *NS {
	t.Helper()
	RequireRoot(t)
	if name == "" || strings.ContainsAny(name, "/ \t\n") || name == "." || name == ".." {
		t.Fatalf("hosttest: bad netns name %q", name)
	}
	sweep()
	marker := filepath.Join(os.TempDir(), ownedName("netns", name))
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatalf("hosttest: %v", err)
	}
	if _, err := output("ip", "netns", "add", name); err != nil {
		os.Remove(marker)
		t.Fatalf("hosttest: %v", err)
	}
	ns := &NS{Name: name, Path: filepath.Join("/run/netns", name)}
	t.Cleanup(func() {
		if _, err := output("ip", "netns", "delete", name); err != nil {
			t.Errorf("hosttest: cleanup: %v", err)
			return
		}
		os.Remove(marker)
	})
	return ns
}

// Do runs fn on an OS thread switched into the namespace and returns its
// error. The thread is switched back afterwards; if that fails the thread
// is discarded (never returned to the Go scheduler in the wrong namespace).
// Goroutines started by fn do NOT run in the namespace.
func (ns *NS) Do(fn func() error) error {
	target, err := os.Open(ns.Path)
	if err != nil {
		return fmt.Errorf("hosttest: open %s: %w", ns.Path, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("hosttest: current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("hosttest: setns %s: %w", ns.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime terminates it when this
			// goroutine exits.
			errc <- fmt.Errorf("hosttest: setns back: %w (fn: %v)", err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Run runs argv inside the namespace with `ip netns exec` and returns its
// trimmed stdout.
func (ns *NS) Run(argv ...string) (string, error) {
	return output(append([]string{"ip", "netns", "exec", ns.Name}, argv...)...)
}
