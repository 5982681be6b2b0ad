// Package kindtest is the shared harness that makes every registered step
// kind fail in a transcript test (testing tier 2, issue 11 §4).
//
// A package's kinds_test.go lists one Case per step kind it registers and
// calls Cover once:
//
//	func TestKinds(t *testing.T) {
//		kindtest.Cover(t, []string{"net."}, []kindtest.Case{
//			{Kind: "net.addr.add", Steps: []atomic.Params{AddrAdd{…}}, Script: addrScript},
//			…
//		}, kindtest.Allow{
//			"net.foo": "why this kind cannot get a transcript (a reason is required)",
//		})
//	}
//
// A Case is a workflow (Steps) whose LAST step is of the kind under test;
// earlier steps set up what it needs (they must be reversible). Script adds
// to a run.Fake the exact commands one phase of one step runs (see Phase);
// the harness assembles them, in the order the engine runs them, into the
// full transcript of each run. The fake is strict: a command out of order,
// an unexpected one, or one left unused fails the test. For each Case the
// harness runs the workflow as a Go transaction (atomic.Run with
// WithRunner(fake), WithFailpoints, WithStateDir(t.TempDir())):
//
//   - ok: every step prepares and acts, the transaction commits (exit 0).
//   - error-before: "N:before:error" on the last step N: it prepares, then
//     fails before its effect; rollback checks it (CheckAbsent, or
//     UndoUnknownAbsent for a kind without Check) and undoes steps N-1…1 in
//     reverse (Undo). Exit 1, state rolled-back, every step undone.
//   - error-after: "N:after:error": step N acts, then fails before its done
//     record; rollback resolves it with CheckPresent and undoes it (or
//     UndoUnknownPresent without Check), then N-1…1. Exit 1, rolled-back.
//   - error-undo: "N:after:error,N:undo:error": as error-after, but the undo
//     of step N fails (before it runs a command): exit 3, rollback-failed,
//     steps N-1…1 untouched. A second rollback from the journal alone
//     (atomic.RollbackID, no failpoints) then checks and undoes N, then
//     N-1…1, and ends rolled-back.
//
// An irreversible last step runs at commit and has no undo, so its runs
// differ: error-before fails at commit before it acts (rollback leaves it,
// undoes N-1…1, exit 1); error-after-skip makes it fail after acting: the
// rollback stops at it (exit 3, rollback-failed), a second rollback stops
// there again, and a rollback that skips it (as an operator would with
// 'bofh tx rollback --skip N') undoes N-1…1 and ends rolled-back.
//
// Kinds that act without the runner (file steps) leave Script nil (any
// command then fails the test) and set InDir and Snapshot: InDir builds the
// workflow in a fresh directory, and Snapshot describes the state there.
// InDir also suits runner kinds whose Prepare looks at a real file (a loop
// device's backing file): it returns the script along with the steps.
// The harness requires the snapshot after each rollback to equal the one
// taken before the run, and the snapshot right after the last step (failed
// "after" its effect, or done before a commit) to differ from the one
// taken right before it: the effect happened, so the undo had work to do
// (Unseen names the exception, with its reason). Make the last step act
// on something no setup step's undo removes wholesale, or a do-nothing
// undo goes unseen.
//
// Kinds that look at the system with system calls as well as commands
// (btrfs subvolumes, netlink, tree stores) run against the real thing:
// Wrap returns a real runner (&run.Local{}) instead of the fake, InDir
// makes a fresh real object per run (a directory on a btrfs mount, a
// network namespace, a tree lab), and Snapshot asks the real tool
// (btrfs subvolume list, ip -j, an independent fingerprint). Wrap can
// also wrap the fake to emulate a tool's effect on an image file
// (wipefs --backup writing its backup), and StateDir puts the journal
// where the kind's backups need it (the target's filesystem).
//
// A run that fails logs the phases it expected, e.g. "1:prepare 1:do
// 2:prepare 2:do 2:check-present 2:undo 1:undo": match them against the
// fake's first complaint.
//
// Crashes (SIGKILL) are not run here: see atomic's cmd<k>, undocmd<k> and
// undo:kill failpoints and each package's cmdkill_test.go.
//
// Coverage: Cover fails when a registered kind matching owned (a name, or
// a prefix ending in ".") has neither a Case nor an Allow entry with a
// reason. Across packages, cmd/bofh's TestEveryKindHasTranscript reads
// every *_test.go file of the module with go/parser, collects the Kind of
// every kindtest.Case literal and the keys of every kindtest.Allow literal,
// and fails for any kind the bofh binary registers that none names. For
// that reason Case.Kind and Allow keys and reasons must be string literals
// written in the composite literal itself, and the file's package must
// call kindtest.Cover.
package kindtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

// Phase is one part of a step's life that runs commands; Script adds the
// commands of one phase of one step.
type Phase string

// Phases, in the order the engine can run them.
const (
	// Prepare is the step's Prepare (queries only) before its intent record.
	Prepare Phase = "prepare"
	// Do is the step's effect.
	Do Phase = "do"
	// CheckAbsent is the step's Check when its effect never happened (the
	// step failed before Do); it must report the effect absent.
	CheckAbsent Phase = "check-absent"
	// CheckPresent is the step's Check after Do took effect but before the
	// done record was written; it must report the effect present.
	CheckPresent Phase = "check-present"
	// Undo is the step's Undo with the effect present and its result known
	// (from the done record or from CheckPresent).
	Undo Phase = "undo"
	// UndoUnknownAbsent is the Undo of a kind without Check when the step
	// failed before Do: the effect is absent and the result is the zero
	// value. Undo must be idempotent, so this usually only probes.
	UndoUnknownAbsent Phase = "undo-unknown-absent"
	// UndoUnknownPresent is the Undo of a kind without Check after Do took
	// effect: the effect is present, the result is the zero value.
	UndoUnknownPresent Phase = "undo-unknown-present"
)

// Script adds to f, in order, the commands that phase of step (1-based)
// runs: queries with their canned output, mutations marked
// .Kind(run.Mutation). A phase that runs nothing adds nothing.
type Script func(f *run.Fake, step int, phase Phase)

// Case is one transcript workflow for a step kind.
type Case struct {
	// Name names the subtest; the default is Kind. Set it when a kind has
	// several cases.
	Name string
	// Kind is the kind under test, a string literal (the registry test
	// reads it from the source).
	Kind string
	// Steps is the workflow: its last step is of Kind, earlier ones set up
	// what it needs and must be reversible.
	Steps []atomic.Params
	// Script adds to f the commands phase of step (1-based) runs, in
	// order; nil when no step runs a command.
	Script Script
	// InDir, used instead of Steps and Script when set, builds the
	// workflow and its script in dir, a fresh empty directory of each run
	// (for kinds acting on files, or whose commands name files). It may
	// create files there that the workflow starts from.
	InDir func(t *testing.T, dir string) ([]atomic.Params, Script)
	// Snapshot, optional, describes the state the workflow changes (e.g.
	// every file below dir with its mode and content); see the package doc.
	Snapshot func(t *testing.T, dir string) string
	// Unseen, when set, says why the kind's effect does not show in
	// Snapshot (a hook whose undo does nothing): the harness then does not
	// require the snapshot to change after Do.
	Unseen string
	// Wrap, optional, wraps the fake runner of a run in dir (the run's
	// directory, as InDir gets it): to emulate what a tool does to files
	// the steps then read (wipefs --backup writing its backup files).
	Wrap func(dir string, r run.Runner) run.Runner
	// StateDir, optional, returns the state directory of the run in dir
	// (an empty directory it creates); the default is a fresh temporary
	// directory. Kinds whose backups depend on where it is (hard links on
	// the same filesystem) set it.
	StateDir func(t *testing.T, dir string) string
	// Setup, optional, runs at the start of each run (e.g. to install a
	// test hook with t.Cleanup).
	Setup func(t *testing.T)
}

// Allow lists the kinds that have no Case, each with the reason why. The
// registry test reads it from the source: write it as a literal.
type Allow map[string]string

// Cover runs every case (see the package doc) and fails if a registered
// kind matching owned has neither a case nor an allow-list entry with a
// reason, or if a case or allow entry names a kind that is not registered
// or not owned.
func Cover(t *testing.T, owned []string, cases []Case, allow Allow) {
	t.Helper()
	kinds := map[string]atomic.KindInfo{}
	for _, k := range atomic.Kinds() {
		if Owns(owned, k.Kind) {
			kinds[k.Kind] = k
		}
	}
	if len(kinds) == 0 {
		t.Fatalf("no registered kind matches %q", owned)
	}
	covered := map[string]bool{}
	for _, c := range cases {
		if _, ok := kinds[c.Kind]; !ok {
			t.Errorf("case %q: kind %q is not a registered kind matching %q", c.name(), c.Kind, owned)
			continue
		}
		covered[c.Kind] = true
	}
	for k, why := range allow {
		switch {
		case kinds[k].Kind == "":
			t.Errorf("allow-list: %q is not a registered kind matching %q", k, owned)
		case strings.TrimSpace(why) == "":
			t.Errorf("allow-list: %q has no reason", k)
		case covered[k]:
			t.Errorf("allow-list: %q has a case too; drop one", k)
		}
	}
	var missing []string
	for k := range kinds {
		if !covered[k] && allow[k] == "" {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	for _, k := range missing {
		t.Errorf("kind %s: no kindtest.Case and no kindtest.Allow entry (with a reason)", k)
	}
	for _, c := range cases {
		if info, ok := kinds[c.Kind]; ok {
			t.Run(c.name(), func(t *testing.T) { runCase(t, c, info) })
		}
	}
}

// Owns reports whether kind matches one of patterns: a pattern ending in
// "." is a prefix ("lvm." owns "lvm.lv.create"), any other an exact name.
func Owns(patterns []string, kind string) bool {
	for _, p := range patterns {
		if p == kind || (strings.HasSuffix(p, ".") && strings.HasPrefix(kind, p)) {
			return true
		}
	}
	return false
}

func (c Case) name() string {
	if c.Name != "" {
		return c.Name
	}
	return c.Kind
}

// exp is one expected phase of one step, for the transcript log.
type exp struct {
	step  int
	phase Phase
}

// plan records the phases a run expects and adds their commands to f.
type plan struct {
	script Script
	f      *run.Fake
	phases []exp
}

func (p *plan) add(step int, ph Phase) {
	p.phases = append(p.phases, exp{step, ph})
	if p.script != nil {
		p.script(p.f, step, ph)
	}
}

func (p *plan) String() string {
	var b strings.Builder
	for _, e := range p.phases {
		fmt.Fprintf(&b, " %d:%s", e.step, e.phase)
	}
	return strings.TrimSpace(b.String())
}

func runCase(t *testing.T, c Case, info atomic.KindInfo) {
	if c.Steps == nil && c.InDir == nil {
		t.Fatal("case has neither Steps nor InDir")
	}
	type run struct {
		name string
		fn   func(t *testing.T, c Case, info atomic.KindInfo)
	}
	runs := []run{{"ok", runOK}, {"error-before", runBefore}}
	if info.Irreversible {
		runs = append(runs, run{"error-after-skip", runIrreversibleAfter})
	} else {
		runs = append(runs, run{"error-after", runAfter}, run{"error-undo", runUndoError})
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			if c.Setup != nil {
				c.Setup(t)
			}
			r.fn(t, c, info)
		})
	}
}

// world is one run's workflow, directory, fake and state dir.
type world struct {
	c      Case
	dir    string
	state  string
	steps  []atomic.Params
	script Script
	f      *run.Fake
	p      *plan
	start  string
	pre    string // the snapshot before the last step
}

func newWorld(t *testing.T, c Case, info atomic.KindInfo) *world {
	t.Helper()
	w := &world{c: c, dir: t.TempDir(), state: t.TempDir(), f: run.NewFake(t)}
	w.steps, w.script = c.Steps, c.Script
	if c.InDir != nil {
		w.steps, w.script = c.InDir(t, w.dir)
	}
	if len(w.steps) == 0 {
		t.Fatal("empty workflow")
	}
	if k := w.steps[len(w.steps)-1].StepKind(); k != info.Kind {
		t.Fatalf("the last step is %s, want the case's kind %s", k, info.Kind)
	}
	for i, s := range w.steps[:len(w.steps)-1] {
		ki, err := atomic.Kind(s.StepKind())
		if err != nil {
			t.Fatal(err)
		}
		if ki.Irreversible {
			t.Fatalf("setup step %d (%s) is irreversible: only the last step may be", i+1, ki.Kind)
		}
	}
	if c.StateDir != nil {
		w.state = c.StateDir(t, w.dir)
	}
	w.p = &plan{script: w.script, f: w.f}
	w.start = w.snapshot(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("expected phases (step:phase): %s", w.p)
		}
	})
	return w
}

func (w *world) n() int { return len(w.steps) }

// runner is the fake, wrapped by the case's Wrap.
func (w *world) runner() run.Runner {
	if w.c.Wrap != nil {
		return w.c.Wrap(w.dir, w.f)
	}
	return w.f
}

func (w *world) snapshot(t *testing.T) string {
	t.Helper()
	if w.c.Snapshot == nil {
		return ""
	}
	return w.c.Snapshot(t, w.dir)
}

// setup expects steps 1…n-1 to prepare and act.
func (w *world) setup() {
	for i := 1; i < w.n(); i++ {
		w.p.add(i, Prepare)
		w.p.add(i, Do)
	}
}

// undoSetup expects the undo of steps n-1…1 in reverse.
func (w *world) undoSetup() {
	for i := w.n() - 1; i >= 1; i-- {
		w.p.add(i, Undo)
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// apply runs the workflow with failpoints fail; mid is the snapshot taken
// when the last step returned (nil error or not), before rollback.
func (w *world) apply(t *testing.T, fail string) (err error, mid string, id string) {
	t.Helper()
	ctx := context.Background()
	err = atomic.Run(ctx, "kindtest "+w.c.Kind, func(tx *atomic.Tx) error {
		for i, s := range w.steps {
			if i == w.n()-1 {
				w.pre = w.snapshot(t)
			}
			if err := tx.Do(ctx, s, nil); err != nil {
				if i == w.n()-1 {
					mid = w.snapshot(t)
				}
				return err
			}
		}
		mid = w.snapshot(t)
		return nil
	}, atomic.WithStateDir(w.state), atomic.WithRunner(w.runner()), atomic.WithFailpoints(fail), atomic.WithLogger(quiet))
	list, lerr := atomic.List(w.state)
	if lerr != nil || len(list) != 1 {
		t.Fatalf("want one journal, got %+v (%v); run error: %v", list, lerr, err)
	}
	return err, mid, list[0].ID
}

// wantState checks the transaction's state and each step's status.
func (w *world) wantState(t *testing.T, id string, state atomic.State, status func(step int) string) {
	t.Helper()
	d, err := atomic.Show(w.state, id)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != state {
		t.Errorf("transaction state %s, want %s", d.State, state)
	}
	var got, want []string
	for i, s := range d.Steps {
		got = append(got, fmt.Sprintf("%d %s %s", s.Step, s.Kind, s.Status))
		want = append(want, fmt.Sprintf("%d %s %s", i+1, w.steps[i].StepKind(), status(i+1)))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("step statuses (-want +got):\n%s", diff)
	}
}

// wantRestored checks the snapshot is back to the start.
func (w *world) wantRestored(t *testing.T, what string) {
	t.Helper()
	if diff := cmp.Diff(lines(w.start), lines(w.snapshot(t))); diff != "" {
		t.Errorf("%s: state differs from the start (-start +now):\n%s", what, diff)
	}
}

// wantChanged checks a snapshot shows the last step's effect: it differs
// from the one taken right before that step.
func (w *world) wantChanged(t *testing.T, what, mid string) {
	t.Helper()
	if w.c.Snapshot != nil && w.c.Unseen == "" && mid == w.pre {
		t.Errorf("%s: the snapshot did not change: the last step had no visible effect\n%s", what, mid)
	}
}

func lines(s string) []string { return strings.Split(s, "\n") }

func wantErr(t *testing.T, err error, code int) {
	t.Helper()
	if !errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != code {
		t.Fatalf("got %v (exit %d), want the failpoint's error and exit %d", err, atomic.ExitCode(err), code)
	}
}

func all(s string) func(int) string { return func(int) string { return s } }

func runOK(t *testing.T, c Case, info atomic.KindInfo) {
	w := newWorld(t, c, info)
	w.setup()
	w.p.add(w.n(), Prepare)
	w.p.add(w.n(), Do)
	err, mid, id := w.apply(t, "")
	if err != nil {
		t.Fatalf("workflow failed: %v", err)
	}
	w.f.Done()
	w.wantState(t, id, atomic.StateCommitted, all(atomic.StatusDone))
	if !info.Irreversible {
		w.wantChanged(t, "after commit", mid)
	}
}

func runBefore(t *testing.T, c Case, info atomic.KindInfo) {
	w := newWorld(t, c, info)
	w.setup()
	w.p.add(w.n(), Prepare)
	status := all(atomic.StatusUndone)
	switch {
	case info.Irreversible: // never ran: nothing to undo
		status = func(i int) string {
			if i == w.n() {
				return atomic.StatusDeferred
			}
			return atomic.StatusUndone
		}
	case info.Checkable:
		w.p.add(w.n(), CheckAbsent)
	default:
		w.p.add(w.n(), UndoUnknownAbsent)
	}
	w.undoSetup()
	err, _, id := w.apply(t, fmt.Sprintf("%d:before:error", w.n()))
	wantErr(t, err, atomic.ExitRolledBack)
	w.f.Done()
	w.wantState(t, id, atomic.StateRolledBack, status)
	w.wantRestored(t, "after rollback")
}

// undoLast expects the rollback of step n after its effect happened.
func (w *world) undoLast(info atomic.KindInfo) {
	if info.Checkable {
		w.p.add(w.n(), CheckPresent)
		w.p.add(w.n(), Undo)
	} else {
		w.p.add(w.n(), UndoUnknownPresent)
	}
}

func runAfter(t *testing.T, c Case, info atomic.KindInfo) {
	w := newWorld(t, c, info)
	w.setup()
	w.p.add(w.n(), Prepare)
	w.p.add(w.n(), Do)
	w.undoLast(info)
	w.undoSetup()
	err, mid, id := w.apply(t, fmt.Sprintf("%d:after:error", w.n()))
	wantErr(t, err, atomic.ExitRolledBack)
	w.f.Done()
	w.wantState(t, id, atomic.StateRolledBack, all(atomic.StatusUndone))
	w.wantChanged(t, "after the failed step", mid)
	w.wantRestored(t, "after rollback")
}

func runUndoError(t *testing.T, c Case, info atomic.KindInfo) {
	w := newWorld(t, c, info)
	w.setup()
	w.p.add(w.n(), Prepare)
	w.p.add(w.n(), Do)
	if info.Checkable {
		w.p.add(w.n(), CheckPresent) // then the undo failpoint fires
	}
	// the second rollback, from the journal
	w.undoLast(info)
	w.undoSetup()
	err, mid, id := w.apply(t, fmt.Sprintf("%d:after:error,%d:undo:error", w.n(), w.n()))
	wantErr(t, err, atomic.ExitRollbackIncomplete)
	w.wantState(t, id, atomic.StateRollbackFailed, func(i int) string {
		if i == w.n() {
			return atomic.StatusUncertain
		}
		return atomic.StatusDone
	})
	if diff := cmp.Diff(lines(mid), lines(w.snapshot(t))); diff != "" {
		t.Errorf("the failed rollback changed the state (-before +after):\n%s", diff)
	}
	if err := atomic.RollbackID(context.Background(), id, nil, atomic.WithStateDir(w.state), atomic.WithRunner(w.runner()),
		atomic.WithFailpoints(""), atomic.WithLogger(quiet)); err != nil {
		t.Fatalf("second rollback: %v", err)
	}
	w.f.Done()
	w.wantState(t, id, atomic.StateRolledBack, all(atomic.StatusUndone))
	w.wantRestored(t, "after the second rollback")
}

func runIrreversibleAfter(t *testing.T, c Case, info atomic.KindInfo) {
	w := newWorld(t, c, info)
	w.setup()
	w.p.add(w.n(), Prepare)
	w.p.add(w.n(), Do)
	if info.Checkable {
		w.p.add(w.n(), CheckPresent) // commit asks whether it acted
	}
	err, _, id := w.apply(t, fmt.Sprintf("%d:after:error", w.n()))
	wantErr(t, err, atomic.ExitRollbackIncomplete)
	w.wantState(t, id, atomic.StateRollbackFailed, func(i int) string {
		if i == w.n() {
			return atomic.StatusUncertain
		}
		return atomic.StatusDone
	})
	ctx := context.Background()
	opts := []atomic.Option{atomic.WithStateDir(w.state), atomic.WithRunner(w.runner()), atomic.WithFailpoints(""), atomic.WithLogger(quiet)}
	if err := atomic.RollbackID(ctx, id, nil, opts...); atomic.ExitCode(err) != atomic.ExitRollbackIncomplete {
		t.Fatalf("a rollback over an irreversible step that ran: got %v, want exit 3", err)
	}
	w.undoSetup()
	if err := atomic.RollbackID(ctx, id, []int{w.n()}, opts...); err != nil {
		t.Fatalf("rollback skipping step %d: %v", w.n(), err)
	}
	w.f.Done()
	w.wantState(t, id, atomic.StateRolledBack, func(i int) string {
		if i == w.n() {
			return atomic.StatusSkipped
		}
		return atomic.StatusUndone
	})
}
