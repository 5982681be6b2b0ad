package libvirt

// The libvirtd lab: the tests start Debian's libvirtd themselves, as root,
// in private mount and PID namespaces. A re-exec of this test binary is
// PID 1 there: it makes every mount private, mounts its own /proc, a tmpfs
// on /run and an overlay on /etc (its upper layer on a tmpfs, so that
// /etc/libvirt can be made even where the host has none: libvirt-daemon
// alone does not make it), binds a temporary directory over /var and
// /etc/libvirt, then starts libvirtd and reaps. The daemon therefore runs
// the real qemu:///system driver with its own state, a qemu.conf that runs
// qemu as root (Debian's libvirt-qemu user comes with libvirt-daemon-system,
// which would also start a system daemon) without cgroups, and a unix
// socket in the temporary directory; nothing on the host changes.
//
// Nothing outlives the tests: PID 1 gets SIGKILL when the test binary dies
// (hosttest.StartDaemon), and the kernel kills everything else in the PID
// namespace with it (libvirtd, qemu). The temporary directory is named
// after the test process (hosttest.Owner); the next start removes those of
// dead processes.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bofhkit/bofh/internal/hosttest"
)

const (
	envDaemonChild = "BOFH_LIBVIRTD_CHILD" // set in the re-exec that becomes PID 1 and starts libvirtd
	envCrashChild  = "BOFH_LIBVIRT_CRASH_CHILD"
	dirPrefix      = "bofh-libvirtd-"
)

type daemon struct {
	// noKVM leaves /dev/kvm out of the /dev libvirt makes for qemu (as
	// seen in a chroot): a KVM domain is defined, but does not start.
	noKVM bool

	once   sync.Once
	dir    string
	socket string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

var (
	lab      = &daemon{}
	noKVMLab = &daemon{noKVM: true}
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
	noKVMLab.stop()
	os.Exit(code)
}

// daemonChild is PID 1 of the lab's namespaces: it sets up the mounts,
// starts libvirtd, forwards SIGTERM and SIGINT to it, reaps every orphan
// and exits when libvirtd does (the kernel then kills what is left).
func daemonChild(dir string) {
	die := func(err error) {
		fmt.Fprintln(os.Stderr, "libvirtd lab:", err)
		os.Exit(97)
	}
	mount := func(src, dst, fstype string, flags uintptr, data string) {
		if err := syscall.Mount(src, dst, fstype, flags, data); err != nil {
			die(fmt.Errorf("mount %s (%s) on %s: %w", src, fstype, dst, err))
		}
	}
	mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, "")
	mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "")
	mount("tmpfs", "/run", "tmpfs", 0, "mode=0755")
	rw := filepath.Join(dir, "etc-rw")
	mount("tmpfs", rw, "tmpfs", 0, "mode=0755")
	for _, d := range []string{"upper", "work"} {
		if err := os.Mkdir(filepath.Join(rw, d), 0o755); err != nil {
			die(err)
		}
	}
	err := syscall.Mount("overlay", "/etc", "overlay", 0, fmt.Sprintf("lowerdir=/etc,upperdir=%s/upper,workdir=%s/work", rw, rw))
	if _, serr := os.Stat("/etc/libvirt"); err != nil && serr != nil {
		die(fmt.Errorf("overlay on /etc, to make /etc/libvirt in: %w", err))
	} // else: without the overlay, bind over the host's /etc/libvirt
	if err := os.MkdirAll("/etc/libvirt", 0o755); err != nil {
		die(err)
	}
	for _, b := range [][2]string{{"var", "/var"}, {"etc", "/etc/libvirt"}, {"passwd", "/etc/passwd"}, {"group", "/etc/group"}} {
		mount(filepath.Join(dir, b[0]), b[1], "", syscall.MS_BIND, "")
	}
	bin, err := exec.LookPath("libvirtd")
	if err != nil {
		die(err)
	}
	argv := []string{bin, "--config", filepath.Join(dir, "libvirtd.conf"), "--pid-file", filepath.Join(dir, "libvirtd.pid")}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	p, err := os.StartProcess(bin, argv, &os.ProcAttr{Files: []*os.File{nil, os.Stdout, os.Stderr}})
	if err != nil {
		die(err)
	}
	go func() {
		for s := range sigs {
			p.Signal(s)
		}
	}()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			die(fmt.Errorf("wait: %w", err))
		}
		if pid != p.Pid {
			continue // an orphan: qemu's daemonizing parent, a helper
		}
		fmt.Fprintf(os.Stderr, "libvirtd lab: libvirtd exited: %v\n", ws)
		if ws.Signaled() {
			os.Exit(128 + int(ws.Signal()))
		}
		os.Exit(ws.ExitStatus())
	}
}

// requireDaemon starts the lab's libvirtd once and returns its socket. It
// fails the test when libvirtd cannot start.
func requireDaemon(t *testing.T) string {
	t.Helper()
	return lab.require(t)
}

func (d *daemon) require(t *testing.T) string {
	t.Helper()
	hosttest.RequireRoot(t) // libvirtd runs as root
	d.once.Do(func() { d.err = d.start() })
	if d.err != nil {
		t.Fatalf("libvirtd lab: %v", d.err)
	}
	return d.socket
}

// sweepStale removes the directories of labs whose test process died
// without stopping them (their processes died with it).
func sweepStale() {
	ents, _ := os.ReadDir(os.TempDir())
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), dirPrefix)
		if !ok {
			continue
		}
		if owner, _, ok := strings.Cut(rest, "-"); ok && hosttest.OwnerGone(owner) {
			os.RemoveAll(filepath.Join(os.TempDir(), e.Name()))
		}
	}
}

func (d *daemon) start() error {
	if _, err := exec.LookPath("libvirtd"); err != nil {
		return fmt.Errorf("libvirtd not installed (make deps: deps/libvirt.txt): %w", err)
	}
	sweepStale()
	dir, err := os.MkdirTemp("", dirPrefix+hosttest.Owner()+"-")
	if err != nil {
		return err
	}
	d.dir = dir
	for _, sub := range []string{"sock", "etc", "etc-rw", "var/lib/libvirt", "var/cache/libvirt", "var/log/libvirt", "var/tmp"} {
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
	// No cgroups: libvirt would make a cgroup per domain, which outlives a
	// killed lab.
	qconf := "user = \"root\"\ngroup = \"root\"\nremember_owner = 0\nstdio_handler = \"file\"\ncgroup_controllers = [ ]\n"
	if d.noKVM {
		qconf += `cgroup_device_acl = [ "/dev/null", "/dev/full", "/dev/zero", "/dev/random", "/dev/urandom", "/dev/ptmx" ]` + "\n"
	}
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
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID}
	if err := hosttest.StartDaemon(cmd); err != nil {
		return fmt.Errorf("start libvirtd: %w", err)
	}
	d.cmd = cmd
	d.exited = make(chan struct{})
	var werr error
	go func() { werr = cmd.Wait(); close(d.exited) }()
	d.socket = filepath.Join(dir, "sock", "libvirt-sock")
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			return fmt.Errorf("libvirtd exited: %v\n%s", werr, d.logs())
		case <-time.After(100 * time.Millisecond):
		}
		// the socket file appears at bind, before libvirtd listens
		if c, err := net.Dial("unix", d.socket); err == nil {
			c.Close()
			return nil
		}
	}
	return fmt.Errorf("libvirtd socket %s did not accept connections in 30s\n%s", d.socket, d.logs())
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

// stop kills the lab's PID 1, and with it libvirtd and every qemu (the
// kernel kills a PID namespace with its first process and reaps the rest
// before that one's exit is reported), then removes its directory.
func (d *daemon) stop() {
	if d.cmd != nil {
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
	if d.dir != "" {
		os.RemoveAll(d.dir)
	}
}
