package btrfs

import (
	"context"
	"regexp"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bofhkit/bofh/blockdev"
	lab "github.com/bofhkit/bofh/internal/capture"
	"github.com/bofhkit/bofh/run"
)

// classifiers are the package's btrfs error classifiers.
var classifiers = []lab.Classifier{
	{Class: "not-subvolume", Is: IsNotSubvolume},
}

// errorClasses is what each err-* capture of testdata/capture/btrfs must
// be classified as (nil: no class). IsNotSubvolume also says yes to a
// path that is not on btrfs at all.
var errorClasses = map[string][]string{
	"err-subvolume-create-exists.txt":     nil, // "target path already exists"
	"err-subvolume-delete-not-btrfs.txt":  {"not-subvolume"},
	"err-subvolume-delete-not-subvol.txt": {"not-subvolume"},
	"err-subvolume-list-not-btrfs.txt":    {"not-subvolume"},
	"err-subvolume-show-not-subvol.txt":   {"not-subvolume"},
}

const capDevSize = 256 << 20 // the captured btrfs is on a 256 MiB loop device

// TestCaptures runs the package's queries over every capture of
// testdata/capture/btrfs and classifies every error capture.
func TestCaptures(t *testing.T) {
	d := lab.Open(t, "btrfs")
	ctx := context.Background()

	var subs []Subvolume
	t.Run("subvolume-list.txt", func(t *testing.T) {
		c := d.Read(t, "subvolume-list.txt")
		f := run.NewFake(t)
		f.Expect("btrfs", "subvolume", "list", "-a", "-p", "-u", "-q", "-R", "/mnt/btrfs").Out(string(c.Stdout))
		var err error
		subs, err = List(ctx, f, "/mnt/btrfs")
		f.Done()
		if err != nil {
			t.Fatal(err)
		}
		if c.Command != "btrfs subvolume list -a -p -u -q -R /mnt/btrfs" {
			t.Errorf("captured %q, not the command List runs", c.Command)
		}
		type sv struct {
			ID, Parent, TopLevel uint64
			Path                 string
			Snap                 bool
		}
		var got []sv
		for _, s := range subs {
			got = append(got, sv{s.ID, s.Parent, s.TopLevel, s.Path, s.ParentUUID != ""})
			if !uuidRe.MatchString(s.UUID) || s.ReceivedUUID != "" || s.Gen == 0 {
				t.Errorf("%s: %+v", s.Path, s)
			}
		}
		want := []sv{{256, 5, 5, "a", false}, {257, 256, 256, "a/b", false}, {258, 5, 5, "a-snap", true}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("subvolumes (-want +got):\n%s", diff)
		}
		if len(subs) == 3 && subs[2].ParentUUID != subs[0].UUID {
			t.Errorf("a-snap's parent uuid %q, a's uuid %q", subs[2].ParentUUID, subs[0].UUID)
		}
	})

	// Show of each subvolume agrees with the list.
	for _, tc := range []struct {
		file, path string
		want       Info // UUIDs, generations and times are checked against the list
	}{
		{"subvolume-show.txt", "/mnt/btrfs/a", Info{Path: "a", Name: "a", ID: 256, ParentID: 5, TopLevelID: 5, Snapshots: []string{"a-snap"}}},
		{"subvolume-show-snapshot.txt", "/mnt/btrfs/a-snap", Info{Path: "a-snap", Name: "a-snap", ID: 258, ParentID: 5, TopLevelID: 5,
			Flags: []string{"readonly"}, ReadOnly: true}},
		{"subvolume-show-toplevel.txt", "/mnt/btrfs", Info{Path: "/", Name: "<FS_TREE>", ID: 5}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c := d.Read(t, tc.file)
			f := run.NewFake(t)
			f.Expect("btrfs", "subvolume", "show", tc.path).Out(string(c.Stdout))
			info, err := Show(ctx, f, tc.path)
			f.Done()
			if err != nil {
				t.Fatal(err)
			}
			if !uuidRe.MatchString(info.UUID) || info.Created == "" || info.Generation == 0 {
				t.Errorf("uuid %q created %q generation %d", info.UUID, info.Created, info.Generation)
			}
			for _, s := range subs {
				if s.ID == info.ID && (s.UUID != info.UUID || s.ParentUUID != info.ParentUUID || s.Gen != info.Generation) {
					t.Errorf("show says uuid %q parent %q gen %d, list %+v", info.UUID, info.ParentUUID, info.Generation, s)
				}
			}
			got := *info
			got.UUID, got.ParentUUID, got.Created, got.Generation, got.GenAtCreation = "", "", "", 0, 0
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("show (-want +got):\n%s", diff)
			}
		})
	}

	// What blockdev's btrfs resize reads (blockdev does not import btrfs,
	// so these captures live here with the rest of btrfs-progs).
	var showSize int64
	t.Run("filesystem-show.txt", func(t *testing.T) {
		var err error
		showSize, err = blockdev.ParseBtrfsShowSize(d.Read(t, "filesystem-show.txt").Stdout, 1)
		if err != nil || showSize != capDevSize {
			t.Errorf("devid 1 size %d, %v; want %d", showSize, err, capDevSize)
		}
	})
	t.Run("filesystem-usage.txt", func(t *testing.T) {
		m := regexp.MustCompile(`(?m)^\s+Device size:\s+(\d+)$`).FindSubmatch(d.Read(t, "filesystem-usage.txt").Stdout)
		if m == nil || string(m[1]) != strconv.Itoa(capDevSize) {
			t.Errorf("usage device size %q, want %d", m, capDevSize)
		}
	})
	t.Run("dump-super.txt", func(t *testing.T) {
		s, err := blockdev.ParseBtrfsSuper(d.Read(t, "dump-super.txt").Stdout)
		want := blockdev.BtrfsSuper{SectorSize: 4096, NumDevices: 1, DevID: 1, TotalBytes: capDevSize}
		if diff := cmp.Diff(want, s); err != nil || diff != "" {
			t.Errorf("dump-super (-want +got):\n%s%v", diff, err)
		}
	})
	t.Run("min-dev-size.txt", func(t *testing.T) {
		n, err := blockdev.ParseMinDevSize(d.Read(t, "min-dev-size.txt").Stdout)
		if err != nil || n <= 0 || n >= capDevSize {
			t.Errorf("min-dev-size %d, %v", n, err)
		}
	})

	t.Run("Show/err-subvolume-show-not-subvol.txt", func(t *testing.T) {
		c := d.Read(t, "err-subvolume-show-not-subvol.txt")
		f := run.NewFake(t)
		f.Expect("btrfs", "subvolume", "show", "/mnt/btrfs/plain").Fail(c.Exit, string(c.Stderr))
		if _, err := Show(ctx, f, "/mnt/btrfs/plain"); !IsNotSubvolume(err) {
			t.Errorf("Show of a plain directory: %v, want IsNotSubvolume", err)
		}
		f.Done()
	})

	d.CheckErrors(t, errorClasses, classifiers)
}

var uuidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
