package drbd

import (
	"context"
	"encoding/xml"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bofhkit/bofh/atomic"
	lab "github.com/bofhkit/bofh/internal/capture"
	"github.com/bofhkit/bofh/run"
)

// classifiers are the package's drbdadm/drbdsetup error classifiers.
var classifiers = []lab.Classifier{
	{Class: "not-defined", Is: IsNotDefined},
	{Class: "not-up", Is: IsNotUp},
}

// errorClasses is what each err-* capture of testdata/capture/drbd must
// be classified as (nil: no class). The 8.4 module's answer to
// `drbdsetup status --json` has no class: ResourceStatus falls back to
// /proc/drbd on "unrecognized option" (TestCaptures runs it).
var errorClasses = map[string][]string{
	"err-create-md-while-up.txt":    nil, // "Device '7' is configured!"
	"err-dump-md-unclean.txt":       nil, // HasMetadata reads it as metadata present
	"err-role-down.txt":             {"not-up"},
	"err-sh-minor-undefined.txt":    {"not-defined"},
	"err-status-json-down.txt":      nil,
	"err-status-json-primary.txt":   nil,
	"err-status-json-secondary.txt": nil,
	"err-up-undefined.txt":          {"not-defined"},
}

var loopRe = regexp.MustCompile(`^/dev/loop\d+$`)

// TestCaptures parses every capture of testdata/capture/drbd (DRBD 8.4.11
// module, drbd-utils 9.22) and runs the package's queries over them.
func TestCaptures(t *testing.T) {
	d := lab.Open(t, "drbd")
	ctx := context.Background()

	// The resource as `drbdadm dump` prints it, read by ParseResources.
	var res Resource
	for _, name := range []string{"drbdadm-dump.txt", "drbdadm-dump-all.txt"} {
		t.Run(name, func(t *testing.T) {
			rs, err := ParseResources(d.Read(t, name).Stdout)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 1 {
				t.Fatalf("resources %+v", rs)
			}
			r := rs[0]
			if len(r.Nodes) == 2 && loopRe.MatchString(r.Nodes[0].Disk) {
				res = r
			}
			disk := ""
			if len(r.Nodes) > 0 {
				disk = r.Nodes[0].Disk
			}
			seven := 7
			want := Resource{Name: "capr0", Port: 7797, Minor: &seven, Nodes: []Node{
				{Name: "bofh-lab", Address: "127.0.0.1", Disk: disk, MetaDisk: "internal"},
				{Name: "capture-peer", Address: "127.0.0.2", Disk: disk, MetaDisk: "internal"}}}
			if diff := cmp.Diff(want, r); diff != "" || !loopRe.MatchString(disk) {
				t.Errorf("resource (-want +got):\n%s(disk %q)", diff, disk)
			}
		})
	}
	// dump-xml and drbdsetup show say the same.
	t.Run("drbdadm-dump-xml.txt", func(t *testing.T) {
		var x struct {
			Name  string `xml:"name,attr"`
			Hosts []struct {
				Name   string `xml:"name,attr"`
				Volume struct {
					Device struct {
						Minor int `xml:"minor,attr"`
					} `xml:"device"`
					Disk string `xml:"disk"`
					Meta string `xml:"meta-disk"`
				} `xml:"volume"`
				Address struct {
					Port int    `xml:"port,attr"`
					IP   string `xml:",chardata"`
				} `xml:"address"`
			} `xml:"host"`
		}
		if err := xml.Unmarshal(d.Read(t, "drbdadm-dump-xml.txt").Stdout, &x); err != nil {
			t.Fatal(err)
		}
		var got []Node
		for _, h := range x.Hosts {
			got = append(got, Node{Name: h.Name, Address: h.Address.IP, Disk: h.Volume.Disk, MetaDisk: h.Volume.Meta})
			if h.Volume.Device.Minor != 7 || h.Address.Port != res.Port {
				t.Errorf("host %s: minor %d port %d, want 7 %d", h.Name, h.Volume.Device.Minor, h.Address.Port, res.Port)
			}
		}
		if diff := cmp.Diff(res.Nodes, got); diff != "" || x.Name != res.Name {
			t.Errorf("dump-xml %q vs dump %q (-dump +xml):\n%s", x.Name, res.Name, diff)
		}
	})
	t.Run("drbdsetup-show.txt", func(t *testing.T) {
		root, err := Parse(d.Read(t, "drbdsetup-show.txt").Stdout)
		if len(res.Nodes) == 0 {
			t.Fatal("drbdadm dump did not parse")
		}
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		var walk func(path string, s *Section)
		walk = func(path string, s *Section) {
			for _, st := range s.Statements {
				got[path+st[0]] = strings.Join(st[1:], " ")
			}
			for _, sub := range s.Sections {
				walk(path+sub.Keyword+"/", sub)
			}
		}
		walk("", root)
		want := map[string]string{
			"resource/_remote_host/address":        "ipv4 127.0.0.2:7797",
			"resource/_this_host/address":          "ipv4 127.0.0.1:7797",
			"resource/_this_host/volume/device":    "minor 7",
			"resource/_this_host/volume/disk":      res.Nodes[0].Disk,
			"resource/_this_host/volume/meta-disk": "internal",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("drbdsetup show (-want +got):\n%s", diff)
		}
	})

	procs := map[string]*Proc{}
	for _, tc := range []struct {
		file                   string
		minor                  *ProcMinor
		up, connected, syncing bool
	}{
		{"proc-drbd-none.txt", nil, false, false, false},
		{"proc-drbd-down.txt", nil, false, false, false},
		{"proc-drbd-wfconnection-secondary.txt", &ProcMinor{Minor: 7, CState: "WFConnection", Role: "Secondary", PeerRole: "Unknown",
			DiskState: "Inconsistent", PeerDiskState: "DUnknown", Protocol: "C", OutOfSyncKiB: 65496}, true, false, false},
		{"proc-drbd-wfconnection-primary.txt", &ProcMinor{Minor: 7, CState: "WFConnection", Role: "Primary", PeerRole: "Unknown",
			DiskState: "UpToDate", PeerDiskState: "DUnknown", Protocol: "C", OutOfSyncKiB: 65496}, true, false, false},
		{"proc-drbd-standalone.txt", &ProcMinor{Minor: 7, CState: "StandAlone", Role: "Primary", PeerRole: "Unknown",
			DiskState: "UpToDate", PeerDiskState: "DUnknown", OutOfSyncKiB: 65496}, true, false, false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			p, err := ParseProc(d.Read(t, tc.file).Stdout)
			if err != nil {
				t.Fatal(err)
			}
			procs[tc.file] = p
			if p.Version != "8.4.11" {
				t.Errorf("version %q", p.Version)
			}
			m, ok := p.Get(7)
			if tc.minor == nil {
				if ok || len(p.Minors) != 0 {
					t.Errorf("minors %+v, want none", p.Minors)
				}
				return
			}
			if diff := cmp.Diff(*tc.minor, m); diff != "" {
				t.Errorf("minor 7 (-want +got):\n%s", diff)
			}
			st, ok := StatusFromProc("capr0", m)
			if ok != tc.up || st.Connected() != tc.connected || st.Syncing() != tc.syncing || st.Role != tc.minor.Role {
				t.Errorf("status %+v (%v): connected %v syncing %v", st, ok, st.Connected(), st.Syncing())
			}
		})
	}

	// drbdadm status (8.4 format) says what /proc/drbd says.
	for _, tc := range []struct{ file, proc string }{
		{"drbdadm-status-secondary.txt", "proc-drbd-wfconnection-secondary.txt"},
		{"drbdadm-status-primary.txt", "proc-drbd-wfconnection-primary.txt"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			out := string(d.Read(t, tc.file).Stdout)
			m, _ := procs[tc.proc].Get(7)
			want := "capr0 role:" + m.Role + "\n  disk:" + m.DiskState + "\n  peer connection:Connecting\n\n"
			if diff := cmp.Diff(want, out); diff != "" {
				t.Errorf("drbdadm status vs /proc/drbd (-proc +status):\n%s", diff)
			}
		})
	}

	// State: drbdadm role + cstate of the primary, and role of a resource
	// that is down.
	t.Run("State", func(t *testing.T) {
		role, cstate := d.Read(t, "drbdadm-role.txt"), d.Read(t, "drbdadm-cstate.txt")
		f := run.NewFake(t)
		f.Expect("drbdadm", "role", "capr0").Out(string(role.Stdout))
		f.Expect("drbdadm", "cstate", "capr0").Out(string(cstate.Stdout))
		st, err := State(ctx, f, "capr0")
		f.Done()
		if diff := cmp.Diff(ResState{Up: true, Role: "Primary", ConnState: "WFConnection"}, st); err != nil || diff != "" {
			t.Errorf("State (-want +got):\n%s%v", diff, err)
		}
		down := d.Read(t, "err-role-down.txt")
		f = run.NewFake(t)
		f.Expect("drbdadm", "role", "capr0").Out(string(down.Stdout)).Fail(down.Exit, string(down.Stderr))
		st, err = State(ctx, f, "capr0")
		f.Done()
		if err != nil || st.Up {
			t.Errorf("State of a down resource: %+v, %v", st, err)
		}
	})
	t.Run("drbdadm-dstate.txt", func(t *testing.T) {
		m, _ := procs["proc-drbd-wfconnection-primary.txt"].Get(7)
		if got, want := string(d.Read(t, "drbdadm-dstate.txt").Stdout), m.DiskState+"/"+m.PeerDiskState+"\n"; got != want {
			t.Errorf("dstate %q, /proc/drbd %q", got, want)
		}
	})

	// ResourceStatus on 8.4: --json fails, sh-minor, then /proc/drbd.
	minor := d.Read(t, "drbdadm-sh-minor.txt")
	for _, tc := range []struct {
		json, proc string
		role       string // "" for not up
	}{
		{"err-status-json-secondary.txt", "proc-drbd-wfconnection-secondary.txt", "Secondary"},
		{"err-status-json-primary.txt", "proc-drbd-wfconnection-primary.txt", "Primary"},
		{"err-status-json-down.txt", "proc-drbd-down.txt", ""},
	} {
		t.Run("ResourceStatus/"+tc.json, func(t *testing.T) {
			j, p := d.Read(t, tc.json), d.Read(t, tc.proc)
			f := run.NewFake(t)
			f.Expect("drbdsetup", "status", "--json", "capr0").Out(string(j.Stdout)).Fail(j.Exit, string(j.Stderr))
			f.Expect("drbdadm", "sh-minor", "capr0").Out(string(minor.Stdout))
			f.Expect("cat", "/proc/drbd").Out(string(p.Stdout))
			st, err := ResourceStatus(ctx, f, "capr0")
			f.Done()
			if tc.role == "" {
				if !errors.Is(err, ErrNotUp) {
					t.Errorf("status of a down resource: %+v, %v; want ErrNotUp", st, err)
				}
				return
			}
			if err != nil || st.Name != "capr0" || st.Role != tc.role || st.Connected() || st.Syncing() {
				t.Errorf("status %+v, %v", st, err)
			}
		})
	}
	t.Run("ResourceStatus/err-sh-minor-undefined.txt", func(t *testing.T) {
		j, u := d.Read(t, "err-status-json-down.txt"), d.Read(t, "err-sh-minor-undefined.txt")
		f := run.NewFake(t)
		f.Expect("drbdsetup", "status", "--json", "nosuchres").Out(string(j.Stdout)).Fail(j.Exit, string(j.Stderr))
		f.Expect("drbdadm", "sh-minor", "nosuchres").Out(string(u.Stdout)).Fail(u.Exit, string(u.Stderr))
		_, err := ResourceStatus(ctx, f, "nosuchres")
		f.Done()
		if !errors.Is(err, atomic.ErrInvalid) {
			t.Errorf("status of an undefined resource: %v, want ErrInvalid", err)
		}
	})

	t.Run("BackingDisk", func(t *testing.T) {
		c := d.Read(t, "drbdadm-sh-ll-dev.txt")
		f := run.NewFake(t)
		f.Expect("drbdadm", "sh-ll-dev", "capr0").Out(string(c.Stdout))
		disk, err := BackingDisk(ctx, f, "capr0")
		f.Done()
		if err != nil || len(res.Nodes) == 0 || disk != res.Nodes[0].Disk {
			t.Errorf("BackingDisk %q, %v; dump says %+v", disk, err, res.Nodes)
		}
	})
	t.Run("HasMetadata", func(t *testing.T) {
		c := d.Read(t, "err-dump-md-unclean.txt")
		f := run.NewFake(t)
		f.Expect("drbdadm", "dump-md", "capr0").Out(string(c.Stdout)).Fail(c.Exit, string(c.Stderr))
		ok, err := HasMetadata(ctx, f, "capr0")
		f.Done()
		if !ok || err != nil {
			t.Errorf("HasMetadata after down: %v, %v; want true", ok, err)
		}
	})

	d.CheckErrors(t, errorClasses, classifiers)
}
