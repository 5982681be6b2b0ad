package xen

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseList(t *testing.T) {
	ds, err := ParseList(readTestdata(t, "xl-list-l.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Domain{
		{ID: 0, Name: "Domain-0", Type: "pv", VCPUs: 4, MemKiB: 768000},
		{ID: 2, Name: "web", UUID: "3b3c6a6e-2f5a-4d3e-9a8d-0d1c2b3a4f5e", Type: "pvh", VCPUs: 2, MemKiB: 2097152,
			Disks: []Disk{{Target: "/dev/vg0/web", Vdev: "xvda", Format: "raw", Access: "w"},
				{Target: "/dev/drbd1", Vdev: "xvdb", Format: "raw", Access: "r"}}},
	}
	if !reflect.DeepEqual(ds, want) {
		t.Fatalf("got  %+v\nwant %+v", ds, want)
	}
	for _, bad := range []string{"", "{}", `[{"config":{}}]`, `[{"domid":1,"config":{"c_info":{}}}]`, `[{"domid":-1,"config":{"c_info":{"name":"a"}}}]`} {
		if _, err := ParseList([]byte(bad)); err == nil {
			t.Errorf("ParseList(%q) accepted", bad)
		}
	}
	if ds, err := ParseList([]byte("[]")); err != nil || len(ds) != 0 {
		t.Errorf("empty list: %v %v", ds, err)
	}
}

func TestParseListState(t *testing.T) {
	data := readTestdata(t, "xl-list.txt")
	for _, tc := range []struct {
		name string
		want State
	}{
		{"Domain-0", StateRunning}, {"win", StateRunning}, {"linux", StatePaused}, {"idle", StateBlocked}, {"nosuch", StateAbsent},
	} {
		got, err := ParseListState(data, tc.name)
		if err != nil || got != tc.want {
			t.Errorf("%s: %q %v, want %q", tc.name, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "garbage\n", "Name ID Mem VCPUs State Time(s)\nweb 1 2 3 xx-- 1.0\n",
		"Name ID Mem VCPUs State Time(s)\nweb 1 2 3 q----- 1.0\n"} {
		if _, err := ParseListState([]byte(bad), "web"); err == nil {
			t.Errorf("ParseListState(%q) accepted", bad)
		}
	}
}

func FuzzParseList(f *testing.F) {
	f.Add(readTestdata(f, "xl-list-l.json"))
	f.Add([]byte(`[{"domid":1,"config":{"c_info":{"name":"a"}}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ds, err := ParseList(data)
		if err != nil {
			return
		}
		for _, d := range ds {
			if d.Name == "" || d.ID < 0 {
				t.Fatalf("accepted %+v", d)
			}
		}
	})
}

func FuzzParseListState(f *testing.F) {
	f.Add(readTestdata(f, "xl-list.txt"), "linux")
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		st, err := ParseListState(data, name)
		if err == nil && !strings.Contains("running blocked paused shutdown crashed dying absent", string(st)) {
			t.Fatalf("state %q", st)
		}
	})
}
