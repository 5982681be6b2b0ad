package btrfs

import (
	"context"
	"os"
	"strings"
	"testing"

	lab "github.com/bofhkit/bofh/internal/capture"
	"github.com/bofhkit/bofh/run"
)

func readCapture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../testdata/btrfs/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseList(t *testing.T) {
	tests := []struct {
		file  string
		n     int
		check Subvolume
		index int
	}{
		{"list-top.txt", 6, Subvolume{ID: 257, Gen: 7, Parent: 5, TopLevel: 5, UUID: "cd400b62-91d2-234b-b407-e583440b754f", Path: "b c"}, 1},
		{"list-top.txt", 6, Subvolume{ID: 259, Gen: 7, Parent: 5, TopLevel: 5, ParentUUID: "30abb067-0869-214b-a02c-b4578632f0bc", UUID: "a83f1833-36a3-e949-8848-b781a37607fe", Path: "a-snap"}, 3},
		{"list-subvol-mount.txt", 6, Subvolume{ID: 258, Gen: 7, Parent: 5, TopLevel: 5, UUID: "787ed1db-d82d-6f45-8bb2-b5df0acdd358", Path: "dir/nested"}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			subs, err := ParseList(readCapture(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(subs) != tc.n {
				t.Fatalf("got %d subvolumes, want %d", len(subs), tc.n)
			}
			if subs[tc.index] != tc.check {
				t.Errorf("subvolume %d = %+v, want %+v", tc.index, subs[tc.index], tc.check)
			}
		})
	}
}

func TestParseListBad(t *testing.T) {
	for _, in := range []string{
		"ID x gen 8 parent 5 top level 5 parent_uuid - received_uuid - uuid u path a",
		"ID 1 gen 8 parent 5 top level 5 parent_uuid - received_uuid - uuid u",
		"ID 1 gen 8 parent 5 top 5 parent_uuid - received_uuid - uuid u path a",
		"ID 1 gen 8 parent 5 top level 5 parent_uuid - received_uuid - uuid u path ",
	} {
		if _, err := ParseList([]byte(in)); err == nil {
			t.Errorf("ParseList(%q) succeeded", in)
		}
	}
}

func TestParseShow(t *testing.T) {
	tests := []struct {
		file string
		want Info
	}{
		// three snapshots; testdata/capture/btrfs (capture_test.go) has the
		// read-only snapshot and the top level
		{"show-with-snapshots.txt", Info{Path: "a", Name: "a", UUID: "30abb067-0869-214b-a02c-b4578632f0bc", ID: 256, Generation: 9, GenAtCreation: 7, ParentID: 5, TopLevelID: 5}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			got, err := ParseShow(readCapture(t, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if got.Path != tc.want.Path || got.Name != tc.want.Name || got.UUID != tc.want.UUID || got.ParentUUID != tc.want.ParentUUID ||
				got.ID != tc.want.ID || got.Generation != tc.want.Generation || got.GenAtCreation != tc.want.GenAtCreation ||
				got.ParentID != tc.want.ParentID || got.TopLevelID != tc.want.TopLevelID || got.ReadOnly != tc.want.ReadOnly {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			if tc.file == "show-with-snapshots.txt" && len(got.Snapshots) != 3 {
				t.Errorf("snapshots = %q, want 3", got.Snapshots)
			}
		})
	}
}

func TestParseDefault(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"ID 5 (FS_TREE)\n", 5, true},
		{"ID 256 gen 9 top level 5 path a\n", 256, true},
		{"", 0, false},
		{"ID x", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseDefault([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseDefault(%q) = %d, %v", tc.in, got, err)
		}
	}
}

// TestQueriesArgv checks the exact commands the queries run.
func TestQueriesArgv(t *testing.T) {
	f := run.NewFake(t)
	f.Expect("btrfs", "subvolume", "list", "-a", "-p", "-u", "-q", "-R", "/mnt").Out(string(readCapture(t, "list-top.txt")))
	f.Expect("btrfs", "subvolume", "show", "/mnt/a-snap").Out(string(lab.ReadFile(t, "btrfs", "subvolume-show-snapshot.txt").Stdout))
	f.Expect("btrfs", "subvolume", "get-default", "/mnt").Out("ID 5 (FS_TREE)\n")
	notSub := lab.ReadFile(t, "btrfs", "err-subvolume-show-not-subvol.txt")
	f.Expect("btrfs", "subvolume", "show", "/mnt/x").Fail(notSub.Exit, string(notSub.Stderr))
	ctx := context.Background()
	if subs, err := List(ctx, f, "/mnt"); err != nil || len(subs) != 6 {
		t.Fatalf("List = %v, %v", subs, err)
	}
	if info, err := Show(ctx, f, "/mnt/a-snap"); err != nil || !info.ReadOnly {
		t.Fatalf("Show = %+v, %v", info, err)
	}
	if id, err := GetDefault(ctx, f, "/mnt"); err != nil || id != 5 {
		t.Fatalf("GetDefault = %d, %v", id, err)
	}
	if _, err := Show(ctx, f, "/mnt/x"); !IsNotSubvolume(err) {
		t.Fatalf("Show of a non-subvolume: %v, want IsNotSubvolume", err)
	}
	f.Done()
}

func FuzzParseList(f *testing.F) {
	for _, n := range []string{"list-top.txt", "list-subvol-mount.txt"} {
		b, _ := os.ReadFile("../testdata/btrfs/" + n)
		f.Add(b)
	}
	lab.Seed(f, "btrfs", func(n string) bool { return n == "subvolume-list.txt" })
	f.Fuzz(func(t *testing.T, b []byte) {
		subs, err := ParseList(b)
		if err != nil {
			return
		}
		for _, s := range subs {
			if s.Path == "" {
				t.Fatalf("empty path accepted: %q", b)
			}
		}
	})
}

func FuzzParseShow(f *testing.F) {
	b, _ := os.ReadFile("../testdata/btrfs/show-with-snapshots.txt")
	f.Add(b)
	lab.Seed(f, "btrfs", func(n string) bool { return strings.HasPrefix(n, "subvolume-show") })
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ParseShow(b)
		if err == nil && info.ID == 0 {
			t.Fatalf("ID 0 accepted: %q", b)
		}
	})
}

func FuzzParseDefault(f *testing.F) {
	f.Add([]byte("ID 5 (FS_TREE)\n"))
	f.Add([]byte("ID 256 gen 9 top level 5 path a\n"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseDefault(b) })
}
