//go:build lab

package vmtest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bofhkit/bofh/internal/vmtest"
)

// Host-driven two-guest test: DRBD replication between lab-a and lab-b over
// the private pair network.

func TestPairNetwork(t *testing.T) {
	p := vmtest.StartPair(t)
	t.Run("ping", func(t *testing.T) {
		p.A.MustRun(t, "busybox", "ping", "-c", "2", "-W", "5", vmtest.PairAddrB)
		p.B.MustRun(t, "busybox", "ping", "-c", "2", "-W", "5", vmtest.PairAddrA)
	})
	t.Run("hostnames", func(t *testing.T) {
		if got := p.A.MustRun(t, "uname", "-n"); got != "lab-a" {
			t.Errorf("A is %q", got)
		}
		if got := p.B.MustRun(t, "uname", "-n"); got != "lab-b" {
			t.Errorf("B is %q", got)
		}
	})
	t.Run("exit-status", func(t *testing.T) {
		r, err := p.A.Run(context.Background(), "sh", "-c", "echo out; echo err >&2; exit 7")
		if err != nil {
			t.Fatal(err)
		}
		if r.ExitCode != 7 || string(r.Stdout) != "out\n" || string(r.Stderr) != "err\n" {
			t.Fatalf("got %+v", r)
		}
	})
	t.Run("drbd-connected", func(t *testing.T) { drbdPair(t, p) })
}

func drbdPair(t *testing.T, p *vmtest.Pair) {
	ctx := context.Background()
	disks := map[*vmtest.Guest]string{}
	for _, g := range []*vmtest.Guest{p.A, p.B} {
		g.MustRun(t, "truncate", "-s", "64M", "/tmp/drbd.img")
		disks[g] = g.MustRun(t, "losetup", "--find", "--show", "/tmp/drbd.img")
	}
	var res strings.Builder
	fmt.Fprintf(&res, "resource bofhpair {\n  protocol C;\n  net { cram-hmac-alg sha256; shared-secret \"bofh-lab\"; }\n")
	for _, g := range []*vmtest.Guest{p.A, p.B} {
		fmt.Fprintf(&res, "  on %s {\n    device /dev/drbd1;\n    disk %s;\n    address %s:7790;\n    meta-disk internal;\n  }\n",
			g.Name, disks[g], g.Addr)
	}
	res.WriteString("}\n")
	for _, g := range []*vmtest.Guest{p.A, p.B} {
		if err := g.WriteFile(ctx, "/etc/drbd.d/bofhpair.res", []byte(res.String())); err != nil {
			t.Fatal(err)
		}
		g.MustRun(t, "drbdadm", "create-md", "--force", "bofhpair")
		g.MustRun(t, "drbdadm", "up", "bofhpair")
	}
	t.Cleanup(func() {
		for _, g := range []*vmtest.Guest{p.A, p.B} {
			g.Run(ctx, "drbdadm", "down", "bofhpair")
		}
	})
	p.A.MustRun(t, "drbdadm", "primary", "--force", "bofhpair")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		a := p.A.MustRun(t, "cat", "/proc/drbd")
		b := p.B.MustRun(t, "cat", "/proc/drbd")
		if strings.Contains(a, "cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate") &&
			strings.Contains(b, "cs:Connected ro:Secondary/Primary ds:UpToDate/UpToDate") {
			t.Logf("A:\n%s\nB:\n%s", a, b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not connected and in sync after 3m\nA:\n%s\nB:\n%s", a, b)
		}
		time.Sleep(2 * time.Second)
	}
	// Data written on A is on B's disk after A steps down and B takes over.
	p.A.MustRun(t, "mkfs.ext4", "-q", "/dev/drbd1")
	p.A.MustRun(t, "sh", "-c", "mkdir -p /mnt/d && mount /dev/drbd1 /mnt/d && echo replicated >/mnt/d/f && umount /mnt/d")
	p.A.MustRun(t, "drbdadm", "secondary", "bofhpair")
	p.B.MustRun(t, "drbdadm", "primary", "bofhpair")
	got := p.B.MustRun(t, "sh", "-c", "mkdir -p /mnt/d && mount -o ro /dev/drbd1 /mnt/d && cat /mnt/d/f; umount /mnt/d")
	if got != "replicated" {
		t.Fatalf("B read %q", got)
	}
	p.B.MustRun(t, "drbdadm", "secondary", "bofhpair")
}
