package lvm

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/bofhkit/bofh/run"
)

// encodeReport renders rep the way `lvm fullreport --reportformat json`
// does with ReportArgs' fields: one group per VG, orphan PVs in a group
// without a VG.
func encodeReport(rep *Report) string {
	type row = map[string]string
	var groups []map[string][]row
	str := func(n int64) string { return strconv.FormatInt(n, 10) }
	pvRow := func(p PV) row {
		return row{"pv_name": p.Name, "pv_uuid": p.UUID, "pv_attr": p.Attr, "pv_size": str(p.Size), "pv_free": str(p.Free),
			"dev_size": str(p.DevSize), "pe_start": str(p.PEStart), "pv_pe_count": str(p.PECount),
			"pv_pe_alloc_count": str(p.PEAlloc), "vg_name": p.VG, "pv_tags": strings.Join(p.Tags, ",")}
	}
	for _, vg := range rep.VGs {
		g := map[string][]row{"vg": {{"vg_name": vg.Name, "vg_uuid": vg.UUID, "vg_attr": "wz--n-", "vg_size": str(vg.Size),
			"vg_free": str(vg.Free), "vg_extent_size": str(vg.ExtentSize), "vg_extent_count": str(vg.ExtentCount),
			"vg_free_count": str(vg.FreeCount), "pv_count": str(vg.PVCount), "lv_count": str(vg.LVCount), "snap_count": "0",
			"vg_tags": strings.Join(vg.Tags, ",")}}, "pv": {}, "lv": {}, "pvseg": {}, "seg": {}}
		for _, p := range rep.PVsOf(vg.Name) {
			g["pv"] = append(g["pv"], pvRow(p))
		}
		for _, l := range rep.LVsOf(vg.Name) {
			act := ""
			if l.Active {
				act = "active"
			}
			layout := map[string]string{TypeLinear: "linear", TypeThinPool: "thin,pool", TypeThin: "thin,sparse", TypeSnapshot: "linear"}[l.Type]
			attr := map[string]string{TypeLinear: "-wi-a-----", TypeThinPool: "twi-aotz--", TypeThin: "Vwi-a-tz--", TypeSnapshot: "swi-a-s---"}[l.Type]
			g["lv"] = append(g["lv"], row{"lv_name": l.Name, "vg_name": l.VG, "lv_uuid": l.UUID, "lv_path": "/dev/" + l.VG + "/" + l.Name,
				"lv_attr": attr, "lv_layout": layout, "lv_size": str(l.Size), "pool_lv": l.Pool, "origin": l.Origin,
				"lv_active": act, "lv_tags": strings.Join(l.Tags, ",")})
		}
		groups = append(groups, g)
	}
	var orphans []row
	for _, p := range rep.PVs {
		if p.VG == "" {
			orphans = append(orphans, pvRow(p))
		}
	}
	if len(orphans) > 0 {
		groups = append(groups, map[string][]row{"pv": orphans, "pvseg": {}})
	}
	b, _ := json.Marshal(map[string]any{"report": groups})
	return string(b)
}

// sim is a small in-memory LVM that answers the commands the steps run.
// It records every command (the counting runner of the benchmarks).
type sim struct {
	mu    sync.Mutex
	rep   Report
	calls [][]string
	n     int
	// fail makes the command whose argv starts with the prefix fail.
	fail []string
}

const simExtent = 4 << 20

func newSim(devs ...string) *sim {
	s := &sim{}
	for _, d := range devs {
		s.rep.PVs = append(s.rep.PVs, PV{Name: d, Attr: "---", Size: 128 << 20, DevSize: 128 << 20, PEStart: 1 << 20, UUID: "uuid-" + d})
	}
	s.rep.PVs = s.rep.PVs[:0] // devices start blank; keep the list for reference
	return s
}

func (s *sim) uuid() string { s.n++; return fmt.Sprintf("U%03d", s.n) }

func (s *sim) fixup() {
	for i := range s.rep.VGs {
		vg := &s.rep.VGs[i]
		var ext, alloc int64
		pvs := 0
		for j := range s.rep.PVs {
			if s.rep.PVs[j].VG == vg.Name {
				ext += 31
				pvs++
			}
		}
		lvs := 0
		for _, l := range s.rep.LVsOf(vg.Name) {
			lvs++
			if l.Type != TypeThin {
				alloc += l.Size / simExtent
			}
		}
		vg.ExtentSize, vg.ExtentCount, vg.FreeCount = simExtent, ext, ext-alloc
		vg.Size, vg.Free, vg.PVCount, vg.LVCount = ext*simExtent, (ext-alloc)*simExtent, int64(pvs), int64(lvs)
	}
}

func (s *sim) Run(_ context.Context, c run.Cmd) (run.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, c.Argv)
	fail := func(code int, msg string) (run.Result, error) {
		res := run.Result{Stderr: []byte(msg), ExitCode: code}
		return res, &run.Error{Argv: c.Argv, ExitCode: code, Stderr: msg}
	}
	for _, f := range s.fail {
		if strings.HasPrefix(strings.Join(c.Argv, " "), f) {
			return fail(5, "  injected failure")
		}
	}
	a := c.Argv
	pos := positional(a[1:])
	lvOf := func(full string) *LV {
		vg, name, _ := strings.Cut(full, "/")
		return s.rep.LV(vg, name)
	}
	tags := func() []string {
		var t []string
		for i, x := range a {
			if x == "--addtag" {
				t = append(t, a[i+1])
			}
		}
		return t
	}
	flag := func(f string) string {
		if i := slices.Index(a, f); i >= 0 && i+1 < len(a) {
			return a[i+1]
		}
		return ""
	}
	extents := func(cur int64) int64 {
		if l := flag("-l"); l != "" {
			n, _ := strconv.ParseInt(l, 10, 64)
			return n
		}
		b, _ := strconv.ParseInt(strings.TrimSuffix(flag("-L"), "b"), 10, 64)
		return (b + simExtent - 1) / simExtent
	}
	defer s.fixup()
	switch a[0] {
	case "lvm":
		if len(pos) > 1 {
			if s.rep.VG(pos[1]) == nil {
				return fail(5, fmt.Sprintf("  Volume group %q not found\n  Cannot process volume group %s", pos[1], pos[1]))
			}
			sub := &Report{VGs: []VG{*s.rep.VG(pos[1])}, PVs: s.rep.PVsOf(pos[1]), LVs: s.rep.LVsOf(pos[1])}
			return run.Result{Stdout: []byte(encodeReport(sub))}, nil
		}
		return run.Result{Stdout: []byte(encodeReport(&s.rep))}, nil
	case "pvcreate":
		d := pos[len(pos)-1]
		s.rep.PVs = append(s.rep.PVs, PV{Name: d, UUID: s.uuid(), Attr: "---", Size: 128 << 20})
	case "pvremove":
		for _, d := range pos {
			s.rep.PVs = slices.DeleteFunc(s.rep.PVs, func(p PV) bool { return p.Name == d })
		}
	case "vgcreate", "vgextend":
		if a[0] == "vgcreate" {
			if s.rep.VG(pos[0]) != nil {
				return fail(5, "  A volume group called "+pos[0]+" already exists.")
			}
			s.rep.VGs = append(s.rep.VGs, VG{Name: pos[0], UUID: s.uuid(), Tags: tags()})
		}
		for _, d := range pos[1:] {
			if p := s.rep.PV(d); p != nil {
				p.VG = pos[0]
			} else {
				s.rep.PVs = append(s.rep.PVs, PV{Name: d, UUID: s.uuid(), VG: pos[0]})
			}
		}
	case "vgreduce":
		for _, d := range pos[1:] {
			s.rep.PV(d).VG = ""
		}
	case "vgremove":
		s.rep.VGs = slices.DeleteFunc(s.rep.VGs, func(v VG) bool { return v.Name == pos[0] })
		for i := range s.rep.PVs {
			if s.rep.PVs[i].VG == pos[0] {
				s.rep.PVs[i].VG = ""
			}
		}
	case "lvcreate":
		name, target := flag("-n"), pos[0]
		vg, origin, _ := strings.Cut(target, "/")
		if s.rep.LV(vg, name) != nil {
			return fail(5, fmt.Sprintf("  Logical Volume %q already exists in volume group %q", name, vg))
		}
		lv := LV{VG: vg, Name: name, UUID: s.uuid(), Tags: tags(), Active: true, Type: TypeLinear, Size: extents(0) * simExtent}
		switch {
		case flag("--type") == TypeThinPool:
			lv.Type = TypeThinPool
		case flag("--type") == TypeThin:
			lv.Type, lv.Pool = TypeThin, flag("--thinpool")
			b, _ := strconv.ParseInt(strings.TrimSuffix(flag("-V"), "b"), 10, 64)
			lv.Size = b
		case slices.Contains(a, "-s"):
			lv.Type, lv.Origin = TypeSnapshot, origin
		}
		s.rep.LVs = append(s.rep.LVs, lv)
	case "lvremove":
		for _, full := range pos {
			if lvOf(full) == nil {
				return fail(5, fmt.Sprintf("  Failed to find logical volume %q", full))
			}
			s.rep.LVs = slices.DeleteFunc(s.rep.LVs, func(l LV) bool { return l.FullName() == full })
		}
	case "lvrename":
		l := s.rep.LV(pos[0], pos[1])
		if l == nil {
			return fail(5, fmt.Sprintf("  Existing logical volume %q not found in volume group %q", pos[1], pos[0]))
		}
		l.Name = pos[2]
	case "lvresize":
		l := lvOf(pos[0])
		l.Size = extents(l.Size/simExtent) * simExtent
	case "lvchange":
		l := lvOf(pos[0])
		switch {
		case slices.Contains(a, "-ay"):
			l.Active = true
		case slices.Contains(a, "-an"):
			l.Active = false
		case flag("--addtag") != "":
			l.Tags = append(l.Tags, flag("--addtag"))
		case flag("--deltag") != "":
			l.Tags = slices.DeleteFunc(l.Tags, func(t string) bool { return t == flag("--deltag") })
		}
	case "lvconvert":
		lv := lvOf(pos[0])
		s.rep.LVs = slices.DeleteFunc(s.rep.LVs, func(l LV) bool { return l.UUID == lv.UUID })
	default:
		return fail(127, "unknown command")
	}
	return run.Result{}, nil
}

// positional returns the arguments that are not options or option values.
func positional(args []string) []string {
	withValue := map[string]bool{"-n": true, "-L": true, "-l": true, "-V": true, "-s": false, "--type": true,
		"--thinpool": true, "--addtag": true, "--deltag": true, "--uuid": true, "--reportformat": true,
		"--units": true, "--configreport": true, "-o": true}
	var out []string
	for i := 0; i < len(args); i++ {
		if strings.HasPrefix(args[i], "-") {
			if withValue[args[i]] {
				i++
			}
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// mutations returns the recorded commands that are not queries.
func (s *sim) mutations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.calls {
		if c[0] != "lvm" {
			out = append(out, strings.Join(c, " "))
		}
	}
	return out
}

func (s *sim) reset() {
	s.mu.Lock()
	s.calls = nil
	s.mu.Unlock()
}
