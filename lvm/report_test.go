package lvm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	lab "github.com/bofhkit/bofh/internal/capture"
)

// Captured in the bofh lab (Debian 12 guest, kernel 6.1.0-56-amd64) from
// LVM 2.03.16(2) (2022-05-18), library 1.02.185, driver 4.47.0; the raw
// transcripts are testdata/lvm/capture*-raw.txt. These fixtures have what
// testdata/capture/lvm (capture_test.go) does not: a thick snapshot with a
// bofh transaction tag, an orphan-only report and a merged snapshot.
func readCapture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "lvm", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseReportBad(t *testing.T) {
	for _, in := range []string{
		``, `{`, `[]`, `{"report": 3}`,
		`{"report":[{"vg":[{"vg_name":"a","vg_size":"12x"}]}]}`,
		`{"report":[{"lv":[{"lv_name":"a","data_percent":"zz"}]}]}`,
		`{"report":[{"pv":[{"pv_name":"/dev/x","pv_pe_count":"-"}]}]}`,
	} {
		if _, err := ParseReport([]byte(in)); err == nil {
			t.Errorf("ParseReport(%q): no error", in)
		}
	}
}

func TestLVType(t *testing.T) {
	tests := []struct {
		attr   string
		layout []string
		want   string
	}{
		{"-wi-a-----", []string{"linear"}, TypeLinear},
		{"-wi-a-----", []string{"striped"}, "striped"},
		{"owi-a-s---", []string{"linear"}, TypeLinear},
		{"swi-a-s---", []string{"linear"}, TypeSnapshot},
		{"twi-aotz--", []string{"thin", "pool"}, TypeThinPool},
		{"Vwi-a-tz--", []string{"thin", "sparse"}, TypeThin},
		{"", []string{"thin", "pool"}, TypeThinPool},
		{"", nil, ""},
	}
	for _, tt := range tests {
		if got := lvType(tt.attr, tt.layout); got != tt.want {
			t.Errorf("lvType(%q, %v) = %q, want %q", tt.attr, tt.layout, got, tt.want)
		}
	}
}

func FuzzParseReport(f *testing.F) {
	for _, n := range []string{"fullreport-2.03.16-full.json", "fullreport-2.03.16-orphans.json", "fullreport-2.03.16-after_merge.json"} {
		f.Add(readCapture(f, n))
	}
	lab.Seed(f, "lvm", func(n string) bool { return strings.HasSuffix(n, ".json") })
	f.Add([]byte(`{"report":[{"vg":[{"vg_name":"a"}],"pv":[{"pv_name":"/dev/x","vg_name":""}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := ParseReport(data)
		if err != nil {
			return
		}
		for _, lv := range rep.LVs {
			if lv.Name == "" {
				t.Fatalf("LV without a name kept: %+v", lv)
			}
			_ = rep.Dependents(lv.VG, lv.Name)
		}
		for _, vg := range rep.VGs {
			if rep.VG(vg.Name) == nil {
				t.Fatalf("VG %q not found by name", vg.Name)
			}
		}
	})
}

func TestParseReportCapturedSnapshotsAndOrphans(t *testing.T) {
	rep, err := ParseReport(readCapture(t, "fullreport-2.03.16-full.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct{ typ, origin, pool string }{
		"odd": {TypeLinear, "", ""}, "pool": {TypeThinPool, "", ""}, "thin1": {TypeThin, "", "pool"},
		"thinsnap": {TypeThin, "thin1", "pool"}, "web": {TypeLinear, "", ""}, "websnap": {TypeSnapshot, "web", ""},
	}
	if len(rep.LVs) != len(want) {
		t.Fatalf("%d LVs, want %d", len(rep.LVs), len(want))
	}
	for _, lv := range rep.LVs {
		w := want[lv.Name]
		if lv.Type != w.typ || lv.Origin != w.origin || lv.Pool != w.pool || lv.VG != "vg0" {
			t.Errorf("%s: %+v, want %+v", lv.Name, lv, w)
		}
	}
	if id, ok := TxOfTags(rep.VG("vg0").Tags); !ok || id != "20261121T101500-ab12cd" {
		t.Errorf("TxOfTags = %q %v", id, ok)
	}
	if l := rep.LV("vg0", "web"); !hasTag(l.Tags, "bofh_tx_20261121T101500-ab12cd") || l.Size != 16<<20 {
		t.Errorf("web: %+v", l)
	}
	if deps := rep.Dependents("vg0", "web"); len(deps) != 1 || deps[0].Name != "websnap" {
		t.Errorf("web dependents: %v", deps)
	}
	if pv := rep.PV("/dev/loop2"); pv == nil || pv.VG != "" {
		t.Errorf("orphan PV /dev/loop2: %+v", pv)
	}
	orph, err := ParseReport(readCapture(t, "fullreport-2.03.16-orphans.json"))
	if err != nil || len(orph.PVs) != 3 || len(orph.VGs) != 0 || orph.PVs[0].VG != "" {
		t.Fatalf("orphans: %+v, %v", orph, err)
	}
	merged, err := ParseReport(readCapture(t, "fullreport-2.03.16-after_merge.json"))
	if err != nil || merged.LV("vg0", "websnap") != nil || merged.LV("vg0", "thinsnap") != nil || merged.LV("vg0", "web").Type != TypeLinear {
		t.Fatalf("after merge: %+v, %v", merged, err)
	}
}
