package drbd

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/kindtest"
	"github.com/bofhkit/bofh/run"
)

// drbdModel is the node a transcript talks to: the fake runner answers
// drbdadm's queries from the resource state that the scripted commands
// set (up, role, connection, metadata), with the captured error texts of
// DRBD 8.4 where drbdadm fails.
type drbdModel struct {
	roleDown, mdNone, mdDump string

	up      bool
	role    string
	cstate  string
	md      bool
	primary map[int]bool // per drbd.down step: Primary when it prepared
}

func newDRBDModel(t *testing.T) *drbdModel {
	return &drbdModel{roleDown: readCapture(t, "drbdadm-role-down.txt"), mdNone: readCapture(t, "drbdadm-dump-md-none.txt"),
		mdDump: readCapture(t, "drbdadm-dump-md.txt")}
}

// state scripts drbd.State: drbdadm role, and cstate when up.
func (m *drbdModel) state(f *run.Fake) {
	if !m.up {
		f.Expect("drbdadm", "role", "data").Kind(run.Query).Fail(10, m.roleDown)
		return
	}
	f.Expect("drbdadm", "role", "data").Kind(run.Query).Out(m.role + "/Unknown\n")
	f.Expect("drbdadm", "cstate", "data").Kind(run.Query).Out(m.cstate + "\n")
}

func (m *drbdModel) dumpMD(f *run.Fake) {
	if m.md {
		f.Expect("drbdadm", "dump-md", "data").Kind(run.Query).Out(m.mdDump)
	} else {
		f.Expect("drbdadm", "dump-md", "data").Kind(run.Query).Fail(255, m.mdNone)
	}
}

// adm scripts one mutating drbdadm command and its effect on the model.
func (m *drbdModel) adm(f *run.Fake, argv ...string) {
	f.Expect(append([]string{"drbdadm"}, argv...)...).Kind(run.Mutation)
	switch argv[0] {
	case "up":
		m.up, m.role, m.cstate = true, "Secondary", "WFConnection"
	case "down":
		m.up, m.role, m.cstate = false, "", ""
	case "primary":
		m.role = "Primary"
	case "secondary":
		m.role = "Secondary"
	case "connect":
		m.cstate = "WFConnection"
	case "disconnect":
		m.cstate = "StandAlone"
	case "create-md":
		m.md = true
	case "--": // -- --force wipe-md
		m.md = false
	}
}

// script returns the kindtest Script of steps against the model.
func (m *drbdModel) script(steps []atomic.Params) kindtest.Script {
	return func(f *run.Fake, n int, ph kindtest.Phase) {
		if n == 1 && ph == kindtest.Prepare {
			m.up, m.role, m.cstate, m.md, m.primary = false, "", "", false, map[int]bool{}
		}
		check := ph == kindtest.CheckAbsent || ph == kindtest.CheckPresent
		undo := ph == kindtest.Undo || ph == kindtest.UndoUnknownAbsent || ph == kindtest.UndoUnknownPresent
		switch p := steps[n-1].(type) {
		case WriteConfig: // files only
		case CreateMD:
			switch {
			case ph == kindtest.Prepare:
				f.Expect("drbdadm", "sh-ll-dev", "data").Kind(run.Query).Out("/dev/loop0\n")
				m.state(f)
				m.dumpMD(f)
				f.Expect("blkid", "-p", "-o", "export", "/dev/loop0").Kind(run.Query).Fail(2, "")
			case ph == kindtest.Do:
				m.adm(f, "create-md", "--force", "data")
			case check:
				m.state(f)
				if !m.up {
					m.dumpMD(f)
				}
			case undo:
				m.state(f)
				if m.up {
					m.adm(f, "down", "data")
				}
				m.dumpMD(f)
				if m.md {
					m.adm(f, "--", "--force", "wipe-md", "data")
				}
			}
		case Up:
			switch {
			case ph == kindtest.Prepare, check:
				m.state(f)
			case ph == kindtest.Do:
				m.adm(f, "up", "data")
			case undo:
				m.state(f)
				if m.up {
					m.adm(f, "down", "data")
				}
			}
		case Down:
			switch {
			case ph == kindtest.Prepare:
				m.state(f)
				m.primary[n] = m.role == "Primary"
			case check:
				m.state(f)
			case ph == kindtest.Do:
				m.adm(f, "down", "data")
			case undo:
				m.state(f)
				if !m.up {
					m.adm(f, "up", "data")
				}
				if m.primary[n] && m.role != "Primary" {
					m.adm(f, "primary", "data")
				}
			}
		case Primary, Secondary:
			verb, undoVerb, want := "primary", "secondary", "Secondary"
			if _, ok := p.(Secondary); ok {
				verb, undoVerb, want = "secondary", "primary", "Primary"
			}
			switch {
			case ph == kindtest.Prepare, check:
				m.state(f)
			case ph == kindtest.Do:
				if pp, ok := p.(Primary); ok && pp.Force {
					m.adm(f, verb, "--force", "data")
				} else {
					m.adm(f, verb, "data")
				}
			case undo:
				m.state(f)
				if m.up && m.role != want {
					m.adm(f, undoVerb, "data")
				}
			}
		case Connect, Disconnect:
			verb, undoVerb, undoIf := "connect", "disconnect", func() bool { return m.cstate != "StandAlone" }
			if _, ok := p.(Disconnect); ok {
				verb, undoVerb, undoIf = "disconnect", "connect", func() bool { return m.cstate == "StandAlone" }
			}
			switch {
			case ph == kindtest.Prepare:
				m.state(f)
			case ph == kindtest.Do:
				m.adm(f, verb, "data")
			case undo:
				m.state(f)
				if m.up && undoIf() {
					m.adm(f, undoVerb, "data")
				}
			}
		case Adjust, Verify, Invalidate:
			if ph == kindtest.Do {
				m.adm(f, strings.TrimPrefix(p.StepKind(), "drbd."), "data")
			}
			// no Prepare, no Check; the undo (if any) is a no-op
		default:
			panic(fmt.Sprintf("drbdModel: no script for %T", p))
		}
	}
}

// dirSnapshot lists the files of dir with their content's sha256, read
// with the standard library only.
func dirSnapshot(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %x", e.Name(), sha256.Sum256(data)))
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// TestKinds gives every DRBD kind a transcript (internal/kindtest): an
// error before its effect, after it and in its undo (then a second
// rollback from the journal) must give exactly the reverse undo sequence
// of drbdadm commands. Each workflow sets up what its last step needs.
func TestKinds(t *testing.T) {
	r := "data"
	var (
		createMD   = []atomic.Params{CreateMD{Resource: r}}
		up         = []atomic.Params{CreateMD{Resource: r}, Up{Resource: r}}
		down       = []atomic.Params{Up{Resource: r}, Primary{Resource: r, Force: true}, Down{Resource: r}}
		primary    = []atomic.Params{Up{Resource: r}, Primary{Resource: r, Force: true}}
		secondary  = []atomic.Params{Up{Resource: r}, Primary{Resource: r, Force: true}, Secondary{Resource: r}}
		connect    = []atomic.Params{Up{Resource: r}, Disconnect{Resource: r}, Connect{Resource: r}}
		disconnect = []atomic.Params{Up{Resource: r}, Disconnect{Resource: r}}
		adjust     = []atomic.Params{Up{Resource: r}, Adjust{Resource: r}}
		verify     = []atomic.Params{Up{Resource: r}, Verify{Resource: r}}
		invalidate = []atomic.Params{Up{Resource: r}, Invalidate{Resource: r}}
	)
	script := func(steps []atomic.Params) kindtest.Script { return newDRBDModel(t).script(steps) }
	kindtest.Cover(t, []string{"drbd."}, []kindtest.Case{
		{Kind: "drbd.config.write", Snapshot: dirSnapshot, InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			// a neighbour's config survives; its port and minor are skipped
			if err := os.WriteFile(filepath.Join(dir, "r0.res"), []byte(readCapture(t, "etc/r0.res")), 0o644); err != nil {
				t.Fatal(err)
			}
			other := twoNodes()
			other.Name = "web"
			return []atomic.Params{WriteConfig{Resource: other, Dir: dir}, WriteConfig{Resource: twoNodes(), Dir: dir}}, nil
		}},
		{Kind: "drbd.create-md", Steps: createMD, Script: script(createMD)},
		{Kind: "drbd.up", Steps: up, Script: script(up)},
		{Kind: "drbd.down", Steps: down, Script: script(down)},
		{Kind: "drbd.primary", Steps: primary, Script: script(primary)},
		{Kind: "drbd.secondary", Steps: secondary, Script: script(secondary)},
		{Kind: "drbd.connect", Steps: connect, Script: script(connect)},
		{Kind: "drbd.disconnect", Steps: disconnect, Script: script(disconnect)},
		{Kind: "drbd.adjust", Steps: adjust, Script: script(adjust)},
		{Kind: "drbd.verify", Steps: verify, Script: script(verify)},
		{Kind: "drbd.invalidate", Steps: invalidate, Script: script(invalidate)},
	}, nil)
}

// TestDownUndoInterrupted: a rollback of an uncertain drbd.down (the
// process died after `drbdadm down`, before the done record) that is
// itself interrupted between the undo's `drbdadm up` and its `drbdadm
// primary` leaves the resource up and Secondary. The second rollback
// checks the step again: it must still see the effect (the resource was
// Primary) and promote it, then undo the earlier steps in reverse.
func TestDownUndoInterrupted(t *testing.T) {
	steps := []atomic.Params{Up{Resource: "data"}, Primary{Resource: "data", Force: true}, Down{Resource: "data"}}
	m := newDRBDModel(t)
	sc := m.script(steps)
	f := run.NewFake(t)
	for i := 1; i <= 3; i++ {
		sc(f, i, kindtest.Prepare)
		sc(f, i, kindtest.Do)
	}
	sc(f, 3, kindtest.CheckPresent)
	m.state(f)             // the undo finds it down,
	m.adm(f, "up", "data") // brings it up, and the failpoint stops it before `drbdadm primary`
	if !m.up || m.role != "Secondary" {
		t.Fatalf("model after the interrupted undo: %+v", m)
	}
	sc(f, 3, kindtest.CheckPresent)
	sc(f, 3, kindtest.Undo)
	sc(f, 2, kindtest.Undo)
	sc(f, 1, kindtest.Undo)
	state := t.TempDir()
	ctx := context.Background()
	err := atomic.Run(ctx, "down", func(tx *atomic.Tx) error {
		for _, p := range steps {
			if err := tx.Do(ctx, p, nil); err != nil {
				return err
			}
		}
		return nil
	}, atomic.WithStateDir(state), atomic.WithRunner(f), atomic.WithFailpoints("3:after:error,3:undocmd2:error"))
	if atomic.ExitCode(err) != atomic.ExitRollbackIncomplete {
		t.Fatalf("first run: %v, want an interrupted rollback (exit 3)", err)
	}
	txs, err := atomic.List(state)
	if err != nil || len(txs) != 1 {
		t.Fatalf("journals: %+v %v", txs, err)
	}
	if err := atomic.RollbackID(ctx, txs[0].ID, nil, atomic.WithStateDir(state), atomic.WithRunner(f), atomic.WithFailpoints("")); err != nil {
		t.Fatalf("second rollback: %v", err)
	}
	f.Done()
	if m.up || m.role != "" {
		t.Errorf("after the second rollback the model is %+v, want down (its starting state)", m)
	}
}
