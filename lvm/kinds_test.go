package lvm

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/kindtest"
	"github.com/bofhkit/bofh/run"
)

// Placeholders for what depends on the transaction's ID, which the harness
// picks at run time: the scripts write them, tagEmu swaps them.
const (
	ourTag   = TxTagPrefix + "ID"
	ourAside = "bofh-aside-ID"
)

// tagEmu sits between the steps and the fake runner of a kindtest run. In
// the argv of a command it replaces this transaction's tag (bofh_tx_<id>)
// and aside names (bofh-aside-<hash>) by ourTag and ourAside, learning the
// real ones; in the canned output it puts the real ones back. What it
// learned is kept per run directory, so the second rollback of a run
// (another runner) sees it too.
type tagEmu struct {
	inner run.Runner
	ids   *learnedIDs
}

type learnedIDs struct {
	mu         sync.Mutex
	tag, aside string
}

var learned sync.Map // run dir → *learnedIDs

func wrapTags(dir string, r run.Runner) run.Runner {
	ids, _ := learned.LoadOrStore(dir, &learnedIDs{})
	return tagEmu{inner: r, ids: ids.(*learnedIDs)}
}

func (e tagEmu) Run(ctx context.Context, c run.Cmd) (run.Result, error) {
	e.ids.mu.Lock()
	argv := slices.Clone(c.Argv)
	for i, a := range argv {
		if strings.HasPrefix(a, TxTagPrefix) {
			e.ids.tag, argv[i] = a, ourTag
		}
		if j := strings.Index(a, "bofh-aside-"); j >= 0 {
			e.ids.aside = a[j:]
			argv[i] = a[:j] + ourAside
		}
	}
	tag, aside := e.ids.tag, e.ids.aside
	e.ids.mu.Unlock()
	c.Argv = argv
	res, err := e.inner.Run(ctx, c)
	out := string(res.Stdout)
	if tag != "" {
		out = strings.ReplaceAll(out, ourTag, tag)
	}
	if aside != "" {
		out = strings.ReplaceAll(out, ourAside, aside)
	}
	res.Stdout = []byte(out)
	return res, err
}

// kscript makes a kindtest.Script from the commands of each "<step>
// <phase>" ("1 undo"); a phase not listed runs nothing.
func kscript(m map[string]func(f *run.Fake)) kindtest.Script {
	return func(f *run.Fake, step int, phase kindtest.Phase) {
		if fn := m[fmt.Sprint(step, " ", phase)]; fn != nil {
			fn(f)
		}
	}
}

// report expects one lvm fullreport (of vgs, or of everything) with out.
func report(out string, vgs ...string) func(f *run.Fake) {
	return func(f *run.Fake) { f.Expect(all(vgs...)...).Out(out).Kind(run.Query) }
}

// noVG expects a fullreport of vg that does not exist.
func noVG(vg string) func(f *run.Fake) {
	return func(f *run.Fake) {
		f.Expect(all(vg)...).Fail(5, fmt.Sprintf("  Volume group %q not found\n  Cannot process volume group %s", vg, vg))
	}
}

// mut expects a mutation.
func mut(argv ...string) func(f *run.Fake) {
	return func(f *run.Fake) { f.Expect(argv...).Kind(run.Mutation) }
}

// seq runs several expectations in order.
func seq(fs ...func(f *run.Fake)) func(f *run.Fake) {
	return func(f *run.Fake) {
		for _, fn := range fs {
			fn(f)
		}
	}
}

// TestKinds makes every LVM step kind fail before Do, after Do and in its
// undo with the fake runner (internal/kindtest): the exact commands of
// each phase, and the exact reverse undo sequence. The starting state is
// baseReport: vg0 on /dev/loop0 with LV web (4 extents of 4 MiB, active),
// and an orphan PV /dev/loop1 (UUID P1).
func TestKinds(t *testing.T) {
	base := baseReport()
	same := encodeReport(base)
	// what `lvm fullreport vg0` shows: vg0, its PVs and LVs
	vg0 := func(f func(r *Report)) string {
		return with(base, func(r *Report) {
			if f != nil {
				f(r)
			}
			var pvs []PV
			for _, p := range r.PVs {
				if p.VG == "vg0" {
					pvs = append(pvs, p)
				}
			}
			r.PVs = pvs
		})
	}
	web := func(f func(l *LV)) string { return vg0(func(r *Report) { f(&r.LVs[0]) }) }
	plain := vg0(nil)
	setup := func(t *testing.T) { fakeDevices(t) }

	loop2 := with(base, func(r *Report) { r.PVs = append(r.PVs, PV{Name: "/dev/loop2", UUID: "P2"}) })
	noLoop1 := with(base, func(r *Report) { r.PVs = r.PVs[:1] })
	vg1 := with(base, func(r *Report) {
		r.VGs = append(r.VGs, VG{Name: "vg1", UUID: "V2", Tags: []string{ourTag}})
		r.PVs = append(r.PVs, PV{Name: "/dev/loop2", UUID: "P2", VG: "vg1"})
		r.PVs[1].VG = "vg1"
	})
	vg1Gone := with(base, func(r *Report) { r.PVs = append(r.PVs, PV{Name: "/dev/loop2", UUID: "P2"}) })
	extended := vg0(func(r *Report) { r.PVs = append(r.PVs, PV{Name: "/dev/loop2", UUID: "P2", VG: "vg0"}) })
	extendedAll := with(base, func(r *Report) { r.PVs = append(r.PVs, PV{Name: "/dev/loop2", UUID: "P2", VG: "vg0"}) })
	twoPVs := with(base, func(r *Report) { r.PVs[1].VG = "vg0" })
	emptyVG := with(base, func(r *Report) { r.LVs, r.VGs[0].Tags = nil, []string{"keep"} })
	withDB := vg0(func(r *Report) {
		r.LVs = append(r.LVs, LV{VG: "vg0", Name: "db", UUID: "L2", Type: TypeLinear, Size: 8 << 20, Active: true, Tags: []string{ourTag}})
	})
	aside := web(func(l *LV) { l.Name, l.Active, l.Tags = ourAside, false, append(slices.Clone(l.Tags), ourTag) })
	withSnap := vg0(func(r *Report) {
		r.LVs = append(r.LVs, LV{VG: "vg0", Name: "websnap", UUID: "L3", Type: TypeSnapshot, Origin: "web", Size: 4 << 20, Active: true})
	})
	inactive := web(func(l *LV) { l.Active = false })

	kindtest.Cover(t, []string{"lvm."}, []kindtest.Case{
		// a new PV on a blank device; undo removes its label
		{Kind: "lvm.pv.create", Setup: setup, Steps: []atomic.Params{CreatePV{Device: "/dev/loop2"}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare":       report(same),
				"1 do":            seq(mut("pvcreate", "/dev/loop2"), report(loop2)),
				"1 check-absent":  report(same),
				"1 check-present": report(loop2),
				"1 undo":          seq(report(loop2), mut("pvremove", "-y", "/dev/loop2")),
			})},
		// the label of the orphan PV loop1; undo writes it back, same UUID
		{Kind: "lvm.pv.remove", Setup: setup, Steps: []atomic.Params{RemovePV{Device: "/dev/loop1"}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare":       report(same),
				"1 do":            mut("pvremove", "-y", "/dev/loop1"),
				"1 check-absent":  report(same),
				"1 check-present": report(noLoop1),
				"1 undo":          seq(report(noLoop1), mut("pvcreate", "--uuid", "P1", "--norestorefile", "/dev/loop1")),
			})},
		// vg1 on the orphan PV loop1 and the blank loop2; undo removes
		// the VG and the label vgcreate wrote on loop2, not loop1's
		{Kind: "lvm.vg.create", Setup: setup, Wrap: wrapTags,
			Steps: []atomic.Params{CreateVG{Name: "vg1", Devices: []string{"/dev/loop1", "/dev/loop2"}}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare":       report(same),
				"1 do":            seq(mut("vgcreate", "--addtag", ourTag, "vg1", "/dev/loop1", "/dev/loop2"), report(vg1, "vg1")),
				"1 check-absent":  noVG("vg1"),
				"1 check-present": report(vg1, "vg1"),
				"1 undo": seq(report(vg1), mut("vgremove", "vg1"), report(vg1Gone),
					mut("pvremove", "-y", "/dev/loop2")),
			})},
		// vg0 grows onto the blank loop2; undo takes it out and removes
		// the label vgextend wrote
		{Kind: "lvm.vg.extend", Setup: setup, Steps: []atomic.Params{ExtendVG{VG: "vg0", Devices: []string{"/dev/loop2"}}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare":       report(same),
				"1 do":            seq(mut("vgextend", "vg0", "/dev/loop2"), report(extended, "vg0")),
				"1 check-absent":  report(plain, "vg0"),
				"1 check-present": report(extended, "vg0"),
				"1 undo": seq(report(extendedAll), mut("vgreduce", "vg0", "/dev/loop2"), report(loop2),
					mut("pvremove", "-y", "/dev/loop2")),
			})},
		// vg0 on loop0 and loop1 gives up loop1; undo adds it back
		{Kind: "lvm.vg.reduce", Setup: setup, Steps: []atomic.Params{ReduceVG{VG: "vg0", Devices: []string{"/dev/loop1"}}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare":       report(twoPVs, "vg0"),
				"1 do":            seq(mut("vgreduce", "vg0", "/dev/loop1"), report(plain, "vg0")),
				"1 check-absent":  report(twoPVs, "vg0"),
				"1 check-present": report(plain, "vg0"),
				"1 undo":          seq(report(same), mut("vgextend", "vg0", "/dev/loop1")),
			})},
		// an empty vg0 tagged keep; undo creates it again, same extent
		// size and tags
		{Kind: "lvm.vg.remove", Setup: setup, Steps: []atomic.Params{RemoveVG{Name: "vg0"}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare":       report(emptyVG, "vg0"),
				"1 do":            mut("vgremove", "vg0"),
				"1 check-absent":  report(emptyVG, "vg0"),
				"1 check-present": noVG("vg0"),
				"1 undo":          seq(noVG("vg0"), mut("vgcreate", "--addtag", "keep", "-s", "4096k", "vg0", "/dev/loop0")),
			})},
		// a linear LV tagged with the transaction; undo removes it (only
		// an LV with that tag)
		{Kind: "lvm.lv.create", Wrap: wrapTags, Steps: []atomic.Params{CreateLV{VG: "vg0", Name: "db", Size: "8M"}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare":       report(plain, "vg0"),
				"1 do":            seq(mut("lvcreate", "-y", "-n", "db", "-L", "8388608b", "--addtag", ourTag, "vg0"), report(withDB, "vg0")),
				"1 check-absent":  report(plain, "vg0"),
				"1 check-present": report(withDB, "vg0"),
				"1 undo":          seq(report(withDB, "vg0"), mut("lvremove", "-y", "vg0/db")),
			})},
		// irreversible: runs at commit
		{Kind: "lvm.lv.remove", Steps: []atomic.Params{RemoveLV{VG: "vg0", Name: "web"}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare":       report(plain, "vg0"),
				"1 do":            mut("lvremove", "-y", "vg0/web"),
				"1 check-present": report(vg0(func(r *Report) { r.LVs = nil }), "vg0"),
			})},
		// deactivate, rename to the aside name, tag; no Check (a crash
		// between the three commands is undone, whatever it left): undo
		// renames back, drops the tag and reactivates
		{Kind: "lvm.lv.set-aside", Wrap: wrapTags, Steps: []atomic.Params{SetAsideLV{VG: "vg0", Name: "web"}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare": report(plain, "vg0"),
				"1 do": seq(mut("lvchange", "-an", "vg0/web"), mut("lvrename", "vg0", "web", ourAside),
					mut("lvchange", "--addtag", ourTag, "vg0/"+ourAside), report(aside, "vg0")),
				// nothing happened: the LV is active already
				"1 undo-unknown-absent": seq(report(plain, "vg0"), report(plain, "vg0")),
				"1 undo-unknown-present": seq(report(aside, "vg0"), mut("lvrename", "vg0", ourAside, "web"),
					mut("lvchange", "--deltag", ourTag, "vg0/web"), report(inactive, "vg0"), mut("lvchange", "-ay", "-K", "vg0/web")),
			})},
		{Kind: "lvm.lv.rename", Steps: []atomic.Params{RenameLV{VG: "vg0", Name: "web", NewName: "www"}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare":       report(plain, "vg0"),
				"1 do":            seq(mut("lvrename", "vg0", "web", "www"), report(web(func(l *LV) { l.Name = "www" }), "vg0")),
				"1 check-absent":  report(plain, "vg0"),
				"1 check-present": report(web(func(l *LV) { l.Name = "www" }), "vg0"),
				"1 undo":          seq(report(web(func(l *LV) { l.Name = "www" }), "vg0"), mut("lvrename", "vg0", "www", "web")),
			})},
		// 4 extents to 6; undo back to 4
		{Kind: "lvm.lv.resize", Steps: []atomic.Params{ResizeLV{VG: "vg0", Name: "web", Size: "+8M"}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare":       report(plain, "vg0"),
				"1 do":            seq(mut("lvresize", "-y", "-l", "6", "vg0/web"), report(web(func(l *LV) { l.Size = 24 << 20 }), "vg0")),
				"1 check-absent":  report(plain, "vg0"),
				"1 check-present": report(web(func(l *LV) { l.Size = 24 << 20 }), "vg0"),
				"1 undo":          seq(report(web(func(l *LV) { l.Size = 24 << 20 }), "vg0"), mut("lvresize", "-y", "-l", "4", "vg0/web")),
			})},
		{Kind: "lvm.lv.activate", Steps: []atomic.Params{ActivateLV{VG: "vg0", Name: "web"}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare":       report(inactive, "vg0"),
				"1 do":            seq(mut("lvchange", "-ay", "-K", "vg0/web"), report(plain, "vg0")),
				"1 check-absent":  report(inactive, "vg0"),
				"1 check-present": report(plain, "vg0"),
				"1 undo":          seq(report(plain, "vg0"), mut("lvchange", "-an", "vg0/web")),
			})},
		{Kind: "lvm.lv.deactivate", Steps: []atomic.Params{DeactivateLV{VG: "vg0", Name: "web"}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare":       report(plain, "vg0"),
				"1 do":            seq(mut("lvchange", "-an", "vg0/web"), report(inactive, "vg0")),
				"1 check-absent":  report(plain, "vg0"),
				"1 check-present": report(inactive, "vg0"),
				"1 undo":          seq(report(inactive, "vg0"), mut("lvchange", "-ay", "-K", "vg0/web")),
			})},
		// irreversible: runs at commit; merged, the snapshot is gone
		{Kind: "lvm.lv.merge", Steps: []atomic.Params{MergeLV{VG: "vg0", Name: "websnap"}},
			Script: kscript(map[string]func(f *run.Fake){
				"1 prepare":       report(withSnap, "vg0"),
				"1 do":            mut("lvconvert", "-y", "--merge", "vg0/websnap"),
				"1 check-present": report(plain, "vg0"),
			})},
	}, kindtest.Allow{})
}
