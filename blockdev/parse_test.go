package blockdev

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	lab "github.com/bofhkit/bofh/internal/capture"
	"github.com/bofhkit/bofh/run"
)

// Captured from util-linux 2.38.1 on real loop devices; see
// testdata/blockdev/VERSIONS. These are the fixtures with GPT partitions,
// which testdata/capture/blockdev (capture_test.go) does not have.
func capture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "blockdev", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseLsblk(t *testing.T) {
	devs, err := ParseLsblk(capture(t, "lsblk-loops.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 6 {
		t.Fatalf("got %d devices, want 6", len(devs))
	}
	tests := []struct {
		i      int
		path   string
		mounts []string
		parts  int
	}{
		{0, "/dev/loop0", nil, 0},
		{1, "/dev/loop1", []string{"/mnt/cap1"}, 0},
		{3, "/dev/loop3", []string{"/mnt/cap2"}, 0},
		{5, "/dev/loop5", nil, 2},
	}
	for _, tc := range tests {
		d := devs[tc.i]
		if d.Path != tc.path || d.Size != 335544320 || d.Type != "loop" || d.LogSec != 512 || d.RO {
			t.Errorf("device %d: %+v", tc.i, d)
		}
		if strings.Join(d.Mounts, ",") != strings.Join(tc.mounts, ",") {
			t.Errorf("%s mounts %v, want %v", d.Path, d.Mounts, tc.mounts)
		}
		if len(d.Partitions()) != tc.parts || len(d.Holders()) != 0 {
			t.Errorf("%s: %d partitions, %d holders", d.Path, len(d.Partitions()), len(d.Holders()))
		}
		if (len(tc.mounts) > 0) != (d.InUse() != "") {
			t.Errorf("%s InUse %q", d.Path, d.InUse())
		}
	}
	p := devs[5].Children[0]
	if p.Path != "/dev/loop5p1" || p.PKName != "loop5" || p.Size != 104857600 || p.MajMin != "259:0" {
		t.Errorf("partition: %+v", p)
	}
}

func TestParseWipefs(t *testing.T) {
	sigs, err := ParseWipefs(capture(t, "wipefs-multi.json"))
	if err != nil {
		t.Fatal(err)
	}
	by := map[string][]Signature{}
	for _, s := range sigs {
		by[s.Device] = append(by[s.Device], s)
	}
	tests := []struct {
		dev, typ, label string
		n               int
		off             int64
	}{
		{"loop1", "ext4", "cap-ext4", 1, 0x438},
		{"loop2", "xfs", "cap-xfs", 1, 0},
		{"loop3", "btrfs", "cap-btrfs", 1, 0x10040},
		{"loop4", "vfat", "CAPVFAT", 3, 0x36},
		{"loop5", "gpt", "", 3, 0x200},
	}
	for _, tc := range tests {
		s := by[tc.dev]
		if len(s) != tc.n || s[0].Type != tc.typ || s[0].Label != tc.label || s[0].Offset != tc.off {
			t.Errorf("%s: %+v", tc.dev, s)
		}
	}
	if len(by["loop0"]) != 0 {
		t.Errorf("empty loop0 has signatures %v", by["loop0"])
	}
}

func TestParseBlkid(t *testing.T) {
	tests := []struct{ file, typ, label, uuid string }{
		{"blkid-gpt.txt", "gpt", "", ""},
		{"blkid-gpt-part1.txt", "ext4", "part1", "780cba1e-dfc9-4133-93dc-548d277bc282"},
	}
	for _, tc := range tests {
		b, err := ParseBlkid(capture(t, tc.file))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if b.Type() != tc.typ || b["LABEL"] != tc.label || b["UUID"] != tc.uuid {
			t.Errorf("%s: %v", tc.file, b)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1048576", 1 << 20, true}, {"512K", 512 << 10, true}, {"10G", 10 << 30, true},
		{"512MiB", 512 << 20, true}, {"1GB", 1e9, true}, {"1.5G", 3 << 29, true},
		{"", 0, false}, {"0", 0, false}, {"-1G", 0, false}, {"10X", 0, false}, {"G", 0, false},
		{"99999999999P", 0, false}, {"1 G", 1 << 30, true},
	}
	for _, tc := range tests {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v", tc.in, got, err)
		}
	}
}

// counter counts the commands a Runner runs.
type counter struct {
	inner run.Runner
	n     int
}

func (c *counter) Run(ctx context.Context, cmd run.Cmd) (run.Result, error) {
	c.n++
	return c.inner.Run(ctx, cmd)
}

// TestProbeCommandCount measures the external commands a probe costs:
// Probe of N devices is 2 commands (one lsblk, one wipefs) against 2N for
// the naive per-device lsblk + blkid.
func TestProbeCommandCount(t *testing.T) {
	const n = 6
	f := run.NewFake(t)
	var devs []string
	for i := 0; i < n; i++ {
		devs = append(devs, "/dev/loop"+string(rune('0'+i)))
	}
	lsblk := string(capture(t, "lsblk-loops.json"))
	f.Expect(append([]string{"lsblk", "-J", "-b", "-o", lsblkColumns}, devs...)...).Out(lsblk).Kind(run.Query)
	all := append(append([]string{}, devs...), "/dev/loop5p1", "/dev/loop5p2")
	f.Expect(append([]string{"wipefs", "--no-act", "-J"}, all...)...).Out(string(capture(t, "wipefs-multi.json"))).Kind(run.Query)
	c := &counter{inner: f}
	got, err := Probe(context.Background(), c, devs...)
	f.Done()
	if err != nil {
		t.Fatal(err)
	}
	if c.n != 2 {
		t.Errorf("probe of %d devices ran %d commands, want 2", n, c.n)
	}
	if len(got[4].Signatures) != 3 || got[1].Signatures[0].Type != "ext4" || len(got[0].Signatures) != 0 {
		t.Errorf("signatures not attached: %+v", got)
	}
	t.Logf("probe of %d devices: %d commands (naive lsblk+blkid per device: %d)", n, c.n, 2*n)
}

func FuzzParseLsblk(f *testing.F) {
	f.Add(capture(f, "lsblk-loops.json"))
	lab.Seed(f, "blockdev", func(n string) bool { return strings.HasPrefix(n, "lsblk-") })
	f.Fuzz(func(t *testing.T, b []byte) { ParseLsblk(b) })
}

func FuzzParseWipefs(f *testing.F) {
	f.Add(capture(f, "wipefs-multi.json"))
	lab.Seed(f, "blockdev", func(n string) bool { return strings.HasPrefix(n, "wipefs-") })
	f.Fuzz(func(t *testing.T, b []byte) { ParseWipefs(b) })
}

func FuzzParseBlkid(f *testing.F) {
	f.Add(capture(f, "blkid-gpt-part1.txt"))
	lab.Seed(f, "blockdev", func(n string) bool { return strings.HasPrefix(n, "blkid-") })
	f.Fuzz(func(t *testing.T, b []byte) { ParseBlkid(b) })
}

func FuzzParseFindmnt(f *testing.F) {
	lab.Seed(f, "blockdev", func(n string) bool { return strings.Contains(n, "findmnt") })
	f.Fuzz(func(t *testing.T, b []byte) { ParseFindmnt(b) })
}

func FuzzParseLosetup(f *testing.F) {
	lab.Seed(f, "blockdev", func(n string) bool { return strings.HasPrefix(n, "losetup-") })
	f.Fuzz(func(t *testing.T, b []byte) { ParseLosetup(b) })
}

func FuzzParseSize(f *testing.F) {
	f.Add("10G")
	f.Add("1.5MiB")
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseSize(s); err == nil && n <= 0 {
			t.Fatalf("ParseSize(%q) = %d without error", s, n)
		}
	})
}
