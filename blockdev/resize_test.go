package blockdev

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

// Captured on Debian 12: e2fsprogs 1.47.0, xfsprogs 6.1.0, btrfs-progs v6.2.
const (
	capDumpe2fs = `Filesystem volume name:   <none>
Last mounted on:          <not available>
Filesystem UUID:          eab4de81-ff7c-408e-b389-161530fda3a2
Filesystem magic number:  0xEF53
Filesystem revision #:    1 (dynamic)
Filesystem features:      has_journal ext_attr resize_inode dir_index filetype extent 64bit flex_bg sparse_super large_file huge_file dir_nlink extra_isize metadata_csum
Filesystem state:         clean
Inode count:              16384
Block count:              65536
Reserved block count:     3276
Overhead clusters:        9499
Free blocks:              56023
First block:              1
Block size:               1024
Fragment size:            1024
Reserved GDT blocks:      256
Blocks per group:         8192
Filesystem created:       Sat Nov 21 16:19:56 2026
`
	capResize2fsP = "Estimated minimum size of the filesystem: 13694\n"
	capXFSInfo    = `meta-data=/dev/loop2             isize=512    agcount=4, agsize=20480 blks
         =                       sectsz=512   attr=2, projid32bit=1
         =                       crc=1        finobt=1, sparse=1, rmapbt=0
         =                       reflink=1    bigtime=1 inobtcount=1 nrext64=0
data     =                       bsize=4096   blocks=81920, imaxpct=25
         =                       sunit=0      swidth=0 blks
naming   =version 2              bsize=4096   ascii-ci=0, ftype=1
log      =internal log           bsize=4096   blocks=16384, version=2
         =                       sectsz=512   sunit=0 blks, lazy-count=1
realtime =none                   extsz=4096   blocks=0, rtextents=0
`
	capBtrfsShow = `Label: none  uuid: 327722d1-1e56-4524-938f-1eac98ff6395
	Total devices 1 FS bytes used 147456
	devid    1 size 268435456 used 92274688 path /dev/loop2

`
	capMinDevSize = "105906176 bytes (101.00MiB)\n"
	capDumpSuper  = `superblock: bytenr=65536, device=/dev/loop2
---------------------------------------------------------
csum_type		0 (crc32c)
bytenr			65536
total_bytes		268435456
bytes_used		147456
sectorsize		4096
nodesize		16384
num_devices		1
dev_item.total_bytes	268435456
dev_item.bytes_used	92274688
dev_item.devid		1
`
)

func TestResizeParsers(t *testing.T) {
	d, err := ParseDumpe2fs([]byte(capDumpe2fs))
	if err != nil || d != (Dumpe2fs{BlockCount: 65536, BlockSize: 1024}) {
		t.Errorf("dumpe2fs: %+v %v", d, err)
	}
	if n, err := ParseResize2fsMin([]byte(capResize2fsP)); err != nil || n != 13694 {
		t.Errorf("resize2fs -P: %d %v", n, err)
	}
	if x, err := ParseXFSInfo([]byte(capXFSInfo)); err != nil || x != (XFSInfo{BlockSize: 4096, Blocks: 81920}) {
		t.Errorf("xfs_info: %+v %v", x, err)
	}
	if n, err := ParseBtrfsShowSize([]byte(capBtrfsShow), 1); err != nil || n != 268435456 {
		t.Errorf("btrfs show: %d %v", n, err)
	}
	if n, err := ParseMinDevSize([]byte(capMinDevSize)); err != nil || n != 105906176 {
		t.Errorf("min-dev-size: %d %v", n, err)
	}
	s, err := ParseBtrfsSuper([]byte(capDumpSuper))
	if err != nil || s != (BtrfsSuper{SectorSize: 4096, NumDevices: 1, DevID: 1, TotalBytes: 268435456}) {
		t.Errorf("dump-super: %+v %v", s, err)
	}
	bad := []struct {
		name string
		fn   func() error
	}{
		{"dumpe2fs empty", func() error { _, err := ParseDumpe2fs(nil); return err }},
		{"dumpe2fs bad count", func() error { _, err := ParseDumpe2fs([]byte("Block count: x\nBlock size: 1024\n")); return err }},
		{"resize2fs -P error text", func() error {
			_, err := ParseResize2fsMin([]byte("resize2fs: Bad magic number in super-block\n"))
			return err
		}},
		{"xfs_info no data", func() error { _, err := ParseXFSInfo([]byte("meta-data=/dev/x\n")); return err }},
		{"btrfs show other devid", func() error { _, err := ParseBtrfsShowSize([]byte(capBtrfsShow), 2); return err }},
		{"min-dev-size garbage", func() error { _, err := ParseMinDevSize([]byte("ERROR: not a btrfs\n")); return err }},
		{"dump-super empty", func() error { _, err := ParseBtrfsSuper(nil); return err }},
	}
	for _, tc := range bad {
		if err := tc.fn(); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in   string
		cur  int64
		want int64
		err  string
	}{
		{"10G", 1 << 30, 10 << 30, ""},
		{"512MiB", 1 << 30, 512 << 20, ""},
		{"+1G", 1 << 30, 2 << 30, ""},
		{"-512M", 1 << 30, 512 << 20, ""},
		{" +4k ", 4096, 8192, ""},
		{"-1G", 1 << 30, 0, "cannot shrink"},
		{"", 0, 0, "size"},
		{"+", 0, 0, "size"},
		{"+-1G", 0, 0, "size"},
		{"--1G", 0, 0, "size"},
		{"0", 0, 0, "zero"},
		{"12 parsecs", 0, 0, "size"},
		{"99999999999P", 0, 0, "too large"},
		{"1e9", 0, 0, "size"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			tg, err := ParseTarget(tc.in)
			var got int64
			if err == nil {
				got, err = tg.Resolve(tc.cur)
			}
			if tc.err != "" {
				if !errors.Is(err, atomic.ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("want an invalid-input error saying %q, got %v", tc.err, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %d %v, want %d", got, err, tc.want)
			}
		})
	}
}

func TestResizeValidate(t *testing.T) {
	tests := []struct {
		name string
		p    atomic.Params
		err  string
	}{
		{"ok device", Resize{Device: "/dev/loop3", Size: "1G"}, ""},
		{"ok file", Resize{File: "/srv/disk.img", Type: "btrfs", Size: "+1G"}, ""},
		{"ok grow", Grow{File: "/srv/disk.img", Size: "+1G"}, ""},
		{"neither", Resize{Size: "1G"}, "exactly one"},
		{"both", Resize{Device: "/dev/loop3", File: "/srv/d.img", Size: "1G"}, "exactly one"},
		{"relative device", Resize{Device: "loop3", Size: "1G"}, "absolute"},
		{"unclean file", Resize{File: "/srv/../etc/d.img", Size: "1G"}, "clean absolute"},
		{"bad type", Resize{Device: "/dev/loop3", Type: "vfat", Size: "1G"}, "want one of"},
		{"bad size", Resize{Device: "/dev/loop3", Size: "big"}, "size"},
		{"no size", Resize{Device: "/dev/loop3"}, "size"},
		{"grow shrinks", Grow{Device: "/dev/loop3", Size: "-1G"}, "only grows"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.(atomic.Validator).Validate()
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, atomic.ErrInvalid) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("want an invalid-input error saying %q, got %v", tc.err, err)
			}
		})
	}
}

// fakeLayer is a Layer in memory that logs its resizes.
type fakeLayer struct {
	name     string
	size     int64
	gran     int64
	min      int64
	over     int64
	noShrink bool
	log      *[]string
}

func (f *fakeLayer) Name() string       { return f.name }
func (f *fakeLayer) Granularity() int64 { return f.gran }
func (f *fakeLayer) Overhead() int64    { return f.over }
func (f *fakeLayer) Size(context.Context, run.Runner) (int64, error) {
	return f.size, nil
}
func (f *fakeLayer) MinSize(context.Context, run.Runner) (int64, error) { return f.min, nil }
func (f *fakeLayer) Resize(_ context.Context, _ run.Runner, n int64) error {
	*f.log = append(*f.log, fmt.Sprintf("%s %d", f.name, n))
	f.size = n
	return nil
}
func (f *fakeLayer) CanResize(_ context.Context, _ run.Runner, from, to int64) error {
	if f.noShrink && to < from {
		return fmt.Errorf("%s cannot shrink", f.name)
	}
	return nil
}

func TestStackOrderAndRounding(t *testing.T) {
	tests := []struct {
		name   string
		target int64
		want   []string // resize calls in order
		err    string
	}{
		{"grow bottom-up", 1 << 20, []string{"dev 1048576", "crypt 1044480", "fs 1044480"}, ""},
		// 600000-4096 = 595904, rounded down to lcm(512,4096,1024)=4096: 593920
		{"shrink top-down, rounded down", 600000, []string{"fs 593920", "crypt 593920", "dev 598016"}, ""},
		{"below the fs minimum", 200000, nil, "would cut data"},
		{"too small for the overhead", 4096, nil, "too small"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var log []string
			s := &Stack{Layers: []Layer{
				&fakeLayer{name: "dev", size: 800 << 10, gran: 512, log: &log},
				&fakeLayer{name: "crypt", size: 800<<10 - 4096, gran: 4096, over: 4096, log: &log},
				&fakeLayer{name: "fs", size: 800<<10 - 4096, gran: 1024, min: 300 << 10, log: &log},
			}}
			err := s.Resize(context.Background(), nil, tc.target)
			if tc.err != "" {
				if !errors.Is(err, atomic.ErrInvalid) || !strings.Contains(err.Error(), tc.err) || len(log) != 0 {
					t.Fatalf("want a refusal saying %q and no resize, got %v, %v", tc.err, err, log)
				}
				return
			}
			if err != nil || !slices.Equal(log, tc.want) {
				t.Fatalf("got %v %v, want %v", log, err, tc.want)
			}
		})
	}
}

func TestStackRefusesUnshrinkable(t *testing.T) {
	var log []string
	s := &Stack{Layers: []Layer{
		&fakeLayer{name: "dev", size: 1 << 20, gran: 512, log: &log},
		&fakeLayer{name: "xfs", size: 1 << 20, gran: 4096, noShrink: true, log: &log},
	}}
	err := s.Resize(context.Background(), nil, 512<<10)
	if !errors.Is(err, atomic.ErrInvalid) || !strings.Contains(err.Error(), "xfs cannot shrink") || len(log) != 0 {
		t.Fatalf("got %v, %v", err, log)
	}
	// Apply finishes a half-done resize: only the layer not yet there moves
	s.Layers[0].(*fakeLayer).size = 2 << 20
	if err := s.Apply(context.Background(), nil, []int64{2 << 20, 2 << 20}); err != nil || !slices.Equal(log, []string{"xfs 2097152"}) {
		t.Fatalf("got %v, %v", err, log)
	}
}

// TestTranscriptResizeExt4 checks the exact commands of an offline ext4
// grow and of the undo (a shrink), through the step kind.
func TestTranscriptResizeExt4(t *testing.T) {
	f := run.NewFake(t)
	loopJSON := `{"loopdevices": [{"name": "/dev/loop7", "back-file": "/srv/d.img", "offset": 0, "sizelimit": 0, "ro": false}]}`
	dumpe2fs := "Block count:              65536\nBlock size:               1024\n"
	dumpe2fsBig := "Block count:              98304\nBlock size:               1024\n"
	open := func() {
		f.Expect("losetup", "--json", "--list", "/dev/loop7").Out(loopJSON)
		f.Expect("losetup", "--json", "--list", "--associated", "/srv/d.img").Out(loopJSON)
		f.Expect("blkid", "-p", "-o", "export", "/dev/loop7").Out("TYPE=ext4\n")
		f.Expect("dumpe2fs", "-h", "/dev/loop7").Out(dumpe2fs)
	}
	// reopen is open from the journal (Do, Undo): the loop device's
	// capacity is checked against its file before the filesystem is probed
	reopen := func(size string) {
		f.Expect("losetup", "--json", "--list", "/dev/loop7").Out(loopJSON)
		f.Expect("losetup", "--json", "--list", "--associated", "/srv/d.img").Out(loopJSON)
		f.Expect("stat", "-L", "--format=%s", "/srv/d.img").Out(size + "\n")
		f.Expect("blockdev", "--getsize64", "/dev/loop7").Out(size + "\n")
		f.Expect("blkid", "-p", "-o", "export", "/dev/loop7").Out("TYPE=ext4\n")
		f.Expect("dumpe2fs", "-h", "/dev/loop7").Out(dumpe2fs)
	}
	sizes := func(dev, ext string) {
		f.Expect("stat", "-L", "--format=%s", "/srv/d.img").Out(dev + "\n")
		f.Expect("blockdev", "--getsize64", "/dev/loop7").Out(dev + "\n")
		f.Expect("dumpe2fs", "-h", "/dev/loop7").Out(ext)
	}
	findmnt := func() {
		f.Expect("findmnt", "-J", "-o", "TARGET,SOURCE,FSTYPE,OPTIONS,MAJ:MIN", "--source", "/dev/loop7").Fail(1, "")
	}
	// Prepare: open, sizes, reversibility (can ext4 shrink back? findmnt)
	open()
	sizes("67108864", dumpe2fs)
	findmnt()
	// Do: reopen, sizes, grow the loop, then ext4 (unmounted: e2fsck
	// first), verify
	reopen("67108864")
	sizes("67108864", dumpe2fs)
	f.Expect("truncate", "--no-create", "--size=100663296", "/srv/d.img")
	f.Expect("losetup", "--set-capacity", "/dev/loop7")
	findmnt()
	f.Expect("e2fsck", "-f", "-y", "/dev/loop7")
	f.Expect("resize2fs", "/dev/loop7", "98304K")
	sizes("100663296", dumpe2fsBig)
	// Undo: reopen, sizes, check (unmounted, min), shrink fs, then loop
	reopen("100663296")
	sizes("100663296", dumpe2fsBig)
	findmnt()
	f.Expect("resize2fs", "-P", "/dev/loop7").Out(capResize2fsP)
	findmnt()
	f.Expect("e2fsck", "-f", "-y", "/dev/loop7")
	f.Expect("resize2fs", "/dev/loop7", "65536K")
	f.Expect("truncate", "--no-create", "--size=67108864", "/srv/d.img")
	f.Expect("losetup", "--set-capacity", "/dev/loop7")
	sizes("67108864", dumpe2fs)

	ctx := context.Background()
	err := atomic.Run(ctx, "resize", func(tx *atomic.Tx) error {
		if err := tx.Do(ctx, Resize{Device: "/dev/loop7", Size: "+32M"}, nil); err != nil {
			return err
		}
		return errors.New("boom")
	}, opts(t, atomic.WithRunner(f))...)
	if atomic.ExitCode(err) != atomic.ExitRolledBack {
		t.Fatalf("want rolled back: %v", err)
	}
	f.Done()
}

// FuzzResizeParsers feeds every resize parser arbitrary input: no panic,
// and no negative size accepted.
func FuzzResizeParsers(f *testing.F) {
	for _, s := range []string{capDumpe2fs, capResize2fsP, capXFSInfo, capBtrfsShow, capMinDevSize, capDumpSuper, "+1G", "-512M", "10G"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := []byte(s)
		if d, err := ParseDumpe2fs(b); err == nil && (d.BlockCount <= 0 || d.BlockSize <= 0) {
			t.Fatalf("dumpe2fs accepted %+v", d)
		}
		ParseResize2fsMin(b)
		if x, err := ParseXFSInfo(b); err == nil && (x.Blocks <= 0 || x.BlockSize <= 0) {
			t.Fatalf("xfs_info accepted %+v", x)
		}
		ParseBtrfsShowSize(b, 1)
		ParseMinDevSize(b)
		ParseBtrfsSuper(b)
		if tg, err := ParseTarget(s); err == nil && tg.Bytes <= 0 {
			t.Fatalf("target accepted %+v", tg)
		}
	})
}
