//go:build vm

package vmtest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/internal/hosttest"
	"github.com/bofhkit/bofh/internal/vmtest"
)

// The lab's acceptance test: every kernel feature the host lacks works in
// the guest with the host's own tools.

func sh(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// try runs argv for cleanup, logging failures only.
func try(t *testing.T, argv ...string) {
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Logf("cleanup: %s: %v: %s", strings.Join(argv, " "), err, out)
	}
}

func TestSmokeGuest(t *testing.T) {
	vmtest.Require(t)
	if os.Getenv("DM_DISABLE_UDEV") != "1" {
		t.Error("DM_DISABLE_UDEV not set in the guest")
	}
	b, err := os.ReadFile("/proc/modules")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"dm_mod", "dm_thin_pool", "dm_snapshot", "dm_crypt", "raid1", "raid456", "drbd", "loop", "btrfs", "xfs", "ext4"} {
		if !strings.Contains(string(b), m+" ") {
			t.Errorf("module %s not loaded", m)
		}
	}
	// Writes land in the guest's overlay, never on the host.
	if err := os.WriteFile("/etc/bofh-lab-probe", []byte("x"), 0o644); err != nil {
		t.Errorf("root overlay not writable: %v", err)
	}
}

func TestSmokeLVM(t *testing.T) {
	vmtest.Require(t)
	pv := hosttest.LoopFile(t, 256<<20)
	vg := "bofhsmoke"
	sh(t, "pvcreate", "-q", pv)
	sh(t, "vgcreate", "-q", vg, pv)
	t.Cleanup(func() {
		try(t, "vgchange", "-an", vg)
		try(t, "vgremove", "-ff", "-q", vg)
		try(t, "pvremove", "-ff", "-q", pv)
	})
	steps := []struct {
		name string
		argv []string
		dev  string
	}{
		{"linear", []string{"lvcreate", "-q", "-Zn", "-L", "32m", "-n", "lin", vg}, "/dev/" + vg + "/lin"},
		{"thin-pool", []string{"lvcreate", "-q", "-Zn", "--type", "thin-pool", "-L", "64m", "-n", "pool", vg}, ""},
		{"thin", []string{"lvcreate", "-q", "-V", "128m", "--thinpool", "pool", "-n", "thin", vg}, "/dev/" + vg + "/thin"},
		{"snapshot", []string{"lvcreate", "-q", "-s", "-L", "16m", "-n", "snap", vg + "/lin"}, "/dev/" + vg + "/snap"},
		{"thin-snapshot", []string{"lvcreate", "-q", "-s", "-n", "tsnap", vg + "/thin"}, ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			sh(t, s.argv...)
			if s.dev != "" {
				if _, err := os.Stat(s.dev); err != nil {
					t.Fatalf("no device node: %v", err)
				}
				sh(t, "dd", "if=/dev/zero", "of="+s.dev, "bs=1M", "count=1", "oflag=direct", "status=none")
			}
		})
	}
	out := sh(t, "lvs", "--noheadings", "-o", "lv_name,segtype", vg)
	for _, want := range []string{"lin", "pool", "thin", "snap", "tsnap"} {
		if !strings.Contains(out, want) {
			t.Errorf("lvs lacks %s:\n%s", want, out)
		}
	}
	sh(t, "mkfs.ext4", "-q", "/dev/"+vg+"/thin")
	dir := hosttest.TempMount(t, "/dev/"+vg+"/thin", "ext4", "")
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSmokeLUKS2(t *testing.T) {
	vmtest.Require(t)
	dev := hosttest.LoopFile(t, 64<<20)
	key := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(key, []byte("correct horse battery staple"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		argv []string
	}{
		{"luks2", []string{"cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", key, dev}},
		{"luks1", []string{"cryptsetup", "luksFormat", "-q", "--type", "luks1", "--pbkdf-force-iterations", "1000", "--key-file", key, dev}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sh(t, tc.argv...)
			name := "bofhsmoke-" + tc.name
			sh(t, "cryptsetup", "open", "--key-file", key, dev, name)
			defer try(t, "cryptsetup", "close", name)
			sh(t, "mkfs.ext4", "-q", "/dev/mapper/"+name)
			if got := sh(t, "cryptsetup", "status", name); !strings.Contains(got, "is active") {
				t.Fatalf("status:\n%s", got)
			}
		})
	}
}

func TestSmokeRAID(t *testing.T) {
	vmtest.Require(t)
	for _, tc := range []struct {
		level string
		n     int
	}{{"1", 2}, {"5", 3}} {
		t.Run("raid"+tc.level, func(t *testing.T) {
			var devs []string
			for i := 0; i < tc.n; i++ {
				devs = append(devs, hosttest.LoopFile(t, 64<<20))
			}
			md := "/dev/md/bofhsmoke" + tc.level
			argv := append([]string{"mdadm", "--create", md, "--run", "--level=" + tc.level,
				"--raid-devices=" + strconv.Itoa(tc.n), "--metadata=1.2", "--assume-clean"}, devs...)
			sh(t, argv...)
			t.Cleanup(func() {
				try(t, "mdadm", "--stop", md)
				for _, d := range devs {
					try(t, "mdadm", "--zero-superblock", d)
				}
			})
			detail := sh(t, "mdadm", "--detail", "--export", md)
			if !strings.Contains(detail, "MD_LEVEL=raid"+tc.level) {
				t.Fatalf("detail:\n%s", detail)
			}
			sh(t, "mdadm", "--stop", md)
		})
	}
}

func TestSmokeDRBDStandalone(t *testing.T) {
	vmtest.Require(t)
	disk := hosttest.LoopFile(t, 64<<20)
	host, _ := os.Hostname()
	sh(t, "ip", "link", "set", "lo", "up")
	res := "resource bofhsmoke {\n  device /dev/drbd9;\n  disk " + disk + ";\n  meta-disk internal;\n" +
		"  on " + host + " { address 127.0.0.1:7799; }\n" +
		"  on bofh-peer-absent { address 127.0.0.2:7799; }\n}\n"
	path := "/etc/drbd.d/bofhsmoke.res"
	if err := os.WriteFile(path, []byte(res), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		try(t, "drbdadm", "down", "bofhsmoke")
		os.Remove(path)
	})
	sh(t, "drbdadm", "create-md", "--force", "bofhsmoke")
	sh(t, "drbdadm", "up", "bofhsmoke")
	sh(t, "drbdadm", "primary", "--force", "bofhsmoke")
	if role := sh(t, "drbdadm", "role", "bofhsmoke"); !strings.HasPrefix(role, "Primary") {
		t.Fatalf("role %q", role)
	}
	proc, _ := os.ReadFile("/proc/drbd")
	if !strings.Contains(string(proc), "ro:Primary") {
		t.Fatalf("/proc/drbd:\n%s", proc)
	}
	sh(t, "drbdadm", "down", "bofhsmoke")
}
