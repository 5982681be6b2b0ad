package vmtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseKernelDepends(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{"bookworm", "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n", "linux-image-6.1.0-56-amd64", false},
		{"virtual", "linux-image-amd64\n  Depends: <linux-image-6.1.0-9-amd64>\n", "linux-image-6.1.0-9-amd64", false},
		{"other-deps-first", "linux-image-amd64\n  Depends: kmod\n  Depends: linux-image-6.1.0-1-amd64\n", "linux-image-6.1.0-1-amd64", false},
		{"none", "linux-image-amd64\n", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseKernelDepends([]byte(tc.in))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("got %q, %v", got, err)
			}
		})
	}
}

func TestKernelVersion(t *testing.T) {
	for pkg, want := range map[string]string{
		"linux-image-6.1.0-56-amd64":          "6.1.0-56-amd64",
		"linux-image-6.1.0-56-amd64-unsigned": "6.1.0-56-amd64",
	} {
		if got := kernelVersion(pkg); got != want {
			t.Errorf("%s: got %s", pkg, got)
		}
	}
}

func TestModuleOrder(t *testing.T) {
	dep := []byte(`kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/net/9p/9pnet.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/md/dm-mod.ko:
`)
	got, err := moduleOrder(dep, []string{"9pnet_virtio", "9p", "dm_mod", "builtin_thing"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko", "kernel/net/9p/9pnet.ko",
		"kernel/net/9p/9pnet_virtio.ko",
		"kernel/fs/netfs/netfs.ko", "kernel/fs/fscache/fscache.ko", "kernel/fs/9p/9p.ko",
		"kernel/drivers/md/dm-mod.ko",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("moduleOrder (-want +got):\n%s", diff)
	}
}

// TestCpioReadableByCpio checks the initramfs writer against GNU cpio. cpio
// is in deps/lab.txt (make deps): a machine without it fails the test.
func TestCpioReadableByCpio(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Fatalf("cpio is not installed (it is in deps/lab.txt: run `make deps`): %v", err)
	}
	var buf bytes.Buffer
	w := &cpioWriter{w: &buf}
	w.Dir("bin", 0o755)
	w.File("bin/hello", 0o755, []byte("hello, world\n"))
	w.Symlink("bin/sh", "hello")
	w.File("odd", 0o644, []byte("x"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d not 4-aligned", buf.Len())
	}
	cmd := exec.Command("cpio", "-t", "-v", "--quiet")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v\n%s", err, out)
	}
	for _, want := range []string{"drwxr-xr-x", " bin\n", "bin/hello", "bin/sh -> hello", " odd"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("cpio listing lacks %q:\n%s", want, out)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		argv []string
		ok   bool
	}{
		{"plain", Config{}, []string{"sh", "-c", "echo 'x'; $(y)"}, true},
		{"env", Config{Env: []string{"A=1", "B_2=x y"}}, []string{"true"}, true},
		{"bad-env-key", Config{Env: []string{"1A=1"}}, []string{"true"}, false},
		{"env-newline", Config{Env: []string{"A=1\nB=2"}}, []string{"true"}, false},
		{"argv-nul", Config{}, []string{"a\x00b"}, false},
		{"argv-trailing-newline", Config{}, []string{"a\n"}, false},
		{"share-relative", Config{Shares: []Share{{HostPath: "rel"}}}, nil, false},
		{"share-comma", Config{Shares: []Share{{HostPath: "/a,b"}}}, nil, false},
		{"share-ok", Config{Shares: []Share{{HostPath: "/srv/x", GuestPath: "/mnt/x", ReadOnly: true}}}, nil, true},
		{"dir-relative", Config{Dir: "x"}, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			c.defaults()
			if tc.cfg.Dir != "" {
				c.Dir = tc.cfg.Dir
			}
			err := c.validate(tc.argv)
			if (err == nil) != tc.ok {
				t.Fatalf("validate: %v", err)
			}
		})
	}
}

func TestQemuArgsNoUserNetwork(t *testing.T) {
	g := &guest{cfg: &Config{}, lab: &Lab{Kernel: "/k", Initramfs: "/i", ModulesDir: "/m"}, runDir: "/r", ctl: "/r/ctl", accel: "tcg"}
	g.cfg.defaults()
	g.cfg.net = &netConfig{addr: "10.99.0.1/24", mac: "52:54:00:99:00:01", localPort: 1, remotePort: 2}
	args := strings.Join(g.qemuArgs("run"), " ")
	for _, bad := range []string{"user", "hostfwd", "tap"} {
		if strings.Contains(args, "-netdev "+bad) {
			t.Errorf("guest gets a %s network: %s", bad, args)
		}
	}
	for _, want := range []string{"-nodefaults", "udp=127.0.0.1:2,localaddr=127.0.0.1:1", "readonly=on", "mount_tag=hostroot", "-accel tcg,thread=multi", " " + GuestCmdlineFlag} {
		if !strings.Contains(args, want) {
			t.Errorf("args lack %q: %s", want, args)
		}
	}
}

// TestRequire checks where Require lets a vm test run: only where
// BOFH_IN_VM=1 is set AND the kernel command line carries the lab's flag.
// BOFH_IN_VM=1 on a host must FAIL the test (not skip it, not run it), even
// with BOFH_SKIP_VM=1.
func TestRequire(t *testing.T) {
	dir := t.TempDir()
	hostCmdline := filepath.Join(dir, "host")
	guestCmdline := filepath.Join(dir, "guest")
	for p, data := range map[string]string{
		hostCmdline:  "BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro quiet bofh.lab=guestx\n",
		guestCmdline: "console=ttyS0 panic=-1 " + GuestCmdlineFlag + "\n",
	} {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, inVM, skipVM, cmdline string
		want                        string // returned, failed, skipped
	}{
		{"host", "", "", hostCmdline, "failed"},
		{"host-opted-out", "", "1", hostCmdline, "skipped"},
		{"host-with-BOFH_IN_VM", "1", "", hostCmdline, "failed"},
		{"host-with-BOFH_IN_VM-opted-out", "1", "1", hostCmdline, "failed"},
		{"host-without-proc", "1", "", filepath.Join(dir, "missing"), "failed"},
		{"guest", "1", "", guestCmdline, "returned"},
		{"guest-with-opt-out", "1", "1", guestCmdline, "returned"},
		{"guest-without-env", "", "", guestCmdline, "failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(InVMEnv, tc.inVM)
			t.Setenv("BOFH_SKIP_VM", tc.skipVM)
			old := procCmdline
			procCmdline = tc.cmdline
			t.Cleanup(func() { procCmdline = old })
			ft := &fakeT{TB: t}
			func() {
				defer func() { recover() }()
				Require(ft)
			}()
			got := "returned"
			switch {
			case ft.failed && ft.skipped:
				got = "failed and skipped"
			case ft.failed:
				got = "failed"
			case ft.skipped:
				got = "skipped"
			}
			if got != tc.want {
				t.Errorf("Require %s, want %s (message %q)", got, tc.want, ft.msg)
			}
			if in := InGuest(); in != (tc.want == "returned") {
				t.Errorf("InGuest() = %v", in)
			}
		})
	}
}

var errStop = errors.New("stop")

// fakeT records Fatal/Skip without ending the real test.
type fakeT struct {
	testing.TB
	failed, skipped bool
	msg             string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatal(a ...any) {
	f.failed, f.msg = true, fmt.Sprint(a...)
	panic(errStop)
}
func (f *fakeT) Fatalf(format string, a ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, a...)
	panic(errStop)
}
func (f *fakeT) Skip(a ...any) {
	f.skipped, f.msg = true, fmt.Sprint(a...)
	panic(errStop)
}
func (f *fakeT) Skipf(format string, a ...any) {
	f.skipped, f.msg = true, fmt.Sprintf(format, a...)
	panic(errStop)
}
