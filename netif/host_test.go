package netif

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	bofhatomic "github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
)

var nsSeq atomic.Int64

// newNS creates a named network namespace for the test (removed on
// cleanup), with IPv6 link-local addresses off (they come and go with
// links and would make state comparisons racy) and lo up. It fails the
// test unless it runs as root (BOFH_SKIP_ROOT=1 skips it loudly).
func newNS(t *testing.T) string {
	t.Helper()
	hosttest.RequireRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("ip (iproute2) is needed to inspect namespaces: %v (see deps/netif.txt)", err)
	}
	name := hosttest.NetNS(t, fmt.Sprintf("bofhtest-%d-%d", os.Getpid(), nsSeq.Add(1))).Name
	for _, k := range []string{"net.ipv6.conf.default.addr_gen_mode=1", "net.ipv6.conf.all.addr_gen_mode=1"} {
		if out, err := exec.Command("ip", "netns", "exec", name, "sysctl", "-qw", k).CombinedOutput(); err != nil {
			t.Fatalf("sysctl %s: %v: %s", k, err, out)
		}
	}
	ip(t, "-n", name, "link", "set", "lo", "up")
	return name
}

func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// volatileKey matches fields that move on their own (bridge timers, carrier
// state) or that the kernel sets once and for all: the default qdisc a link
// gets the first time it goes up (noop → noqueue) is not link configuration
// and is not reverted.
var volatileKey = regexp.MustCompile(`_timer$|^operstate$|^linkmode$|^qdisc$`)

// snapshot is the namespace's links, addresses and routes as ip -j shows
// them, with timers and other fields that move on their own removed.
func snapshot(t *testing.T, ns string) string {
	t.Helper()
	var parts []string
	for _, args := range [][]string{
		{"-d", "link", "show"},
		{"addr", "show"},
		{"route", "show", "table", "all"},
		{"-6", "route", "show", "table", "all"},
	} {
		raw := ip(t, append([]string{"-n", ns, "-j"}, args...)...)
		var v any
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			t.Fatalf("ip %v: %v", args, err)
		}
		b, _ := json.MarshalIndent(scrub(v), "", " ")
		parts = append(parts, string(b))
	}
	return strings.Join(parts, "\n")
}

func scrub(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if volatileKey.MatchString(k) {
				delete(x, k)
				continue
			}
			x[k] = scrub(e)
		}
	case []any:
		for i := range x {
			x[i] = scrub(x[i])
		}
	}
	return v
}

func diff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			out = append(out, fmt.Sprintf("line %d:\n- %s\n+ %s", i+1, x, y))
			if len(out) > 8 {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

func bp(b bool) *bool { return &b }

// baseline gives a namespace pre-existing state the recipe changes and
// must restore: an up dummy with an address and a gateway route, a bridge.
func baseline(t *testing.T, ns string) {
	ip(t, "-n", ns, "link", "add", "base0", "type", "veth", "peer", "name", "base0p")
	ip(t, "-n", ns, "addr", "add", "10.9.0.1/24", "dev", "base0")
	ip(t, "-n", ns, "link", "set", "base0", "up")
	ip(t, "-n", ns, "route", "add", "10.99.0.0/16", "via", "10.9.0.254")
	ip(t, "-n", ns, "route", "add", "10.98.0.0/16", "dev", "base0", "src", "10.9.0.1", "metric", "7")
	ip(t, "-n", ns, "link", "add", "oldbr", "type", "bridge")
}

// recipe is the crash-matrix workflow: every reversible netif step kind,
// on new links and on pre-existing ones.
func recipe(ns string) []bofhatomic.Params {
	return []bofhatomic.Params{
		CreateLink{Netns: ns, Name: "br0", Type: "bridge"},
		CreateLink{Netns: ns, Name: "v0", Type: "veth", Peer: "v1"},
		CreateLink{Netns: ns, Name: "v2", Type: "veth", Peer: "v3", MTU: 1400},
		SetLink{Netns: ns, Name: "v2", Master: "br0"},
		SetLink{Netns: ns, Name: "v0", Master: "br0", Up: bp(true)},
		SetLink{Netns: ns, Name: "br0", MTU: 1400, Up: bp(true)},
		SetLink{Netns: ns, Name: "oldbr", Up: bp(true), MTU: 1280},
		AddAddr{Netns: ns, Link: "br0", Address: "10.1.0.1/24"},
		AddRoute{Netns: ns, Dst: "10.2.0.0/16", Via: "10.1.0.254"},
		AddRoute{Netns: ns, Dst: "10.3.0.0/16", Dev: "br0", Metric: 10, Table: 100},
		DelRoute{Netns: ns, Dst: "10.99.0.0/16"},
		SetLink{Netns: ns, Name: "base0", MTU: 1300},
		SetLink{Netns: ns, Name: "base0", Up: bp(false)},
		DelAddr{Netns: ns, Link: "base0", Address: "10.9.0.1/24"},
	}
}

func runRecipe(ctx context.Context, ns string, opts ...bofhatomic.Option) error {
	return bofhatomic.Run(ctx, "netif-recipe", func(tx *bofhatomic.Tx) error {
		for _, p := range recipe(ns) {
			if err := tx.Do(ctx, p, nil); err != nil {
				return err
			}
		}
		return nil
	}, opts...)
}

// TestRecipeCommit runs the recipe to its end and checks the end state.
func TestRecipeCommit(t *testing.T) {
	ns := newNS(t)
	baseline(t, ns)
	if err := runRecipe(context.Background(), ns, bofhatomic.WithStateDir(t.TempDir()), bofhatomic.WithFailpoints("")); err != nil {
		t.Fatal(err)
	}
	links, err := Links(ns)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Link{}
	for _, l := range links {
		got[l.Name] = l
	}
	checks := []struct {
		name, typ, master string
		up                bool
		mtu               int
	}{
		{"br0", "bridge", "", true, 1400},
		{"v2", "veth", "br0", false, 1400},
		{"v3", "veth", "", false, 1400},
		{"v0", "veth", "br0", true, 1500},
		{"v1", "veth", "", false, 1500},
		{"oldbr", "bridge", "", true, 1280},
		{"base0", "veth", "", false, 1300},
	}
	for _, c := range checks {
		l, ok := got[c.name]
		if !ok {
			t.Errorf("link %s missing", c.name)
			continue
		}
		if l.Type != c.typ || l.Master != c.master || l.Up != c.up || l.MTU != c.mtu {
			t.Errorf("link %s = %+v, want type %s master %q up %v mtu %d", c.name, l, c.typ, c.master, c.up, c.mtu)
		}
	}
	if a := got["br0"].Addrs; len(a) != 1 || a[0] != "10.1.0.1/24" {
		t.Errorf("br0 addresses %v", a)
	}
	if a := got["base0"].Addrs; len(a) != 0 {
		t.Errorf("base0 addresses %v, want none", a)
	}
	if main, err := Routes(ns, false); err != nil || len(main) == 0 {
		t.Fatalf("main table routes: %v %v", main, err)
	}
	routes, err := Routes(ns, true)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"10.2.0.0/16 via 10.1.0.254 table 254": false, "10.3.0.0/16 dev br0 table 100": false}
	for _, r := range routes {
		k := fmt.Sprintf("%s via %s table %d", r.Dst, r.Via, r.Table)
		if r.Via == "" {
			k = fmt.Sprintf("%s dev %s table %d", r.Dst, r.Dev, r.Table)
		}
		if _, ok := want[k]; ok {
			want[k] = true
		}
		if r.Dst == "10.99.0.0/16" {
			t.Errorf("route 10.99.0.0/16 still there")
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("route %s missing (have %+v)", k, routes)
		}
	}
}

// TestRecipeRollbackOnError injects an error before and after every
// step's effect: the rollback returns the namespace to its starting state.
func TestRecipeRollbackOnError(t *testing.T) {
	ns := newNS(t)
	baseline(t, ns)
	start := snapshot(t, ns)
	n := len(recipe(ns))
	for i := 1; i <= n; i++ {
		for _, phase := range []string{"before", "after"} {
			fp := fmt.Sprintf("%d:%s:error", i, phase)
			err := runRecipe(context.Background(), ns, bofhatomic.WithStateDir(t.TempDir()), bofhatomic.WithFailpoints(fp))
			if !errors.Is(err, bofhatomic.ErrFailpoint) || bofhatomic.ExitCode(err) != bofhatomic.ExitRolledBack {
				t.Fatalf("%s: got %v (exit %d), want a failpoint error, rolled back", fp, err, bofhatomic.ExitCode(err))
			}
			if now := snapshot(t, ns); now != start {
				t.Fatalf("%s: namespace not back to its starting state:\n%s", fp, diff(start, now))
			}
		}
	}
}

const childEnv = "BOFH_NETIF_CRASH_CHILD"

// TestCrashChild is the child process of TestRecipeRollbackAfterKill: it
// runs the recipe with the failpoints in BOFH_FAIL and gets killed.
func TestCrashChild(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		t.Skip("helper process for TestRecipeRollbackAfterKill")
	}
	var c struct{ NS, StateDir, ID string }
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		t.Fatal(err)
	}
	err := runRecipe(context.Background(), c.NS, bofhatomic.WithStateDir(c.StateDir), bofhatomic.WithID(c.ID))
	t.Fatalf("the recipe was not killed: %v", err)
}

// TestRecipeRollbackAfterKill kills a child process running the recipe
// before and after every step's effect; rolling back its journal returns
// the namespace to its starting state.
func TestRecipeRollbackAfterKill(t *testing.T) {
	ns := newNS(t)
	baseline(t, ns)
	start := snapshot(t, ns)
	n := len(recipe(ns))
	for i := 1; i <= n; i++ {
		for _, phase := range []string{"before", "after"} {
			fp := fmt.Sprintf("%d:%s:kill", i, phase)
			dir := t.TempDir()
			id := fmt.Sprintf("netif-kill-%d-%s", i, phase)
			spec, _ := json.Marshal(struct{ NS, StateDir, ID string }{ns, dir, id})
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), childEnv+"="+string(spec), bofhatomic.FailEnv+"="+fp)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != -1 {
				t.Fatalf("%s: child was not killed: %v\n%s", fp, err, out)
			}
			if err := bofhatomic.RollbackID(context.Background(), id, nil, bofhatomic.WithStateDir(dir), bofhatomic.WithFailpoints("")); err != nil {
				t.Fatalf("%s: rollback: %v", fp, err)
			}
			if now := snapshot(t, ns); now != start {
				t.Fatalf("%s: namespace not back to its starting state:\n%s", fp, diff(start, now))
			}
		}
	}
}

// TestLinkDelete: net.link.delete runs at commit, is a no-op for a link
// that is not there, and is refused by nothing else.
func TestLinkDelete(t *testing.T) {
	ns := newNS(t)
	baseline(t, ns)
	ctx := context.Background()
	dir := t.TempDir()
	err := bofhatomic.Run(ctx, "del", func(tx *bofhatomic.Tx) error {
		if err := tx.Do(ctx, DeleteLink{Netns: ns, Name: "oldbr"}, nil); err != nil {
			return err
		}
		if l, _ := Links(ns); !hasLink(l, "oldbr") {
			t.Errorf("oldbr deleted before commit")
		}
		return tx.Do(ctx, DeleteLink{Netns: ns, Name: "nosuch"}, nil)
	}, bofhatomic.WithStateDir(dir), bofhatomic.WithFailpoints(""))
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := Links(ns); hasLink(l, "oldbr") {
		t.Errorf("oldbr still there after commit")
	}
}

func hasLink(ls []Link, name string) bool {
	for _, l := range ls {
		if l.Name == name {
			return true
		}
	}
	return false
}

// TestIPv6AndNoop: IPv6 addresses and routes; a step whose effect is
// already there is a no-op and its undo leaves it alone.
func TestIPv6AndNoop(t *testing.T) {
	ns := newNS(t)
	baseline(t, ns)
	ctx := context.Background()
	steps := []bofhatomic.Params{
		AddAddr{Netns: ns, Link: "base0", Address: "2001:db8::1/64"},
		AddRoute{Netns: ns, Dst: "2001:db8:1::/48", Via: "2001:db8::fe", Dev: "base0"},
	}
	if err := bofhatomic.Run(ctx, "v6", func(tx *bofhatomic.Tx) error {
		for _, s := range steps {
			if err := tx.Do(ctx, s, nil); err != nil {
				return err
			}
		}
		return nil
	}, bofhatomic.WithStateDir(t.TempDir()), bofhatomic.WithFailpoints("")); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, ns)
	if !strings.Contains(after, `"2001:db8::1"`) || !strings.Contains(after, `"2001:db8:1::/48"`) {
		t.Fatalf("IPv6 address or route missing:\n%s", after)
	}
	// the same steps again, then a failure: they were no-ops, so the
	// rollback must leave the address and route in place
	steps = append(steps, AddAddr{Netns: ns, Link: "base0", Address: "10.9.0.1/24"}, CreateLink{Netns: ns, Name: "oldbr", Type: "bridge"})
	err := bofhatomic.Run(ctx, "v6-again", func(tx *bofhatomic.Tx) error {
		for _, s := range steps {
			if err := tx.Do(ctx, s, nil); err != nil {
				return err
			}
		}
		return errors.New("boom")
	}, bofhatomic.WithStateDir(t.TempDir()), bofhatomic.WithFailpoints(""))
	if err == nil {
		t.Fatal("want the workflow's error")
	}
	if now := snapshot(t, ns); now != after {
		t.Fatalf("no-op steps were undone:\n%s", diff(after, now))
	}
}

// TestBadInput: invalid parameters and unknown links are refused before
// anything changes, with exit code 2 and a clear message.
func TestBadInput(t *testing.T) {
	ns := newNS(t)
	baseline(t, ns)
	start := snapshot(t, ns)
	cases := []struct {
		name string
		step bofhatomic.Params
		msg  string
	}{
		{"long name", CreateLink{Netns: ns, Name: "abcdefghijklmnop", Type: "bridge"}, "at most 15"},
		{"slash", CreateLink{Netns: ns, Name: "a/b", Type: "bridge"}, "refuses"},
		{"exists as other type", CreateLink{Netns: ns, Name: "oldbr", Type: "veth", Peer: "x1"}, "exists as a bridge"},
		{"unknown type", CreateLink{Netns: ns, Name: "x0", Type: "wifi"}, "link type"},
		{"veth no peer", CreateLink{Netns: ns, Name: "x0", Type: "veth"}, "peer"},
		{"vlan id", CreateLink{Netns: ns, Name: "x0", Type: "vlan", Parent: "base0", VlanID: 4095}, "vlan_id"},
		{"bond mode", CreateLink{Netns: ns, Name: "x0", Type: "bond", Mode: "fastest"}, "bond mode"},
		{"vlan unknown parent", CreateLink{Netns: ns, Name: "x0", Type: "vlan", Parent: "nosuch0", VlanID: 5}, "nosuch0"},
		{"veth peer taken", CreateLink{Netns: ns, Name: "x0", Type: "veth", Peer: "oldbr"}, "taken"},
		{"mtu", SetLink{Netns: ns, Name: "base0", MTU: 10}, "mtu"},
		{"nothing to set", SetLink{Netns: ns, Name: "base0"}, "nothing to set"},
		{"unknown link", SetLink{Netns: ns, Name: "nosuch0", Up: bp(true)}, "nosuch0"},
		{"master not bridge", SetLink{Netns: ns, Name: "base0", Master: "lo"}, "not a bridge"},
		{"bad cidr", AddAddr{Netns: ns, Link: "base0", Address: "10.0.0.300/24"}, "address"},
		{"no prefix", AddAddr{Netns: ns, Link: "base0", Address: "10.0.0.3"}, "prefix"},
		{"addr unknown link", AddAddr{Netns: ns, Link: "nosuch0", Address: "10.0.0.3/24"}, "nosuch0"},
		{"route host bits", AddRoute{Netns: ns, Dst: "10.1.2.3/16", Dev: "base0"}, "host bits"},
		{"route mixed", AddRoute{Netns: ns, Dst: "10.1.0.0/16", Via: "2001:db8::1"}, "mixes"},
		{"route nowhere", AddRoute{Netns: ns, Dst: "10.1.0.0/16"}, "needs via"},
		{"route conflict", AddRoute{Netns: ns, Dst: "10.99.0.0/16", Dev: "base0"}, "exists via"},
		{"route unknown dev", AddRoute{Netns: ns, Dst: "10.1.0.0/16", Dev: "nosuch0"}, "nosuch0"},
		{"bad netns", CreateLink{Netns: "../etc", Name: "x0", Type: "bridge"}, "plain file name"},
		{"missing netns", CreateLink{Netns: "bofh-no-such-ns", Name: "x0", Type: "bridge"}, "bofh-no-such-ns"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			err := bofhatomic.Run(ctx, "bad", func(tx *bofhatomic.Tx) error {
				// a good step first: it must not have run either way
				if err := tx.Do(ctx, c.step, nil); err != nil {
					return err
				}
				return nil
			}, bofhatomic.WithStateDir(t.TempDir()), bofhatomic.WithFailpoints(""))
			if bofhatomic.ExitCode(err) != bofhatomic.ExitInvalid || !errors.Is(err, bofhatomic.ErrInvalid) {
				t.Fatalf("got %v (exit %d), want invalid input (exit 2)", err, bofhatomic.ExitCode(err))
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not mention %q", err, c.msg)
			}
			if now := snapshot(t, ns); now != start {
				t.Fatalf("namespace changed:\n%s", diff(start, now))
			}
		})
	}
}

// TestDryRun: a dry run changes nothing and says what it would do.
func TestDryRun(t *testing.T) {
	ns := newNS(t)
	baseline(t, ns)
	start := snapshot(t, ns)
	var out strings.Builder
	err := bofhatomic.Run(context.Background(), "dry", func(tx *bofhatomic.Tx) error {
		for _, p := range recipe(ns)[:1] {
			if err := tx.Do(context.Background(), p, nil); err != nil {
				return err
			}
		}
		return tx.Do(context.Background(), SetLink{Netns: ns, Name: "base0", MTU: 1300}, nil)
	}, bofhatomic.WithDryRun(&out), bofhatomic.WithStateDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if now := snapshot(t, ns); now != start {
		t.Fatalf("dry run changed the namespace:\n%s", diff(start, now))
	}
	for _, w := range []string{"would create bridge link br0", "would set link base0"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("dry-run output %q lacks %q", out.String(), w)
		}
	}
}

// TestStepKindsListed: every kind of the package doc is registered.
func TestStepKindsListed(t *testing.T) {
	var kinds []string
	for _, k := range bofhatomic.Kinds() {
		if strings.HasPrefix(k.Kind, "net.") {
			kinds = append(kinds, k.Kind)
		}
	}
	sort.Strings(kinds)
	want := "net.addr.add net.addr.del net.link.create net.link.delete net.link.set net.route.add net.route.del"
	if got := strings.Join(kinds, " "); got != want {
		t.Fatalf("kinds %s, want %s", got, want)
	}
	src, _ := os.ReadFile(filepath.Join(".", "netif.go"))
	for _, k := range kinds {
		if !strings.Contains(string(src), k) {
			t.Errorf("package doc does not list %s", k)
		}
	}
}
