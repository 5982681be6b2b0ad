package blockdev

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	lab "github.com/bofhkit/bofh/internal/capture"
	"github.com/bofhkit/bofh/run"
)

// classifiers are the package's command error classifiers.
var classifiers = []lab.Classifier{
	{Class: "not-mounted", Is: isNotMounted}, // umount: nothing to do
	{Class: "loop-gone", Is: isLoopGone},     // losetup: already detached
	{Class: "no-device", Is: isNoDevice},     // lsblk: bad input
}

// errorClasses is what each err-* capture of testdata/capture/blockdev and
// testdata/capture/fs must be classified as (nil: no class). Above all, a
// busy umount must not read as "not mounted" (umount would then report
// success) and a missing loop device must read as gone.
var errorClasses = map[string][]string{
	"err-blkid-empty.txt":             nil, // exit 2: Identify reads it as no signature
	"err-findmnt-not-mounted.json":    nil, // exit 1: MountsAt reads it as nothing mounted
	"err-losetup-detach-missing.txt":  {"loop-gone"},
	"err-mount-already-mounted.txt":   nil,
	"err-mount-busy.txt":              nil,
	"err-mount-mounted-elsewhere.txt": nil,
	"err-mount-no-fs.txt":             nil,
	"err-mount-raid-member.txt":       nil,
	"err-mount-wrong-type.txt":        nil,
	"err-umount-busy.txt":             nil,
	"err-wipefs-in-use.txt":           nil,
}

var fsErrorClasses = map[string][]string{
	"err-mkfs-ext4-mounted.txt":    nil,
	"err-mkfs-xfs-existing-fs.txt": nil,
	"err-mkfs-xfs-mounted.txt":     nil,
}

// capFS is a filesystem the capture made, by the order of the devices in
// the captured lsblk and wipefs commands ("$FE" "$FX" "$FB" "$FV" "$R0").
type capFS struct {
	typ, label string
	size       int64
	sigs       int
	mount      string
}

var capFSs = []capFS{
	{"ext4", "capext4", 64 << 20, 1, "/mnt/ext4"},
	{"xfs", "capxfs", 320 << 20, 1, ""},
	{"btrfs", "capbtrfs", 256 << 20, 1, "/mnt/btrfs"},
	{"vfat", "CAPVFAT", 64 << 20, 3, ""}, // boot sector, backup and FAT
	{"", "", 64 << 20, 0, ""},            // blank
}

// devsOf returns the device arguments at the end of a captured command.
func devsOf(command string) []string {
	var out []string
	for _, f := range strings.Fields(command) {
		if strings.HasPrefix(f, "/dev/") {
			out = append(out, f)
		}
	}
	return out
}

// TestCaptures runs the package's parsers and queries over every capture
// of testdata/capture/blockdev and testdata/capture/fs and classifies
// every error capture.
func TestCaptures(t *testing.T) {
	d := lab.Open(t, "blockdev")
	ctx := context.Background()

	// blkid -p -o export of each signature kind.
	blkid := map[string]Blkid{}
	for _, tc := range []struct{ file, typ, label string }{
		{"blkid-ext4.txt", "ext4", "capext4"},
		{"blkid-xfs.txt", "xfs", "capxfs"},
		{"blkid-btrfs.txt", "btrfs", "capbtrfs"},
		{"blkid-vfat.txt", "vfat", "CAPVFAT"},
		{"blkid-luks1.txt", "crypto_LUKS", ""},
		{"blkid-luks2.txt", "crypto_LUKS", "bofhcap"},
		{"blkid-lvm2-member.txt", "LVM2_member", ""},
		{"blkid-linux-raid-member.txt", "linux_raid_member", "bofh-lab:caprd1"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c := d.Read(t, tc.file)
			dev := devsOf(c.Command)
			if len(dev) != 1 {
				t.Fatalf("command %q", c.Command)
			}
			f := run.NewFake(t)
			f.Expect("blkid", "-p", "-o", "export", dev[0]).Out(string(c.Stdout))
			b, err := Identify(ctx, f, dev[0])
			f.Done()
			if err != nil {
				t.Fatal(err)
			}
			blkid[tc.file] = b
			if b.Type() != tc.typ || b["LABEL"] != tc.label || b["UUID"] == "" || b["DEVNAME"] != dev[0] {
				t.Errorf("got %v, want type %q label %q", b, tc.typ, tc.label)
			}
		})
	}
	t.Run("Identify/err-blkid-empty.txt", func(t *testing.T) {
		c := d.Read(t, "err-blkid-empty.txt")
		f := run.NewFake(t)
		f.Expect("blkid", "-p", "-o", "export", "/dev/x").Out(string(c.Stdout)).Fail(c.Exit, string(c.Stderr))
		b, err := Identify(ctx, f, "/dev/x")
		f.Done()
		if err != nil || b.Type() != "" || len(b) != 0 {
			t.Errorf("blank device: %v, %v", b, err)
		}
	})
	// The cache-based `blkid -o export` of every device agrees with the
	// low-level probes.
	t.Run("blkid-export-all.txt", func(t *testing.T) {
		byUUID := map[string]Blkid{}
		for _, block := range bytes.Split(d.Read(t, "blkid-export-all.txt").Stdout, []byte("\n\n")) {
			b, err := ParseBlkid(block)
			if err != nil {
				t.Fatal(err)
			}
			if b["UUID"] != "" {
				byUUID[b["UUID"]+b["UUID_SUB"]] = b
			}
		}
		for name, p := range blkid {
			if name == "blkid-lvm2-member.txt" {
				continue // blkid -p of a PV that was then used by the VG and LVs
			}
			c, ok := byUUID[p["UUID"]+p["UUID_SUB"]]
			if !ok || c.Type() != p.Type() || c["LABEL"] != p["LABEL"] {
				t.Errorf("%s: -p says %v, the cache %v", name, p, c)
			}
		}
	})

	// Probe: the exact lsblk and wipefs commands it runs.
	var fsDevs []string
	t.Run("lsblk-probe.json", func(t *testing.T) {
		ls, ws := d.Read(t, "lsblk-probe.json"), d.Read(t, "wipefs-probe.json")
		fsDevs = devsOf(ls.Command)
		if len(fsDevs) != len(capFSs) {
			t.Fatalf("command %q", ls.Command)
		}
		if want := strings.Join(append([]string{"lsblk", "-J", "-b", "-o", lsblkColumns}, fsDevs...), " "); ls.Command != want {
			t.Errorf("captured %q, but Probe runs %q", ls.Command, want)
		}
		if want := strings.Join(append([]string{"wipefs", "--no-act", "-J"}, fsDevs...), " "); ws.Command != want {
			t.Errorf("captured %q, but Probe runs %q", ws.Command, want)
		}
		devs, err := ParseLsblk(ls.Stdout)
		if err != nil {
			t.Fatal(err)
		}
		var order []string // lsblk's order, which Probe passes on to wipefs
		for _, dv := range devs {
			order = append(order, dv.Path)
		}
		f := run.NewFake(t)
		f.Expect(append([]string{"lsblk", "-J", "-b", "-o", lsblkColumns}, fsDevs...)...).Out(string(ls.Stdout))
		f.Expect(append([]string{"wipefs", "--no-act", "-J"}, order...)...).Out(string(ws.Stdout))
		got, err := Probe(ctx, f, fsDevs...)
		f.Done()
		if err != nil {
			t.Fatal(err)
		}
		byPath := map[string]Device{}
		for _, dv := range got {
			byPath[dv.Path] = dv
		}
		for i, want := range capFSs {
			dv, ok := byPath[fsDevs[i]]
			if !ok {
				t.Errorf("%s (%s) not probed", fsDevs[i], want.typ)
				continue
			}
			if dv.Type != "loop" || dv.Size != want.size || dv.LogSec != 512 || dv.RO || dv.KName != strings.TrimPrefix(dv.Path, "/dev/") {
				t.Errorf("%s: %+v", dv.Path, dv)
			}
			if len(dv.Signatures) != want.sigs || (want.sigs > 0 && (dv.Signatures[0].Type != want.typ || dv.Signatures[0].Label != want.label)) {
				t.Errorf("%s: signatures %+v, want %d of %s %q", dv.Path, dv.Signatures, want.sigs, want.typ, want.label)
			}
			mounts := strings.Join(dv.Mounts, ",")
			if mounts != want.mount || (want.mount != "") != (dv.InUse() != "") {
				t.Errorf("%s: mounts %q InUse %q, want %q", dv.Path, mounts, dv.InUse(), want.mount)
			}
		}
	})
	d.Read(t, "wipefs-probe.json") // read above, with lsblk-probe.json
	// Signatures: one device at a time.
	for _, tc := range []struct {
		file  string
		types []string
	}{
		{"wipefs-empty.json", nil},
		{"wipefs-mounted.json", []string{"btrfs"}}, // --no-act lists a mounted fs
	} {
		t.Run(tc.file, func(t *testing.T) {
			c := d.Read(t, tc.file)
			dev := devsOf(c.Command)
			f := run.NewFake(t)
			f.Expect("wipefs", "--no-act", "-J", dev[0]).Out(string(c.Stdout))
			sigs, err := Signatures(ctx, f, dev[0])
			f.Done()
			var types []string
			for _, s := range sigs {
				types = append(types, s.Type)
				if "/dev/"+s.Device != dev[0] || s.UUID == "" {
					t.Errorf("signature %+v of %s", s, dev[0])
				}
			}
			if diff := cmp.Diff(tc.types, types); err != nil || diff != "" {
				t.Errorf("signatures (-want +got):\n%s%v", diff, err)
			}
		})
	}

	// lsblk -O and a column subset over the whole stack.
	for _, name := range []string{"lsblk-all.json", "lsblk-columns.json"} {
		t.Run(name, func(t *testing.T) {
			devs, err := ParseLsblk(d.Read(t, name).Stdout)
			if err != nil {
				t.Fatal(err)
			}
			holders := map[string]string{} // holder name -> its type, at any depth
			var walk func(dv Device)
			walk = func(dv Device) {
				for _, h := range dv.Holders() {
					holders[h.Name] = h.Type
					if h.PKName != dv.KName {
						t.Errorf("holder %s of %s has pkname %q", h.Name, dv.KName, h.PKName)
					}
					walk(h)
				}
				if len(dv.Holders()) > 0 && dv.InUse() == "" {
					t.Errorf("%s has holders but is not in use", dv.Name)
				}
			}
			loops := 0
			for _, dv := range devs {
				if dv.Type == "loop" {
					loops++
				}
				walk(dv)
			}
			want := map[string]string{"vgcap-lin": "lvm", "vgcap-snap": "lvm", "vgcap-pool_tmeta": "lvm",
				"vgcap-pool_tdata": "lvm", "capluks2": "crypt", "capluks1": "crypt"}
			for h, typ := range want {
				if holders[h] != typ {
					t.Errorf("holder %s: type %q, want %q (holders %v)", h, holders[h], typ, holders)
				}
			}
			if loops < 10 {
				t.Errorf("%d loop devices", loops)
			}
		})
	}

	// findmnt: Mounts, MountsAt (also with nothing mounted) and the
	// --source query of the resize steps.
	t.Run("findmnt.json", func(t *testing.T) {
		c := d.Read(t, "findmnt.json")
		f := run.NewFake(t)
		f.Expect("findmnt", "-J", "-o", "TARGET,SOURCE,FSTYPE,OPTIONS,MAJ:MIN").Out(string(c.Stdout))
		ms, err := Mounts(ctx, f)
		f.Done()
		if err != nil || c.Command != "findmnt -J -o TARGET,SOURCE,FSTYPE,OPTIONS,MAJ:MIN" {
			t.Fatalf("%v (captured %q)", err, c.Command)
		}
		seen := map[string]Mount{}
		for _, m := range ms {
			seen[m.Target] = m
		}
		if m := seen["/"]; m.FSType == "" || m.MajMin == "" {
			t.Errorf("/: %+v", m)
		}
		for i, want := range capFSs {
			if want.mount == "" {
				continue
			}
			if m := seen[want.mount]; len(fsDevs) == len(capFSs) && (m.Source != fsDevs[i] || m.FSType != want.typ || m.MajMin == "") {
				t.Errorf("%s: %+v, want %s %s", want.mount, m, fsDevs[i], want.typ)
			}
		}
		if _, ok := seen["/proc"]; !ok {
			t.Error("nested mount /proc not flattened")
		}
	})
	for _, tc := range []struct {
		file, target string
		want         []string // sources
	}{
		{"findmnt-mountpoint.json", "/mnt/ext4", []string{"ext4"}},
		{"err-findmnt-not-mounted.json", "/mnt/lin", nil},
	} {
		t.Run("MountsAt/"+tc.file, func(t *testing.T) {
			c := d.Read(t, tc.file)
			f := run.NewFake(t)
			argv := []string{"findmnt", "-J", "-o", "TARGET,SOURCE,FSTYPE,OPTIONS,MAJ:MIN", "--mountpoint", tc.target}
			f.Expect(argv...).Out(string(c.Stdout)).Fail(c.Exit, string(c.Stderr))
			ms, err := MountsAt(ctx, f, tc.target)
			f.Done()
			var got []string
			for _, m := range ms {
				got = append(got, m.FSType)
			}
			if diff := cmp.Diff(tc.want, got); err != nil || diff != "" || c.Command != strings.Join(argv, " ") {
				t.Errorf("MountsAt (-want +got):\n%s%v (captured %q)", diff, err, c.Command)
			}
		})
	}
	t.Run("findmnt-source.json", func(t *testing.T) {
		c := d.Read(t, "findmnt-source.json")
		dev := devsOf(c.Command)
		f := run.NewFake(t)
		f.Expect("findmnt", "-J", "-o", "TARGET,SOURCE,FSTYPE,OPTIONS,MAJ:MIN", "--source", dev[0]).Out(string(c.Stdout))
		got, err := mountpointsOf(ctx, f, dev[0])
		f.Done()
		if diff := cmp.Diff([]string{"/mnt/ext4"}, got); err != nil || diff != "" {
			t.Errorf("mountpoints (-want +got):\n%s%v", diff, err)
		}
	})

	// losetup: the list, a free device, a missing one.
	t.Run("losetup-list.json", func(t *testing.T) {
		ls, err := ParseLosetup(d.Read(t, "losetup-list.json").Stdout)
		if err != nil || len(ls) < 10 {
			t.Fatalf("%d loops, %v", len(ls), err)
		}
		for _, l := range ls {
			if !strings.HasPrefix(l.Device, "/dev/loop") || !strings.HasPrefix(l.File, "/tmp/capture/") || !strings.HasSuffix(l.File, ".img") {
				t.Errorf("%+v", l)
			}
		}
	})
	t.Run("losetup-unattached.json", func(t *testing.T) {
		c := d.Read(t, "losetup-unattached.json")
		dev := devsOf(c.Command)
		f := run.NewFake(t)
		f.Expect("losetup", "--json", "--list", dev[0]).Out(string(c.Stdout))
		_, attached, err := loopInfo(ctx, f, dev[0])
		f.Done()
		if err != nil || attached {
			t.Errorf("free loop device: attached %v, %v", attached, err)
		}
	})
	t.Run("detach/err-losetup-detach-missing.txt", func(t *testing.T) {
		c := d.Read(t, "err-losetup-detach-missing.txt")
		f := run.NewFake(t)
		f.Expect("losetup", "--detach", "/dev/loop250").Fail(c.Exit, string(c.Stderr))
		if err := detach(ctx, f, "/dev/loop250"); err != nil {
			t.Errorf("detach of a missing loop device: %v, want nil (already gone)", err)
		}
		f.Done()
	})
	t.Run("umount/err-umount-busy.txt", func(t *testing.T) {
		c := d.Read(t, "err-umount-busy.txt")
		f := run.NewFake(t)
		f.Expect("umount", "/mnt/ext4").Fail(c.Exit, string(c.Stderr))
		if err := umount(ctx, f, "/mnt/ext4"); err == nil {
			t.Error("umount of a busy mount reported success")
		}
		f.Done()
	})

	d.CheckErrors(t, errorClasses, classifiers)
}

// TestCapturesFS reads testdata/capture/fs: mkfs refusals and what the
// ext4 and xfs resize steps parse.
func TestCapturesFS(t *testing.T) {
	d := lab.Open(t, "fs")
	t.Run("dumpe2fs.txt", func(t *testing.T) {
		e, err := ParseDumpe2fs(d.Read(t, "dumpe2fs.txt").Stdout)
		if err != nil || e.BlockSize <= 0 || e.BlockCount*e.BlockSize != 64<<20 {
			t.Errorf("dumpe2fs %+v, %v; want 64 MiB", e, err)
		}
	})
	t.Run("resize2fs-min.txt", func(t *testing.T) {
		n, err := ParseResize2fsMin(d.Read(t, "resize2fs-min.txt").Stdout)
		if err != nil || n <= 0 || n >= 64<<20/1024 {
			t.Errorf("resize2fs -P %d blocks, %v", n, err)
		}
	})
	t.Run("xfs-info.txt", func(t *testing.T) {
		x, err := ParseXFSInfo(d.Read(t, "xfs-info.txt").Stdout)
		if err != nil || x.BlockSize != 4096 || x.Blocks*x.BlockSize != 320<<20 {
			t.Errorf("xfs_info %+v, %v; want 320 MiB", x, err)
		}
	})
	d.CheckErrors(t, fsErrorClasses, classifiers)
}
