package lvm

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	lab "github.com/bofhkit/bofh/internal/capture"
	"github.com/bofhkit/bofh/run"
)

// classifiers are the package's LVM error classes (Classify).
var classifiers = []lab.Classifier{
	{Class: "not-found", Is: IsNotFound},
	{Class: "exists", Is: IsExists},
	{Class: "in-use", Is: IsInUse},
	{Class: "no-space", Is: IsNoSpace},
}

// errorClasses is what each err-* capture of testdata/capture/lvm must be
// classified as (nil: no class).
var errorClasses = map[string][]string{
	"err-fullreport-missing-vg.json":   {"not-found"},
	"err-lvcreate-bad-name.txt":        nil, // reserved name: bad input, not a state
	"err-lvcreate-exists.txt":          {"exists"},
	"err-lvcreate-missing-vg.txt":      {"not-found"},
	"err-lvcreate-no-space.txt":        {"no-space"},
	"err-lvremove-open.txt":            {"in-use"}, // "contains a filesystem in use"
	"err-lvs-missing-lv.txt":           {"not-found"},
	"err-lvs-missing-vg.txt":           {"not-found"},
	"err-pvremove-in-use.txt":          {"in-use"}, // "is used by VG"
	"err-vgcreate-exists.txt":          {"exists"},
	"err-vgremove-active-no-force.txt": nil, // the prompt answered no: "not removed"
}

// capLV is what the tests compare of an LV of the capture.
type capLV struct {
	Name, Type, Pool, Origin string
	Size                     int64
	Active                   bool
	Tags                     []string
}

// The LVs of VG vgcap in the capture (scripts/lab/capture.sh).
var capLVs = []capLV{
	{"inactive", TypeLinear, "", "", 8 << 20, false, nil},
	{"lin", TypeLinear, "", "", 32 << 20, true, []string{"role=data"}},
	{"pool", TypeThinPool, "", "", 64 << 20, true, nil},
	{"snap", TypeSnapshot, "", "lin", 16 << 20, true, nil},
	{"thin", TypeThin, "pool", "", 128 << 20, true, []string{"thin"}},
	{"tsnap", TypeThin, "pool", "thin", 128 << 20, false, nil}, // thin snapshots skip activation
}

func lvsOf(rep *Report, hidden bool) []capLV {
	var out []capLV
	for _, lv := range rep.LVs {
		if strings.HasPrefix(lv.Name, "[") && !hidden {
			continue
		}
		out = append(out, capLV{lv.Name, lv.Type, lv.Pool, lv.Origin, lv.Size, lv.Active, lv.Tags})
	}
	return out
}

// TestCaptures parses every capture of testdata/capture/lvm and
// classifies every error capture.
func TestCaptures(t *testing.T) {
	d := lab.Open(t, "lvm")

	reports := map[string]*Report{}
	parse := func(t *testing.T, name string) *Report {
		t.Helper()
		rep, err := ParseReport(d.Read(t, name).Stdout)
		if err != nil {
			t.Fatal(err)
		}
		reports[name] = rep
		return rep
	}

	// The one query bofh makes, captured with exactly ReportArgs: all VGs,
	// then one VG (no orphans).
	for _, tc := range []struct {
		file    string
		vgs     []string
		orphans int
	}{
		{"fullreport-bofh.json", nil, 1},
		{"fullreport-bofh-vg.json", []string{"vgcap"}, 0},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c := d.Read(t, tc.file)
			if want := strings.Join(ReportArgs(tc.vgs...), " "); c.Command != want {
				t.Errorf("captured %q,\nbut Query runs %q", c.Command, want)
			}
			f := run.NewFake(t)
			f.Expect(ReportArgs(tc.vgs...)...).Out(string(c.Stdout))
			rep, err := Query(context.Background(), f, tc.vgs...)
			f.Done()
			if err != nil {
				t.Fatal(err)
			}
			reports[tc.file] = rep
			vg := rep.VG("vgcap")
			if vg == nil || len(rep.VGs) != 1 {
				t.Fatalf("VGs %+v", rep.VGs)
			}
			if vg.ExtentSize != 4<<20 || vg.ExtentCount != 126 || vg.Size != 126*4<<20 || vg.PVCount != 2 || vg.LVCount != 6 ||
				vg.SnapCount != 1 || vg.UUID == "" || vg.Attr != "wz--n-" {
				t.Errorf("vgcap %+v", vg)
			}
			if diff := cmp.Diff([]string{"bofh", "site=lab"}, vg.Tags); diff != "" {
				t.Errorf("vg tags (-want +got):\n%s", diff)
			}
			var used, orphans int
			for _, pv := range rep.PVs {
				switch pv.VG {
				case "vgcap":
					used++
					if pv.DevSize != 256<<20 || pv.PEStart != 1<<20 || pv.PECount != 63 || pv.UUID == "" {
						t.Errorf("pv %+v", pv)
					}
				case "":
					orphans++
				default:
					t.Errorf("pv %+v in an unknown VG", pv)
				}
			}
			if used != 2 || orphans != tc.orphans {
				t.Errorf("%d PVs in vgcap, %d orphans; want 2, %d", used, orphans, tc.orphans)
			}
			if diff := cmp.Diff(capLVs, lvsOf(rep, false)); diff != "" {
				t.Errorf("LVs (-want +got):\n%s", diff)
			}
			if p := rep.LV("vgcap", "pool"); p == nil || p.DataPercent == nil || p.MetadataPercent == nil || *p.MetadataPercent <= 0 {
				t.Errorf("pool percentages: %+v", p)
			}
			if l := rep.LV("vgcap", "lin"); l == nil || l.Path != "/dev/vgcap/lin" || l.DMPath != "/dev/mapper/vgcap-lin" {
				t.Errorf("lin paths: %+v", l)
			}
			deps := map[string][]string{}
			for _, lv := range capLVs {
				for _, dep := range rep.Dependents("vgcap", lv.Name) {
					deps[lv.Name] = append(deps[lv.Name], dep.Name)
				}
			}
			if diff := cmp.Diff(map[string][]string{"lin": {"snap"}, "pool": {"thin", "tsnap"}, "thin": {"tsnap"}}, deps); diff != "" {
				t.Errorf("dependents (-want +got):\n%s", diff)
			}
		})
	}

	// `lvm fullreport` with LVM's default fields (no vg_name in the LV
	// rows: ParseReport takes it from the VG of the group).
	t.Run("fullreport.json", func(t *testing.T) {
		rep := parse(t, "fullreport.json")
		if diff := cmp.Diff(capLVs, lvsOf(rep, false)); diff != "" {
			t.Errorf("LVs (-want +got):\n%s", diff)
		}
		for _, lv := range rep.LVs {
			if lv.VG != "vgcap" {
				t.Errorf("%s: vg %q", lv.Name, lv.VG)
			}
		}
		if b := reports["fullreport-bofh.json"]; b != nil {
			if diff := cmp.Diff(b.VGs, rep.VGs); diff != "" {
				t.Errorf("VGs of the default fields vs ReportArgs (-bofh +default):\n%s", diff)
			}
			if diff := cmp.Diff(len(b.PVs), len(rep.PVs)); diff != "" {
				t.Errorf("PV count (-bofh +default):\n%s", diff)
			}
		}
	})
	t.Run("fullreport-empty.json", func(t *testing.T) {
		rep := parse(t, "fullreport-empty.json")
		if len(rep.VGs)+len(rep.PVs)+len(rep.LVs) != 0 {
			t.Errorf("report of no LVM: %+v", rep)
		}
	})

	// The single reports (-o lv_all, vg_all, pv_all and a segment view)
	// agree with the fullreport.
	t.Run("lvs-all.json", func(t *testing.T) {
		rep := parse(t, "lvs-all.json")
		if diff := cmp.Diff(capLVs, lvsOf(rep, false)); diff != "" {
			t.Errorf("LVs (-want +got):\n%s", diff)
		}
		var hidden []string
		for _, lv := range lvsOf(rep, true) {
			if strings.HasPrefix(lv.Name, "[") {
				hidden = append(hidden, lv.Name)
			}
		}
		if diff := cmp.Diff([]string{"[lvol0_pmspare]", "[pool_tdata]", "[pool_tmeta]"}, hidden); diff != "" {
			t.Errorf("hidden LVs (-want +got):\n%s", diff)
		}
	})
	t.Run("lvs-segments.json", func(t *testing.T) {
		rep := parse(t, "lvs-segments.json")
		for _, want := range capLVs {
			lv := rep.LV("vgcap", want.Name)
			if lv == nil || lv.Pool != want.Pool || lv.Origin != want.Origin {
				t.Errorf("%s: %+v, want pool %q origin %q", want.Name, lv, want.Pool, want.Origin)
			}
		}
	})
	t.Run("vgs-all.json", func(t *testing.T) {
		rep := parse(t, "vgs-all.json")
		if b := reports["fullreport-bofh.json"]; b != nil {
			if diff := cmp.Diff(b.VGs, rep.VGs); diff != "" {
				t.Errorf("VGs (-fullreport +vgs):\n%s", diff)
			}
		}
	})
	t.Run("pvs-all.json", func(t *testing.T) {
		rep := parse(t, "pvs-all.json")
		if b := reports["fullreport-bofh.json"]; b != nil {
			// -o pv_all has no vg_name
			if diff := cmp.Diff(b.PVs, rep.PVs, cmpopts.IgnoreFields(PV{}, "VG")); diff != "" {
				t.Errorf("PVs (-fullreport +pvs):\n%s", diff)
			}
		}
	})

	// lvs of a missing VG or LV still prints an empty report on stdout.
	for _, name := range []string{"err-lvs-missing-lv.txt", "err-lvs-missing-vg.txt"} {
		t.Run(name, func(t *testing.T) {
			rep, err := ParseReport(d.Read(t, name).Stdout)
			if err != nil || len(rep.LVs) != 0 {
				t.Errorf("stdout of a failed lvs: %+v, %v", rep, err)
			}
		})
	}
	t.Run("Query/err-fullreport-missing-vg.json", func(t *testing.T) {
		c := d.Read(t, "err-fullreport-missing-vg.json")
		f := run.NewFake(t)
		f.Expect(ReportArgs("novg")...).Out(string(c.Stdout)).Fail(c.Exit, string(c.Stderr))
		_, err := Query(context.Background(), f, "novg")
		f.Done()
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Query of a missing VG: %v, want ErrNotFound", err)
		}
	})

	d.CheckErrors(t, errorClasses, classifiers)
}
