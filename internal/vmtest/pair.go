package vmtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Guest is a running lab guest in agent mode: it executes commands sent by
// the host one at a time, through files in its control share that its init
// polls (no network between host and guest).
type Guest struct {
	// Name is the guest's hostname ("lab-a", "lab-b").
	Name string
	// Addr is the guest's address on the private pair network (e.g. 10.99.0.1).
	Addr string

	g    *guest
	mu   sync.Mutex
	n    int // next request number
	xfer int // last file transfer number
}

// Result is the outcome of a command run on a [Guest].
type Result struct {
	Stdout, Stderr []byte
	// ExitCode is the command's exit status.
	ExitCode int
}

// PairConfig configures [NewPair]. The zero value is usable.
type PairConfig struct {
	// MemoryMiB per guest (default 1024).
	MemoryMiB int
	// Shares are mounted in both guests.
	Shares []Share
	// Env is exported in both guests.
	Env []string
	// Log receives the lab's progress lines (default: discarded).
	Log io.Writer
	// BootTimeout bounds the wait for both guests to be ready (default 8m).
	BootTimeout time.Duration
	// Lifetime bounds how long the guests may run at all (default 60m); they
	// are killed after it even if Close is never called.
	Lifetime time.Duration
}

// Pair is two guests, A (lab-a, 10.99.0.1/24) and B (lab-b, 10.99.0.2/24),
// joined on eth0 by a qemu UDP socket network on the host's loopback. The
// guests have no other network.
type Pair struct {
	A, B *Guest

	cancel context.CancelFunc
}

// Pair network addresses.
const (
	PairAddrA = "10.99.0.1"
	PairAddrB = "10.99.0.2"
)

// NewPair boots the two guests in parallel and waits until both are ready.
// Close must be called to tear them down.
func NewPair(ctx context.Context, pc PairConfig) (*Pair, error) {
	if pc.MemoryMiB == 0 {
		pc.MemoryMiB = 1024
	}
	if pc.BootTimeout == 0 {
		pc.BootTimeout = 8 * time.Minute
	}
	if pc.Lifetime == 0 {
		pc.Lifetime = time.Hour
	}
	portA, portB, err := freeUDPPorts()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLab, err)
	}
	life, cancel := context.WithTimeout(context.Background(), pc.Lifetime)
	p := &Pair{cancel: cancel}
	mk := func(name, addr, mac string, local, remote int) *Config {
		c := &Config{MemoryMiB: pc.MemoryMiB, Shares: pc.Shares, Env: pc.Env, Hostname: name,
			net: &netConfig{addr: addr + "/24", mac: mac, localPort: local, remotePort: remote}}
		if pc.Log != nil {
			c.Log = pc.Log
		}
		c.defaults()
		return c
	}
	cfgs := []*Config{
		mk("lab-a", PairAddrA, "52:54:00:99:00:01", portA, portB),
		mk("lab-b", PairAddrB, "52:54:00:99:00:02", portB, portA),
	}
	guests := make([]*Guest, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, c := range cfgs {
		if err := c.validate(nil); err != nil {
			cancel()
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			g, err := boot(life, c, "agent", nil)
			if err != nil {
				errs[i] = err
				return
			}
			guests[i] = &Guest{Name: c.Hostname, Addr: c.net.addr[:len(c.net.addr)-3], g: g}
			errs[i] = guests[i].waitReady(ctx, pc.BootTimeout)
		}()
	}
	wg.Wait()
	p.A, p.B = guests[0], guests[1]
	if err := errors.Join(errs...); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// StartPair is [NewPair] for tests: it calls [RequireLab], fails the test if
// the pair cannot boot, and closes the pair in t.Cleanup.
func StartPair(t testing.TB) *Pair {
	t.Helper()
	RequireLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	p, err := NewPair(ctx, PairConfig{Log: testLog{t}})
	if err != nil {
		t.Fatalf("the two-guest lab did not start: %v", err)
	}
	t.Logf("vmtest: pair ready after %.1fs", time.Since(start).Seconds())
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Logf("vmtest: pair close: %v", err)
		}
	})
	return p
}

type testLog struct{ t testing.TB }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Logf("%s", b)
	return len(b), nil
}

// Close powers both guests off (killing them if they do not stop within
// 20 s) and removes their run directories.
func (p *Pair) Close() error {
	var wg sync.WaitGroup
	for _, g := range []*Guest{p.A, p.B} {
		if g == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.stop()
		}()
	}
	wg.Wait()
	p.cancel()
	return nil
}

func (x *Guest) stop() {
	os.WriteFile(filepath.Join(x.g.ctl, "stop"), nil, 0o644)
	select {
	case <-x.g.done:
	case <-time.After(20 * time.Second):
	}
	x.g.close()
}

func (x *Guest) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if _, err := os.Stat(filepath.Join(x.g.ctl, "ready")); err == nil {
			fmt.Fprintf(x.g.cfg.Log, "vmtest: %s ready after %.1fs\n", x.Name, time.Since(x.g.started).Seconds())
			return nil
		}
		select {
		case <-x.g.done:
			x.g.keep = true
			return fmt.Errorf("%w: %s exited while booting: %v; console log %s: %s", ErrLab, x.Name, x.g.waitErr, x.g.consolePath(), x.g.consoleTail())
		case <-ctx.Done():
			return fmt.Errorf("%w: %s: %w", ErrLab, x.Name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			x.g.keep = true
			return fmt.Errorf("%w: %s not ready after %s; console log %s", ErrLab, x.Name, limit, x.g.consolePath())
		}
	}
}

// Run runs argv on the guest (working directory /) and waits for it. A
// non-nil error means the command's fate is unknown (guest died, ctx done);
// a failing command is reported through Result.ExitCode.
func (x *Guest) Run(ctx context.Context, argv ...string) (Result, error) {
	return x.RunIn(ctx, "/", argv...)
}

// RunIn is [Guest.Run] with a working directory.
func (x *Guest) RunIn(ctx context.Context, dir string, argv ...string) (Result, error) {
	if len(argv) == 0 {
		return Result{}, errors.New("vmtest: empty argv")
	}
	c := Config{Dir: dir}
	if err := c.validate(argv); err != nil {
		return Result{}, err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	d := filepath.Join(x.g.ctl, "req", strconv.Itoa(x.n))
	files := map[string]string{"cwd": dir, "stdin": ""}
	for i, a := range argv {
		files[filepath.Join("argv", strconv.Itoa(i))] = a
	}
	for name, data := range files {
		p := filepath.Join(d, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return Result{}, fmt.Errorf("vmtest: %w", err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			return Result{}, fmt.Errorf("vmtest: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(d, "go"), nil, 0o644); err != nil {
		return Result{}, fmt.Errorf("vmtest: %w", err)
	}
	x.n++
	for {
		if b, err := os.ReadFile(filepath.Join(d, "exit")); err == nil {
			rc, err := strconv.Atoi(string(trimNL(b)))
			if err != nil {
				return Result{}, fmt.Errorf("vmtest: %s: bad exit status %q", x.Name, b)
			}
			var r Result
			r.ExitCode = rc
			r.Stdout, _ = os.ReadFile(filepath.Join(d, "stdout"))
			r.Stderr, _ = os.ReadFile(filepath.Join(d, "stderr"))
			return r, nil
		}
		select {
		case <-x.g.done:
			x.g.keep = true
			return Result{}, fmt.Errorf("%w: %s died running %q; console log %s: %s", ErrLab, x.Name, argv, x.g.consolePath(), x.g.consoleTail())
		case <-ctx.Done():
			return Result{}, fmt.Errorf("vmtest: %s: %q: %w", x.Name, argv, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// MustRun runs argv and fails the test unless it exits 0; it returns stdout.
func (x *Guest) MustRun(t testing.TB, argv ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, err := x.Run(ctx, argv...)
	if err != nil {
		t.Fatalf("%s: %v", x.Name, err)
	}
	if r.ExitCode != 0 {
		t.Fatalf("%s: %q exited %d\nstdout:\n%s\nstderr:\n%s", x.Name, argv, r.ExitCode, r.Stdout, r.Stderr)
	}
	return string(trimNL(r.Stdout))
}

// WriteFile writes data to path inside the guest (through the control
// share and the guest's cp).
func (x *Guest) WriteFile(ctx context.Context, path string, data []byte) error {
	x.mu.Lock()
	x.xfer++
	src := filepath.Join(x.g.ctl, "xfer", strconv.Itoa(x.xfer))
	x.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	if err := os.WriteFile(src, data, 0o644); err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	r, err := x.Run(ctx, "cp", filepath.Join("/run/bofh/ctl/xfer", filepath.Base(src)), path)
	if err != nil {
		return err
	}
	if r.ExitCode != 0 {
		return fmt.Errorf("vmtest: %s: write %s: %s", x.Name, path, r.Stderr)
	}
	return nil
}

// ConsoleLog returns the path of the guest's serial console log on the host
// (kept after Close when something failed or BOFH_LAB_KEEP=1).
func (x *Guest) ConsoleLog() string { return x.g.consolePath() }

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// freeUDPPorts returns two distinct UDP ports free on 127.0.0.1 (there is a
// small window before qemu binds them).
func freeUDPPorts() (int, int, error) {
	var ports []int
	var conns []net.PacketConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for len(ports) < 2 {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return 0, 0, err
		}
		conns = append(conns, c)
		ports = append(ports, c.LocalAddr().(*net.UDPAddr).Port)
	}
	return ports[0], ports[1], nil
}
