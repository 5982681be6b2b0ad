package ipmi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
	"github.com/bofhkit/bofh/internal/kindtest"
	"github.com/bofhkit/bofh/run"
)

// kindsChildEnv selects the crash child of the kinds crash test: a
// re-exec of this test binary that applies a recipe (hosttest.ApplyChild)
// until BOFH_FAIL kills it.
const kindsChildEnv = "BOFH_IPMI_KINDS_CHILD"

func init() { hosttest.ApplyChild(kindsChildEnv) }

// ipmitoolState asks the simulator with ipmitool itself (not this
// package's client or parsers) for the power state and the boot device
// selector.
func ipmitoolState(t *testing.T, b BMC) string {
	t.Helper()
	base := []string{"-I", "lanplus", "-H", b.Address, "-p", strconv.Itoa(b.Port), "-U", b.User, "-f", b.PasswordFile, "-C", "3"}
	var parts []string
	for _, q := range []struct {
		args   []string
		prefix string
	}{
		{[]string{"chassis", "power", "status"}, "Chassis Power is"},
		{[]string{"chassis", "bootparam", "get", "5"}, "- Boot Device Selector :"},
	} {
		out, err := exec.Command("ipmitool", append(append([]string{}, base...), q.args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ipmitool %s: %v\n%s", strings.Join(q.args, " "), err, out)
		}
		found := false
		for _, l := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), q.prefix); ok {
				parts, found = append(parts, strings.TrimSpace(v)), true
			}
		}
		if !found {
			t.Fatalf("ipmitool %s: no %q line in\n%s", strings.Join(q.args, " "), q.prefix, out)
		}
	}
	return strings.Join(parts, " | ")
}

// TestKindsSimCrash crashes every ipmi kind mid-step against ipmi_sim
// (each step sends one mutating command, so before/after the effect is
// "mid-step"): a SIGKILLed child's journal is rolled back and ipmitool
// must see the starting power state and boot device again. The
// irreversible power cycle, killed after it ran at commit, cannot be
// rolled back: the rollback says so and one that skips it restores the
// rest. A kill in an undo is followed by a second rollback.
func TestKindsSimCrash(t *testing.T) {
	s := startSim(t)
	ctx := context.Background()
	b := s.bmc
	recipe := hosttest.RecipeOf(t, "ipmi-kinds",
		BootDev{BMC: b, Device: "pxe", Persistent: true, EFI: true}, // 1
		Power{BMC: b, Action: "on"},                                 // 2
		PowerCycle{BMC: b, Action: "reset"},                         // 3 (at commit)
		BootDev{BMC: b, Device: "cdrom"},                            // 4
		Power{BMC: b, Action: "off"},                                // 5
	)
	start := ipmitoolState(t, b)
	if start != "off | No override" {
		t.Fatalf("simulator starts at %q", start)
	}
	for _, c := range []struct {
		fail string
		skip []int // steps the first rollback refuses (irreversible, ran)
	}{
		{fail: "1:after:kill"},  // ipmi.bootdev
		{fail: "2:cmd1:kill"},   // ipmi.power (before its ipmitool chassis power on)
		{fail: "5:after:kill"},  // ipmi.power (off, undo turns it on again… then off by step 2's undo)
		{fail: "3:before:kill"}, // ipmi.power.cycle at commit, before it ran
		{fail: "3:after:kill", skip: []int{3}},
		{fail: "4:after:error,2:undo:kill"}, // rollback killed in an undo
	} {
		t.Run(strings.ReplaceAll(c.fail, ",", "+"), func(t *testing.T) {
			state := t.TempDir()
			id := hosttest.KillChild(t, kindsChildEnv, state, recipe, c.fail)
			if mid := ipmitoolState(t, b); mid == start && !strings.Contains(c.fail, "before") {
				t.Errorf("after the kill the simulator is still at %q: did the step act?", mid)
			}
			if c.skip != nil {
				err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(state), atomic.WithFailpoints(""))
				if !errors.Is(err, atomic.ErrRollbackIncomplete) || !strings.Contains(err.Error(), "irreversible") {
					t.Fatalf("rollback over a power cycle that ran: %v, want refused as irreversible", err)
				}
			}
			if err := atomic.RollbackID(ctx, id, c.skip, atomic.WithStateDir(state), atomic.WithFailpoints("")); err != nil {
				t.Fatalf("rollback: %v", err)
			}
			if got := ipmitoolState(t, b); got != start {
				t.Fatalf("after rollback ipmitool sees %q, want %q", got, start)
			}
			txs, err := atomic.List(state)
			if err != nil || len(txs) != 1 || txs[0].State != atomic.StateRolledBack {
				t.Fatalf("journal after rollback: %+v %v", txs, err)
			}
		})
	}
}

// bmcModel is the BMC a transcript talks to: the fake runner's answers
// follow the power state and boot flags that the scripted commands set.
type bmcModel struct {
	pw    string
	start BootFlags
	on    bool
	boot  BootFlags
	wasOn map[int]bool      // per step, the power state its Prepare read
	prev  map[int]BootFlags // per step, the boot flags its Prepare read
}

// bootData encodes flags as `chassis bootparam get 5` prints them.
func bootData(f BootFlags) string {
	sel := map[string]byte{"none": 0, "pxe": 1, "disk": 2, "safe": 3, "diag": 4, "cdrom": 5, "bios": 6, "floppy": 0xf}[f.Device]
	var b0 byte
	if f.Valid {
		b0 |= 0x80
	}
	if f.Persistent {
		b0 |= 0x40
	}
	if f.EFI {
		b0 |= 0x20
	}
	return fmt.Sprintf("Boot parameter version: 1\nBoot parameter 5 is valid/unlocked\nBoot parameter data: %02x%02x000000\n", b0, sel<<2)
}

func (m *bmcModel) argv(args ...string) []string { return append(fileConn(m.pw), args...) }

func (m *bmcModel) status(f *run.Fake) {
	s := "off"
	if m.on {
		s = "on"
	}
	f.Expect(m.argv("chassis", "power", "status")...).Kind(run.Query).Out("Chassis Power is " + s + "\n")
}

func (m *bmcModel) bootparam(f *run.Fake) {
	f.Expect(m.argv("chassis", "bootparam", "get", "5")...).Kind(run.Query).Out(bootData(m.boot))
}

func (m *bmcModel) setPower(f *run.Fake, action string) {
	f.Expect(m.argv("chassis", "power", action)...).Kind(run.Mutation)
	m.on = action != "off" && action != "soft"
}

func (m *bmcModel) setBoot(f *run.Fake, b BootFlags) {
	argv := m.argv("chassis", "bootdev", b.Device)
	var opts []string
	if b.Persistent {
		opts = append(opts, "persistent")
	}
	if b.EFI {
		opts = append(opts, "efiboot")
	}
	if len(opts) > 0 {
		argv = append(argv, "options="+strings.Join(opts, ","))
	}
	f.Expect(argv...).Kind(run.Mutation)
	m.boot = BootFlags{Valid: b.Device != "none", Persistent: b.Persistent, EFI: b.EFI, Device: b.Device}
}

// script returns the kindtest Script of steps against the model: the
// commands each phase runs, as ipmitool would answer them.
func (m *bmcModel) script(steps []atomic.Params) kindtest.Script {
	return func(f *run.Fake, n int, ph kindtest.Phase) {
		if n == 1 && ph == kindtest.Prepare {
			m.on, m.boot, m.wasOn, m.prev = false, m.start, map[int]bool{}, map[int]BootFlags{}
		}
		switch p := steps[n-1].(type) {
		case Power:
			switch ph {
			case kindtest.Prepare:
				m.status(f)
				m.wasOn[n] = m.on
			case kindtest.Do:
				m.setPower(f, p.Action)
			case kindtest.CheckAbsent, kindtest.CheckPresent:
				m.status(f)
			case kindtest.Undo:
				m.status(f)
				if m.on != m.wasOn[n] {
					m.setPower(f, map[bool]string{true: "on", false: "off"}[m.wasOn[n]])
				}
			}
		case PowerCycle:
			switch ph {
			case kindtest.Prepare:
				m.status(f)
			case kindtest.Do:
				m.setPower(f, p.Action)
			}
		case BootDev:
			switch ph {
			case kindtest.Prepare:
				m.bootparam(f)
				m.prev[n] = m.boot
			case kindtest.Do:
				m.setBoot(f, BootFlags{Device: p.Device, Persistent: p.Persistent, EFI: p.EFI})
			case kindtest.CheckAbsent, kindtest.CheckPresent:
				m.bootparam(f)
			case kindtest.Undo:
				m.bootparam(f)
				if m.boot.Effective() != m.prev[n].Effective() {
					prev := m.prev[n].Effective()
					if !prev.Valid {
						prev = BootFlags{Device: "none"}
					}
					m.setBoot(f, prev)
				}
			}
		}
	}
}

// TestKinds gives every ipmi kind a transcript (internal/kindtest): an
// error before its effect, after it and in its undo (then a second
// rollback from the journal) must give exactly the reverse undo sequence
// of ipmitool commands.
func TestKinds(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("hunter2-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := BMC{Address: "10.0.0.7", User: "admin", PasswordFile: pw}
	disk := BootFlags{Valid: true, Persistent: true, Device: "disk"}
	powerSteps := []atomic.Params{BootDev{BMC: b, Device: "pxe", Persistent: true, EFI: true}, Power{BMC: b, Action: "on"}}
	softSteps := []atomic.Params{Power{BMC: b, Action: "on"}, Power{BMC: b, Action: "soft"}}
	bootSteps := []atomic.Params{Power{BMC: b, Action: "on"}, BootDev{BMC: b, Device: "cdrom"}}
	cycleSteps := []atomic.Params{Power{BMC: b, Action: "on"}, PowerCycle{BMC: b, Action: "reset"}}
	kindtest.Cover(t, []string{"ipmi."}, []kindtest.Case{
		{Kind: "ipmi.power", Steps: powerSteps, Script: (&bmcModel{pw: pw}).script(powerSteps)},
		{Name: "ipmi.power-soft", Kind: "ipmi.power", Steps: softSteps, Script: (&bmcModel{pw: pw}).script(softSteps)},
		{Kind: "ipmi.bootdev", Steps: bootSteps, Script: (&bmcModel{pw: pw, start: disk}).script(bootSteps)},
		{Kind: "ipmi.power.cycle", Steps: cycleSteps, Script: (&bmcModel{pw: pw}).script(cycleSteps)},
	}, nil)
}
