package vmtest

import (
	"bytes"
	"errors"
	"os/exec"
	"reflect"
	"strings"
	"testing"
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
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

func TestCpioReadableByCpio(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed (deps/lab.txt)")
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
	for _, want := range []string{"-nodefaults", "udp=127.0.0.1:2,localaddr=127.0.0.1:1", "readonly=on", "mount_tag=hostroot", "-accel tcg,thread=multi"} {
		if !strings.Contains(args, want) {
			t.Errorf("args lack %q: %s", want, args)
		}
	}
}

func TestRequireOutsideGuest(t *testing.T) {
	t.Setenv("BOFH_IN_VM", "")
	t.Run("fails", func(t *testing.T) {
		t.Setenv("BOFH_SKIP_VM", "")
		ft := &fakeT{TB: t}
		func() {
			defer func() { recover() }()
			Require(ft)
		}()
		if !ft.failed || ft.skipped {
			t.Fatalf("Require outside the guest: failed=%v skipped=%v", ft.failed, ft.skipped)
		}
	})
	t.Run("skips-with-opt-out", func(t *testing.T) {
		t.Setenv("BOFH_SKIP_VM", "1")
		ft := &fakeT{TB: t}
		func() {
			defer func() { recover() }()
			Require(ft)
		}()
		if ft.failed || !ft.skipped {
			t.Fatalf("Require with BOFH_SKIP_VM=1: failed=%v skipped=%v", ft.failed, ft.skipped)
		}
	})
	t.Run("passes-in-guest", func(t *testing.T) {
		t.Setenv("BOFH_IN_VM", "1")
		ft := &fakeT{TB: t}
		Require(ft)
		if ft.failed || ft.skipped {
			t.Fatal("Require in the guest did not return")
		}
	})
}

var errStop = errors.New("stop")

// fakeT records Fatal/Skip without ending the real test.
type fakeT struct {
	testing.TB
	failed, skipped bool
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Fatal(...any)          { f.failed = true; panic(errStop) }
func (f *fakeT) Fatalf(string, ...any) { f.failed = true; panic(errStop) }
func (f *fakeT) Skip(...any)           { f.skipped = true; panic(errStop) }
func (f *fakeT) Skipf(string, ...any)  { f.skipped = true; panic(errStop) }
