package libvirt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
	"github.com/bofhkit/bofh/internal/vmtest"
	golibvirt "github.com/digitalocean/go-libvirt"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
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
// volume in it, a volume in the driver's own pool (which outlives the
// recipe's, so only the volume's own undo removes it), a domain using the
// network's bridge, started.
func recipe(c Conn, dir string) []atomic.Params {
	return []atomic.Params{
		DefineNetwork{Conn: c, Spec: NetworkSpec{Name: "bofhnet", Bridge: "bofhbr0"}},
		StartNetwork{Conn: c, Name: "bofhnet"},
		DefinePool{Conn: c, Spec: PoolSpec{Name: "bofhpool", Type: "dir", Path: dir}},
		StartPool{Conn: c, Name: "bofhpool"},
		CreateVolume{Conn: c, Pool: "bofhpool", Spec: VolumeSpec{Name: "web.img", Capacity: "64MiB"}},
		CreateVolume{Conn: c, Pool: "default-pool", Spec: VolumeSpec{Name: "bofh-scratch.img", Capacity: "16MiB"}},
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

// snapshot describes everything the driver holds that a recipe could
// create or change, for "back to the starting state": every domain,
// network and storage pool with its state, persistence, autostart and XML
// (a domain's inactive XML), and every volume of every active pool with
// its type, capacity, allocation, path and XML. It asks libvirt through
// the raw RPC API, not through the Client the steps use. Lines are
// sorted; compare two snapshots with cmp.Diff.
func snapshot(t *testing.T, cl *Client) []string {
	t.Helper()
	l := cl.Raw()
	var lines []string
	add := func(prefix, xml string) {
		for _, x := range strings.Split(strings.TrimSpace(xml), "\n") {
			lines = append(lines, prefix+" "+strings.TrimSpace(x))
		}
	}
	must := func(err error) {
		if err != nil {
			t.Helper()
			t.Fatalf("snapshot: %v", err)
		}
	}
	ds, _, err := l.ConnectListAllDomains(1, 0)
	must(err)
	for _, d := range ds {
		st, _, err := l.DomainGetState(d, 0)
		must(err)
		pers, err := l.DomainIsPersistent(d)
		must(err)
		auto, err := l.DomainGetAutostart(d)
		must(err)
		xml, err := l.DomainGetXMLDesc(d, golibvirt.DomainXMLInactive)
		must(err)
		p := "domain " + d.Name
		lines = append(lines, fmt.Sprintf("%s state=%d persistent=%d autostart=%d", p, st, pers, auto))
		add(p+" xml", xml)
	}
	ns, _, err := l.ConnectListAllNetworks(1, 0)
	must(err)
	for _, n := range ns {
		act, err := l.NetworkIsActive(n)
		must(err)
		pers, err := l.NetworkIsPersistent(n)
		must(err)
		auto, err := l.NetworkGetAutostart(n)
		must(err)
		xml, err := l.NetworkGetXMLDesc(n, 0) // the test driver takes no flags here
		must(err)
		p := "network " + n.Name
		lines = append(lines, fmt.Sprintf("%s active=%d persistent=%d autostart=%d", p, act, pers, auto))
		add(p+" xml", xml)
	}
	ps, _, err := l.ConnectListAllStoragePools(1, 0)
	must(err)
	for _, pool := range ps {
		act, err := l.StoragePoolIsActive(pool)
		must(err)
		pers, err := l.StoragePoolIsPersistent(pool)
		must(err)
		auto, err := l.StoragePoolGetAutostart(pool)
		must(err)
		xml, err := l.StoragePoolGetXMLDesc(pool, 0) // nor here
		must(err)
		p := "pool " + pool.Name
		lines = append(lines, fmt.Sprintf("%s active=%d persistent=%d autostart=%d", p, act, pers, auto))
		add(p+" xml", xml)
		if act == 0 {
			continue // an inactive pool lists no volumes
		}
		vols, _, err := l.StoragePoolListAllVolumes(pool, 1, 0)
		must(err)
		for _, v := range vols {
			typ, capacity, alloc, err := l.StorageVolGetInfo(v)
			must(err)
			path, err := l.StorageVolGetPath(v)
			must(err)
			xml, err := l.StorageVolGetXMLDesc(v, 0)
			must(err)
			p := "volume " + pool.Name + "/" + v.Name
			lines = append(lines, fmt.Sprintf("%s type=%d capacity=%d allocation=%d path=%s", p, typ, capacity, alloc, path))
			add(p+" xml", xml)
		}
	}
	sort.Strings(lines)
	return lines
}

// sameState fails t unless the driver is as in before.
func sameState(t *testing.T, cl *Client, what string, before []string) {
	t.Helper()
	if diff := cmp.Diff(before, snapshot(t, cl)); diff != "" {
		t.Fatalf("%s: not back to the starting state (-before +now):\n%s", what, diff)
	}
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
	for _, v := range [][2]string{{"bofhpool", "web.img"}, {"default-pool", "bofh-scratch.img"}} {
		if _, err := cl.Volume(v[0], v[1]); err != nil {
			t.Errorf("volume %s/%s: %v", v[0], v[1], err)
		}
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
		func() error { return cl.DeleteVolume("default-pool", "bofh-scratch.img") },
		func() error { return cl.StopPool("bofhpool") },
		func() error { return cl.UndefinePool("bofhpool") },
		func() error { return cl.StopNetwork("bofhnet") },
		func() error { return cl.UndefineNetwork("bofhnet") },
	} {
		if err := u(); err != nil {
			t.Fatal(err)
		}
	}
	sameState(t, cl, "after teardown", before)
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
			sameState(t, cl, fp, before)
		}
	}
	for i := 1; i <= n; i++ {
		state := t.TempDir()
		fp := fmt.Sprintf("%d:after:kill", i)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envCrashChild+"=1", "BOFH_TEST_SOCKET="+c.Socket,
			"BOFH_TEST_POOLDIR="+pooldir, "BOFH_STATE_DIR="+state, atomic.FailEnv+"="+fp)
		out, err := hosttest.CombinedOutput(cmd) // dies with this test binary
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
		sameState(t, cl, fp+": after rollback", before)
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
			sameState(t, cl, "after the bad input", before)
		})
	}
	if _, err := Dial(ctx, Conn{Socket: filepath.Join(t.TempDir(), "nope")}); !errors.Is(err, ErrUnreachable) {
		t.Errorf("dial missing socket: %v", err)
	}
}

// qemuTypes returns the domain types TestQemuDomain tries, in order, as
// the VM lab chooses its accelerator: BOFH_LAB_ACCEL=kvm or tcg forces one;
// otherwise KVM, then TCG, when /dev/kvm opens and the lab has no verdict
// that KVM does not run guests here (vmtest.KVMKnownBroken), else TCG.
func qemuTypes() []string {
	switch os.Getenv("BOFH_LAB_ACCEL") {
	case "kvm":
		return []string{"kvm"}
	case "tcg":
		return []string{"qemu"}
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return []string{"qemu"}
	}
	f.Close()
	if vmtest.KVMKnownBroken() {
		return []string{"qemu"}
	}
	return []string{"kvm", "qemu"}
}

func TestQemuTypes(t *testing.T) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(u.Release[:])
	kvm := []string{"qemu"}
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		f.Close()
		kvm = []string{"kvm", "qemu"}
	}
	tests := []struct {
		name, accel, verdict string // verdict: the lab's kvm-broken file, "" for none
		want                 []string
	}{
		{"no verdict", "", "", kvm},
		{"KVM broken on this kernel", "", release + "\nKVM guest did not reach init\n", []string{"qemu"}},
		{"verdict for another kernel", "", "0.0.0-other\nKVM guest did not reach init\n", kvm},
		{"forced tcg", "tcg", "", []string{"qemu"}},
		{"forced kvm despite a verdict", "kvm", release + "\n", []string{"kvm"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			t.Setenv("BOFH_LAB_CACHE", cache)
			t.Setenv("BOFH_LAB_ACCEL", tc.accel)
			if tc.verdict != "" {
				if err := os.WriteFile(filepath.Join(cache, "kvm-broken"), []byte(tc.verdict), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if diff := cmp.Diff(tc.want, qemuTypes()); diff != "" {
				t.Errorf("types (-want +got):\n%s", diff)
			}
		})
	}
}

// TestQemuDomain runs a real qemu guest under the qemu:///system driver: a
// domain with no disk sits in SeaBIOS, which is "running" enough. A
// failure after start rolls back; then shutdown gets no ACPI answer and
// destroys it after the timeout; the domain is started again, destroyed,
// and undefined at commit. The domain type is KVM or TCG (qemuTypes); a
// KVM domain that does not start gives way to TCG. The second lab leaves
// /dev/kvm out of qemu's /dev, as a chroot does, so that the fallback runs
// on every host.
func TestQemuDomain(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatalf("qemu-system-x86_64 not installed (deps/libvirt.txt): %v", err)
	}
	tests := []struct {
		name     string
		lab      *daemon
		types    []string
		want     string // the type that must start; "" for the first that does
		kvmFails bool   // a KVM start must have failed first
	}{
		{"lab", lab, qemuTypes(), "", false},
		{"qemu without /dev/kvm", noKVMLab, []string{"kvm", "qemu"}, "qemu", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Conn{Socket: tc.lab.require(t), URI: "qemu:///system"}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cl, err := Dial(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			spec := DomainSpec{Name: "bofh-tiny", VCPUs: 1, Memory: "64MiB", Console: true, Title: "tiny & <bios-only>"}
			t.Cleanup(func() { cl.Destroy(spec.Name); cl.Undefine(spec.Name) })

			// A failure after start rolls back: destroyed and undefined.
			// It also finds the first type that starts.
			var failed []error
			for i, typ := range tc.types {
				spec.Type = typ
				err = runRecipe(ctx, []atomic.Params{DefineDomain{Conn: c, Spec: spec}, StartDomain{Conn: c, Name: spec.Name}},
					atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints("2:after:error"))
				if s, err := cl.DomainState(spec.Name); err != nil || s != StateAbsent {
					t.Fatalf("%s: after rollback: %s %v", typ, s, err)
				}
				if errors.Is(err, atomic.ErrFailpoint) {
					break
				}
				if typ != "kvm" || i+1 == len(tc.types) {
					t.Fatalf("%s: run with failpoint: %v\n%s", typ, err, tc.lab.logs())
				}
				t.Logf("a KVM domain did not start (%v); falling back to TCG", err)
				failed = append(failed, err)
			}
			t.Logf("domain type %s", spec.Type)
			if tc.want != "" && spec.Type != tc.want {
				t.Errorf("started as %s, want %s", spec.Type, tc.want)
			}
			if tc.kvmFails && (len(failed) != 1 || !strings.Contains(strings.ToLower(failed[0].Error()), "kvm")) {
				t.Errorf("KVM start errors %v, want one about KVM", failed)
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
				t.Fatalf("domain did not stay running: %s\n%s", s, tc.lab.logs())
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
		})
	}
}
