package main

import (
	"strings"
	"testing"

	"github.com/bofhkit/bofh/internal/hosttest"
)

func TestCLILVMBadInput(t *testing.T) {
	t.Parallel()
	missing := t.TempDir() + "/missing"
	badInput(t, nil, []cliCase{
		bad("reserved suffix", `"_tmeta" is reserved`, "lvm", "lv", "create", "vg0/web_tmeta", "--size", "10G"),
		bad("reserved prefix on rename", `prefix "snapshot" is reserved`, "lvm", "lv", "rename", "vg0/web", "snapshot"),
		bad("not VG/LV", "want VG/LV", "lvm", "lv", "create", "web", "--size", "10G"),
		bad("VG name with a space", `character ' ' is not allowed`, "lvm", "vg", "create", "bad name", "/dev/loop0"),
		bad("unknown unit", `unknown unit "Q"`, "lvm", "lv", "create", "vg0/web", "--size", "10Q"),
		bad("negative size on create", "only allowed for a resize", "lvm", "lv", "create", "vg0/web", "--size", "-5G"),
		bad("bad resize size", `unknown unit "Q"`, "lvm", "lv", "resize", "vg0/web", "10Q"),
		bad("device missing", "no such file or directory", "lvm", "vg", "create", "vg0", missing),
		bad("report of a bad VG name", "VG name", "lvm", "report", "bad/vg"),
	})
}

// lvm fullreport works on this host (no device-mapper needed), so the JSON
// of the read-only commands and dry runs of pv/vg create over loop devices
// can be checked. An LV create dry run needs an existing VG: VM lab only.
func TestCLILVMReportJSON(t *testing.T) {
	t.Parallel()
	var rep struct{ VGs, PVs, LVs []map[string]any }
	jsonOut(t, nil, &rep, "lvm", "report")
	var orphans []map[string]any
	jsonOut(t, nil, &orphans, "lvm", "orphans")
	helpExample(t, []string{"lvm"}, []string{"lvm", "lv", "create"}, []string{"lvm", "vg", "create"}, []string{"lvm", "pv", "create"})
}

func TestCLILVMDryRun(t *testing.T) {
	t.Parallel()
	a := hosttest.LoopFile(t, 16<<20)
	b := hosttest.LoopFile(t, 16<<20)
	dryRun(t, nil, "", []string{"lvm", "pv", "create", a}, "would run: pvcreate "+a)
	dryRun(t, nil, "", []string{"lvm", "vg", "create", "bofhclitest", a, b}, "would run: vgcreate --addtag bofh_tx_", "bofhclitest "+a+" "+b)
	// nothing was written: no LVM label on the devices
	for _, d := range []string{a, b} {
		if out := hosttest.Cmd(t, "wipefs", "--no-act", "--noheadings", d); strings.TrimSpace(out) != "" {
			t.Errorf("%s holds a signature after a dry run: %s", d, out)
		}
	}
}
