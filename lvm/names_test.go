package lvm

import (
	"errors"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/run"
)

func TestValidateLVName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"web", true}, {"a+b_c.d-e", true}, {"Z9", true}, {strings.Repeat("a", 127), true},
		{"", false}, {".", false}, {"..", false}, {"-x", false}, {"a/b", false}, {"a b", false},
		{"é", false}, {strings.Repeat("a", 128), false}, {"snapshot1", false}, {"pvmove0", false},
		{"x_tmeta", false}, {"x_tdata", false}, {"a_rimage_0", false}, {"_mlog", false}, {"x_pmspare", false},
		{"x_cdata", false}, {"x_cmeta", false}, {"x_corig", false}, {"x_vorigin", false}, {"x_vdata", false},
		{"x_mimage", false}, {"x_rmeta", false}, {"my_snapshot", true}, {"x_tmet", true},
	}
	for _, tt := range tests {
		err := ValidateLVName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateLVName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrBadName) {
			t.Errorf("ValidateLVName(%q): %v does not wrap ErrBadName", tt.name, err)
		}
	}
}

func TestValidateVGName(t *testing.T) {
	for name, ok := range map[string]bool{"vg0": true, "snapshot": true, "x_tmeta": true, "-vg": false, "": false, "a:b": false, "..": false} {
		if err := ValidateVGName(name); (err == nil) != ok {
			t.Errorf("ValidateVGName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
	if err := ValidateLVFullName(strings.Repeat("v-", 32), strings.Repeat("l-", 32)); err == nil {
		t.Error("an over-long device-mapper name was accepted")
	}
}

func TestValidateTag(t *testing.T) {
	for tag, ok := range map[string]bool{
		TxTag("20261121T101500-ab12cd"): true, "a+b.c-d/e=f:g#h&i!j": true, "a@b": false, "": false,
		"-x": false, "a b": false, strings.Repeat("t", 1024): true, strings.Repeat("t", 1025): false,
	} {
		if err := ValidateTag(tag); (err == nil) != ok {
			t.Errorf("ValidateTag(%q) = %v, want ok=%v", tag, err, ok)
		}
	}
	if err := validateTags([]string{"bofh_tx_x"}); err == nil {
		t.Error("a user tag with bofh's prefix was accepted")
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want Size
		args string
	}{
		{"10G", Size{Bytes: 10 << 30}, "-L 10737418240b"},
		{"10g", Size{Bytes: 10 << 30}, "-L 10737418240b"},
		{"512MiB", Size{Bytes: 512 << 20}, "-L 536870912b"},
		{"1.5G", Size{Bytes: 3 << 29}, "-L 1610612736b"},
		{"4096B", Size{Bytes: 4096}, "-L 4096b"},
		{"2048s", Size{Bytes: 1 << 20}, "-L 1048576b"},
		{"1GB", Size{Bytes: 1e9}, "-L 1000000000b"},
		{"100", Size{Extents: 100}, "-l 100"},
		{"100%FREE", Size{Percent: 100, Of: "FREE"}, "-l 100%FREE"},
		{"50%VG", Size{Percent: 50, Of: "VG"}, "-l 50%VG"},
		{"20%PVS", Size{Percent: 20, Of: "PVS"}, "-l 20%PVS"},
		{"10%ORIGIN", Size{Percent: 10, Of: "ORIGIN"}, "-l 10%ORIGIN"},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if err != nil || got != tt.want || strings.Join(got.Args(), " ") != tt.args {
			t.Errorf("ParseSize(%q) = %+v %v (args %v), want %+v (%s)", tt.in, got, err, got.Args(), tt.want, tt.args)
		}
	}
	for _, in := range []string{"", " 1G", "0", "0G", "-1G", "+1G", "1.5", "1.5B", "1X", "G", "1..5G", ".5G", "5.G",
		"101%FREE", "0%VG", "50%", "50%LV", "x%VG", "1e3G", "99999999999999999999", "9999999999P", "1%%VG", "+5%VG"} {
		if z, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %+v, want an error", in, z)
		} else if !errors.Is(err, ErrBadSize) {
			t.Errorf("ParseSize(%q): %v does not wrap ErrBadSize", in, err)
		}
	}
	for in, want := range map[string]string{"+1G": "-L +1073741824b", "-5": "-l -5", "+100%FREE": "-l +100%FREE"} {
		z, err := ParseResize(in)
		if err != nil || strings.Join(z.Args(), " ") != want {
			t.Errorf("ParseResize(%q) = %v %v, want %s", in, z.Args(), err, want)
		}
	}
}

func TestExtentsIn(t *testing.T) {
	vg := &VG{ExtentSize: 4 << 20, ExtentCount: 62, FreeCount: 52}
	tests := []struct {
		in        string
		cur, orig int64
		want      int64
	}{
		{"16M", 0, 0, 4}, {"5000000B", 0, 0, 2}, {"7", 0, 0, 7}, {"100%FREE", 0, 0, 52}, {"50%VG", 0, 0, 31},
		{"+1G", 4, 0, 260}, {"-1", 4, 0, 3}, {"+100%FREE", 4, 0, 56}, {"50%ORIGIN", 0, 10, 5},
	}
	for _, tt := range tests {
		z, err := ParseResize(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := z.ExtentsIn(vg, tt.cur, tt.orig)
		if err != nil || got != tt.want {
			t.Errorf("%s from %d: %d %v, want %d", tt.in, tt.cur, got, err, tt.want)
		}
	}
	z, _ := ParseResize("-8")
	if _, err := z.ExtentsIn(vg, 4, 0); err == nil {
		t.Error("shrinking below one extent was accepted")
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"10G", "1.5GiB", "100%FREE", "+3", "-1G", "2048s", "1e9", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		z, err := ParseResize(s)
		if err != nil {
			return
		}
		back, err := ParseResize(z.String())
		if err != nil || back != z {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, z, z.String(), back, err)
		}
		if z.Bytes < 0 || z.Extents < 0 || z.Percent < 0 || z.Percent > 100 {
			t.Fatalf("%q -> %+v", s, z)
		}
	})
}

// Messages captured from LVM 2.03.16 in the lab (testdata/lvm/capture*-raw.txt).
func TestClassify(t *testing.T) {
	tests := []struct {
		stderr string
		code   int
		want   error
	}{
		{`  Failed to find logical volume "vg0/nope"`, 5, ErrNotFound},
		{"  Volume group \"nosuchvg\" not found\n  Cannot process volume group nosuchvg", 5, ErrNotFound},
		{`  Existing logical volume "nope" not found in volume group "vg0"`, 5, ErrNotFound},
		{`  No device found for /dev/nosuchdev.`, 5, ErrNotFound},
		{"  /dev/vg0: already exists in filesystem\n  Run `vgcreate --help' for more information.", 3, ErrExists},
		{`  Logical Volume "pool" already exists in volume group "vg0"`, 5, ErrExists},
		{"  PV /dev/loop0 is used by VG vg0 so please use vgreduce first.", 5, ErrInUse},
		{`  Physical volume "/dev/loop0" still in use`, 5, ErrInUse},
		{`  Volume group "vg0" has insufficient free space (51 extents): 2560 required.`, 5, ErrNoSpace},
		{`  Insufficient free space: 2560 extents needed, but only 51 available`, 5, ErrNoSpace},
		{`  Names including "_tmeta" are reserved. Please choose a different LV name.`, 3, nil},
	}
	for _, tt := range tests {
		err := Classify(&run.Error{Argv: []string{"lvm"}, ExitCode: tt.code, Stderr: tt.stderr})
		for _, c := range []error{ErrNotFound, ErrExists, ErrInUse, ErrNoSpace} {
			if errors.Is(err, c) != (c == tt.want) {
				t.Errorf("Classify(%q): is %v = %v", tt.stderr, c, errors.Is(err, c))
			}
		}
		var re *run.Error
		if !errors.As(err, &re) {
			t.Errorf("Classify(%q) lost the *run.Error", tt.stderr)
		}
	}
	if Classify(nil) != nil {
		t.Error("Classify(nil) != nil")
	}
}
