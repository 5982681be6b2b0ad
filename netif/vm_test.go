//go:build vm

package netif

// Dummy, bond and VLAN links against a real kernel: the host's kernel has
// no dummy, bonding or 8021q, the lab guest's Debian kernel has them as
// modules. Each test works in a throwaway named netns (newNS) and compares
// `ip -j -d link` / `ip -j addr` / `ip -j route` before and after a
// rollback (vmSnapshot: host_test.go's snapshot in one exec).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bofhatomic "github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/vmtest"
)

var loadModules = sync.OnceValue(func() error {
	// numdummies=0 / max_bonds=0: no dummy0 / bond0 in the guest's own
	// namespace; the tests make their links in their own.
	for _, argv := range [][]string{
		{"modprobe", "dummy", "numdummies=0"},
		{"modprobe", "bonding", "max_bonds=0"},
		{"modprobe", "8021q"},
	} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, out)
		}
	}
	return nil
})

// vmNS is newNS in the guest with the link modules loaded and the
// baseline: pre-existing links the recipe changes and must restore.
func vmNS(t *testing.T) string {
	t.Helper()
	vmtest.Require(t)
	if err := loadModules(); err != nil {
		t.Fatalf("loading the link modules: %v", err)
	}
	ns := newNS(t)
	var batch strings.Builder
	for _, args := range [][]string{
		// an up dummy with an address, a gateway route and a VLAN on it
		{"link", "add", "phys0", "type", "dummy"},
		{"addr", "add", "10.9.0.1/24", "dev", "phys0"},
		{"link", "set", "phys0", "up"},
		{"route", "add", "10.99.0.0/16", "via", "10.9.0.254"},
		{"link", "add", "link", "phys0", "name", "phys0.7", "type", "vlan", "id", "7"},
		{"addr", "add", "10.7.0.1/24", "dev", "phys0.7"},
		{"link", "set", "phys0.7", "up"},
		// an active-backup bond with one port, up, with an address
		{"link", "add", "oldbond", "type", "bond", "mode", "active-backup"},
		{"link", "add", "olds0", "type", "dummy"},
		{"link", "set", "olds0", "master", "oldbond"},
		{"link", "set", "oldbond", "up"},
		{"addr", "add", "10.8.0.1/24", "dev", "oldbond"},
		// a spare port for it
		{"link", "add", "spare0", "type", "dummy"},
		// an up dummy with an address and a gateway route through it
		{"link", "add", "up0", "type", "dummy"},
		{"addr", "add", "10.6.0.1/24", "dev", "up0"},
		{"link", "set", "up0", "up"},
		{"route", "add", "10.96.0.0/16", "via", "10.6.0.254"},
	} {
		batch.WriteString(strings.Join(args, " ") + "\n")
	}
	ipBatch(t, ns, batch.String())
	return ns
}

// ipBatch runs `ip -n ns -batch -` (one exec: each one costs 0.1-0.2 s
// in the guest) with the given options and returns its stdout.
func ipBatch(t *testing.T, ns, cmds string, opts ...string) string {
	t.Helper()
	cmd := exec.Command("ip", append(append([]string{"-n", ns}, opts...), "-batch", "-")...)
	cmd.Stdin = strings.NewReader(cmds)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ip -n %s %v -batch: %v: %s\ncommands:\n%s", ns, opts, err, stderr.String(), cmds)
	}
	return string(out)
}

// vmSnapshot is snapshot (host_test.go) in one exec: `ip -j -d` link,
// addr and route show (table all: IPv4 and IPv6), scrubbed the same way.
func vmSnapshot(t *testing.T, ns string) string {
	t.Helper()
	out := ipBatch(t, ns, "link show\naddr show\nroute show table all\n", "-j", "-d")
	dec := json.NewDecoder(strings.NewReader(out))
	var parts []string
	for {
		var v any
		if err := dec.Decode(&v); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("ip -j -batch output: %v:\n%s", err, out)
		}
		if len(parts) == 2 {
			// routes of one prefix (ff00::/8 multicast, one per up link)
			// are listed in the order they were added: a link that went
			// down and up again comes last. Compare the set of routes.
			rs, _ := v.([]any)
			slices.SortFunc(rs, func(a, b any) int {
				x, _ := json.Marshal(a)
				y, _ := json.Marshal(b)
				return strings.Compare(string(x), string(y))
			})
		}
		if len(parts) <= 1 {
			// carrier (LOWER_UP, NO-CARRIER) reaches the flags through
			// linkwatch, up to a second late, like operstate (scrubbed):
			// it is not link configuration. UP, MASTER, SLAVE... stay.
			// 'addr show' repeats every link's flags, so both documents.
			ls, _ := v.([]any)
			for _, l := range ls {
				if m, ok := l.(map[string]any); ok {
					fs, _ := m["flags"].([]any)
					m["flags"] = slices.DeleteFunc(fs, func(f any) bool { return f == "LOWER_UP" || f == "NO-CARRIER" })
				}
			}
		}
		b, _ := json.MarshalIndent(scrub(v), "", " ")
		parts = append(parts, string(b))
	}
	if len(parts) != 3 {
		t.Fatalf("ip -j -batch: %d JSON documents, want 3:\n%s", len(parts), out)
	}
	return strings.Join(parts, "\n")
}

// vmRecipe creates a bond of two new dummies and an existing up one, VLANs on the bond and on a veth,
// addresses and a route, and changes the baseline's bond and the parent of
// its VLAN.
func vmRecipe(ns string) []bofhatomic.Params {
	return []bofhatomic.Params{
		CreateLink{Netns: ns, Name: "d0", Type: "dummy"},
		CreateLink{Netns: ns, Name: "d1", Type: "dummy", MTU: 1400},
		CreateLink{Netns: ns, Name: "bond0", Type: "bond", Mode: "active-backup"},
		SetLink{Netns: ns, Name: "d0", Master: "bond0"},
		SetLink{Netns: ns, Name: "d1", Master: "bond0"},
		SetLink{Netns: ns, Name: "up0", Master: "bond0"},
		SetLink{Netns: ns, Name: "bond0", MTU: 1400, Up: bp(true)},
		AddAddr{Netns: ns, Link: "bond0", Address: "10.1.0.1/24"},
		CreateLink{Netns: ns, Name: "bond0.100", Type: "vlan", Parent: "bond0", VlanID: 100},
		CreateLink{Netns: ns, Name: "v0", Type: "veth", Peer: "v1"},
		CreateLink{Netns: ns, Name: "v0.200", Type: "vlan", Parent: "v0", VlanID: 200, MTU: 1400},
		// v0.200 comes up with v0 (a VLAN follows its parent up and down;
		// the kernel refuses to set it up while v0 is down)
		SetLink{Netns: ns, Name: "v0", Up: bp(true)},
		AddAddr{Netns: ns, Link: "v0.200", Address: "10.2.0.1/24"},
		AddRoute{Netns: ns, Dst: "10.3.0.0/16", Via: "10.2.0.254"},
		SetLink{Netns: ns, Name: "spare0", Master: "oldbond"},
		SetLink{Netns: ns, Name: "oldbond", MTU: 1450},
		SetLink{Netns: ns, Name: "phys0", MTU: 1300},
		DelAddr{Netns: ns, Link: "oldbond", Address: "10.8.0.1/24"},
	}
}

func runVMRecipe(ctx context.Context, ns string, opts ...bofhatomic.Option) error {
	return bofhatomic.Run(ctx, "netif-vm-recipe", func(tx *bofhatomic.Tx) error {
		for _, p := range vmRecipe(ns) {
			if err := tx.Do(ctx, p, nil); err != nil {
				return err
			}
		}
		return nil
	}, opts...)
}

// linkDetails is one link of `ip -j -d link show`.
type linkDetails struct {
	Name     string `json:"ifname"`
	MTU      int    `json:"mtu"`
	Master   string `json:"master"`
	Link     string `json:"link"`
	LinkInfo struct {
		Kind string         `json:"info_kind"`
		Data map[string]any `json:"info_data"`
	} `json:"linkinfo"`
	Flags []string `json:"flags"`
}

func vmLinks(t *testing.T, ns string) map[string]linkDetails {
	t.Helper()
	var ls []linkDetails
	if err := json.Unmarshal([]byte(ip(t, "-n", ns, "-j", "-d", "link", "show")), &ls); err != nil {
		t.Fatal(err)
	}
	m := map[string]linkDetails{}
	for _, l := range ls {
		m[l.Name] = l
	}
	return m
}

// TestVMLinkRecipeCommit runs the recipe to its end, checks what the
// kernel made of it, then runs it again: every step finds its effect there
// (a no-op), so a failure at the end leaves everything in place.
func TestVMLinkRecipeCommit(t *testing.T) {
	ns := vmNS(t)
	ctx := context.Background()
	if err := runVMRecipe(ctx, ns, bofhatomic.WithStateDir(t.TempDir()), bofhatomic.WithFailpoints("")); err != nil {
		t.Fatal(err)
	}
	got := vmLinks(t, ns)
	checks := []struct {
		name, kind, master, parent string
		mtu                        int
		up                         bool
		data                       map[string]any
	}{
		{"d0", "dummy", "bond0", "", 1400, true, nil},
		{"d1", "dummy", "bond0", "", 1400, true, nil},
		{"up0", "dummy", "bond0", "", 1400, true, nil},
		{"bond0", "bond", "", "", 1400, true, map[string]any{"mode": "active-backup", "active_slave": "d0"}},
		{"bond0.100", "vlan", "", "bond0", 1400, false, map[string]any{"protocol": "802.1Q", "id": float64(100)}},
		{"v0", "veth", "", "v1", 1500, true, nil},
		{"v0.200", "vlan", "", "v0", 1400, true, map[string]any{"protocol": "802.1Q", "id": float64(200)}},
		{"spare0", "dummy", "oldbond", "", 1450, true, nil},
		{"olds0", "dummy", "oldbond", "", 1450, true, nil},
		{"oldbond", "bond", "", "", 1450, true, map[string]any{"mode": "active-backup", "active_slave": "olds0"}},
		{"phys0", "dummy", "", "", 1300, true, nil},
		{"phys0.7", "vlan", "", "phys0", 1300, true, map[string]any{"id": float64(7)}},
	}
	for _, c := range checks {
		l, ok := got[c.name]
		if !ok {
			t.Errorf("link %s missing", c.name)
			continue
		}
		up := strings.Contains(","+strings.Join(l.Flags, ",")+",", ",UP,")
		if l.LinkInfo.Kind != c.kind || l.Master != c.master || l.Link != c.parent || l.MTU != c.mtu || up != c.up {
			t.Errorf("link %s: kind %s master %q link %q mtu %d up %v; want %s %q %q %d %v",
				c.name, l.LinkInfo.Kind, l.Master, l.Link, l.MTU, up, c.kind, c.master, c.parent, c.mtu, c.up)
		}
		for k, v := range c.data {
			if l.LinkInfo.Data[k] != v {
				t.Errorf("link %s: %s = %v, want %v", c.name, k, l.LinkInfo.Data[k], v)
			}
		}
	}
	ls, err := Links(ns)
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string][]string{}
	for _, l := range ls {
		addrs[l.Name] = l.Addrs
	}
	for name, want := range map[string]string{"bond0": "[10.1.0.1/24]", "v0.200": "[10.2.0.1/24]", "oldbond": "[]", "phys0.7": "[10.7.0.1/24]"} {
		if g := fmt.Sprint(addrs[name]); g != want {
			t.Errorf("addresses of %s: %s, want %s", name, g, want)
		}
	}
	if r := ip(t, "-n", ns, "route", "show", "10.3.0.0/16"); !strings.Contains(r, "via 10.2.0.254 dev v0.200") {
		t.Errorf("route 10.3.0.0/16: %q", r)
	}

	after := vmSnapshot(t, ns)
	boom := errors.New("boom")
	err = bofhatomic.Run(ctx, "netif-vm-rerun", func(tx *bofhatomic.Tx) error {
		for _, p := range vmRecipe(ns) {
			if err := tx.Do(ctx, p, nil); err != nil {
				return err
			}
		}
		return boom
	}, bofhatomic.WithStateDir(t.TempDir()), bofhatomic.WithFailpoints(""))
	if !errors.Is(err, boom) || bofhatomic.ExitCode(err) != bofhatomic.ExitRolledBack {
		t.Fatalf("rerun: got %v (exit %d), want the workflow's error, rolled back", err, bofhatomic.ExitCode(err))
	}
	if now := vmSnapshot(t, ns); now != after {
		t.Fatalf("the rerun's no-op steps were undone:\n%s", diff(after, now))
	}
}

// TestVMLinkRollbackOnError injects an error before and after every step's
// effect: the rollback returns the namespace to its starting state.
func TestVMLinkRollbackOnError(t *testing.T) {
	ns := vmNS(t)
	start := vmSnapshot(t, ns)
	n := len(vmRecipe(ns))
	t0 := time.Now()
	for i := 1; i <= n; i++ {
		for _, phase := range []string{"before", "after"} {
			fp := fmt.Sprintf("%d:%s:error", i, phase)
			err := runVMRecipe(context.Background(), ns, bofhatomic.WithStateDir(t.TempDir()), bofhatomic.WithFailpoints(fp))
			if !errors.Is(err, bofhatomic.ErrFailpoint) || bofhatomic.ExitCode(err) != bofhatomic.ExitRolledBack {
				t.Fatalf("%s (%T): got %v (exit %d), want a failpoint error, rolled back", fp, vmRecipe(ns)[i-1], err, bofhatomic.ExitCode(err))
			}
			if now := vmSnapshot(t, ns); now != start {
				t.Fatalf("%s (%T): namespace not back to its starting state:\n%s", fp, vmRecipe(ns)[i-1], diff(start, now))
			}
		}
	}
	t.Logf("%d failpoints in %v", 2*n, time.Since(t0).Round(time.Millisecond))
}

const vmChildEnv = "BOFH_NETIF_VM_CRASH_CHILD"

// TestVMCrashChild is the child process of TestVMLinkRollbackAfterKill: it
// runs the recipe with the failpoints in BOFH_FAIL and gets killed.
func TestVMCrashChild(t *testing.T) {
	vmtest.Require(t)
	spec := os.Getenv(vmChildEnv)
	if spec == "" {
		t.Skip("helper process for TestVMLinkRollbackAfterKill")
	}
	var c struct{ NS, StateDir, ID string }
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		t.Fatal(err)
	}
	err := runVMRecipe(context.Background(), c.NS, bofhatomic.WithStateDir(c.StateDir), bofhatomic.WithID(c.ID))
	t.Fatalf("the recipe was not killed: %v", err)
}

// TestVMLinkRollbackAfterKill kills a child process running the recipe
// around a few steps (enslaving an up link into a new bond, a VLAN on the
// bond, enslaving into the existing bond, the MTU of a VLAN's parent); rolling
// back its journal returns the namespace to its starting state.
func TestVMLinkRollbackAfterKill(t *testing.T) {
	ns := vmNS(t)
	start := vmSnapshot(t, ns)
	for _, fp := range []string{"6:after:kill", "9:after:kill", "15:before:kill", "17:after:kill"} {
		dir := t.TempDir()
		id := "netif-vm-kill-" + strings.ReplaceAll(fp, ":", "-")
		spec, _ := json.Marshal(struct{ NS, StateDir, ID string }{ns, dir, id})
		cmd := exec.Command(os.Args[0], "-test.run=^TestVMCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), vmChildEnv+"="+string(spec), bofhatomic.FailEnv+"="+fp)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != -1 {
			t.Fatalf("%s: child was not killed: %v\n%s", fp, err, out)
		}
		if now := vmSnapshot(t, ns); now == start {
			t.Fatalf("%s: the child changed nothing before it was killed", fp)
		}
		if err := bofhatomic.RollbackID(context.Background(), id, nil, bofhatomic.WithStateDir(dir), bofhatomic.WithFailpoints("")); err != nil {
			t.Fatalf("%s: rollback: %v", fp, err)
		}
		if now := vmSnapshot(t, ns); now != start {
			t.Fatalf("%s: namespace not back to its starting state:\n%s", fp, diff(start, now))
		}
	}
}

// TestVMLinkBadInput: bad dummy, bond and VLAN parameters are refused
// before anything changes, with exit code 2 and a clear message.
func TestVMLinkBadInput(t *testing.T) {
	ns := vmNS(t)
	start := vmSnapshot(t, ns)
	cases := []struct {
		name string
		step bofhatomic.Params
		msg  string
	}{
		{"vlan id 0", CreateLink{Netns: ns, Name: "x0", Type: "vlan", Parent: "phys0"}, "vlan_id"},
		{"vlan id 4095", CreateLink{Netns: ns, Name: "x0", Type: "vlan", Parent: "phys0", VlanID: 4095}, "vlan_id 4095: want 1 to 4094"},
		{"vlan id negative", CreateLink{Netns: ns, Name: "x0", Type: "vlan", Parent: "phys0", VlanID: -1}, "vlan_id -1"},
		{"vlan no parent", CreateLink{Netns: ns, Name: "x0", Type: "vlan", VlanID: 5}, "parent"},
		{"vlan parent missing", CreateLink{Netns: ns, Name: "x0", Type: "vlan", Parent: "nosuch0", VlanID: 5}, "link nosuch0 in netns " + ns + ": not found"},
		{"vlan id taken on parent", CreateLink{Netns: ns, Name: "x0", Type: "vlan", Parent: "phys0", VlanID: 7}, "phys0.7"},
		{"vlan exists other id", CreateLink{Netns: ns, Name: "phys0.7", Type: "vlan", Parent: "phys0", VlanID: 8}, "another parent or VLAN ID"},
		{"vlan exists other parent", CreateLink{Netns: ns, Name: "phys0.7", Type: "vlan", Parent: "spare0", VlanID: 7}, "another parent or VLAN ID"},
		{"vlan fields on dummy", CreateLink{Netns: ns, Name: "x0", Type: "dummy", VlanID: 5}, "vlan_id are required for vlan links and only"},
		{"unknown bond mode", CreateLink{Netns: ns, Name: "x0", Type: "bond", Mode: "fastest"}, `bond mode "fastest"`},
		{"mode on dummy", CreateLink{Netns: ns, Name: "x0", Type: "dummy", Mode: "active-backup"}, "mode is for bond links only"},
		{"bond exists other mode", CreateLink{Netns: ns, Name: "oldbond", Type: "bond", Mode: "802.3ad"}, "exists in mode active-backup"},
		{"dummy exists as bond", CreateLink{Netns: ns, Name: "oldbond", Type: "dummy"}, "exists as a bond"},
		{"dummy exists other mtu", CreateLink{Netns: ns, Name: "spare0", Type: "dummy", MTU: 9000}, "MTU 1500, not 9000"},
		{"master a dummy", SetLink{Netns: ns, Name: "spare0", Master: "phys0"}, "master phys0 is a dummy, not a bridge or bond"},
		{"master a vlan", SetLink{Netns: ns, Name: "spare0", Master: "phys0.7"}, "not a bridge or bond"},
		{"master missing", SetLink{Netns: ns, Name: "spare0", Master: "nosuch0"}, "nosuch0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			err := bofhatomic.Run(ctx, "bad", func(tx *bofhatomic.Tx) error {
				return tx.Do(ctx, c.step, nil)
			}, bofhatomic.WithStateDir(t.TempDir()), bofhatomic.WithFailpoints(""))
			if bofhatomic.ExitCode(err) != bofhatomic.ExitInvalid || !errors.Is(err, bofhatomic.ErrInvalid) {
				t.Fatalf("got %v (exit %d), want invalid input (exit 2)", err, bofhatomic.ExitCode(err))
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not mention %q", err, c.msg)
			}
			if now := vmSnapshot(t, ns); now != start {
				t.Fatalf("namespace changed:\n%s", diff(start, now))
			}
		})
	}
}
