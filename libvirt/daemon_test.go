package libvirt

// The libvirtd lab: the tests start Debian's libvirtd themselves, as root,
// in a private mount namespace (a re-exec of this test binary unshares it,
// makes every mount private, mounts a tmpfs on /run and binds a temporary
// directory over /var and /etc/libvirt, then execs libvirtd). The daemon
// therefore runs the real qemu:///system driver with its own state, a
// qemu.conf that runs qemu as root (Debian's libvirt-qemu user comes with
// libvirt-daemon-system, which would also start a system daemon), and a
// unix socket in the temporary directory; nothing on the host changes.
// TestMain kills the daemon and any qemu it left behind.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bofhkit/bofh/internal/hosttest"
)

const (
	envDaemonChild = "BOFH_LIBVIRTD_CHILD" // set in the re-exec that becomes libvirtd
	envCrashChild  = "BOFH_LIBVIRT_CRASH_CHILD"
)

type daemon struct {
	dir    string
	socket string
	cmd    *exec.Cmd
	err    error
}

var (
	lab     daemon
	labOnce sync.Once
)

func TestMain(m *testing.M) {
	if os.Getenv(envDaemonChild) != "" {
		daemonChild(os.Getenv(envDaemonChild))
		return
	}
	if os.Getenv(envCrashChild) != "" {
		os.Exit(crashChild())
	}
	code := m.Run()
	lab.stop()
	os.Exit(code)
}

// daemonChild runs in the new mount namespace and becomes libvirtd.
func daemonChild(dir string) {
	die := func(err error) {
		fmt.Fprintln(os.Stderr, "libvirtd lab:", err)
		os.Exit(97)
	}
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		die(fmt.Errorf("make mounts private: %w", err))
	}
	if err := syscall.Mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"); err != nil {
		die(fmt.Errorf("tmpfs on /run: %w", err))
	}
	for src, dst := range map[string]string{filepath.Join(dir, "var"): "/var", filepath.Join(dir, "etc"): "/etc/libvirt",
		filepath.Join(dir, "passwd"): "/etc/passwd", filepath.Join(dir, "group"): "/etc/group"} {
		if err := syscall.Mount(src, dst, "", syscall.MS_BIND, ""); err != nil {
			die(fmt.Errorf("bind %s on %s: %w", src, dst, err))
		}
	}
	bin, err := exec.LookPath("libvirtd")
	if err != nil {
		die(err)
	}
	argv := []string{bin, "--config", filepath.Join(dir, "libvirtd.conf"), "--pid-file", filepath.Join(dir, "libvirtd.pid")}
	die(syscall.Exec(bin, argv, os.Environ()))
}

// requireDaemon starts the lab's libvirtd once and returns its socket. It
// fails the test when libvirtd cannot start.
func requireDaemon(t *testing.T) string {
	t.Helper()
	hosttest.RequireRoot(t) // libvirtd runs as root
	labOnce.Do(func() { lab.err = lab.start() })
	if lab.err != nil {
		t.Fatalf("libvirtd lab: %v", lab.err)
	}
	return lab.socket
}

func (d *daemon) start() error {
	if _, err := exec.LookPath("libvirtd"); err != nil {
		return fmt.Errorf("libvirtd not installed (make deps: deps/libvirt.txt): %w", err)
	}
	dir, err := os.MkdirTemp("", "bofh-libvirtd-")
	if err != nil {
		return err
	}
	d.dir = dir
	for _, sub := range []string{"sock", "etc", "var/lib/libvirt", "var/cache/libvirt", "var/log/libvirt", "var/tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	if err := os.Symlink("/run", filepath.Join(dir, "var/run")); err != nil {
		return err
	}
	conf := fmt.Sprintf(`unix_sock_dir = %q
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:%s/libvirtd.log"
`, filepath.Join(dir, "sock"), dir)
	if err := os.WriteFile(filepath.Join(dir, "libvirtd.conf"), []byte(conf), 0o600); err != nil {
		return err
	}
	// libvirtd looks up its compiled-in qemu user before it reads qemu.conf:
	// give the namespace passwd and group files that know it.
	for f, line := range map[string]string{"passwd": "libvirt-qemu:x:64055:64055:bofh lab:/var/lib/libvirt:/usr/sbin/nologin\n",
		"group": "libvirt-qemu:x:64055:\n"} {
		data, err := os.ReadFile("/etc/" + f)
		if err != nil {
			return err
		}
		if !strings.Contains(string(data), "\nlibvirt-qemu:") && !strings.HasPrefix(string(data), "libvirt-qemu:") {
			data = append(data, line...)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			return err
		}
	}
	qconf := "user = \"root\"\ngroup = \"root\"\nremember_owner = 0\nstdio_handler = \"file\"\n"
	if err := os.WriteFile(filepath.Join(dir, "etc", "qemu.conf"), []byte(qconf), 0o600); err != nil {
		return err
	}
	out, err := os.Create(filepath.Join(dir, "libvirtd.out"))
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envDaemonChild+"="+dir)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start libvirtd: %w", err)
	}
	d.cmd = cmd
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	d.socket = filepath.Join(dir, "sock", "libvirt-sock")
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			d.cmd = nil
			return fmt.Errorf("libvirtd exited: %v\n%s", err, d.logs())
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := os.Stat(d.socket); err == nil {
			return nil
		}
	}
	return fmt.Errorf("libvirtd socket %s did not appear in 30s\n%s", d.socket, d.logs())
}

func (d *daemon) logs() string {
	var b strings.Builder
	for _, f := range []string{"libvirtd.out", "libvirtd.log"} {
		data, _ := os.ReadFile(filepath.Join(d.dir, f))
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 20 {
			lines = lines[len(lines)-20:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", f, strings.Join(lines, "\n"))
	}
	return b.String()
}

// stop kills libvirtd and every process left in its mount namespace (qemu).
func (d *daemon) stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		if d.dir != "" {
			os.RemoveAll(d.dir)
		}
		return
	}
	pid := d.cmd.Process.Pid
	ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	var others []int
	if own, _ := os.Readlink("/proc/self/ns/mnt"); ns != "" && ns != own {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			var p int
			if _, err := fmt.Sscanf(e.Name(), "%d", &p); err != nil || p == pid {
				continue
			}
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", p)); l == ns {
				others = append(others, p)
			}
		}
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for _, p := range others {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	done := make(chan struct{})
	go func() {
		for i := 0; i < 50; i++ {
			if syscall.Kill(pid, 0) != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		close(done)
	}()
	<-done
	_ = syscall.Kill(pid, syscall.SIGKILL)
	os.RemoveAll(d.dir)
}
