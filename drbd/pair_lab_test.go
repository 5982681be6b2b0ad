//go:build lab

package drbd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bofhkit/bofh/drbd"
	"github.com/bofhkit/bofh/internal/vmtest"
)

// Host-driven two-guest test (make test-vm runs it after the in-guest
// tests): one DRBD resource across lab-a and lab-b, set up, synced,
// switched over and torn down by the bofh CLI itself, each command a
// journaled transaction in its guest; raw tools only to make the loop
// devices and to read back what bofh wrote.

const (
	pairRes   = "pairdata"
	pairPort  = 7791
	pairMinor = 3
	pairDev   = "/dev/drbd3"
	pairMnt   = "/mnt/pair"
	// pairRate caps the resync (resync_rate in the spec) so the 32 MiB
	// initial sync lasts several seconds and its progress can be watched.
	pairRate = "4M"
)

// buildBofh builds the CLI into a directory under /var/tmp: the guests see
// the host's root read-only, but mount their own tmpfs on /tmp, so a binary
// under the host's /tmp would be invisible to them.
func buildBofh(t *testing.T) (bin string, wait func() error) {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "bofh-drbd-pair-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		t.Fatalf("go env GOMOD: %q %v", out, err)
	}
	bin = filepath.Join(dir, "bofh")
	done := make(chan error, 1)
	go func() {
		start := time.Now()
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/bofh")
		cmd.Dir = filepath.Dir(gomod)
		out, err := cmd.CombinedOutput()
		if err != nil {
			err = fmt.Errorf("go build ./cmd/bofh: %w\n%s", err, out)
		} else {
			t.Logf("built %s in %.1fs", bin, time.Since(start).Seconds())
		}
		done <- err
	}()
	var res error
	waited := false
	wait = func() error {
		if !waited {
			res, waited = <-done, true
		}
		return res
	}
	t.Cleanup(func() { wait() }) // before the RemoveAll above
	return bin, wait
}

// node is one guest with the bofh binary.
type node struct {
	t   *testing.T
	g   *vmtest.Guest
	bin string
}

// run runs argv in the guest; failures of the lab itself fail the test.
func (n node) run(argv ...string) vmtest.Result {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	r, err := n.g.Run(ctx, argv...)
	if err != nil {
		n.t.Fatalf("%s: %v", n.g.Name, err)
	}
	n.t.Logf("%s$ %s  [exit %d, %.1fs]", n.g.Name, strings.Join(argv, " "), r.ExitCode, time.Since(start).Seconds())
	return r
}

// must runs argv and fails the test unless it exits 0.
func (n node) must(argv ...string) string {
	n.t.Helper()
	r := n.run(argv...)
	if r.ExitCode != 0 {
		n.t.Fatalf("%s: %q exited %d\nstdout:\n%s\nstderr:\n%s", n.g.Name, argv, r.ExitCode, r.Stdout, r.Stderr)
	}
	return strings.TrimSpace(string(r.Stdout))
}

// bofh runs the CLI with -o json.
func (n node) bofh(args ...string) vmtest.Result {
	n.t.Helper()
	return n.run(append([]string{n.bin, "-o", "json"}, args...)...)
}

// mustBofh runs the CLI with -o json, fails unless it exits 0, and
// decodes its output into v (when not nil).
func (n node) mustBofh(v any, args ...string) {
	n.t.Helper()
	out := n.must(append([]string{n.bin, "-o", "json"}, args...)...)
	if v != nil {
		if err := json.Unmarshal([]byte(out), v); err != nil {
			n.t.Fatalf("%s: bofh %s: %v\n%s", n.g.Name, strings.Join(args, " "), err, out)
		}
	}
}

// status is `bofh drbd status -o json`, decoded.
func (n node) status() drbd.Status {
	n.t.Helper()
	var st drbd.Status
	n.mustBofh(&st, "drbd", "status", pairRes)
	return st
}

// txResult is what a transaction command prints with -o json.
type txResult struct {
	ID     string          `json:"id"`
	Name   string          `json:"name"`
	State  string          `json:"state"`
	Error  string          `json:"error"`
	Result json.RawMessage `json:"result"`
}

// describe is a one-line summary of a decoded status for logs and errors.
func describe(st drbd.Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "role=%s", st.Role)
	for _, d := range st.Devices {
		fmt.Fprintf(&b, " disk=%s minor=%d", d.DiskState, d.Minor)
	}
	for _, c := range st.Connections {
		fmt.Fprintf(&b, " conn=%s peer-role=%s", c.State, c.PeerRole)
		for _, p := range c.PeerDevices {
			fmt.Fprintf(&b, " repl=%s peer-disk=%s oos=%dKiB", p.ReplicationState, p.PeerDiskState, p.OutOfSyncKiB)
			if p.Sync != nil {
				fmt.Fprintf(&b, " sync=%.1f%% speed=%dKiB/s finish=%s", p.Sync.Percent, p.Sync.Speed, p.Sync.Finish)
			}
		}
	}
	return b.String()
}

// expect checks a decoded status against role/disk/connection states.
func expect(t *testing.T, who string, st drbd.Status, role, disk, conn, peerRole, repl, peerDisk string) {
	t.Helper()
	ok := st.Name == pairRes && st.Role == role && len(st.Devices) == 1 && st.Devices[0].DiskState == disk &&
		st.Devices[0].Minor == pairMinor && len(st.Connections) == 1 && st.Connections[0].State == conn &&
		st.Connections[0].PeerRole == peerRole && len(st.Connections[0].PeerDevices) == 1 &&
		st.Connections[0].PeerDevices[0].ReplicationState == repl && st.Connections[0].PeerDevices[0].PeerDiskState == peerDisk
	if !ok {
		t.Fatalf("%s: status %s (%+v), want role=%s disk=%s conn=%s peer-role=%s repl=%s peer-disk=%s",
			who, describe(st), st, role, disk, conn, peerRole, repl, peerDisk)
	}
}

// poll calls f every interval until it returns true or limit passes.
func poll(t *testing.T, what string, limit, interval time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached after %s", what, limit)
		}
		time.Sleep(interval)
	}
}

// onBoth runs f on both guests at once, as parallel subtests (f must use
// n.t, the subtest's), and stops the test if either failed.
func onBoth(t *testing.T, name string, nodes []node, f func(i int, n node)) {
	t.Helper()
	ok := t.Run(name, func(t *testing.T) {
		for i, n := range nodes {
			t.Run(n.g.Name, func(t *testing.T) {
				t.Parallel()
				n.t = t
				f(i, n)
			})
		}
	})
	if !ok {
		t.FailNow()
	}
}

func recipe(name string, steps ...map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"name": name, "steps": steps})
	if err != nil {
		panic(err)
	}
	return b
}

func step(kind string, with map[string]any) map[string]any {
	return map[string]any{"kind": kind, "with": with}
}

// TestPairReplication: a two-node resource across lab-a and lab-b,
// driven by the bofh CLI: config write (same spec on both nodes), create-md,
// up → Connected Secondary/Secondary Inconsistent; primary --force on A →
// initial sync, watched through `bofh drbd status -o json` (SyncSource /
// SyncTarget with progress) and `bofh drbd wait-sync`; a recipe makes a
// filesystem and writes a file on A; switch-over (umount, secondary on A,
// primary on B without force) and B reads the same bytes. Then a
// transaction on B (primary, mount, write) failing at its last step rolls
// back: B is Secondary again, unmounted, still Connected and UpToDate/
// UpToDate, and A, promoted again, sees the original file and not the one
// the rolled-back transaction wrote. Finally down on both: B sees A go
// (WFConnection), then both say the resource is not up.
func TestPairReplication(t *testing.T) {
	bin, built := buildBofh(t) // compiles while the guests boot
	testStart := time.Now()
	p := vmtest.StartPair(t)
	if err := built(); err != nil {
		t.Fatal(err)
	}
	a := node{t, p.A, bin}
	b := node{t, p.B, bin}
	nodes := []node{a, b}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range nodes {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				r, err := n.g.Run(ctx, "sh", "-c", "cat /proc/drbd; dmesg | grep -i drbd | tail -40")
				cancel()
				t.Logf("%s (console %s): %v\n%s%s", n.g.Name, n.g.ConsoleLog(), err, r.Stdout, r.Stderr)
			}
		}
	})
	ctx := context.Background()

	// Hostnames (the `on` sections must name them) and backing disks: a
	// 32 MiB loop device in each guest's tmpfs. Both guests at once.
	disks := make([]string, len(nodes))
	onBoth(t, "setup", nodes, func(i int, n node) {
		out := n.must("sh", "-c", "set -e; uname -n; truncate -s 32M /tmp/pair.img; losetup --find --show /tmp/pair.img; mkdir -p "+pairMnt)
		host, disk, _ := strings.Cut(out, "\n")
		if host != n.g.Name || !strings.HasPrefix(disk, "/dev/loop") {
			n.t.Fatalf("guest %s: uname -n, losetup said %q", n.g.Name, out)
		}
		disks[i] = disk
	})

	// 1. The same spec on both nodes, then metadata and up.
	minor := pairMinor
	spec := drbd.Resource{Name: pairRes, Protocol: "C", Port: pairPort, Minor: &minor, ResyncRate: pairRate,
		Nodes: []drbd.Node{
			{Name: p.A.Name, Address: vmtest.PairAddrA, Disk: disks[0]},
			{Name: p.B.Name, Address: vmtest.PairAddrB, Disk: disks[1]},
		}}
	specJSON, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	files := make([]string, len(nodes))
	onBoth(t, "config-up", nodes, func(i int, n node) {
		if err := n.g.WriteFile(ctx, "/root/pairdata.json", specJSON); err != nil {
			n.t.Fatal(err)
		}
		var res txResult
		n.mustBofh(&res, "drbd", "config", "write", "--spec", "/root/pairdata.json")
		var cr drbd.ConfigResult
		if err := json.Unmarshal(res.Result, &cr); err != nil {
			n.t.Fatalf("%s: config write result %s: %v", n.g.Name, res.Result, err)
		}
		if res.State != "committed" || cr.Path != "/etc/drbd.d/pairdata.res" || cr.Port != pairPort || cr.Minor != pairMinor || cr.Device != pairDev {
			n.t.Fatalf("%s: config write: %+v %+v", n.g.Name, res, cr)
		}
		files[i] = n.must("cat", cr.Path)
		n.mustBofh(nil, "drbd", "create-md", pairRes)
		n.mustBofh(nil, "drbd", "up", pairRes)
	})
	if files[0] != files[1] {
		t.Fatalf("the nodes' resource files differ:\n%s\n---\n%s", files[0], files[1])
	}
	if !strings.Contains(files[0], "resync-rate "+pairRate+";") {
		t.Fatalf("resync_rate not rendered:\n%s", files[0])
	}

	// 2. The nodes find each other: Connected, both Secondary and
	// Inconsistent (new metadata on both sides).
	var st drbd.Status
	poll(t, "A connected to B", 90*time.Second, time.Second, func() bool {
		st = a.status()
		t.Logf("A: %s", describe(st))
		return st.Connected()
	})
	expect(t, "A before primary", st, "Secondary", "Inconsistent", "Connected", "Secondary", "Established", "Inconsistent")
	expect(t, "B before primary", b.status(), "Secondary", "Inconsistent", "Connected", "Secondary", "Established", "Inconsistent")

	// 3. primary --force on A starts the initial full sync A → B; its
	// progress shows in bofh's decoded status on both sides.
	syncStart := time.Now()
	a.mustBofh(nil, "drbd", "primary", "--force", pairRes)
	var sawSource, sawTarget *drbd.Progress
	poll(t, "sync progress reported on A and B", 60*time.Second, 200*time.Millisecond, func() bool {
		if sawSource == nil {
			sa := a.status()
			t.Logf("A: %s", describe(sa))
			if pd := sa.Connections[0].PeerDevices[0]; pd.ReplicationState == "SyncSource" && pd.Sync != nil {
				if sa.Role != "Primary" || sa.Devices[0].DiskState != "UpToDate" || pd.PeerDiskState != "Inconsistent" {
					t.Fatalf("A syncing: %s", describe(sa))
				}
				sawSource = pd.Sync
			}
		}
		if sawTarget == nil {
			sb := b.status()
			t.Logf("B: %s", describe(sb))
			if pd := sb.Connections[0].PeerDevices[0]; pd.ReplicationState == "SyncTarget" && pd.Sync != nil {
				if sb.Role != "Secondary" || sb.Devices[0].DiskState != "Inconsistent" || pd.PeerDiskState != "UpToDate" {
					t.Fatalf("B syncing: %s", describe(sb))
				}
				sawTarget = pd.Sync
			}
		}
		return sawSource != nil && sawTarget != nil
	})
	for _, pr := range []*drbd.Progress{sawSource, sawTarget} {
		if pr.Percent < 0 || pr.Percent >= 100 {
			t.Errorf("sync progress out of range: %+v", *pr)
		}
	}
	t.Logf("sync progress seen: source %+v, target %+v", *sawSource, *sawTarget)
	// wait-sync on the target blocks until the resync is over.
	b.mustBofh(nil, "drbd", "wait-sync", pairRes)
	t.Logf("initial sync of 32 MiB at <= %s/s: %.1fs", pairRate, time.Since(syncStart).Seconds())
	expect(t, "A synced", a.status(), "Primary", "UpToDate", "Connected", "Secondary", "Established", "UpToDate")
	expect(t, "B synced", b.status(), "Secondary", "UpToDate", "Connected", "Primary", "Established", "UpToDate")

	// 4. Data on A, through a committed recipe: mkfs, mount, write.
	// (No "${": a recipe reads it as a reference to a step's result.)
	payload := fmt.Sprintf("replicated by bofh from lab-a at %s\nline 2: äöü \"quoted\" $HOME 100%%\n", time.Now().Format(time.RFC3339Nano))
	seed := recipe("pair-seed",
		step("fs.mkfs", map[string]any{"device": pairDev, "type": "ext4", "label": "pairdata"}),
		step("mount", map[string]any{"source": pairDev, "target": pairMnt}),
		step("file.write", map[string]any{"path": pairMnt + "/payload.txt", "content": payload}),
	)
	if err := p.A.WriteFile(ctx, "/root/seed.json", seed); err != nil {
		t.Fatal(err)
	}
	var res txResult
	a.mustBofh(&res, "apply", "/root/seed.json")
	if res.State != "committed" {
		t.Fatalf("seed: %+v", res)
	}
	a.mustBofh(nil, "blockdev", "umount", pairMnt)

	// 5. Switch-over: A steps down, B takes over without --force (its
	// data is UpToDate) and reads the same bytes.
	a.mustBofh(nil, "drbd", "secondary", pairRes)
	b.mustBofh(nil, "drbd", "primary", pairRes)
	expect(t, "B primary", b.status(), "Primary", "UpToDate", "Connected", "Secondary", "Established", "UpToDate")
	expect(t, "A secondary", a.status(), "Secondary", "UpToDate", "Connected", "Primary", "Established", "UpToDate")
	b.mustBofh(nil, "blockdev", "mount", "--ro", pairDev, pairMnt)
	if got := string(b.run("cat", pairMnt+"/payload.txt").Stdout); got != payload {
		t.Fatalf("B read %q, want %q", got, payload)
	}
	b.mustBofh(nil, "blockdev", "umount", pairMnt)
	b.mustBofh(nil, "drbd", "secondary", pairRes)

	// 6. A transaction on B that fails part-way: primary, mount, write a
	// file, then the failpoint after the write. Everything is undone in
	// reverse: the file removed, unmounted, back to Secondary.
	takeover := recipe("pair-takeover",
		step("drbd.primary", map[string]any{"resource": pairRes}),
		step("mount", map[string]any{"source": pairDev, "target": pairMnt}),
		step("file.write", map[string]any{"path": pairMnt + "/takeover.txt", "content": "must not survive\n"}),
	)
	if err := p.B.WriteFile(ctx, "/root/takeover.json", takeover); err != nil {
		t.Fatal(err)
	}
	r := b.run("env", "BOFH_FAIL=3:after:error", bin, "-o", "json", "apply", "/root/takeover.json")
	res = txResult{}
	if err := json.Unmarshal(r.Stdout, &res); err != nil {
		t.Fatalf("apply output %q: %v (stderr %s)", r.Stdout, err, r.Stderr)
	}
	if r.ExitCode != 1 || res.State != "rolled-back" || !strings.Contains(res.Error, "failpoint") {
		t.Fatalf("failing takeover: exit %d, %+v\nstderr: %s", r.ExitCode, res, r.Stderr)
	}
	var show struct {
		State string `json:"state"`
		Steps []struct {
			Step   int    `json:"step"`
			Kind   string `json:"kind"`
			Status string `json:"status"`
		} `json:"steps"`
	}
	b.mustBofh(&show, "tx", "show", res.ID)
	if show.State != "rolled-back" || len(show.Steps) != 3 {
		t.Fatalf("tx show %s: %+v", res.ID, show)
	}
	for _, s := range show.Steps {
		if s.Status != "undone" {
			t.Errorf("tx show %s: step %d %s is %q, want undone", res.ID, s.Step, s.Kind, s.Status)
		}
	}
	if r := b.run("mountpoint", "-q", pairMnt); r.ExitCode == 0 {
		t.Fatalf("B: %s still mounted after the rollback", pairMnt)
	}
	expect(t, "B after rollback", b.status(), "Secondary", "UpToDate", "Connected", "Secondary", "Established", "UpToDate")
	expect(t, "A after B's rollback", a.status(), "Secondary", "UpToDate", "Connected", "Secondary", "Established", "UpToDate")
	// The rollback's removal of the file was replicated: A, promoted
	// again, has the original file and not the rolled-back one.
	a.mustBofh(nil, "drbd", "primary", pairRes)
	a.mustBofh(nil, "blockdev", "mount", "--ro", pairDev, pairMnt)
	if got := string(a.run("cat", pairMnt+"/payload.txt").Stdout); got != payload {
		t.Fatalf("A read back %q, want %q", got, payload)
	}
	if r := a.run("test", "-e", pairMnt+"/takeover.txt"); r.ExitCode == 0 {
		t.Fatalf("A sees %s/takeover.txt written by B's rolled-back transaction", pairMnt)
	}
	a.mustBofh(nil, "blockdev", "umount", pairMnt)
	a.mustBofh(nil, "drbd", "secondary", pairRes)

	// 7. Down on A: B loses its peer; down on B: nothing left.
	a.mustBofh(nil, "drbd", "down", pairRes)
	poll(t, "B sees A gone", 60*time.Second, time.Second, func() bool {
		st = b.status()
		t.Logf("B: %s", describe(st))
		return !st.Connected()
	})
	if st.Role != "Secondary" || st.Connections[0].State != "WFConnection" || st.Connections[0].PeerRole != "Unknown" {
		t.Fatalf("B with A down: %s", describe(st))
	}
	b.mustBofh(nil, "drbd", "down", pairRes)
	for _, n := range nodes {
		r := n.bofh("drbd", "status", pairRes)
		if r.ExitCode == 0 || !strings.Contains(string(r.Stderr), drbd.ErrNotUp.Error()) {
			t.Errorf("%s: status after down: exit %d\n%s%s", n.g.Name, r.ExitCode, r.Stdout, r.Stderr)
		}
		proc, err := drbd.ParseProc([]byte(n.must("cat", drbd.ProcDRBD)))
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := proc.Get(pairMinor); ok && m.CState != "Unconfigured" {
			t.Errorf("%s: /proc/drbd still has minor %d: %+v", n.g.Name, pairMinor, m)
		}
	}
	t.Logf("pair test total %.1fs (boot included)", time.Since(testStart).Seconds())
}
