package vmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Share is a host directory made visible inside the guest over 9p.
type Share struct {
	// HostPath is the directory on the host (absolute).
	HostPath string
	// GuestPath is where it is mounted in the guest (absolute); empty means
	// the same path as on the host.
	GuestPath string
	// ReadOnly mounts it read-only; otherwise guest writes reach the host.
	ReadOnly bool
}

// Config describes one guest. The zero value is usable.
type Config struct {
	// MemoryMiB is the guest's memory (default 1536, env BOFH_LAB_MEM).
	MemoryMiB int
	// CPUs is the number of vCPUs (default 2).
	CPUs int
	// Shares are extra 9p shares mounted before the command runs.
	Shares []Share
	// Env holds KEY=VALUE pairs added to the command's environment (the
	// guest always sets BOFH_IN_VM=1, DM_DISABLE_UDEV=1, LC_ALL=C, PATH).
	// Nothing else of the host's environment reaches the guest.
	Env []string
	// Dir is the command's working directory in the guest (default /).
	Dir string
	// Stdout and Stderr receive the command's output as it is produced
	// (default os.Stdout and os.Stderr).
	Stdout, Stderr io.Writer
	// Log receives the lab's own progress lines (default: discarded).
	Log io.Writer
	// Timeout bounds the whole boot+command+shutdown (default 10 minutes);
	// the context passed to Run bounds it too.
	Timeout time.Duration
	// Hostname is the guest's hostname (default "bofh-lab").
	Hostname string
	// Accel is "kvm", "tcg" or "" for automatic (env BOFH_LAB_ACCEL): KVM
	// first, TCG when KVM cannot start.
	Accel string
	// Interactive attaches the guest's serial console to this process's
	// terminal and runs the command on it (for `make lab-shell`).
	Interactive bool

	net *netConfig
}

type netConfig struct {
	addr       string // CIDR inside the guest, e.g. 10.99.0.1/24
	mac        string
	localPort  int
	remotePort int
}

var envKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

func (c *Config) defaults() {
	if c.MemoryMiB == 0 {
		c.MemoryMiB = 1536
		if v, err := strconv.Atoi(os.Getenv("BOFH_LAB_MEM")); err == nil && v > 0 {
			c.MemoryMiB = v
		}
	}
	if c.CPUs == 0 {
		c.CPUs = 2
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Minute
	}
	if c.Hostname == "" {
		c.Hostname = "bofh-lab"
	}
	if c.Accel == "" {
		c.Accel = os.Getenv("BOFH_LAB_ACCEL")
	}
	if c.Dir == "" {
		c.Dir = "/"
	}
}

func (c *Config) validate(argv []string) error {
	for _, a := range argv {
		if strings.ContainsRune(a, 0) {
			return fmt.Errorf("vmtest: argument %q contains NUL", a)
		}
		if strings.HasSuffix(a, "\n") {
			return fmt.Errorf("vmtest: argument %q ends in a newline (the guest would drop it)", a)
		}
	}
	for _, e := range c.Env {
		if !envKey.MatchString(e) || strings.ContainsAny(e, "\n\x00") {
			return fmt.Errorf("vmtest: bad environment entry %q", e)
		}
	}
	for _, s := range c.Shares {
		g := s.GuestPath
		if g == "" {
			g = s.HostPath
		}
		if !filepath.IsAbs(s.HostPath) || !filepath.IsAbs(g) || strings.ContainsAny(s.HostPath+g, "\n\t,\x00") {
			return fmt.Errorf("vmtest: bad share %+v: paths must be absolute, without tabs, commas or newlines", s)
		}
	}
	if !filepath.IsAbs(c.Dir) || strings.ContainsAny(c.Dir, "\n\x00") {
		return fmt.Errorf("vmtest: bad working directory %q", c.Dir)
	}
	return nil
}

// ErrLab marks errors where the lab itself failed (qemu did not start, the
// guest did not boot or report a status), as opposed to the command failing.
var ErrLab = errors.New("vmtest: lab failure")

// Run boots a guest, runs argv inside it and returns argv's exit status.
// The guest is always torn down before Run returns (on success, error,
// timeout or context cancellation). A non-nil error (wrapping [ErrLab] when
// the lab itself failed) means no exit status is known.
func Run(ctx context.Context, cfg Config, argv ...string) (int, error) {
	cfg.defaults()
	if err := cfg.validate(argv); err != nil {
		return -1, err
	}
	mode := "run"
	if cfg.Interactive {
		mode = "tty"
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	g, err := boot(ctx, &cfg, mode, argv)
	if err != nil {
		return -1, err
	}
	defer g.close()
	return g.wait()
}

// guest is one running qemu.
type guest struct {
	cfg     *Config
	lab     *Lab
	runDir  string
	ctl     string
	accel   string
	cmd     *exec.Cmd
	done    chan struct{} // closed when qemu exited
	waitErr error
	started time.Time
	console *consoleWatch
	copies  sync.WaitGroup
	keep    bool
	closers []io.Closer
}

var (
	kvmMu     sync.Mutex
	kvmBroken bool
)

// boot prepares the lab and starts qemu, falling back from KVM to TCG when
// KVM fails before the guest printed anything.
func boot(ctx context.Context, cfg *Config, mode string, argv []string) (*guest, error) {
	lab, err := Prepare(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: prepare: %w", ErrLab, err)
	}
	accels := []string{cfg.Accel}
	if cfg.Accel == "" || cfg.Accel == "auto" {
		kvmMu.Lock()
		broken := kvmBroken || kvmKnownBroken(lab)
		kvmMu.Unlock()
		if _, err := os.Stat("/dev/kvm"); err == nil && !broken {
			accels = []string{"kvm", "tcg"}
		} else {
			accels = []string{"tcg"}
		}
	}
	var lastErr error
	for i, accel := range accels {
		g, err := startGuest(ctx, cfg, lab, accel, mode, argv)
		if err == nil {
			err = g.waitStage1(ctx)
			if err == nil {
				return g, nil
			}
			g.close()
		}
		lastErr = err
		if accel == "kvm" && i+1 < len(accels) && ctx.Err() == nil {
			fmt.Fprintf(cfg.Log, "vmtest: KVM failed (%v), falling back to TCG\n", err)
			kvmMu.Lock()
			kvmBroken = true
			markKVMBroken(lab, err)
			kvmMu.Unlock()
			continue
		}
		break
	}
	return nil, lastErr
}

func startGuest(ctx context.Context, cfg *Config, lab *Lab, accel, mode string, argv []string) (*guest, error) {
	runDir, err := os.MkdirTemp("", "bofh-lab-")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLab, err)
	}
	g := &guest{cfg: cfg, lab: lab, runDir: runDir, ctl: filepath.Join(runDir, "ctl"), accel: accel,
		done: make(chan struct{}), keep: os.Getenv("BOFH_LAB_KEEP") == "1"}
	if err := g.writeControl(mode, argv); err != nil {
		g.close()
		return nil, err
	}
	args := g.qemuArgs(mode)
	var lns []net.Listener
	if mode == "run" {
		for _, p := range []struct {
			name string
			w    io.Writer
		}{{"stdout", cfg.Stdout}, {"stderr", cfg.Stderr}} {
			ln, err := g.listen(p.name)
			if err != nil {
				g.close()
				return nil, err
			}
			lns = append(lns, ln)
			g.copies.Add(1)
			go g.pump(ln, p.w)
		}
	}
	g.console = &consoleWatch{stage1: make(chan struct{}), ready: make(chan struct{})}
	logf, err := os.Create(filepath.Join(runDir, "console.log"))
	if err != nil {
		g.close()
		return nil, fmt.Errorf("%w: %w", ErrLab, err)
	}
	g.closers = append(g.closers, logf)
	g.console.log = logf
	if !cfg.Interactive {
		ln, err := g.listen("console")
		if err != nil {
			g.close()
			return nil, err
		}
		g.copies.Add(1)
		go g.pump(ln, g.console)
	} else {
		close(g.console.stage1)
	}
	qlog, err := os.Create(filepath.Join(runDir, "qemu.log"))
	if err != nil {
		g.close()
		return nil, fmt.Errorf("%w: %w", ErrLab, err)
	}
	g.closers = append(g.closers, qlog)

	cmd := exec.Command("qemu-system-x86_64", args...)
	cmd.Stderr = qlog
	if cfg.Interactive {
		cmd.Stdin, cmd.Stdout = os.Stdin, os.Stdout
	} else {
		cmd.Stdout = qlog
	}
	// Own process group so teardown kills everything; SIGKILL qemu if this
	// process dies first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if cfg.Interactive {
		// qemu must stay in the terminal's foreground process group to
		// read it (a background group gets SIGTTIN).
		cmd.SysProcAttr.Setpgid = false
	}
	fmt.Fprintf(cfg.Log, "vmtest: booting %s with %s (%d MiB, %d vCPU), run dir %s\n",
		lab.KernelVersion, accel, cfg.MemoryMiB, cfg.CPUs, runDir)
	g.started = time.Now()
	if err := cmd.Start(); err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		g.close()
		return nil, fmt.Errorf("%w: start qemu: %w", ErrLab, err)
	}
	g.cmd = cmd
	go func() {
		g.waitErr = cmd.Wait()
		close(g.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			g.kill()
		case <-g.done:
		}
	}()
	return g, nil
}

func (g *guest) listen(name string) (net.Listener, error) {
	ln, err := net.Listen("unix", filepath.Join(g.runDir, name+".sock"))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLab, err)
	}
	g.closers = append(g.closers, ln)
	return ln, nil
}

// pump accepts qemu's connection on ln and copies it to w until qemu closes it.
func (g *guest) pump(ln net.Listener, w io.Writer) {
	defer g.copies.Done()
	c, err := ln.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	io.Copy(w, c)
}

func (g *guest) writeControl(mode string, argv []string) error {
	cfg := g.cfg
	files := map[string]string{
		"mode":     mode,
		"hostname": cfg.Hostname,
		"cwd":      cfg.Dir,
	}
	if len(cfg.Env) > 0 {
		files["env"] = strings.Join(cfg.Env, "\n") + "\n"
	}
	if cfg.net != nil {
		files["net"] = cfg.net.addr
	}
	var shares strings.Builder
	for i, s := range cfg.Shares {
		gp := s.GuestPath
		if gp == "" {
			gp = s.HostPath
		}
		rw := "rw"
		if s.ReadOnly {
			rw = "ro"
		}
		fmt.Fprintf(&shares, "share%d\t%s\t%s\n", i, rw, gp)
	}
	files["shares"] = shares.String()
	for i, a := range argv {
		files[filepath.Join("argv", strconv.Itoa(i))] = a
	}
	for name, data := range files {
		p := filepath.Join(g.ctl, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("%w: %w", ErrLab, err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			return fmt.Errorf("%w: %w", ErrLab, err)
		}
	}
	return nil
}

func fsdev(id, path, tag string, ro bool) []string {
	opt := "local,id=" + id + ",path=" + path + ",security_model=passthrough,multidevs=remap"
	if ro {
		opt += ",readonly=on"
	}
	return []string{"-fsdev", opt, "-device", "virtio-9p-pci,fsdev=" + id + ",mount_tag=" + tag}
}

func (g *guest) qemuArgs(mode string) []string {
	cfg := g.cfg
	a := []string{
		"-name", "bofh-lab-" + cfg.Hostname,
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-machine", "q35", "-m", strconv.Itoa(cfg.MemoryMiB), "-smp", strconv.Itoa(cfg.CPUs),
		"-kernel", g.lab.Kernel, "-initrd", g.lab.Initramfs,
		"-append", "console=ttyS0 panic=-1 oops=panic loglevel=4 mitigations=off random.trust_cpu=on tsc=reliable " + GuestCmdlineFlag,
	}
	if g.accel == "kvm" {
		a = append(a, "-accel", "kvm", "-cpu", "host")
	} else {
		a = append(a, "-accel", "tcg,thread=multi", "-cpu", "max")
	}
	if cfg.Interactive {
		a = append(a, "-serial", "mon:stdio")
	} else {
		a = append(a, "-chardev", "socket,id=con,path="+filepath.Join(g.runDir, "console.sock"), "-serial", "chardev:con")
	}
	a = append(a, fsdev("fsroot", "/", "hostroot", true)...)
	a = append(a, fsdev("fsctl", g.ctl, "bofhctl", false)...)
	a = append(a, fsdev("fsmods", g.lab.ModulesDir, "bofhmods", true)...)
	for i, s := range cfg.Shares {
		a = append(a, fsdev(fmt.Sprintf("fs%d", i), s.HostPath, fmt.Sprintf("share%d", i), s.ReadOnly)...)
	}
	a = append(a, "-device", "virtio-serial-pci,id=vser")
	if mode == "run" {
		for _, p := range []string{"stdout", "stderr"} {
			a = append(a, "-chardev", "socket,id="+p+",path="+filepath.Join(g.runDir, p+".sock"),
				"-device", "virtserialport,bus=vser.0,chardev="+p+",name=bofh."+p)
		}
	}
	if n := cfg.net; n != nil {
		a = append(a,
			"-netdev", fmt.Sprintf("socket,id=n0,udp=127.0.0.1:%d,localaddr=127.0.0.1:%d", n.remotePort, n.localPort),
			"-device", "virtio-net-pci,netdev=n0,mac="+n.mac)
	}
	return a
}

// waitStage1 waits until the guest's init printed its first line, or qemu
// exited (a failed start, e.g. KVM refused).
func (g *guest) waitStage1(ctx context.Context) error {
	limit := 2 * time.Minute
	if g.accel == "kvm" && g.cfg.Accel != "kvm" {
		// A working KVM reaches init in a few seconds; a broken one (seen:
		// nested KVM that answers the API but never runs the guest) hangs.
		limit = kvmBootLimit
	}
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-g.console.stage1:
		return nil
	case <-g.done:
		return fmt.Errorf("%w: qemu (%s) exited before the guest booted: %v: %s", ErrLab, g.accel, g.waitErr, g.qemuLogTail())
	case <-t.C:
		g.kill()
		return fmt.Errorf("%w: guest (%s) did not reach init within %s; console: %s", ErrLab, g.accel, limit, g.consolePath())
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrLab, ctx.Err())
	}
}

// wait waits for qemu to exit and returns the command's exit status.
func (g *guest) wait() (int, error) {
	<-g.done
	g.waitCopies()
	fmt.Fprintf(g.cfg.Log, "vmtest: guest %s exited after %.1fs (ready after %s)\n",
		g.cfg.Hostname, time.Since(g.started).Seconds(), g.console.readyAfter(g.started))
	b, err := os.ReadFile(filepath.Join(g.ctl, "exit"))
	if err != nil {
		g.keep = true
		return -1, fmt.Errorf("%w: guest reported no exit status (qemu: %v); console log %s: %s",
			ErrLab, g.waitErr, g.consolePath(), g.consoleTail())
	}
	rc, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		g.keep = true
		return -1, fmt.Errorf("%w: bad exit status %q", ErrLab, b)
	}
	return rc, nil
}

func (g *guest) waitCopies() {
	ch := make(chan struct{})
	go func() { g.copies.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
	}
}

func (g *guest) kill() {
	if g.cmd != nil && g.cmd.Process != nil {
		if g.cmd.SysProcAttr.Setpgid {
			syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
		} else {
			g.cmd.Process.Kill()
		}
	}
}

// close kills qemu if it still runs, waits for it and removes the run
// directory (kept when BOFH_LAB_KEEP=1 or something went wrong).
func (g *guest) close() {
	if g.cmd != nil {
		select {
		case <-g.done:
		default:
			g.kill()
			<-g.done
		}
	}
	for _, c := range g.closers {
		c.Close()
	}
	if g.keep {
		fmt.Fprintf(g.cfg.Log, "vmtest: kept run dir %s\n", g.runDir)
		return
	}
	os.RemoveAll(g.runDir)
}

func (g *guest) consolePath() string { return filepath.Join(g.runDir, "console.log") }

func (g *guest) consoleTail() string {
	b, _ := os.ReadFile(g.consolePath())
	return tail(b, 3000)
}

func (g *guest) qemuLogTail() string {
	b, _ := os.ReadFile(filepath.Join(g.runDir, "qemu.log"))
	return tail(b, 2000)
}

// consoleWatch records the serial console and notices the init's markers.
type consoleWatch struct {
	log     io.Writer
	mu      sync.Mutex
	line    []byte
	stage1  chan struct{}
	ready   chan struct{}
	s1, rdy bool
	readyAt time.Time
}

func (c *consoleWatch) Write(p []byte) (int, error) {
	c.log.Write(p)
	if os.Getenv("BOFH_LAB_CONSOLE") == "1" {
		os.Stderr.Write(p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.line = append(c.line, p...)
	for {
		i := bytes.IndexByte(c.line, '\n')
		if i < 0 {
			break
		}
		l := c.line[:i]
		if !c.s1 && bytes.Contains(l, []byte("bofh-lab: stage1 up")) {
			c.s1 = true
			close(c.stage1)
		}
		if !c.rdy && bytes.Contains(l, []byte("bofh-lab: stage2 ready")) {
			c.rdy = true
			c.readyAt = time.Now()
			close(c.ready)
		}
		c.line = c.line[i+1:]
	}
	return len(p), nil
}

func (c *consoleWatch) readyAfter(start time.Time) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.rdy {
		return "never"
	}
	return fmt.Sprintf("%.1fs", c.readyAt.Sub(start).Seconds())
}

// kvmBootLimit is how long a KVM guest may take to reach init before the lab
// gives up on KVM and falls back to TCG.
const kvmBootLimit = 20 * time.Second

// kvmVerdictFile remembers, per host kernel, that KVM did not work, so that
// later runs go straight to TCG instead of waiting kvmBootLimit again.
func kvmVerdictFile(lab *Lab) string {
	return filepath.Join(lab.CacheDir, "kvm-broken")
}

func hostRelease() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return "unknown"
	}
	var b []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

func kvmKnownBroken(lab *Lab) bool {
	b, err := os.ReadFile(kvmVerdictFile(lab))
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	return first == hostRelease()
}

func markKVMBroken(lab *Lab, why error) {
	os.WriteFile(kvmVerdictFile(lab), []byte(hostRelease()+"\n"+why.Error()+"\n"), 0o644)
}
