package hosttest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestRequireRoot(t *testing.T) {
	RequireRoot(t)
	if os.Geteuid() != 0 {
		t.Fatal("RequireRoot returned for a non-root user")
	}
}

func TestLoopFileDetachedOnCleanup(t *testing.T) {
	RequireRoot(t)
	var dev, backing string
	t.Run("inner", func(t *testing.T) {
		dev = LoopFile(t, 32<<20)
		if !strings.HasPrefix(dev, "/dev/loop") {
			t.Fatalf("device %q", dev)
		}
		backing = Cmd(t, "losetup", "--noheadings", "--output", "BACK-FILE", dev)
		size := Cmd(t, "blockdev", "--getsize64", dev)
		if size != "33554432" {
			t.Fatalf("size %s", size)
		}
	})
	out, _ := exec.Command("losetup", "--noheadings", "--output", "NAME", "--associated", backing).Output()
	if strings.TrimSpace(string(out)) != "" {
		t.Fatalf("%s still attached to %s after cleanup", backing, out)
	}
	if _, err := os.Stat(backing); !os.IsNotExist(err) {
		t.Fatalf("backing file %s not removed: %v", backing, err)
	}
}

func TestTempMount(t *testing.T) {
	RequireRoot(t)
	tests := []struct {
		name, source, fstype, opts string
	}{
		{"tmpfs", "bofhtest", "tmpfs", "size=1m"},
		{"ext4-loop", "", "ext4", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.source
			if src == "" {
				src = LoopFile(t, 16<<20)
				Cmd(t, "mkfs."+tc.fstype, "-q", src)
			}
			var dir string
			t.Run("mounted", func(t *testing.T) {
				dir = TempMount(t, src, tc.fstype, tc.opts)
				if err := os.WriteFile(filepath.Join(dir, "x"), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
				var st, parent unix.Stat_t
				unix.Stat(dir, &st)
				unix.Stat(filepath.Dir(dir), &parent)
				if st.Dev == parent.Dev {
					t.Fatalf("%s is not a mount point", dir)
				}
			})
			if b, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(b), " "+dir+" ") {
				t.Fatalf("%s still mounted after cleanup", dir)
			}
		})
	}
}

func TestNetNS(t *testing.T) {
	RequireRoot(t)
	ns := NetNS(t, "bofh-hosttest")
	if _, err := os.Stat(ns.Path); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		t.Fatal(err)
	}
	var inside []string
	err := ns.Do(func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			inside = append(inside, i.Name)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(inside) != 1 || inside[0] != "lo" {
		t.Fatalf("interfaces inside the namespace: %v", inside)
	}
	// Threads handed back to the scheduler are in the original namespace.
	orig, _ := os.Readlink("/proc/self/ns/net")
	for i := 0; i < 20; i++ {
		if err := ns.Do(func() error { return nil }); err != nil {
			t.Fatal(err)
		}
		if cur, _ := os.Readlink("/proc/thread-self/ns/net"); cur != orig {
			t.Fatalf("thread left in namespace %s (want %s)", cur, orig)
		}
	}
	t.Run("deleted-on-cleanup", func(t *testing.T) {
		var p string
		t.Run("inner", func(t *testing.T) { p = NetNS(t, "bofh-hosttest-2").Path })
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s still exists: %v", p, err)
		}
	})
}

func TestNetNSBadName(t *testing.T) {
	ft := &fakeT{TB: t}
	func() {
		defer func() { recover() }()
		NetNS(ft, "a/b")
	}()
	if !ft.failed {
		t.Fatal("bad name accepted")
	}
}

// fakeT records Fatal without stopping the real test.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Fatalf(string, ...any) { f.failed = true; panic("fatal") }
func (f *fakeT) Fatal(...any)          { f.failed = true; panic("fatal") }

// TestSshd logs in as root with the client command, copies a file with
// rsync over RSYNC_RSH, and finds the port closed after Stop.
func TestSshd(t *testing.T) {
	s := Sshd(t)
	id := Cmd(t, append(append([]string{}, s.SSH...), "root@127.0.0.1", "id", "-u")...)
	if id != "0" {
		t.Fatalf("id -u over ssh: %q", id)
	}
	src := filepath.Join(t.TempDir(), "a b")
	if err := os.WriteFile(src, []byte("over ssh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "copy")
	cmd := exec.Command("rsync", "-s", "--", "root@127.0.0.1:"+src, dst)
	cmd.Env = append(os.Environ(), s.Env()...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rsync with %s: %v\n%s", s.Env(), err, out)
	}
	if b, err := os.ReadFile(dst); err != nil || string(b) != "over ssh\n" {
		t.Fatalf("copied %q %v", b, err)
	}
	s.Stop()
	s.Stop()
	if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))); err == nil {
		c.Close()
		t.Fatalf("port %d still accepts after Stop", s.Port)
	}
}

const leakChildEnv = "BOFH_HOSTTEST_LEAK_CHILD"

// TestLeakChild is TestSweepAfterKill's child: it makes one of everything,
// reports it on stdout and waits to be killed.
func TestLeakChild(t *testing.T) {
	ns := os.Getenv(leakChildEnv)
	if ns == "" {
		t.Skip("helper process for TestSweepAfterKill")
	}
	dev := LoopFile(t, 16<<20)
	Cmd(t, "mkfs.ext4", "-q", dev)
	mnt := TempMount(t, dev, "ext4", "")
	NetNS(t, ns)
	s := Sshd(t)
	var keyDir string
	for i, a := range s.SSH {
		if a == "-i" {
			keyDir = filepath.Dir(s.SSH[i+1])
		}
	}
	fmt.Printf("READY %s %s %s %d\n", dev, mnt, keyDir, s.Port)
	time.Sleep(time.Minute)
	t.Fatal("not killed")
}

// TestSweepAfterKill SIGKILLs a test process that holds a loop device, a
// mount on it, a network namespace and an sshd: sshd dies with it (the
// parent-death signal), the kernel objects survive it, and Sweep removes
// them and the files named after the dead process.
func TestSweepAfterKill(t *testing.T) {
	RequireRoot(t)
	ns := fmt.Sprintf("bofh-sweep-%d", os.Getpid())
	cmd := exec.Command(os.Args[0], "-test.run=^TestLeakChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), leakChildEnv+"="+ns)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var dev, mnt, keyDir string
	var port int
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "READY %s %s %s %d", &dev, &mnt, &keyDir, &port); err == nil {
			break
		}
	}
	if dev == "" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not get ready:\n%s", stderr.String())
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	backing := Cmd(t, "losetup", "--noheadings", "--output", "BACK-FILE", dev)
	left := func() []string {
		var l []string
		if _, err := os.Stat("/sys/block/" + filepath.Base(dev) + "/loop/backing_file"); err == nil {
			l = append(l, "loop "+dev)
		}
		if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), " "+mnt+" ") {
			l = append(l, "mount "+mnt)
		}
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			l = append(l, "netns "+ns)
		}
		for _, p := range []string{mnt, keyDir, strings.TrimSuffix(backing, " (deleted)")} {
			if _, err := os.Stat(p); err == nil {
				l = append(l, "file "+p)
			}
		}
		if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			c.Close()
			l = append(l, "sshd on port "+strconv.Itoa(port))
		}
		sort.Strings(l)
		return l
	}
	// sshd gets SIGKILL from the kernel; give it a moment to go.
	for i := 0; i < 50 && slices.ContainsFunc(left(), func(s string) bool { return strings.HasPrefix(s, "sshd") }); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	want := []string{"file " + strings.TrimSuffix(backing, " (deleted)"), "file " + keyDir, "file " + mnt,
		"loop " + dev, "mount " + mnt, "netns " + ns}
	sort.Strings(want)
	if diff := cmp.Diff(want, left()); diff != "" {
		t.Fatalf("after SIGKILL (-want +got):\n%s", diff)
	}
	if err := Sweep(os.TempDir()); err != nil {
		t.Errorf("sweep: %v", err)
	}
	if diff := cmp.Diff([]string(nil), left()); diff != "" {
		t.Fatalf("after Sweep (-want +got):\n%s", diff)
	}
}
