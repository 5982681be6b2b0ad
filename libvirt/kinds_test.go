package libvirt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bofhkit/bofh/atomic"
)

// The crash child of TestKindsCrash: a re-exec of this test binary (before
// TestMain) that applies the recipe in $BOFH_LIBVIRT_KINDS_RECIPE with
// BOFH_FAIL from its environment and a journal under
// $BOFH_LIBVIRT_KINDS_STATE.
const (
	kindsRecipeEnv = "BOFH_LIBVIRT_KINDS_RECIPE"
	kindsStateEnv  = "BOFH_LIBVIRT_KINDS_STATE"
)

func init() {
	if text := os.Getenv(kindsRecipeEnv); text != "" {
		os.Exit(kindsChild(text))
	}
}

func kindsChild(text string) int {
	r, err := atomic.ParseRecipe([]byte(text))
	if err == nil {
		_, err = atomic.Apply(context.Background(), r, atomic.WithStateDir(os.Getenv(kindsStateEnv)))
	}
	fmt.Fprintln(os.Stderr, "kinds crash child: not killed:", err)
	return 5
}

// recipeOf turns steps into a recipe, as a journal would carry them.
func recipeOf(t *testing.T, name string, ps ...atomic.Params) string {
	t.Helper()
	r := atomic.Recipe{Name: name}
	for _, p := range ps {
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var with map[string]any
		if err := json.Unmarshal(raw, &with); err != nil {
			t.Fatal(err)
		}
		r.Steps = append(r.Steps, atomic.RecipeStep{Kind: p.StepKind(), With: with})
	}
	out, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// killChild applies recipe in a child process with BOFH_FAIL=fail, which
// must SIGKILL it; it returns the state dir and the interrupted
// transaction's ID.
func killChild(t *testing.T, recipe, fail string) (state, id string) {
	t.Helper()
	state = t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), kindsRecipeEnv+"="+recipe, kindsStateEnv+"="+state, atomic.FailEnv+"="+fail)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != -1 {
		t.Fatalf("%s: child not killed: %v\n%s", fail, err, out)
	}
	txs, err := atomic.List(state)
	if err != nil || len(txs) != 1 || txs[0].State != atomic.StateInterrupted {
		t.Fatalf("%s: journal: %+v, %v", fail, txs, err)
	}
	return state, txs[0].ID
}

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

// kindsRecipe uses every libvirt kind once: a network, a pool, a volume,
// a domain defined, started, destroyed and undefined (at commit), and the
// test driver's own running domain "test" shut down.
func kindsRecipe(t *testing.T, c Conn, pooldir string) string {
	return recipeOf(t, "libvirt-kinds",
		DefineNetwork{Conn: c, Spec: NetworkSpec{Name: "bofhknet", Bridge: "bofhkbr0"}},                    // 1
		StartNetwork{Conn: c, Name: "bofhknet"},                                                            // 2
		DefinePool{Conn: c, Spec: PoolSpec{Name: "bofhkpool", Type: "dir", Path: pooldir}},                 // 3
		StartPool{Conn: c, Name: "bofhkpool"},                                                              // 4
		CreateVolume{Conn: c, Pool: "bofhkpool", Spec: VolumeSpec{Name: "k.img", Capacity: "32MiB"}},       // 5
		DefineDomain{Conn: c, Spec: DomainSpec{Name: "bofhkdom", Type: "test", VCPUs: 1, Memory: "64MiB"}}, // 6
		StartDomain{Conn: c, Name: "bofhkdom"},                                                             // 7
		ShutdownDomain{DomainRef: DomainRef{Conn: c, Name: "test"}, Timeout: "5s"},                         // 8
		DestroyDomain{Conn: c, Name: "bofhkdom"},                                                           // 9
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
// rolled back: the transaction is resumed to its end instead. A kill in an undo is followed by a second rollback.
func TestKindsCrash(t *testing.T) {
	c, cl := testConn(t)
	ctx := context.Background()
	pooldir := t.TempDir()
	recipe := kindsRecipe(t, c, pooldir)
	start := rawState(t, cl)
	t.Cleanup(func() { cleanupKinds(cl) })
	for _, tc := range []struct {
		fail   string
		resume bool
	}{
		{fail: "1:after:kill"},   // libvirt.network.define
		{fail: "2:before:kill"},  // libvirt.network.start
		{fail: "3:after:kill"},   // libvirt.pool.define
		{fail: "4:before:kill"},  // libvirt.pool.start
		{fail: "5:after:kill"},   // libvirt.volume.create
		{fail: "6:before:kill"},  // libvirt.domain.define
		{fail: "7:after:kill"},   // libvirt.domain.start
		{fail: "8:after:kill"},   // libvirt.domain.shutdown
		{fail: "9:after:kill"},   // libvirt.domain.destroy
		{fail: "10:before:kill"}, // libvirt.domain.undefine, at commit, before it ran
		{fail: "10:after:kill", resume: true},
		{fail: "9:after:error,6:undo:kill"}, // rollback killed in an undo
	} {
		t.Run(strings.ReplaceAll(tc.fail, ",", "+"), func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					cleanupKinds(cl)
				}
			})
			state, id := killChild(t, recipe, tc.fail)
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
			if s, err := cl.DomainState("bofhkdom"); err != nil || s != StateAbsent {
				t.Errorf("after resume bofhkdom is %s %v, want absent", s, err)
			}
			if s, err := cl.DomainState("test"); err != nil || s != StateShutoff {
				t.Errorf("after resume test is %s %v, want shut off", s, err)
			}
			if _, err := cl.Volume("bofhkpool", "k.img"); err != nil {
				t.Errorf("after resume: volume: %v", err)
			}
			cleanupKinds(cl)
			if d := cmp.Diff(start, rawState(t, cl)); d != "" {
				t.Fatalf("after resume and cleanup (-start +now):\n%s", d)
			}
		})
	}
}

// cleanupKinds removes what kindsRecipe makes and starts "test" again.
func cleanupKinds(cl *Client) {
	cl.Destroy("bofhkdom")
	cl.Undefine("bofhkdom")
	cl.DeleteVolume("bofhkpool", "k.img")
	cl.StopPool("bofhkpool")
	cl.UndefinePool("bofhkpool")
	cl.StopNetwork("bofhknet")
	cl.UndefineNetwork("bofhknet")
	if s, err := cl.DomainState("test"); err == nil && !s.Active() && s != StateAbsent {
		cl.Start("test")
	}
}
