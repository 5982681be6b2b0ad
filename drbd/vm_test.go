//go:build vm

package drbd_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/drbd"
	"github.com/bofhkit/bofh/internal/vmtest"
	"github.com/bofhkit/bofh/run"
)

func sh(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// standalone prepares a loop device and a resource spec whose local
// address is on lo (drbdadm insists the address is on this host).
func standalone(t *testing.T, name string) (drbd.WriteConfig, string) {
	t.Helper()
	exec.Command("ip", "link", "set", "lo", "up").Run()
	exec.Command("ip", "addr", "add", "10.99.8.1/32", "dev", "lo").Run()
	f := filepath.Join(t.TempDir(), "disk.img")
	os.WriteFile(f, nil, 0o600)
	os.Truncate(f, 64<<20)
	loop := sh(t, "losetup", "-f", "--show", f)
	t.Cleanup(func() {
		exec.Command("drbdadm", "down", name).Run()
		exec.Command("losetup", "-d", loop).Run()
		os.Remove(filepath.Join(drbd.DefaultConfigDir, name+".res"))
	})
	host, _ := os.Hostname()
	return drbd.WriteConfig{Resource: drbd.Resource{Name: name, Nodes: []drbd.Node{
		{Name: host, Address: "10.99.8.1", Disk: loop},
		{Name: "peer-" + host, Address: "10.99.8.2", Disk: loop},
	}}}, loop
}

func steps(w drbd.WriteConfig) []atomic.Params {
	n := w.Resource.Name
	return []atomic.Params{w, drbd.CreateMD{Resource: n}, drbd.Up{Resource: n}, drbd.Primary{Resource: n, Force: true}}
}

func apply(ctx context.Context, t *testing.T, fail string, ps ...atomic.Params) error {
	return atomic.Run(ctx, "drbd-vm", func(tx *atomic.Tx) error {
		for _, p := range ps {
			if err := tx.Do(ctx, p, nil); err != nil {
				return err
			}
		}
		return nil
	}, atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints(fail))
}

// TestVMStandalone: config → create-md → up → primary --force → mkfs →
// down, each journaled; then the same with a failure at every step rolls
// back to no config, no metadata, resource down.
func TestVMStandalone(t *testing.T) {
	vmtest.Require(t)
	ctx := context.Background()
	r := &run.Local{}
	w, loop := standalone(t, "bofhvm")
	if err := apply(ctx, t, "", steps(w)...); err != nil {
		t.Fatal(err)
	}
	st, err := drbd.ResourceStatus(ctx, r, "bofhvm")
	if err != nil {
		t.Fatal(err)
	}
	if st.Role != "Primary" || !st.UpToDate() || st.Connected() {
		t.Fatalf("status %+v", st)
	}
	dev := fmt.Sprintf("/dev/drbd%d", st.Devices[0].Minor)
	sh(t, "mkfs.ext4", "-q", dev)
	if err := apply(ctx, t, "", drbd.Down{Resource: "bofhvm"}); err != nil {
		t.Fatal(err)
	}
	if _, err := drbd.ResourceStatus(ctx, r, "bofhvm"); !errors.Is(err, drbd.ErrNotUp) {
		t.Fatalf("after down: %v", err)
	}
	// bring it back and take it down again, then remove everything by hand
	if err := apply(ctx, t, "", drbd.Up{Resource: "bofhvm"}); err != nil {
		t.Fatal(err)
	}
	sh(t, "drbdadm", "down", "bofhvm")
	sh(t, "drbdadm", "--", "--force", "wipe-md", "bofhvm")
	os.Remove(filepath.Join(drbd.DefaultConfigDir, "bofhvm.res"))
	sh(t, "wipefs", "-a", loop)

	for i := 1; i <= 4; i++ {
		for _, phase := range []string{"before", "after"} {
			t.Run(fmt.Sprintf("%d-%s", i, phase), func(t *testing.T) {
				err := apply(ctx, t, fmt.Sprintf("%d:%s:error", i, phase), steps(w)...)
				if !errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != 1 {
					t.Fatalf("got %v", err)
				}
				if _, err := os.Stat(w.Path()); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("config left: %v", err)
				}
				if b, _ := os.ReadFile("/proc/drbd"); strings.Contains(string(b), "cs:") {
					t.Errorf("resource left up:\n%s", b)
				}
				if out, _ := exec.Command("drbdmeta", "--force", "0", "v08", loop, "internal", "dump-md").CombinedOutput(); !strings.Contains(string(out), "No valid meta data") {
					t.Errorf("metadata left on %s:\n%s", loop, out)
				}
			})
		}
	}
	// bad input changes nothing: a name out of the rules, a backing disk
	// holding a filesystem
	if err := apply(ctx, t, "", drbd.Up{Resource: "all"}); atomic.ExitCode(err) != 2 {
		t.Errorf("up all: %v", err)
	}
	sh(t, "mkfs.ext4", "-q", loop)
	err = apply(ctx, t, "", steps(w)[:2]...)
	if err == nil || !strings.Contains(err.Error(), "ext4 signature") {
		t.Errorf("create-md over ext4: %v", err)
	}
	if out := sh(t, "blkid", "-p", "-o", "value", "-s", "TYPE", loop); out != "ext4" {
		t.Errorf("backing disk changed: %q", out)
	}
}
