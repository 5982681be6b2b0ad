//go:build vm

package drbd_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/drbd"
	"github.com/bofhkit/bofh/internal/vmtest"
)

// TestVMKindsCrash crashes every DRBD step kind mid-step against the real
// DRBD 8.4 kernel module in one guest. The resource under test, bofhk,
// replicates to a second resource of the same guest, bofhkpeer (its own
// loop device and config file, the other loopback address): so connect,
// disconnect, verify and invalidate have a real peer. Each DRBD step's Do
// runs one drbdadm command, so a SIGKILL before or after it is the
// mid-step crash. After each kill the journal is rolled back and the
// real tools (drbdmeta, blkid, /proc/drbd, the config directory) must
// show bofhk's starting state.

const (
	kcRes       = "bofhk"
	kcPeer      = "bofhkpeer"
	kcPort      = 7795
	kcMinor     = 5
	kcPeerMinor = 6
	kcAddr      = "10.99.9.1"
	kcPeerAddr  = "10.99.9.2"
	kcChildEnv  = "BOFH_DRBD_KINDS_CHILD" // workflow|state dir|loop device (or transaction ID)
)

func init() {
	if v := os.Getenv(kcChildEnv); v != "" {
		os.Exit(kcChild(v))
	}
}

// kcChild runs a workflow with BOFH_FAIL from the environment (a kill).
func kcChild(spec string) int {
	f := strings.Split(spec, "|")
	if len(f) != 3 {
		fmt.Fprintln(os.Stderr, "bad", kcChildEnv, spec)
		return 6
	}
	ctx := context.Background()
	var err error
	switch f[0] {
	case "main":
		err = atomic.Run(ctx, "drbd-kinds", func(tx *atomic.Tx) error { return kcMain(ctx, tx, f[2]) }, atomic.WithStateDir(f[1]))
	case "rollback": // f[2] is the transaction's ID
		err = atomic.RollbackID(ctx, f[2], nil, atomic.WithStateDir(f[1]))
	default:
		steps, ok := kcOnExisting[f[0]]
		if !ok {
			err = fmt.Errorf("unknown workflow %q", f[0])
			break
		}
		err = atomic.Run(ctx, f[0], func(tx *atomic.Tx) error {
			for _, p := range steps {
				if err := tx.Do(ctx, p, nil); err != nil {
					return err
				}
			}
			return nil
		}, atomic.WithStateDir(f[1]))
	}
	fmt.Fprintln(os.Stderr, "drbd kinds child: not killed:", err)
	return 5
}

// kcOnExisting are the workflows run on a resource that was up before
// (set up with drbdadm): there each undo must restore a state the
// transaction did not create, so it is seen for itself (on a resource the
// transaction brought up, the undo of up hides the others).
var kcOnExisting = map[string][]atomic.Params{
	"secondary-disconnect": {drbd.Secondary{Resource: kcRes}, drbd.Disconnect{Resource: kcRes}},
	"primary-connect":      {drbd.Primary{Resource: kcRes}, drbd.Connect{Resource: kcRes}},
	"down":                 {drbd.Down{Resource: kcRes}},
}

func kcSpec(loop string) drbd.WriteConfig {
	host, _ := os.Hostname()
	minor := kcMinor
	return drbd.WriteConfig{Resource: drbd.Resource{Name: kcRes, Port: kcPort, Minor: &minor, VerifyAlg: "crc32c", ResyncRate: "100M",
		Nodes: []drbd.Node{{Name: host, Address: kcAddr, Disk: loop}, {Name: "peer-" + host, Address: kcPeerAddr, Disk: loop}}}}
}

// kcMain is the workflow: steps 1-9 and, at commit, 10 (invalidate).
// Between steps it waits for DRBD to settle (connection, resync, verify)
// as an operator's program would.
func kcMain(ctx context.Context, tx *atomic.Tx, loop string) error {
	do := func(p atomic.Params) error { return tx.Do(ctx, p, nil) }
	for _, s := range []struct {
		p    atomic.Params
		wait string // /proc/drbd state to wait for after the step
	}{
		{kcSpec(loop), ""},                                   // 1 drbd.config.write
		{drbd.CreateMD{Resource: kcRes}, ""},                 // 2 drbd.create-md
		{drbd.Up{Resource: kcRes}, ""},                       // 3 drbd.up
		{drbd.Primary{Resource: kcRes, Force: true}, "sync"}, // 4 drbd.primary
		{drbd.Disconnect{Resource: kcRes}, ""},               // 5 drbd.disconnect
		{drbd.Connect{Resource: kcRes}, "sync"},              // 6 drbd.connect
		{drbd.Adjust{Resource: kcRes}, ""},                   // 7 drbd.adjust
		{drbd.Verify{Resource: kcRes}, "sync"},               // 8 drbd.verify
		{drbd.Secondary{Resource: kcRes}, ""},                // 9 drbd.secondary
		{drbd.Invalidate{Resource: kcRes}, ""},               // 10 drbd.invalidate (at commit)
	} {
		if err := do(s.p); err != nil {
			return err
		}
		if s.wait != "" {
			if err := kcWaitSynced(kcMinor, time.Minute); err != nil {
				return err
			}
		}
	}
	return nil
}

// kcProc returns minor's line of /proc/drbd, "" when it is not configured.
func kcProc(minor int) string {
	b, _ := os.ReadFile("/proc/drbd")
	re := regexp.MustCompile(fmt.Sprintf(`(?m)^ *%d: (cs:.*)$`, minor))
	if m := re.FindStringSubmatch(string(b)); m != nil {
		return m[1]
	}
	return ""
}

// kcWaitSynced waits until minor is connected with both disks UpToDate
// and no resync or verify running.
func kcWaitSynced(minor int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		l := kcProc(minor)
		if strings.HasPrefix(l, "cs:Connected ") && strings.Contains(l, "ds:UpToDate/UpToDate") {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("minor %d not connected and in sync after %s: %q", minor, limit, l)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func kcRun(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// kcState is what the real tools say about bofhk: its config file, its
// line in /proc/drbd (role, disk states), DRBD metadata on its backing
// disk (drbdmeta) and any signature there (blkid).
func kcState(t *testing.T, loop string) string {
	t.Helper()
	var parts []string
	if _, err := os.Stat(filepath.Join(drbd.DefaultConfigDir, kcRes+".res")); err == nil {
		parts = append(parts, "config")
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if l := kcProc(kcMinor); l != "" {
		f := strings.Fields(l)
		parts = append(parts, "up "+strings.Join(f[1:3], " "))
	} else {
		out, _ := exec.Command("drbdmeta", "--force", fmt.Sprint(kcMinor), "v08", loop, "internal", "dump-md").CombinedOutput()
		switch {
		case strings.Contains(string(out), "No valid meta data found"):
		case strings.Contains(string(out), "version \"v08\"") || strings.Contains(string(out), "unclean"):
			parts = append(parts, "metadata")
		default:
			t.Fatalf("drbdmeta dump-md %s: %s", loop, out)
		}
	}
	cmd := exec.Command("blkid", "-p", "-o", "export", loop)
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 2) {
		t.Fatalf("blkid %s: %v", loop, err)
	}
	if err == nil {
		parts = append(parts, "signature "+strings.Join(strings.Fields(string(out)), " "))
	}
	if len(parts) == 0 {
		return "clean"
	}
	return strings.Join(parts, ", ")
}

// kcPeerUp (re)creates the peer resource with fresh metadata, up and
// waiting for bofhk, so every case starts from the same pair.
func kcPeerUp(t *testing.T, conf, loop string) {
	t.Helper()
	exec.Command("drbdadm", "-c", conf, "down", kcPeer).Run()
	kcRun(t, "drbdadm", "-c", conf, "--", "--force", "create-md", kcPeer)
	kcRun(t, "drbdadm", "-c", conf, "up", kcPeer)
}

func TestVMKindsCrash(t *testing.T) {
	vmtest.Require(t)
	ctx := context.Background()
	exec.Command("ip", "link", "set", "lo", "up").Run()
	for _, a := range []string{kcAddr, kcPeerAddr} {
		exec.Command("ip", "addr", "add", a+"/32", "dev", "lo").Run()
	}
	// DRBD calls its user-mode helper (drbdadm, over 9p under TCG) on
	// state changes and holds the resource meanwhile, long enough for the
	// next drbdadm query to give up after its 5 s; no handler is
	// configured here, so the helper has nothing to do.
	const helper = "/sys/module/drbd/parameters/usermode_helper"
	if old, err := os.ReadFile(helper); err == nil {
		if err := os.WriteFile(helper, []byte("/bin/true"), 0o644); err != nil {
			t.Fatalf("%s: %v", helper, err)
		}
		t.Cleanup(func() { os.WriteFile(helper, []byte(strings.TrimSpace(string(old))), 0o644) })
	}
	dir := t.TempDir()
	loops := map[string]string{}
	for _, n := range []string{"a", "peer"} {
		f := filepath.Join(dir, n+".img")
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(f, 16<<20); err != nil {
			t.Fatal(err)
		}
		loops[n] = kcRun(t, "losetup", "-f", "--show", f)
	}
	loop := loops["a"]
	host, _ := os.Hostname()
	conf := filepath.Join(dir, "peer.conf")
	peerConf := fmt.Sprintf(`resource %s {
	net { protocol C; verify-alg crc32c; }
	disk { resync-rate 100M; c-max-rate 100M; }
	on %s { device /dev/drbd%d minor %d; disk %s; address %s:%d; meta-disk internal; }
	on peer-%s { device /dev/drbd%d minor %d; disk %s; address %s:%d; meta-disk internal; }
}
`, kcPeer, host, kcPeerMinor, kcPeerMinor, loops["peer"], kcPeerAddr, kcPort, host, kcPeerMinor, kcPeerMinor, loops["peer"], kcAddr, kcPort)
	if err := os.WriteFile(conf, []byte(peerConf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("drbdadm", "down", kcRes).Run()
		exec.Command("drbdadm", "-c", conf, "down", kcPeer).Run()
		os.Remove(filepath.Join(drbd.DefaultConfigDir, kcRes+".res"))
		for _, l := range loops {
			exec.Command("losetup", "-d", l).Run()
		}
	})
	start := kcState(t, loop)
	if start != "clean" {
		t.Fatalf("start: %s", start)
	}

	killed := func(t *testing.T, spec, fail string) {
		t.Helper()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), kcChildEnv+"="+spec, atomic.FailEnv+"="+fail)
		out, err := cmd.CombinedOutput()
		if !errors.As(err, new(*exec.ExitError)) || cmd.ProcessState.ExitCode() != -1 {
			t.Fatalf("%s: child not killed: %v\n%s", fail, err, out)
		}
	}
	child := func(t *testing.T, workflow, fail string) (state, id string) {
		t.Helper()
		state = t.TempDir()
		killed(t, workflow+"|"+state+"|"+loop, fail)
		txs, err := atomic.List(state)
		if err != nil || len(txs) != 1 || txs[0].State != atomic.StateInterrupted {
			t.Fatalf("%s: journal: %+v, %v", fail, txs, err)
		}
		return state, txs[0].ID
	}
	rollback := func(t *testing.T, state, id string, skip []int) error {
		return atomic.RollbackID(ctx, id, skip, atomic.WithStateDir(state), atomic.WithFailpoints(""))
	}

	for _, c := range []struct {
		fail string
		skip bool // the irreversible invalidate ran: rollback refuses, then skips it
	}{
		{fail: "1:after:kill"},              // drbd.config.write
		{fail: "2:after:kill"},              // drbd.create-md
		{fail: "3:after:kill"},              // drbd.up
		{fail: "4:cmd1:kill"},               // drbd.primary (before its drbdadm primary)
		{fail: "5:after:kill"},              // drbd.disconnect
		{fail: "6:after:kill"},              // drbd.connect
		{fail: "7:after:kill"},              // drbd.adjust
		{fail: "8:after:kill"},              // drbd.verify (while it runs)
		{fail: "9:after:kill"},              // drbd.secondary
		{fail: "10:after:kill", skip: true}, // drbd.invalidate, at commit
		{fail: "5:after:error,4:undo:kill"}, // rollback killed in an undo
	} {
		t.Run(strings.ReplaceAll(c.fail, ",", "+"), func(t *testing.T) {
			kcPeerUp(t, conf, loops["peer"])
			state, id := child(t, "main", c.fail)
			if mid := kcState(t, loop); mid == start {
				t.Errorf("after the kill bofhk is %s: did the child act?", mid)
			}
			if c.skip {
				err := rollback(t, state, id, nil)
				if !errors.Is(err, atomic.ErrRollbackIncomplete) || !strings.Contains(err.Error(), "irreversible") {
					t.Fatalf("rollback over an invalidate that ran: %v, want refused as irreversible", err)
				}
				// let the resync from the peer end before the undos
				// demote, disconnect and take bofhk down
				if err := kcWaitSynced(kcMinor, time.Minute); err != nil {
					t.Fatal(err)
				}
				if err := rollback(t, state, id, []int{10}); err != nil {
					t.Fatalf("rollback skipping the invalidate: %v", err)
				}
			} else if err := rollback(t, state, id, nil); err != nil {
				t.Fatalf("rollback: %v", err)
			}
			if got := kcState(t, loop); got != start {
				t.Fatalf("after rollback bofhk is %q, want %q", got, start)
			}
		})
	}

	// On a resource that was up, Primary and connected before (set up
	// with drbdadm): secondary + disconnect killed after the disconnect,
	// rolled back (Primary and connected again); then, demoted and
	// disconnected by hand, primary + connect killed after the connect,
	// rolled back (Secondary and StandAlone again); then, promoted by hand,
	// down killed after it acted, a rollback killed in the middle of the
	// down's undo (between its up and its primary), and a second rollback
	// (up and Primary again).
	t.Run("existing", func(t *testing.T) {
		kcPeerUp(t, conf, loops["peer"])
		if err := atomic.Run(ctx, "setup", func(tx *atomic.Tx) error { return tx.Do(ctx, kcSpec(loop), nil) },
			atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints("")); err != nil {
			t.Fatal(err)
		}
		kcRun(t, "drbdadm", "--", "--force", "create-md", kcRes)
		kcRun(t, "drbdadm", "up", kcRes)
		kcRun(t, "drbdadm", "primary", "--force", kcRes)
		if err := kcWaitSynced(kcMinor, time.Minute); err != nil {
			t.Fatal(err)
		}
		// role and connection, as /proc/drbd shows them
		line := func() string {
			f := strings.Fields(kcProc(kcMinor))
			if len(f) < 2 {
				return "down"
			}
			return f[0] + " " + f[1]
		}
		if got := line(); got != "cs:Connected ro:Primary/Secondary" {
			t.Fatalf("setup: %s", got)
		}

		state, id := child(t, "secondary-disconnect", "2:after:kill")
		if got := line(); got != "cs:StandAlone ro:Secondary/Unknown" {
			t.Errorf("after the kill: %s", got)
		}
		if err := rollback(t, state, id, nil); err != nil {
			t.Fatalf("rollback: %v", err)
		}
		if err := kcWaitSynced(kcMinor, time.Minute); err != nil {
			t.Errorf("after rollback: %v", err)
		}
		if got := line(); got != "cs:Connected ro:Primary/Secondary" {
			t.Errorf("after rollback of secondary+disconnect: %s, want Primary and connected again", got)
		}

		kcRun(t, "drbdadm", "secondary", kcRes)
		kcRun(t, "drbdadm", "disconnect", kcRes)
		state, id = child(t, "primary-connect", "2:after:kill")
		if got := line(); !strings.HasPrefix(got, "cs:WFConnection ro:Primary/") && !strings.HasPrefix(got, "cs:Connected ro:Primary/") {
			t.Errorf("after the kill: %s", got)
		}
		if err := rollback(t, state, id, nil); err != nil {
			t.Fatalf("rollback: %v", err)
		}
		if got := line(); got != "cs:StandAlone ro:Secondary/Unknown" {
			t.Errorf("after rollback of primary+connect: %s, want Secondary and StandAlone again", got)
		}

		kcRun(t, "drbdadm", "primary", kcRes)
		state, id = child(t, "down", "1:after:kill")
		if got := line(); got != "down" {
			t.Errorf("after the kill: %s, want down", got)
		}
		// the undo runs drbdadm up, then drbdadm primary: a rollback
		// killed between the two, then a second rollback
		killed(t, "rollback|"+state+"|"+id, "1:undocmd2:kill")
		if got := line(); !strings.Contains(got, " ro:Secondary/") {
			t.Errorf("after a rollback killed between up and primary: %s, want up and Secondary", got)
		}
		if err := rollback(t, state, id, nil); err != nil {
			t.Fatalf("rollback: %v", err)
		}
		if got := line(); !strings.Contains(got, " ro:Primary/") {
			t.Errorf("after the second rollback: %s, want up and Primary again", got)
		}

		kcRun(t, "drbdadm", "down", kcRes)
		kcRun(t, "drbdadm", "--", "--force", "wipe-md", kcRes)
		os.Remove(kcSpec(loop).Path())
		if got := kcState(t, loop); got != start {
			t.Fatalf("teardown: %s", got)
		}
	})
}
