package raid

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	lab "github.com/bofhkit/bofh/internal/capture"
	"github.com/bofhkit/bofh/run"
)

// classifiers are the package's mdadm error classifiers.
var classifiers = []lab.Classifier{
	{Class: "not-active", Is: IsNotActive},
	{Class: "no-superblock", Is: IsNoSuperblock},
	{Class: "busy", Is: IsBusy},
}

// errorClasses is what each err-* capture of testdata/capture/raid must
// be classified as (nil: no class).
var errorClasses = map[string][]string{
	"err-create-member-in-use.txt":   {"busy"},          // "cannot open /dev/loop7: Device or resource busy"
	"err-assemble-no-superblock.txt": {"no-superblock"}, // "… has no superblock - assembly aborted"
	"err-create-too-few-devices.txt": nil,
	"err-detail-not-md.txt":          nil, // a device, but no md device: not an array that stopped
	"err-detail-stopped.txt":         {"not-active"},
	"err-detail-stopped-node.txt":    {"not-active"},
	"err-examine-no-superblock.txt":  {"no-superblock"},
	"err-stop-missing.txt":           {"not-active"},
}

// The arrays of the capture, as ParseDetail must read them (mdstat names
// the raid1 md127 and the raid5 md126).
var (
	raid1Clean = []Member{{Device: "/dev/loop7", Role: "0", Slot: 0}, {Device: "/dev/loop8", Role: "1", Slot: 1}}
	raid5Clean = []Member{{Device: "/dev/loop9", Role: "0", Slot: 0}, {Device: "/dev/loop10", Role: "1", Slot: 1}, {Device: "/dev/loop11", Role: "2", Slot: 2}}
)

const (
	raid1UUID = "fd77b6f3:f92e2446:890158a3:dedfb92e"
	raid5UUID = "58e2085a:050261ac:9397de96:82430814"
)

// TestCaptures parses every capture of testdata/capture/raid and
// classifies every error capture.
func TestCaptures(t *testing.T) {
	d := lab.Open(t, "raid")

	details := []struct {
		file, dev, level, uuid string
		n                      int
		members                []Member
		degraded               bool
	}{
		{"detail-raid1-resyncing.txt", "/dev/md127", "raid1", raid1UUID, 2, raid1Clean, false},
		{"detail-raid1-clean.txt", "/dev/md127", "raid1", raid1UUID, 2, raid1Clean, false},
		{"detail-raid1-degraded.txt", "/dev/md127", "raid1", raid1UUID, 2, raid1Clean[:1], true},
		{"detail-raid5-resyncing.txt", "/dev/md126", "raid5", raid5UUID, 3, raid5Clean, false},
		{"detail-raid5-clean.txt", "/dev/md126", "raid5", raid5UUID, 3, raid5Clean, false},
		// the failed member is exported as a spare; only mdstat says (F)
		{"detail-raid5-degraded-faulty.txt", "/dev/md126", "raid5", raid5UUID, 3, []Member{raid5Clean[0], raid5Clean[1],
			{Device: "/dev/loop11", Role: "spare", Slot: -1, Spare: true}}, true},
	}
	parsed := map[string]*Array{}
	for _, tc := range details {
		t.Run(tc.file, func(t *testing.T) {
			a, err := ParseDetail(tc.dev, d.Read(t, tc.file).Stdout)
			if err != nil {
				t.Fatal(err)
			}
			parsed[tc.file] = a
			name := "bofh-lab:caprd1"
			if tc.level == "raid5" {
				name = "bofh-lab:caprd5"
			}
			if a.Level != tc.level || a.RaidDevices != tc.n || a.Metadata != "1.2" || a.UUID != tc.uuid || a.Name != name {
				t.Errorf("got level %q n %d metadata %q uuid %q name %q", a.Level, a.RaidDevices, a.Metadata, a.UUID, a.Name)
			}
			if diff := cmp.Diff(tc.members, a.Members); diff != "" {
				t.Errorf("members (-want +got):\n%s", diff)
			}
			if a.Degraded != tc.degraded {
				t.Errorf("degraded %v, want %v", a.Degraded, tc.degraded)
			}
		})
	}

	// mdadm's own human-readable --detail must agree with what ParseDetail
	// took from the --export of the same moment.
	for _, tc := range []struct{ human, export, state string }{
		{"detail-raid1-resyncing-human.txt", "detail-raid1-resyncing.txt", "clean, resyncing"},
		{"detail-raid1-degraded-human.txt", "detail-raid1-degraded.txt", "clean, degraded"},
		{"detail-raid5-clean-human.txt", "detail-raid5-clean.txt", "clean"},
	} {
		t.Run(tc.human, func(t *testing.T) {
			h := humanDetail(t, d.Read(t, tc.human).Stdout)
			a := parsed[tc.export]
			if a == nil {
				t.Fatalf("%s did not parse", tc.export)
			}
			got := humanView{Level: a.Level, RaidDevices: a.RaidDevices, UUID: a.UUID, Name: a.Name, Active: a.Active(), State: tc.state}
			if diff := cmp.Diff(got, h); diff != "" {
				t.Errorf("human --detail vs ParseDetail of --export (-export +human):\n%s", diff)
			}
			if strings.Contains(h.State, "degraded") != a.Degraded {
				t.Errorf("human state %q, ParseDetail degraded %v", h.State, a.Degraded)
			}
		})
	}

	mdstats := []struct {
		file   string
		arrays []StatArray
	}{
		{"mdstat-empty.txt", []StatArray{}},
		{"mdstat-resyncing.txt", []StatArray{
			{Name: "md126", State: "active", Level: "raid5",
				Members: []StatMember{{Name: "loop11", Index: 3}, {Name: "loop10", Index: 1}, {Name: "loop9", Index: 0}},
				Blocks:  126976, RaidDevices: 3, InSync: 2, Status: "UU_",
				Sync: &Progress{Device: "/dev/md126", Action: "recovery", Percent: 7.2, Done: 4992, Total: 63488, Speed: 4992, Finish: 6e9}},
			{Name: "md127", State: "active", Level: "raid1",
				Members: []StatMember{{Name: "loop8", Index: 1}, {Name: "loop7", Index: 0}},
				Blocks:  64512, RaidDevices: 2, InSync: 2, Status: "UU",
				Sync: &Progress{Device: "/dev/md127", Action: "resync", Percent: 12.5, Done: 8320, Total: 64512, Speed: 8320, Finish: 6e9}}}},
		{"mdstat-clean.txt", []StatArray{
			{Name: "md126", State: "active", Level: "raid5",
				Members: []StatMember{{Name: "loop11", Index: 3}, {Name: "loop10", Index: 1}, {Name: "loop9", Index: 0}},
				Blocks:  126976, RaidDevices: 3, InSync: 3, Status: "UUU"},
			{Name: "md127", State: "active", Level: "raid1",
				Members: []StatMember{{Name: "loop8", Index: 1}, {Name: "loop7", Index: 0}},
				Blocks:  64512, RaidDevices: 2, InSync: 2, Status: "UU"}}},
		{"mdstat-degraded.txt", []StatArray{
			{Name: "md126", State: "active", Level: "raid5",
				Members: []StatMember{{Name: "loop11", Index: 3, Faulty: true}, {Name: "loop10", Index: 1}, {Name: "loop9", Index: 0}},
				Blocks:  126976, RaidDevices: 3, InSync: 2, Status: "UU_"},
			{Name: "md127", State: "active", Level: "raid1",
				Members: []StatMember{{Name: "loop7", Index: 0}},
				Blocks:  64512, RaidDevices: 2, InSync: 1, Status: "U_"}}},
	}
	stats := map[string]*MDStat{}
	for _, tc := range mdstats {
		t.Run(tc.file, func(t *testing.T) {
			st, err := ParseMDStat(d.Read(t, tc.file).Stdout)
			if err != nil {
				t.Fatal(err)
			}
			stats[tc.file] = st
			if diff := cmp.Diff([]string{"raid6", "raid5", "raid4", "raid0", "raid1", "raid10"}, st.Personalities); diff != "" {
				t.Errorf("personalities (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.arrays, st.Arrays); diff != "" {
				t.Errorf("arrays (-want +got):\n%s", diff)
			}
		})
	}

	// --detail --export merged with the mdstat of the same moment.
	for _, tc := range []struct {
		detail, stat       string
		faulty, rebuilding string
		degraded           bool
		action             string
		active             []string
	}{
		{"detail-raid1-resyncing.txt", "mdstat-resyncing.txt", "", "", false, "resync", []string{"/dev/loop7", "/dev/loop8"}},
		{"detail-raid5-resyncing.txt", "mdstat-resyncing.txt", "", "/dev/loop11", true, "recovery", []string{"/dev/loop9", "/dev/loop10", "/dev/loop11"}},
		{"detail-raid5-clean.txt", "mdstat-clean.txt", "", "", false, "", []string{"/dev/loop9", "/dev/loop10", "/dev/loop11"}},
		{"detail-raid5-degraded-faulty.txt", "mdstat-degraded.txt", "/dev/loop11", "", true, "", []string{"/dev/loop9", "/dev/loop10"}},
		{"detail-raid1-degraded.txt", "mdstat-degraded.txt", "", "", true, "", []string{"/dev/loop7"}},
	} {
		t.Run("merge/"+tc.detail, func(t *testing.T) {
			a, st := parsed[tc.detail], stats[tc.stat]
			if a == nil || st == nil {
				t.Fatalf("%s or %s did not parse", tc.detail, tc.stat)
			}
			c := *a
			c.Members = slices.Clone(a.Members)
			mergeStat(&c, st)
			for _, m := range c.Members {
				if m.Faulty != (m.Device == tc.faulty) || m.Rebuilding != (m.Device == tc.rebuilding) {
					t.Errorf("member %+v: want faulty=%q rebuilding=%q", m, tc.faulty, tc.rebuilding)
				}
				if m.Faulty && m.Spare {
					t.Errorf("member %+v both faulty and spare", m)
				}
			}
			if c.Degraded != tc.degraded || c.State != "active" {
				t.Errorf("degraded %v state %q, want %v active", c.Degraded, c.State, tc.degraded)
			}
			if diff := cmp.Diff(tc.active, c.Active()); diff != "" {
				t.Errorf("active (-want +got):\n%s", diff)
			}
			action := ""
			if c.Sync != nil {
				action = c.Sync.Action
			}
			if action != tc.action {
				t.Errorf("sync %+v, want action %q", c.Sync, tc.action)
			}
		})
	}

	t.Run("examine-member.txt", func(t *testing.T) {
		sb := ParseExamine(d.Read(t, "examine-member.txt").Stdout)
		want := &Superblock{Level: "raid1", UUID: raid1UUID, Name: "bofh-lab:caprd1"}
		if diff := cmp.Diff(want, sb); diff != "" {
			t.Errorf("superblock (-want +got):\n%s", diff)
		}
	})

	// `mdadm --detail --scan` names the arrays with the UUIDs and names
	// ParseDetail read.
	t.Run("detail-scan.txt", func(t *testing.T) {
		got := string(d.Read(t, "detail-scan.txt").Stdout)
		want := "ARRAY /dev/md/caprd1 metadata=1.2 name=bofh-lab:caprd1 UUID=" + raid1UUID + "\n" +
			"ARRAY /dev/md/caprd5 metadata=1.2 name=bofh-lab:caprd5 UUID=" + raid5UUID + "\n"
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("detail --scan (-want +got):\n%s", diff)
		}
	})

	d.CheckErrors(t, errorClasses, classifiers)

	// Detail reports a stopped array as ErrNotActive, and nothing else.
	for _, name := range d.Errors() {
		if !strings.HasPrefix(name, "err-detail-") {
			continue
		}
		t.Run("Detail/"+name, func(t *testing.T) {
			c := d.Read(t, name)
			f := run.NewFake(t)
			f.Expect("mdadm", "--detail", "--export", "/dev/md/x").Out(string(c.Stdout)).Fail(c.Exit, string(c.Stderr))
			_, err := Detail(context.Background(), f, "/dev/md/x")
			f.Done()
			if want := slices.Contains(errorClasses[name], "not-active"); errors.Is(err, ErrNotActive) != want {
				t.Errorf("Detail: %v; want ErrNotActive %v", err, want)
			}
		})
	}
}

// humanView is what the test reads from mdadm's human --detail.
type humanView struct {
	Level       string
	RaidDevices int
	UUID        string
	Name        string
	Active      []string
	State       string
}

var (
	humanField  = regexp.MustCompile(`(?m)^\s*([A-Za-z ]+?) : (.*?)\s*$`)
	humanMember = regexp.MustCompile(`(?m)^\s+\d+\s+\d+\s+\d+\s+\d+\s+active sync\s+(\S+)$`)
)

func humanDetail(t *testing.T, b []byte) humanView {
	t.Helper()
	f := map[string]string{}
	for _, m := range humanField.FindAllStringSubmatch(string(b), -1) {
		f[m[1]] = m[2]
	}
	n, err := strconv.Atoi(f["Raid Devices"])
	if err != nil {
		t.Fatalf("Raid Devices %q: %v", f["Raid Devices"], err)
	}
	name, _, _ := strings.Cut(f["Name"], " ")
	h := humanView{Level: f["Raid Level"], RaidDevices: n, UUID: f["UUID"], Name: name, State: f["State"]}
	for _, m := range humanMember.FindAllStringSubmatch(string(b), -1) {
		h.Active = append(h.Active, m[1])
	}
	return h
}
