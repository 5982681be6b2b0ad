package drbd

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
)

func intp(n int) *int { return &n }

func twoNodes() Resource {
	return Resource{Name: "data", Nodes: []Node{
		{Name: "alpha", Address: "10.1.1.31", Disk: "/dev/vg0/data"},
		{Name: "beta", Address: "10.1.1.32", Disk: "/dev/vg0/data"},
	}}
}

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"r0", true}, {"web-01", true}, {"db_1.main", true}, {"a+b", true}, {strings.Repeat("a", 63), true},
		{"", false}, {"all", false}, {"ALL", false}, {"common", false}, {"resource", false},
		{"-r0", false}, {".r0", false}, {"r 0", false}, {"r/0", false}, {"r0;", false},
		{"r{0}", false}, {strings.Repeat("a", 64), false}, {"räd", false}, {"r0\n", false},
	} {
		err := ValidName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, atomic.ErrInvalid) {
			t.Errorf("ValidName(%q): error does not wrap ErrInvalid: %v", tc.name, err)
		}
	}
}

func TestResourceValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Resource)
		want string
	}{
		{"ok", func(*Resource) {}, ""},
		{"bad name", func(r *Resource) { r.Name = "all" }, "resource name"},
		{"protocol", func(r *Resource) { r.Protocol = "D" }, "protocol"},
		{"port", func(r *Resource) { r.Port = 70000 }, "port"},
		{"minor", func(r *Resource) { r.Minor = intp(-1) }, "minor"},
		{"no nodes", func(r *Resource) { r.Nodes = nil }, "nodes"},
		{"dup node", func(r *Resource) { r.Nodes[1].Name = "alpha" }, "twice"},
		{"bad addr", func(r *Resource) { r.Nodes[0].Address = "alpha.example" }, "IP address"},
		{"dup addr", func(r *Resource) { r.Nodes[1].Address = "10.1.1.31" }, "two nodes"},
		{"rel disk", func(r *Resource) { r.Nodes[0].Disk = "vg0/data" }, "disk"},
		{"inject disk", func(r *Resource) { r.Nodes[0].Disk = "/dev/x; }" }, "disk"},
		{"cr disk", func(r *Resource) { r.Nodes[0].Disk = "/dev/\r" }, "disk"},
		{"nbsp disk", func(r *Resource) { r.Nodes[0].Disk = "/dev/a\u00a0b" }, "disk"},
		{"bad host", func(r *Resource) { r.Nodes[0].Name = "al pha" }, "node name"},
		{"half ids", func(r *Resource) { r.Nodes[0].NodeID = intp(0) }, "node_id"},
		{"verify alg", func(r *Resource) { r.VerifyAlg = "sha256; x" }, "verify_alg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := twoNodes()
			tc.edit(&r)
			err := r.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, atomic.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

func TestScanDirAndAllocate(t *testing.T) {
	u, err := ScanDir("../testdata/drbd/etc")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := u.Ports, []int{7789, 7793, 7801}; !reflect.DeepEqual(got, want) {
		t.Errorf("ports %v, want %v", got, want)
	}
	if got, want := u.Minors, []int{0, 4, 7}; !reflect.DeepEqual(got, want) {
		t.Errorf("minors %v, want %v", got, want)
	}
	if got, want := u.Names, []string{"r0", "web"}; !reflect.DeepEqual(got, want) {
		t.Errorf("names %v, want %v", got, want)
	}
	if len(u.Skipped) != 1 || filepath.Base(u.Skipped[0]) != "broken.res" {
		t.Errorf("skipped %v, want broken.res", u.Skipped)
	}
	r, err := u.Allocate(twoNodes(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Port != 7802 || *r.Minor != 8 {
		t.Errorf("allocated port %d minor %d, want 7802 and 8", r.Port, *r.Minor)
	}
	clash := twoNodes()
	clash.Port = 7793
	if _, err := u.Allocate(clash, 0); !errors.Is(err, atomic.ErrInvalid) {
		t.Errorf("port clash: %v", err)
	}
	clash = twoNodes()
	clash.Minor = intp(4)
	if _, err := u.Allocate(clash, 0); !errors.Is(err, atomic.ErrInvalid) {
		t.Errorf("minor clash: %v", err)
	}
	empty, err := ScanDir(filepath.Join(t.TempDir(), "none"))
	if err != nil {
		t.Fatal(err)
	}
	r, _ = empty.Allocate(twoNodes(), 7000)
	if r.Port != 7000 || *r.Minor != 0 {
		t.Errorf("empty dir: port %d minor %d, want 7000 and 0", r.Port, *r.Minor)
	}
}

func TestRenderParseRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Resource
	}{
		{"84", Resource{Name: "data", Protocol: "A", Port: 7790, Minor: intp(3), Nodes: twoNodes().Nodes}},
		{"9", Resource{Name: "d9", Protocol: "C", VerifyAlg: "sha256", Port: 7000, Minor: intp(10), Nodes: []Node{
			{Name: "a", Address: "192.168.0.1", Disk: "/dev/sdb", NodeID: intp(0)},
			{Name: "b", Address: "192.168.0.2", Disk: "/dev/sdb", MetaDisk: "/dev/sdc", NodeID: intp(1)},
			{Name: "c", Address: "fd00::3", Disk: "/dev/sdb", NodeID: intp(2)},
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := Render(tc.r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseResources(data)
			if err != nil {
				t.Fatalf("%v\n%s", err, data)
			}
			want := tc.r
			for i := range want.Nodes {
				if want.Nodes[i].MetaDisk == "" {
					want.Nodes[i].MetaDisk = "internal"
				}
			}
			if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v\n%s", got, want, data)
			}
			golden := filepath.Join("..", "testdata", "drbd", "render-"+tc.name+".res")
			if os.Getenv("BOFH_UPDATE_GOLDEN") != "" {
				os.WriteFile(golden, data, 0o644)
			}
			g, err := os.ReadFile(golden)
			if err != nil || string(g) != string(data) {
				t.Errorf("render differs from %s (BOFH_UPDATE_GOLDEN=1 to update):\n%s", golden, data)
			}
		})
	}
	if _, err := Render(twoNodes()); !errors.Is(err, atomic.ErrInvalid) {
		t.Errorf("render without port/minor: %v", err)
	}
}

func TestParseSyntax(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`resource a { on x { device minor 1; } }`, true},
		{`resource a { on x { device minor 1; } };`, true},
		{`global { usage-count "no"; } # comment`, true},
		{`resource a {`, false},
		{`}`, false},
		{`resource a { disk /dev/x }`, false},
		{`{ x; }`, false},
		{`x "unterminated`, false},
		{"x \"new\nline\";", false},
	} {
		_, err := Parse([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("Parse(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}

func FuzzRenderParse(f *testing.F) {
	f.Add("data", "alpha", "10.0.0.1", "/dev/sdb", "beta", "10.0.0.2", 7789, 0, "C")
	f.Add("x+y", "a.b", "fd00::1", "/dev/vg/x", "c", "::2", 1, 1048575, "A")
	f.Fuzz(func(t *testing.T, name, h1, a1, d1, h2, a2 string, port, minor int, proto string) {
		r := Resource{Name: name, Protocol: proto, Port: port, Minor: &minor, Nodes: []Node{
			{Name: h1, Address: a1, Disk: d1}, {Name: h2, Address: a2, Disk: d1}}}
		data, err := Render(r)
		if err != nil {
			return
		}
		got, err := ParseResources(data)
		if err != nil || len(got) != 1 {
			t.Fatalf("rendered config does not parse: %v\n%s", err, data)
		}
		if got[0].Name != name || got[0].Port != port || *got[0].Minor != minor || len(got[0].Nodes) != 2 || got[0].Nodes[1].Disk != d1 {
			t.Fatalf("round trip lost data: %+v\n%s", got[0], data)
		}
	})
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"r0.res", "web.res", "broken.res", "global_common.conf"} {
		if b, err := os.ReadFile(filepath.Join("..", "testdata", "drbd", "etc", p)); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := Parse(data); err != nil {
			return
		}
		if _, err := ParseResources(data); err != nil && strings.Contains(err.Error(), "panic") {
			t.Fatal(err)
		}
	})
}
