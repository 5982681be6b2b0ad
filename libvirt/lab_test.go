package libvirt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bofhkit/bofh/atomic"
)

// testConn opens test:///default through the lab daemon and keeps one
// connection open for the whole test: libvirtd's test driver keeps the
// state of test:///default only while a connection to it is open, and the
// steps dial and hang up for every call.
func testConn(t *testing.T) (Conn, *Client) {
	t.Helper()
	c := Conn{Socket: requireDaemon(t), URI: "test:///default"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := Dial(ctx, c)
	if err != nil {
		t.Fatalf("dial: %v\n%s", err, lab.logs())
	}
	t.Cleanup(func() { cl.Close() })
	return c, cl
}

// recipe is the workflow the failure matrix runs: a network, a pool, a
// volume, a domain using the volume's bridge, started.
func recipe(c Conn, dir string) []atomic.Params {
	return []atomic.Params{
		DefineNetwork{Conn: c, Spec: NetworkSpec{Name: "bofhnet", Bridge: "bofhbr0"}},
		StartNetwork{Conn: c, Name: "bofhnet"},
		DefinePool{Conn: c, Spec: PoolSpec{Name: "bofhpool", Type: "dir", Path: dir}},
		StartPool{Conn: c, Name: "bofhpool"},
		CreateVolume{Conn: c, Pool: "bofhpool", Spec: VolumeSpec{Name: "web.img", Capacity: "64MiB"}},
		DefineDomain{Conn: c, Spec: DomainSpec{Name: "bofhweb", Type: "test", VCPUs: 1, Memory: "128MiB",
			Title: `web <prod> & "friends"`, Disks: []Disk{{Source: "/dev/vg0/web", Target: "vda"}},
			NICs: []NIC{{Bridge: "bofhbr0", MAC: "52:54:00:aa:bb:cc"}}, Console: true}},
		StartDomain{Conn: c, Name: "bofhweb"},
	}
}

func runRecipe(ctx context.Context, steps []atomic.Params, opts ...atomic.Option) error {
	return atomic.Run(ctx, "libvirt-recipe", func(tx *atomic.Tx) error {
		for _, p := range steps {
			if err := tx.Do(ctx, p, nil); err != nil {
				return err
			}
		}
		return nil
	}, opts...)
}

// snapshot names what exists of ours, for "back to the starting state".
func snapshot(t *testing.T, cl *Client) string {
	t.Helper()
	var parts []string
	ds, err := cl.Domains()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		parts = append(parts, "domain:"+d.Name+":"+string(d.State))
	}
	ps, err := cl.Pools()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("pool:%s:%v", p.Name, p.Active))
	}
	ns, err := cl.Networks()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		parts = append(parts, fmt.Sprintf("net:%s:%v", n.Name, n.Active))
	}
	return strings.Join(parts, " ")
}

func TestTestDriverRecipe(t *testing.T) {
	c, cl := testConn(t)
	ctx := context.Background()
	before := snapshot(t, cl)
	steps := recipe(c, t.TempDir())
	if err := runRecipe(ctx, steps, atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints("")); err != nil {
		t.Fatalf("recipe: %v", err)
	}
	d, err := cl.Domain("bofhweb")
	if err != nil {
		t.Fatal(err)
	}
	if d.State != StateRunning || d.VCPUs != 1 || d.MemKiB != 128*1024 {
		t.Errorf("domain = %+v", d)
	}
	if d.Title != `web <prod> & "friends"` {
		t.Errorf("title came back as %q: XML escaping broken", d.Title)
	}
	if _, err := cl.Volume("bofhpool", "web.img"); err != nil {
		t.Errorf("volume: %v", err)
	}
	// Tear down with steps: shutdown (the test driver stops at once), undefine at commit.
	err = atomic.Run(ctx, "teardown", func(tx *atomic.Tx) error {
		var st Stopped
		if err := tx.Do(ctx, ShutdownDomain{DomainRef: DomainRef{Conn: c, Name: "bofhweb"}, Timeout: "5s"}, &st); err != nil {
			return err
		}
		if s, _ := cl.DomainState("bofhweb"); s != StateShutoff {
			return fmt.Errorf("after shutdown: %s", s)
		}
		return tx.Do(ctx, UndefineDomain{Conn: c, Name: "bofhweb"}, nil)
	}, atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints(""))
	if err != nil {
		t.Fatalf("teardown: %v", err)
	}
	if s, _ := cl.DomainState("bofhweb"); s != StateAbsent {
		t.Errorf("after undefine: %s", s)
	}
	for _, u := range []func() error{
		func() error { return cl.DeleteVolume("bofhpool", "web.img") },
		func() error { return cl.StopPool("bofhpool") },
		func() error { return cl.UndefinePool("bofhpool") },
		func() error { return cl.StopNetwork("bofhnet") },
		func() error { return cl.UndefineNetwork("bofhnet") },
	} {
		if err := u(); err != nil {
			t.Fatal(err)
		}
	}
	if after := snapshot(t, cl); after != before {
		t.Errorf("state after teardown:\n%s\nwant\n%s", after, before)
	}
}

// TestFailureMatrix injects an error before and after every step of the
// recipe, then kills a child process after every step and rolls its journal
// back: every time, nothing of the recipe may be left.
func TestFailureMatrix(t *testing.T) {
	c, cl := testConn(t)
	ctx := context.Background()
	before := snapshot(t, cl)
	pooldir := t.TempDir()
	n := len(recipe(c, pooldir))
	for i := 1; i <= n; i++ {
		for _, phase := range []string{"before", "after"} {
			fp := fmt.Sprintf("%d:%s:error", i, phase)
			err := runRecipe(ctx, recipe(c, pooldir), atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints(fp))
			if !errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != 1 {
				t.Errorf("%s: err = %v (exit %d), want the failpoint, rolled back", fp, err, atomic.ExitCode(err))
			}
			if after := snapshot(t, cl); after != before {
				t.Fatalf("%s: left behind:\n%s\nwant\n%s", fp, after, before)
			}
		}
	}
	for i := 1; i <= n; i++ {
		state := t.TempDir()
		fp := fmt.Sprintf("%d:after:kill", i)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envCrashChild+"=1", "BOFH_TEST_SOCKET="+c.Socket,
			"BOFH_TEST_POOLDIR="+pooldir, "BOFH_STATE_DIR="+state, atomic.FailEnv+"="+fp)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != -1 {
			t.Fatalf("%s: child not killed: %v\n%s", fp, err, out)
		}
		txs, err := atomic.List(state)
		if err != nil || len(txs) != 1 || txs[0].State != atomic.StateInterrupted {
			t.Fatalf("%s: journal: %+v, %v", fp, txs, err)
		}
		if err := atomic.RollbackID(ctx, txs[0].ID, nil, atomic.WithStateDir(state)); err != nil {
			t.Fatalf("%s: rollback: %v", fp, err)
		}
		if after := snapshot(t, cl); after != before {
			t.Fatalf("%s: left behind after rollback:\n%s\nwant\n%s", fp, after, before)
		}
	}
}

// crashChild runs the recipe with BOFH_FAIL from the environment (a kill).
func crashChild() int {
	c := Conn{Socket: os.Getenv("BOFH_TEST_SOCKET"), URI: "test:///default"}
	err := runRecipe(context.Background(), recipe(c, os.Getenv("BOFH_TEST_POOLDIR")))
	fmt.Fprintln(os.Stderr, "crash child: not killed:", err)
	return 5
}

func TestBadInput(t *testing.T) {
	c, cl := testConn(t)
	ctx := context.Background()
	before := snapshot(t, cl)
	cases := []struct {
		name    string
		step    atomic.Params
		invalid bool
		want    string
	}{
		{"unknown domain", StartDomain{Conn: c, Name: "nosuchdomain"}, false, "no such domain"},
		{"unknown domain shutdown", ShutdownDomain{DomainRef: DomainRef{Conn: c, Name: "nosuchdomain"}}, false, "no such domain"},
		{"bad name", StartDomain{Conn: c, Name: "web;rm -rf /"}, true, "domain name"},
		{"bad name xml", DefineDomain{Conn: c, Spec: DomainSpec{Name: "a<b>", VCPUs: 1, Memory: "1G"}}, true, "domain name"},
		{"no memory unit", DefineDomain{Conn: c, Spec: DomainSpec{Name: "x", VCPUs: 1, Memory: "1024"}}, true, "unit"},
		{"zero vcpus", DefineDomain{Conn: c, Spec: DomainSpec{Name: "x", VCPUs: 0, Memory: "1G"}}, true, "vcpus"},
		{"relative disk", DefineDomain{Conn: c, Spec: DomainSpec{Name: "x", VCPUs: 1, Memory: "1G", Disks: []Disk{{Source: "dev/sda", Target: "vda"}}}}, true, "absolute"},
		{"bad timeout", ShutdownDomain{DomainRef: DomainRef{Conn: c, Name: "test"}, Timeout: "soon"}, true, "timeout"},
		{"zero timeout", ShutdownDomain{DomainRef: DomainRef{Conn: c, Name: "test"}, Timeout: "0s"}, true, "positive duration"},
		{"bad uri", StartDomain{Conn: Conn{Socket: c.Socket, URI: "qemu+ssh://h/system"}, Name: "x"}, true, "local driver"},
		{"unreachable socket", StartDomain{Conn: Conn{Socket: filepath.Join(t.TempDir(), "nope"), URI: "test:///default"}, Name: "x"}, false, "libvirtd unreachable"},
		{"pool exists", DefinePool{Conn: c, Spec: PoolSpec{Name: "default-pool", Type: "dir", Path: "/tmp"}}, false, "already exists"},
		{"domain exists differently", DefineDomain{Conn: c, Spec: DomainSpec{Name: "test", Type: "test", VCPUs: 7, Memory: "1G"}}, false, "already exists"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := runRecipe(ctx, []atomic.Params{tc.step}, atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints(""))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if got := errors.Is(err, atomic.ErrInvalid); got != tc.invalid {
				t.Errorf("ErrInvalid = %v, want %v (%v)", got, tc.invalid, err)
			}
			if tc.invalid && atomic.ExitCode(err) != 2 {
				t.Errorf("exit code %d, want 2", atomic.ExitCode(err))
			}
			if after := snapshot(t, cl); after != before {
				t.Errorf("state changed:\n%s\nwant\n%s", after, before)
			}
		})
	}
	if _, err := Dial(ctx, Conn{Socket: filepath.Join(t.TempDir(), "nope")}); !errors.Is(err, ErrUnreachable) {
		t.Errorf("dial missing socket: %v", err)
	}
}

// TestQemuDomain runs a real qemu guest under the qemu:///system driver
// (KVM when /dev/kvm opens, TCG otherwise): a domain with no disk sits in
// SeaBIOS, which is "running" enough. Shutdown gets no ACPI answer and
// destroys it after the timeout; the domain is started again, destroyed,
// and undefined at commit.
func TestQemuDomain(t *testing.T) {
	sock := requireDaemon(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatalf("qemu-system-x86_64 not installed (deps/libvirt.txt): %v", err)
	}
	c := Conn{Socket: sock, URI: "qemu:///system"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	typ := "qemu"
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		f.Close()
		typ = "kvm"
	}
	spec := DomainSpec{Name: "bofh-tiny", Type: typ, VCPUs: 1, Memory: "64MiB", Console: true, Title: "tiny & <bios-only>"}
	cl, err := Dial(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	t.Cleanup(func() { cl.Destroy(spec.Name); cl.Undefine(spec.Name) })

	// A failure after start rolls back: destroyed and undefined.
	err = runRecipe(ctx, []atomic.Params{DefineDomain{Conn: c, Spec: spec}, StartDomain{Conn: c, Name: spec.Name}},
		atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints("2:after:error"))
	if !errors.Is(err, atomic.ErrFailpoint) {
		t.Fatalf("run with failpoint: %v", err)
	}
	if s, err := cl.DomainState(spec.Name); err != nil || s != StateAbsent {
		t.Fatalf("after rollback: %s %v", s, err)
	}

	state := t.TempDir()
	err = runRecipe(ctx, []atomic.Params{DefineDomain{Conn: c, Spec: spec}, StartDomain{Conn: c, Name: spec.Name}},
		atomic.WithStateDir(state), atomic.WithFailpoints(""))
	if err != nil {
		t.Fatalf("define+start: %v", err)
	}
	d, err := cl.Domain(spec.Name)
	if err != nil || d.State != StateRunning || d.ID <= 0 {
		t.Fatalf("domain %+v %v, want running with an id", d, err)
	}
	if d.Title != spec.Title {
		t.Errorf("title %q", d.Title)
	}
	time.Sleep(500 * time.Millisecond)
	if s, _ := cl.DomainState(spec.Name); s != StateRunning {
		t.Fatalf("domain did not stay running: %s\n%s", s, lab.logs())
	}
	err = atomic.Run(ctx, "stop", func(tx *atomic.Tx) error {
		var st Stopped
		if err := tx.Do(ctx, ShutdownDomain{DomainRef: DomainRef{Conn: c, Name: spec.Name}, Timeout: "2s"}, &st); err != nil {
			return err
		}
		if !st.Destroyed {
			return errors.New("a guest in the BIOS answered ACPI shutdown?")
		}
		if err := tx.Do(ctx, StartDomain{Conn: c, Name: spec.Name}, nil); err != nil {
			return err
		}
		if err := tx.Do(ctx, DestroyDomain{Conn: c, Name: spec.Name}, nil); err != nil {
			return err
		}
		return tx.Do(ctx, UndefineDomain{Conn: c, Name: spec.Name}, nil)
	}, atomic.WithStateDir(state), atomic.WithFailpoints(""))
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	if s, err := cl.DomainState(spec.Name); err != nil || s != StateAbsent {
		t.Fatalf("after undefine: %s %v", s, err)
	}
}
