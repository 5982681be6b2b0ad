package lvm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/bofhkit/bofh/run"
)

// PV is a physical volume as lvm fullreport describes it.
type PV struct {
	Name    string   `json:"name"` // device path, e.g. /dev/loop0
	UUID    string   `json:"uuid"`
	VG      string   `json:"vg,omitempty"` // empty for an orphan PV
	Attr    string   `json:"attr"`
	Size    int64    `json:"size"` // bytes
	Free    int64    `json:"free"` // bytes
	DevSize int64    `json:"dev_size"`
	PEStart int64    `json:"pe_start"`
	PECount int64    `json:"pe_count"`
	PEAlloc int64    `json:"pe_alloc_count"`
	Tags    []string `json:"tags,omitempty"`
}

// VG is a volume group.
type VG struct {
	Name        string   `json:"name"`
	UUID        string   `json:"uuid"`
	Attr        string   `json:"attr"`
	Size        int64    `json:"size"`
	Free        int64    `json:"free"`
	ExtentSize  int64    `json:"extent_size"`
	ExtentCount int64    `json:"extent_count"`
	FreeCount   int64    `json:"free_count"`
	PVCount     int64    `json:"pv_count"`
	LVCount     int64    `json:"lv_count"`
	SnapCount   int64    `json:"snap_count"`
	Tags        []string `json:"tags,omitempty"`
}

// LV is a logical volume. Type says what it is: linear, striped, thin-pool,
// thin, snapshot (a thick COW snapshot) or another segment type LVM reports.
type LV struct {
	VG              string   `json:"vg"`
	Name            string   `json:"name"`
	UUID            string   `json:"uuid"`
	Path            string   `json:"path,omitempty"` // /dev/vg/lv (empty for hidden LVs)
	DMPath          string   `json:"dm_path,omitempty"`
	Attr            string   `json:"attr"`
	Type            string   `json:"type"`
	Layout          []string `json:"layout,omitempty"`
	Role            []string `json:"role,omitempty"`
	Size            int64    `json:"size"` // bytes; the virtual size of a thin LV
	Extents         int64    `json:"extents,omitempty"`
	Pool            string   `json:"pool,omitempty"`   // thin pool of a thin LV
	Origin          string   `json:"origin,omitempty"` // origin of a snapshot
	DataPercent     *float64 `json:"data_percent,omitempty"`
	MetadataPercent *float64 `json:"metadata_percent,omitempty"`
	Active          bool     `json:"active"`
	Merging         bool     `json:"merging,omitempty"`
	Tags            []string `json:"tags,omitempty"`
}

// FullName returns "vg/lv".
func (l *LV) FullName() string { return l.VG + "/" + l.Name }

// Report is one `lvm fullreport`: every VG with its PVs and LVs, and the
// orphan PVs that belong to no VG.
type Report struct {
	VGs []VG `json:"vgs"`
	PVs []PV `json:"pvs"`
	LVs []LV `json:"lvs"`
}

// VG returns the named volume group, or nil.
func (r *Report) VG(name string) *VG {
	for i := range r.VGs {
		if r.VGs[i].Name == name {
			return &r.VGs[i]
		}
	}
	return nil
}

// LV returns vg/name, or nil.
func (r *Report) LV(vg, name string) *LV {
	for i := range r.LVs {
		if r.LVs[i].VG == vg && r.LVs[i].Name == name {
			return &r.LVs[i]
		}
	}
	return nil
}

// PV returns the PV on device dev (compared as given and as resolved by
// the caller), or nil.
func (r *Report) PV(dev string) *PV {
	for i := range r.PVs {
		if r.PVs[i].Name == dev {
			return &r.PVs[i]
		}
	}
	return nil
}

// PVsOf returns the PVs of a volume group.
func (r *Report) PVsOf(vg string) []PV {
	var out []PV
	for _, p := range r.PVs {
		if p.VG == vg {
			out = append(out, p)
		}
	}
	return out
}

// LVsOf returns the LVs of a volume group.
func (r *Report) LVsOf(vg string) []LV {
	var out []LV
	for _, l := range r.LVs {
		if l.VG == vg {
			out = append(out, l)
		}
	}
	return out
}

// Dependents returns the LVs that need vg/name: thin LVs in it (a thin
// pool) and snapshots of it (an origin).
func (r *Report) Dependents(vg, name string) []LV {
	var out []LV
	for _, l := range r.LVs {
		if l.VG == vg && l.Name != name && (l.Pool == name || l.Origin == name) {
			out = append(out, l)
		}
	}
	return out
}

// Report fields asked for, per sub-report. Keep in sync with decode below.
var (
	vgFields = []string{"vg_name", "vg_uuid", "vg_attr", "vg_size", "vg_free", "vg_extent_size",
		"vg_extent_count", "vg_free_count", "pv_count", "lv_count", "snap_count", "vg_tags"}
	pvFields = []string{"pv_name", "pv_uuid", "pv_attr", "pv_size", "pv_free", "dev_size", "pe_start",
		"pv_pe_count", "pv_pe_alloc_count", "vg_name", "pv_tags"}
	lvFields = []string{"lv_name", "vg_name", "lv_uuid", "lv_path", "lv_dm_path", "lv_attr", "lv_layout",
		"lv_role", "lv_size", "pool_lv", "origin", "data_percent", "metadata_percent", "lv_active",
		"lv_merging", "lv_tags"}
)

// ReportArgs is the argv of the one query bofh makes to learn the state of
// LVM: `lvm fullreport` as JSON in bytes, with the fields bofh decodes, for
// the named VGs (all when none).
func ReportArgs(vgs ...string) []string {
	a := []string{"lvm", "fullreport", "--reportformat", "json", "--units", "b", "--nosuffix",
		"--configreport", "vg", "-o", strings.Join(vgFields, ","),
		"--configreport", "pv", "-o", strings.Join(pvFields, ","),
		"--configreport", "lv", "-o", strings.Join(lvFields, ","),
		"--configreport", "pvseg", "-o", "pvseg_start",
		"--configreport", "seg", "-o", "segtype"}
	return append(a, vgs...)
}

// Query runs one `lvm fullreport` and decodes it. With vgs, only those
// volume groups are reported (and a missing one is an error wrapping
// ErrNotFound); without, every VG and the orphan PVs.
func Query(ctx context.Context, r run.Runner, vgs ...string) (*Report, error) {
	out, err := run.Output(ctx, r, ReportArgs(vgs...)...)
	if err != nil {
		return nil, Classify(err)
	}
	return ParseReport(out)
}

// ParseReport decodes the JSON of `lvm fullreport --reportformat json
// --units b --nosuffix` (any field selection; missing fields stay zero).
func ParseReport(data []byte) (*Report, error) {
	var raw struct {
		Report []map[string][]map[string]string `json:"report"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("lvm fullreport: decode JSON: %w", err)
	}
	rep := &Report{}
	var errs []error
	for _, sub := range raw.Report {
		// fullreport groups per VG: the pv and lv rows of a group belong
		// to its VG even when they do not carry vg_name (the default
		// field set does not); a group without a VG holds orphan PVs.
		group := ""
		for _, m := range sub["vg"] {
			if group == "" {
				group = m["vg_name"]
			}
		}
		inherit := func(m map[string]string) map[string]string {
			if _, ok := m["vg_name"]; ok || group == "" {
				return m
			}
			c := make(map[string]string, len(m)+1)
			for k, v := range m {
				c[k] = v
			}
			c["vg_name"] = group
			return c
		}
		for _, m := range sub["vg"] {
			vg, err := decodeVG(m)
			errs = append(errs, err)
			if err == nil && vg.Name != "" {
				rep.VGs = append(rep.VGs, vg)
			}
		}
		for _, m := range sub["pv"] {
			pv, err := decodePV(inherit(m))
			errs = append(errs, err)
			if err == nil && pv.Name != "" {
				rep.PVs = append(rep.PVs, pv)
			}
		}
		for _, m := range sub["lv"] {
			lv, err := decodeLV(inherit(m))
			errs = append(errs, err)
			if err == nil && lv.Name != "" {
				rep.LVs = append(rep.LVs, lv)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("lvm fullreport: %w", err)
	}
	sort.SliceStable(rep.PVs, func(i, j int) bool { return rep.PVs[i].Name < rep.PVs[j].Name })
	return rep, nil
}

type fields struct {
	m    map[string]string
	errs []error
}

func (f *fields) str(k string) string { return f.m[k] }

func (f *fields) int(k string) int64 {
	s := f.m[k]
	if s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f.errs = append(f.errs, fmt.Errorf("field %s: %q is not a whole number", k, s))
	}
	return n
}

func (f *fields) pct(k string) *float64 {
	s := f.m[k]
	if s == "" {
		return nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		f.errs = append(f.errs, fmt.Errorf("field %s: %q is not a number", k, s))
		return nil
	}
	return &v
}

func (f *fields) list(k string) []string {
	s := f.m[k]
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func (f *fields) err() error { return errors.Join(f.errs...) }

func decodeVG(m map[string]string) (VG, error) {
	f := &fields{m: m}
	vg := VG{
		Name: f.str("vg_name"), UUID: f.str("vg_uuid"), Attr: f.str("vg_attr"),
		Size: f.int("vg_size"), Free: f.int("vg_free"), ExtentSize: f.int("vg_extent_size"),
		ExtentCount: f.int("vg_extent_count"), FreeCount: f.int("vg_free_count"),
		PVCount: f.int("pv_count"), LVCount: f.int("lv_count"), SnapCount: f.int("snap_count"),
		Tags: f.list("vg_tags"),
	}
	return vg, f.err()
}

func decodePV(m map[string]string) (PV, error) {
	f := &fields{m: m}
	pv := PV{
		Name: f.str("pv_name"), UUID: f.str("pv_uuid"), Attr: f.str("pv_attr"), VG: f.str("vg_name"),
		Size: f.int("pv_size"), Free: f.int("pv_free"), DevSize: f.int("dev_size"), PEStart: f.int("pe_start"),
		PECount: f.int("pv_pe_count"), PEAlloc: f.int("pv_pe_alloc_count"), Tags: f.list("pv_tags"),
	}
	return pv, f.err()
}

func decodeLV(m map[string]string) (LV, error) {
	f := &fields{m: m}
	lv := LV{
		Name: f.str("lv_name"), VG: f.str("vg_name"), UUID: f.str("lv_uuid"), Path: f.str("lv_path"),
		DMPath: f.str("lv_dm_path"), Attr: f.str("lv_attr"), Layout: f.list("lv_layout"), Role: f.list("lv_role"),
		Size: f.int("lv_size"), Pool: f.str("pool_lv"), Origin: f.str("origin"),
		DataPercent: f.pct("data_percent"), MetadataPercent: f.pct("metadata_percent"),
		Active: f.str("lv_active") == "active", Merging: f.str("lv_merging") == "merging",
		Tags: f.list("lv_tags"),
	}
	lv.Type = lvType(lv.Attr, lv.Layout)
	return lv, f.err()
}

// lvType names the kind of LV from its attr (first character: the volume
// type) and its layout ("linear", "striped", "thin,pool", "thin,sparse").
// (The seg sub-report would name the segment type, but LVM 2.03.16 leaves
// it empty when fields are selected: see testdata/lvm/capture2-raw.txt.)
func lvType(attr string, layout []string) string {
	if attr != "" {
		switch attr[0] {
		case 't':
			return TypeThinPool
		case 'V':
			return TypeThin
		case 's', 'S':
			return TypeSnapshot
		}
	}
	if slices.Contains(layout, "pool") && slices.Contains(layout, "thin") {
		return TypeThinPool
	}
	if slices.Contains(layout, "thin") {
		return TypeThin
	}
	if len(layout) > 0 {
		return layout[0]
	}
	return ""
}
