package libvirt

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
	"github.com/bofhkit/bofh/internal/kindtest"
)

// kindsChildEnv selects the crash child of the kinds crash test: a
// re-exec of this test binary that applies a recipe (hosttest.ApplyChild)
// until BOFH_FAIL kills it.
const kindsChildEnv = "BOFH_LIBVIRT_KINDS_CHILD"

func init() { hosttest.ApplyChild(kindsChildEnv) }

// rawState lists, through go-libvirt's own calls (not this package's
// Client), every domain, pool (with its volumes and their sizes) and
// network of the connection with its UUID and state.
func rawState(t *testing.T, cl *Client) []string {
	t.Helper()
	l := cl.Raw()
	var out []string
	doms, _, err := l.ConnectListAllDomains(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range doms {
		st, _, err := l.DomainGetState(d, 0)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("domain %s %x state=%d", d.Name, d.UUID, st))
	}
	pools, _, err := l.ConnectListAllStoragePools(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pools {
		a, err := l.StoragePoolIsActive(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("pool %s %x active=%d", p.Name, p.UUID, a))
		if a == 0 {
			continue
		}
		vols, _, err := l.StoragePoolListAllVolumes(p, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vols {
			_, capa, _, err := l.StorageVolGetInfo(v)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("volume %s/%s %s capacity=%d", p.Name, v.Name, v.Key, capa))
		}
	}
	nets, _, err := l.ConnectListAllNetworks(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		a, err := l.NetworkIsActive(n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("network %s %x active=%d", n.Name, n.UUID, a))
	}
	sort.Strings(out)
	return out
}

// Objects that exist before the workflows run, so that undoing a start,
// a shutdown or a destroy is seen for itself (an object the transaction
// defined is removed by its define's undo, which would hide a start's
// undo doing nothing): an inactive network and pool, a shut-off domain, a
// running domain; plus the test driver's own running domain "test" and
// its active pool "default-pool", where the volume is made.
const (
	preNet    = "bofhknet2"
	prePool   = "bofhkpool2"
	preDomOff = "bofhkdom2"
	preDomOn  = "bofhkdom3"
)

// preexist defines the objects above; t.Cleanup removes them and
// anything of the workflows.
func preexist(t *testing.T, cl *Client, dir string) {
	t.Helper()
	restoreKinds(cl)
	removePre(cl)
	for _, f := range []func() error{
		func() error { _, err := cl.DefineNetwork(NetworkSpec{Name: preNet, Bridge: "bofhkbr2"}); return err },
		func() error { _, err := cl.DefinePool(PoolSpec{Name: prePool, Type: "dir", Path: dir}); return err },
		func() error {
			_, err := cl.Define(DomainSpec{Name: preDomOff, Type: "test", VCPUs: 1, Memory: "32MiB"})
			return err
		},
		func() error {
			_, err := cl.Define(DomainSpec{Name: preDomOn, Type: "test", VCPUs: 1, Memory: "32MiB"})
			return err
		},
		func() error { return cl.Start(preDomOn) },
	} {
		if err := f(); err != nil {
			t.Fatalf("pre-existing objects: %v", err)
		}
	}
	t.Cleanup(func() {
		restoreKinds(cl)
		removePre(cl)
	})
}

// restoreKinds undoes by hand whatever the workflows below did: it
// removes the objects they define and puts the pre-existing ones back in
// their first state.
func restoreKinds(cl *Client) {
	cl.Destroy("bofhkdom")
	cl.Undefine("bofhkdom")
	cl.DeleteVolume("default-pool", "k.img")
	cl.StopPool("bofhkpool")
	cl.UndefinePool("bofhkpool")
	cl.StopNetwork("bofhknet")
	cl.UndefineNetwork("bofhknet")
	cl.StopNetwork(preNet)
	cl.StopPool(prePool)
	cl.Destroy(preDomOff)
	for _, d := range []string{preDomOn, "test"} {
		if s, err := cl.DomainState(d); err == nil && !s.Active() && s != StateAbsent {
			cl.Start(d)
		}
	}
}

func removePre(cl *Client) {
	cl.UndefineNetwork(preNet)
	cl.UndefinePool(prePool)
	for _, d := range []string{preDomOff, preDomOn} {
		cl.Destroy(d)
		cl.Undefine(d)
	}
}

// kindsRecipe uses every libvirt kind once.
func kindsRecipe(t *testing.T, c Conn, pooldir string) string {
	return hosttest.RecipeOf(t, "libvirt-kinds",
		DefineNetwork{Conn: c, Spec: NetworkSpec{Name: "bofhknet", Bridge: "bofhkbr0"}},                    // 1
		StartNetwork{Conn: c, Name: preNet},                                                                // 2
		DefinePool{Conn: c, Spec: PoolSpec{Name: "bofhkpool", Type: "dir", Path: pooldir}},                 // 3
		StartPool{Conn: c, Name: prePool},                                                                  // 4
		CreateVolume{Conn: c, Pool: "default-pool", Spec: VolumeSpec{Name: "k.img", Capacity: "32MiB"}},    // 5
		DefineDomain{Conn: c, Spec: DomainSpec{Name: "bofhkdom", Type: "test", VCPUs: 1, Memory: "64MiB"}}, // 6
		StartDomain{Conn: c, Name: preDomOff},                                                              // 7
		ShutdownDomain{DomainRef: DomainRef{Conn: c, Name: "test"}, Timeout: "5s"},                         // 8
		DestroyDomain{Conn: c, Name: preDomOn},                                                             // 9
		UndefineDomain{Conn: c, Name: "bofhkdom"},                                                          // 10 (at commit)
	)
}

// TestKindsCrash crashes every libvirt kind against libvirtd's test driver.
// libvirt steps talk to libvirtd over its RPC, not through the command
// runner, so there is no "k-th command" to kill before: each step makes
// one mutating call in Do, and a kill before or after it is the mid-step
// crash. A SIGKILLed child's journal is rolled back and the raw libvirt
// API must show exactly the starting objects (UUIDs, states, volumes).
// The irreversible undefine, killed after it ran at commit, cannot be
// rolled back: the transaction is resumed to its end instead. A kill in
// an undo is followed by a second rollback.
func TestKindsCrash(t *testing.T) {
	c, cl := testConn(t)
	ctx := context.Background()
	preexist(t, cl, t.TempDir())
	recipe := kindsRecipe(t, c, t.TempDir())
	start := rawState(t, cl)
	for _, tc := range []struct {
		fail   string
		resume bool
	}{
		{fail: "1:after:kill"},   // libvirt.network.define
		{fail: "2:before:kill"},  // libvirt.network.start
		{fail: "3:after:kill"},   // libvirt.pool.define
		{fail: "4:after:kill"},   // libvirt.pool.start
		{fail: "5:after:kill"},   // libvirt.volume.create
		{fail: "6:before:kill"},  // libvirt.domain.define
		{fail: "7:after:kill"},   // libvirt.domain.start
		{fail: "8:after:kill"},   // libvirt.domain.shutdown
		{fail: "9:after:kill"},   // libvirt.domain.destroy
		{fail: "10:before:kill"}, // libvirt.domain.undefine, at commit, before it ran
		{fail: "10:after:kill", resume: true},
		{fail: "9:after:error,4:undo:kill"}, // rollback killed in an undo
	} {
		t.Run(strings.ReplaceAll(tc.fail, ",", "+"), func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					restoreKinds(cl)
				}
			})
			state := t.TempDir()
			id := hosttest.KillChild(t, kindsChildEnv, state, recipe, tc.fail)
			if mid := rawState(t, cl); cmp.Equal(mid, start) {
				t.Errorf("after the kill nothing changed: did the child act?")
			}
			if !tc.resume {
				if err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(state), atomic.WithFailpoints("")); err != nil {
					t.Fatalf("rollback: %v", err)
				}
				if d := cmp.Diff(start, rawState(t, cl)); d != "" {
					t.Fatalf("after rollback (-start +now):\n%s", d)
				}
				return
			}
			// (a rollback attempt first would be refused, and would then
			// leave a rollback-failed journal that cannot be resumed)
			if err := atomic.ResumeID(ctx, id, atomic.WithStateDir(state), atomic.WithFailpoints("")); err != nil {
				t.Fatalf("resume: %v", err)
			}
			for d, want := range map[string]State{"bofhkdom": StateAbsent, "test": StateShutoff, preDomOff: StateRunning, preDomOn: StateShutoff} {
				if s, err := cl.DomainState(d); err != nil || s != want {
					t.Errorf("after resume %s is %s %v, want %s", d, s, err, want)
				}
			}
			if _, err := cl.Volume("default-pool", "k.img"); err != nil {
				t.Errorf("after resume: volume: %v", err)
			}
			restoreKinds(cl)
			if d := cmp.Diff(start, rawState(t, cl)); d != "" {
				t.Fatalf("after resume and cleanup (-start +now):\n%s", d)
			}
		})
	}
}

// TestKinds gives every libvirt kind its failure cases (internal/kindtest):
// an error before its effect, after it and in its undo (then a second
// rollback from the journal). libvirt steps talk to libvirtd over its RPC
// protocol, not through the command runner, so their "transcript" is not a
// fake runner's command list (Script is nil: any command would fail the
// test) but the real libvirtd test driver's state: each run must leave
// exactly the starting domains, pools, volumes and networks (read through
// the raw libvirt API), and the failed step's effect must be visible
// before the rollback. Setup makes the pre-existing objects the start,
// shutdown and destroy steps act on, so that their own undo is what puts
// the state back.
func TestKinds(t *testing.T) {
	c, cl := testConn(t)
	pooldir := t.TempDir()
	snap := func(t *testing.T, _ string) string { return strings.Join(rawState(t, cl), "\n") }
	setup := func(t *testing.T) { preexist(t, cl, t.TempDir()) }
	var (
		net  = DefineNetwork{Conn: c, Spec: NetworkSpec{Name: "bofhknet", Bridge: "bofhkbr0"}}
		pool = DefinePool{Conn: c, Spec: PoolSpec{Name: "bofhkpool", Type: "dir", Path: pooldir}}
		dom  = DefineDomain{Conn: c, Spec: DomainSpec{Name: "bofhkdom", Type: "test", VCPUs: 1, Memory: "64MiB"}}
	)
	kindtest.Cover(t, []string{"libvirt."}, []kindtest.Case{
		{Kind: "libvirt.network.define", Snapshot: snap, Setup: setup, Steps: []atomic.Params{net}},
		{Kind: "libvirt.network.start", Snapshot: snap, Setup: setup, Steps: []atomic.Params{net, StartNetwork{Conn: c, Name: preNet}}},
		{Kind: "libvirt.pool.define", Snapshot: snap, Setup: setup, Steps: []atomic.Params{pool}},
		{Kind: "libvirt.pool.start", Snapshot: snap, Setup: setup, Steps: []atomic.Params{pool, StartPool{Conn: c, Name: prePool}}},
		{Kind: "libvirt.volume.create", Snapshot: snap, Setup: setup, Steps: []atomic.Params{pool,
			CreateVolume{Conn: c, Pool: "default-pool", Spec: VolumeSpec{Name: "k.img", Capacity: "32MiB"}}}},
		{Kind: "libvirt.domain.define", Snapshot: snap, Setup: setup, Steps: []atomic.Params{net, dom}},
		{Kind: "libvirt.domain.start", Snapshot: snap, Setup: setup, Steps: []atomic.Params{dom, StartDomain{Conn: c, Name: preDomOff}}},
		{Kind: "libvirt.domain.shutdown", Snapshot: snap, Setup: setup, Steps: []atomic.Params{dom,
			ShutdownDomain{DomainRef: DomainRef{Conn: c, Name: "test"}, Timeout: "5s"}}},
		{Kind: "libvirt.domain.destroy", Snapshot: snap, Setup: setup, Steps: []atomic.Params{dom, DestroyDomain{Conn: c, Name: preDomOn}}},
		{Kind: "libvirt.domain.undefine", Snapshot: snap, Setup: setup, Steps: []atomic.Params{dom, UndefineDomain{Conn: c, Name: "bofhkdom"}}},
	}, nil)
}
