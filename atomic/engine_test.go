package atomic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// touch is a test step kind: it creates Dir/Name and logs every call to
// Dir/log, so tests can see exactly what ran, in which order, across
// processes.
type touch struct {
	Dir      string `json:"dir"`
	Name     string `json:"name"`
	FailUndo bool   `json:"fail_undo,omitempty"`
	Bad      bool   `json:"bad,omitempty"`
}

func (touch) StepKind() string { return "test.touch" }

func (t touch) Validate() error {
	if t.Bad {
		return errors.New("bad on purpose")
	}
	return nil
}

type touchResult struct {
	Path string `json:"path"`
}

// wipe is an irreversible test step: it removes Dir/Name at commit.
type wipe struct {
	Dir  string `json:"dir"`
	Name string `json:"name"`
}

func (wipe) StepKind() string { return "test.wipe" }

// drop is an irreversible test step like wipe, with a Check (the file is
// gone), as the real irreversible kinds have: it removes Dir/Name at commit.
type drop struct {
	Dir  string `json:"dir"`
	Name string `json:"name"`
}

func (drop) StepKind() string { return "test.drop" }

func logCall(dir, what string) {
	f, err := os.OpenFile(filepath.Join(dir, "log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		panic(err)
	}
	fmt.Fprintln(f, what)
	f.Close()
}

func readLog(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "log"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func TestMain(m *testing.M) {
	if os.Getenv("BOFH_TEST_VERBOSE") == "" {
		slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
	os.Exit(m.Run())
}

func init() {
	Register(Def[touch, struct{}, touchResult]{
		Doc: "test step",
		Prepare: func(_ context.Context, _ *Env, p touch) (Plan[struct{}, touchResult], error) {
			_, err := os.Stat(filepath.Join(p.Dir, p.Name))
			if err == nil {
				return Plan[struct{}, touchResult]{Noop: true, Result: touchResult{Path: filepath.Join(p.Dir, p.Name)}}, nil
			}
			return Plan[struct{}, touchResult]{}, nil
		},
		Do: func(_ context.Context, _ *Env, p touch, _ struct{}) (touchResult, error) {
			logCall(p.Dir, "do:"+p.Name)
			path := filepath.Join(p.Dir, p.Name)
			return touchResult{Path: path}, os.WriteFile(path, []byte(p.Name), 0o644)
		},
		Undo: func(_ context.Context, _ *Env, p touch, _ struct{}, _ touchResult) error {
			if p.FailUndo {
				if _, err := os.Stat(filepath.Join(p.Dir, "undo-blocker")); err == nil {
					logCall(p.Dir, "undo-failed:"+p.Name)
					return errors.New("blocked")
				}
			}
			logCall(p.Dir, "undo:"+p.Name)
			err := os.Remove(filepath.Join(p.Dir, p.Name))
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		},
		Check: func(_ context.Context, _ *Env, p touch, _ struct{}) (bool, touchResult, error) {
			path := filepath.Join(p.Dir, p.Name)
			_, err := os.Stat(path)
			return err == nil, touchResult{Path: path}, nil
		},
	})
	Register(Def[drop, struct{}, struct{}]{
		Doc:          "irreversible test step with a Check",
		Irreversible: true,
		Do: func(_ context.Context, _ *Env, p drop, _ struct{}) (struct{}, error) {
			logCall(p.Dir, "drop:"+p.Name)
			return struct{}{}, os.Remove(filepath.Join(p.Dir, p.Name))
		},
		Check: func(_ context.Context, _ *Env, p drop, _ struct{}) (bool, struct{}, error) {
			_, err := os.Stat(filepath.Join(p.Dir, p.Name))
			return errors.Is(err, os.ErrNotExist), struct{}{}, nil
		},
	})
	Register(Def[wipe, struct{}, struct{}]{
		Doc:          "irreversible test step",
		Irreversible: true,
		Do: func(_ context.Context, _ *Env, p wipe, _ struct{}) (struct{}, error) {
			logCall(p.Dir, "wipe:"+p.Name)
			return struct{}{}, os.Remove(filepath.Join(p.Dir, p.Name))
		},
	})
}

func workflow(dir string, names ...string) func(*Tx) error {
	return func(tx *Tx) error {
		for _, n := range names {
			if err := tx.Do(context.Background(), touch{Dir: dir, Name: n}, nil); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestRunCommitsAndRollsBackInReverse(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e"}
	for i := 1; i <= len(names); i++ {
		for _, phase := range []string{FailBefore, FailAfter} {
			t.Run(fmt.Sprintf("%d-%s", i, phase), func(t *testing.T) {
				dir, state := t.TempDir(), t.TempDir()
				err := Run(context.Background(), "w", workflow(dir, names...),
					WithStateDir(state), WithFailpoints(fmt.Sprintf("%d:%s:error", i, phase)))
				if ExitCode(err) != ExitRolledBack || !errors.Is(err, ErrFailpoint) {
					t.Fatalf("err = %v (exit %d), want a rolled-back failpoint", err, ExitCode(err))
				}
				var want []string
				for _, n := range names[:i-1] {
					want = append(want, "do:"+n)
				}
				if phase == FailAfter {
					want = append(want, "do:"+names[i-1], "undo:"+names[i-1])
				}
				for j := i - 2; j >= 0; j-- {
					want = append(want, "undo:"+names[j])
				}
				if got := readLog(t, dir); !slices.Equal(got, want) {
					t.Fatalf("calls\n got %v\nwant %v", got, want)
				}
				ents, _ := os.ReadDir(dir)
				for _, e := range ents {
					if e.Name() != "log" {
						t.Fatalf("left behind: %s", e.Name())
					}
				}
				txs, _ := List(state)
				if len(txs) != 1 || txs[0].State != StateRolledBack {
					t.Fatalf("list: %+v", txs)
				}
				if _, err := os.Stat(dataDir(state, txs[0].ID)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("backups of a rolled-back transaction were kept")
				}
			})
		}
	}
}

func TestOnlyUndoWhatYouDid(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(dir, "pre"), []byte("x"), 0o644)
	err := Run(context.Background(), "w", workflow(dir, "pre", "new"), WithStateDir(state), WithFailpoints("2:after:error"))
	requireFailpoint(t, err, "2:after:error")
	if ExitCode(err) != ExitRolledBack {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "pre")); err != nil {
		t.Fatal("rollback removed a file the transaction did not create")
	}
	if got, want := readLog(t, dir), []string{"do:new", "undo:new"}; !slices.Equal(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
}

func TestIrreversibleRunsAtCommit(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(dir, "old"), []byte("x"), 0o644)
	ctx := context.Background()
	fn := func(fail bool) func(tx *Tx) error {
		return func(tx *Tx) error {
			if err := tx.Do(ctx, wipe{Dir: dir, Name: "old"}, nil); err != nil {
				return err
			}
			if err := tx.Do(ctx, touch{Dir: dir, Name: "new"}, nil); err != nil {
				return err
			}
			if fail {
				return errors.New("later failure")
			}
			return nil
		}
	}
	// a failure before commit: the irreversible step never ran
	if err := Run(ctx, "w", fn(true), WithStateDir(state)); ExitCode(err) != ExitRolledBack {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "old")); err != nil {
		t.Fatal("irreversible step ran before commit")
	}
	if err := Run(ctx, "w", fn(false), WithStateDir(state)); err != nil {
		t.Fatal(err)
	}
	want := []string{"do:new", "undo:new", "do:new", "wipe:old"}
	if got := readLog(t, dir); !slices.Equal(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
}

func TestIrreversibleFailingAtCommitRollsBack(t *testing.T) {
	for _, fail := range []string{"1:before:error"} {
		t.Run(fail, func(t *testing.T) {
			dir, state := t.TempDir(), t.TempDir()
			os.WriteFile(filepath.Join(dir, "old"), []byte("x"), 0o644)
			ctx := context.Background()
			err := Run(ctx, "w", func(tx *Tx) error {
				if err := tx.Do(ctx, wipe{Dir: dir, Name: "old"}, nil); err != nil {
					return err
				}
				return tx.Do(ctx, touch{Dir: dir, Name: "new"}, nil)
			}, WithStateDir(state), WithFailpoints(fail))
			if ExitCode(err) != ExitRolledBack {
				t.Fatalf("err %v exit %d, want a clean rollback (the irreversible step never acted)", err, ExitCode(err))
			}
			if got, want := readLog(t, dir), []string{"do:new", "undo:new"}; !slices.Equal(got, want) {
				t.Fatalf("calls %v, want %v", got, want)
			}
			if _, err := os.Stat(filepath.Join(dir, "old")); err != nil {
				t.Fatal("the irreversible step acted")
			}
		})
	}
}

func TestRollbackFailedThenRerun(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	ctx := context.Background()
	os.WriteFile(filepath.Join(dir, "undo-blocker"), nil, 0o644)
	err := Run(ctx, "w", func(tx *Tx) error {
		for _, p := range []touch{{Dir: dir, Name: "a"}, {Dir: dir, Name: "b", FailUndo: true}, {Dir: dir, Name: "c"}} {
			if err := tx.Do(ctx, p, nil); err != nil {
				return err
			}
		}
		return errors.New("boom")
	}, WithStateDir(state))
	if ExitCode(err) != ExitRollbackIncomplete {
		t.Fatalf("err %v, exit %d, want 3", err, ExitCode(err))
	}
	txs, _ := List(state)
	if txs[0].State != StateRollbackFailed {
		t.Fatalf("state %s", txs[0].State)
	}
	// the operator removes the cause; the second rollback finishes
	os.Remove(filepath.Join(dir, "undo-blocker"))
	if err := RollbackID(ctx, txs[0].ID, nil, WithStateDir(state)); err != nil {
		t.Fatal(err)
	}
	want := []string{"do:a", "do:b", "do:c", "undo:c", "undo-failed:b", "undo:b", "undo:a"}
	if got := readLog(t, dir); !slices.Equal(got, want) {
		t.Fatalf("calls %v, want %v", got, want)
	}
	d, _ := Show(state, txs[0].ID)
	if d.State != StateRolledBack {
		t.Fatalf("state %s", d.State)
	}
}

func TestRollbackSkip(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	ctx := context.Background()
	os.WriteFile(filepath.Join(dir, "undo-blocker"), nil, 0o644)
	err := Run(ctx, "w", func(tx *Tx) error {
		tx.Do(ctx, touch{Dir: dir, Name: "a"}, nil)
		tx.Do(ctx, touch{Dir: dir, Name: "b", FailUndo: true}, nil)
		return errors.New("boom")
	}, WithStateDir(state))
	if ExitCode(err) != ExitRollbackIncomplete {
		t.Fatal(err)
	}
	txs, _ := List(state)
	if err := RollbackID(ctx, txs[0].ID, []int{2}, WithStateDir(state)); err != nil {
		t.Fatal(err)
	}
	d, _ := Show(state, txs[0].ID)
	if d.State != StateRolledBack || d.Steps[1].Status != StatusSkipped || d.Steps[0].Status != StatusUndone {
		t.Fatalf("after skip: %+v", d)
	}
	if err := RollbackID(ctx, txs[0].ID, []int{9}, WithStateDir(state)); err != nil {
		t.Fatalf("rolling back a rolled-back tx again should be a no-op: %v", err)
	}
}

func TestInvalidParamsChangeNothing(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	err := Run(context.Background(), "w", func(tx *Tx) error {
		return tx.Do(context.Background(), touch{Dir: dir, Name: "x", Bad: true}, nil)
	}, WithStateDir(state))
	if ExitCode(err) != ExitInvalid {
		t.Fatalf("err %v exit %d, want 2", err, ExitCode(err))
	}
	if got := readLog(t, dir); len(got) != 0 {
		t.Fatalf("ran: %v", got)
	}
	if txs, _ := List(state); len(txs) != 0 {
		t.Fatalf("a transaction that did nothing left a journal: %+v", txs)
	}
	if err := Validate(touch{Bad: true}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Validate: %v", err)
	}
}

func TestDryRunWritesNoJournal(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	var out strings.Builder
	err := Run(context.Background(), "w", func(tx *Tx) error {
		// touch has no dry-run support on purpose: a dry run must still not
		// journal anything; kinds are expected to check env.DryRun
		return nil
	}, WithStateDir(state), WithDryRun(&out))
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(state, "journal")); len(ents) != 0 {
		t.Fatalf("dry run wrote journals: %v", ents)
	}
	_ = dir
}

// TestReplay crashes a Go workflow half-way (SIGKILL from a failpoint, in
// a child process), reruns it with the same ID and checks that done steps
// are not redone, the uncertain one is resolved with Check, and a changed
// workflow is reported as diverged.
func TestReplay(t *testing.T) {
	if os.Getenv("BOFH_TEST_CHILD") == "replay" {
		err := Run(context.Background(), "w", workflow(os.Getenv("DIR"), "a", "b", "c", "d"),
			WithStateDir(os.Getenv("STATE")), WithID("replay-1"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(ExitCode(err))
		}
		os.Exit(0)
	}
	for _, phase := range []string{FailBefore, FailAfter} {
		t.Run(phase, func(t *testing.T) {
			dir, state := t.TempDir(), t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestReplay$")
			cmd.Env = append(os.Environ(), "BOFH_TEST_CHILD=replay", "DIR="+dir, "STATE="+state, FailEnv+"=3:"+phase+":kill")
			if err := cmd.Run(); err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("child: %v, want killed", err)
			}
			d, err := Show(state, "replay-1")
			if err != nil || d.State != StateInterrupted || d.Steps[2].Status != StatusUncertain {
				t.Fatalf("after kill: %+v %v", d, err)
			}
			// a changed workflow is refused, and leaves the journal alone
			err = Run(context.Background(), "w", workflow(dir, "a", "X", "c", "d"), WithStateDir(state), WithID("replay-1"))
			if !errors.Is(err, ErrDiverged) || ExitCode(err) != ExitRollbackIncomplete {
				t.Fatalf("changed workflow: %v", err)
			}
			if d, _ := Show(state, "replay-1"); d.State != StateInterrupted {
				t.Fatalf("divergence changed the journal: %s", d.State)
			}
			// the same workflow resumes
			if err := Run(context.Background(), "w", workflow(dir, "a", "b", "c", "d"), WithStateDir(state), WithID("replay-1")); err != nil {
				t.Fatal(err)
			}
			want := []string{"do:a", "do:b", "do:c", "do:d"}
			if phase == FailBefore {
				want = []string{"do:a", "do:b", "do:c", "do:d"} // c never ran before the kill
			}
			if got := readLog(t, dir); !slices.Equal(got, want) {
				t.Fatalf("calls %v, want %v (no step done twice)", got, want)
			}
			if d, _ := Show(state, "replay-1"); d.State != StateCommitted || d.Done != 4 {
				t.Fatalf("after replay: %+v", d.Summary)
			}
			// rerunning a committed workflow returns recorded results, acts on nothing
			if err := Run(context.Background(), "w", workflow(dir, "a", "b", "c", "d"), WithStateDir(state), WithID("replay-1")); err != nil {
				t.Fatal(err)
			}
			if got := readLog(t, dir); len(got) != 4 {
				t.Fatalf("rerun of committed workflow acted: %v", got)
			}
		})
	}
}

func TestParseFailpoints(t *testing.T) {
	good := map[string]int{"": 0, "3:after:kill": 1, "1:before:error, 2:undo:kill": 2}
	for s, n := range good {
		fp, err := ParseFailpoints(s)
		if err != nil || len(fp) != n {
			t.Errorf("%q: %v %v", s, fp, err)
		}
	}
	for _, s := range []string{"x", "0:after:kill", "1:during:kill", "1:after:explode", "1:after"} {
		if _, err := ParseFailpoints(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: err %v, want ErrInvalid", s, err)
		}
	}
}

// irreversibleWorkflow is touch a, wipe old1 (deferred), touch b, wipe old2
// (deferred): steps 1 to 4; at commit step 2 runs, then step 4.
func irreversibleWorkflow(dir string) func(*Tx) error {
	ctx := context.Background()
	return func(tx *Tx) error {
		for _, p := range []Params{touch{Dir: dir, Name: "a"}, drop{Dir: dir, Name: "old1"}, touch{Dir: dir, Name: "b"}, drop{Dir: dir, Name: "old2"}} {
			if err := tx.Do(ctx, p, nil); err != nil {
				return err
			}
		}
		return nil
	}
}

func statuses(t *testing.T, state, id string) []string {
	t.Helper()
	d, err := Show(state, id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range d.Steps {
		out = append(out, s.Status)
	}
	return append(out, string(d.State))
}

func present(dir string, names ...string) []string {
	var out []string
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// TestFailureAfterIrreversibleActed fails a transaction at commit after an
// irreversible step has acted (its own failure after its effect, or a later
// deferred step's) and checks the design's point of no return: the error
// wraps the failpoint and ErrRollbackIncomplete (exit 3), the rollback
// undoes the reversible steps down to the irreversible step that ran and
// stops there, the journal is kept as rollback-failed with the failure
// recorded, a rerun is refused, and skipping the irreversible steps that
// ran finishes the rollback. A deferred step that fails before any has
// acted still rolls back cleanly (exit 1).
func TestFailureAfterIrreversibleActed(t *testing.T) {
	tests := []struct {
		name       string
		fail       string
		exit       int
		log        []string // calls when Run returns
		status     []string // step statuses, then the state
		present    []string // files of a, b, old1, old2 left
		skip       []int    // steps the operator skips in 'tx rollback'
		logSkip    []string // calls added by that rollback
		presentEnd []string
		journal    []string // records from the commit on (commitRecords)
	}{
		{"first irreversible fails before acting", "2:before:error", ExitRolledBack,
			[]string{"do:a", "do:b", "undo:b", "undo:a"},
			[]string{StatusUndone, StatusDeferred, StatusUndone, StatusDeferred, string(StateRolledBack)},
			[]string{"old1", "old2"}, nil, nil, []string{"old1", "old2"},
			[]string{"commit", "fail step 2 test.drop: failpoint: step 2 before", "rollback", "undone 3", "undone 1", "rolled-back"}},
		{"first irreversible acts then fails", "2:after:error", ExitRollbackIncomplete,
			[]string{"do:a", "do:b", "drop:old1", "undo:b"},
			[]string{StatusDone, StatusUncertain, StatusUndone, StatusDeferred, string(StateRollbackFailed)},
			[]string{"a", "old2"}, []int{2}, []string{"undo:a"}, []string{"old2"},
			[]string{"commit", "run 2", "fail step 2 test.drop: failpoint: step 2 after", "rollback", "undone 3", "undo-failed 2", "rollback-failed 2"}},
		{"second irreversible fails before acting", "4:before:error", ExitRollbackIncomplete,
			[]string{"do:a", "do:b", "drop:old1", "undo:b"},
			[]string{StatusDone, StatusDone, StatusUndone, StatusDeferred, string(StateRollbackFailed)},
			[]string{"a", "old2"}, []int{2}, []string{"undo:a"}, []string{"old2"},
			[]string{"commit", "run 2", "done 2", "fail step 4 test.drop: failpoint: step 4 before", "rollback", "undone 3", "undo-failed 2", "rollback-failed 2"}},
		{"second irreversible acts then fails", "4:after:error", ExitRollbackIncomplete,
			[]string{"do:a", "do:b", "drop:old1", "drop:old2"},
			[]string{StatusDone, StatusDone, StatusDone, StatusUncertain, string(StateRollbackFailed)},
			[]string{"a", "b"}, []int{2, 4}, []string{"undo:b", "undo:a"}, nil,
			[]string{"commit", "run 2", "done 2", "run 4", "fail step 4 test.drop: failpoint: step 4 after", "rollback", "undo-failed 4", "rollback-failed 4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			dir, state := t.TempDir(), t.TempDir()
			for _, n := range []string{"old1", "old2"} {
				if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := Run(ctx, "w", irreversibleWorkflow(dir), WithStateDir(state), WithFailpoints(tt.fail))
			requireFailpoint(t, err, tt.fail)
			if got := ExitCode(err); got != tt.exit {
				t.Fatalf("exit %d, want %d: %v", got, tt.exit, err)
			}
			if incomplete := errors.Is(err, ErrRollbackIncomplete); incomplete != (tt.exit == ExitRollbackIncomplete) {
				t.Errorf("error wraps ErrRollbackIncomplete: %v, want %v: %v", incomplete, !incomplete, err)
			}
			if diff := cmp.Diff(tt.log, readLog(t, dir)); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			txs, err2 := List(state)
			if err2 != nil || len(txs) != 1 {
				t.Fatalf("journals: %+v %v", txs, err2)
			}
			id := txs[0].ID
			if diff := cmp.Diff(tt.status, statuses(t, state, id)); diff != "" {
				t.Errorf("journal (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.journal, commitRecords(t, state, id)); diff != "" {
				t.Errorf("journal from commit on (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.present, present(dir, "a", "b", "old1", "old2")); diff != "" {
				t.Errorf("files left (-want +got):\n%s", diff)
			}
			if tt.exit == ExitRolledBack {
				return
			}
			// the journal is not resumable once its rollback failed: a
			// rerun is refused and changes nothing
			err = Run(ctx, "w", irreversibleWorkflow(dir), WithStateDir(state), WithID(id))
			if !errors.Is(err, ErrInvalid) || ExitCode(err) != ExitInvalid {
				t.Errorf("rerun after a failed rollback: %v (exit %d), want refused (exit 2)", err, ExitCode(err))
			}
			// without skipping, a second rollback stops at the same step
			err = RollbackID(ctx, id, nil, WithStateDir(state))
			if !errors.Is(err, ErrRollbackIncomplete) || !strings.Contains(err.Error(), "irreversible and already ran") {
				t.Errorf("rollback without skip: %v", err)
			}
			if err := RollbackID(ctx, id, tt.skip, WithStateDir(state)); err != nil {
				t.Fatalf("rollback skipping %v: %v", tt.skip, err)
			}
			if diff := cmp.Diff(append(slices.Clone(tt.log), tt.logSkip...), readLog(t, dir)); diff != "" {
				t.Errorf("calls after the skipping rollback (-want +got):\n%s", diff)
			}
			if d, _ := Show(state, id); d.State != StateRolledBack {
				t.Errorf("state after the skipping rollback: %s", d.State)
			}
			if diff := cmp.Diff(tt.presentEnd, present(dir, "a", "b", "old1", "old2")); diff != "" {
				t.Errorf("files left at the end (-want +got):\n%s", diff)
			}
		})
	}
}

// TestKillAfterIrreversibleActed SIGKILLs a Go workflow (child process) at
// commit, before and after an irreversible step acts, then either reruns
// it with the same ID (resume: the irreversible steps that ran are
// resolved with their Check and not run again, the rest run, committed) or
// rolls it back from the journal (clean only if no irreversible step
// acted; otherwise exit 3 at the first one that ran).
func TestKillAfterIrreversibleActed(t *testing.T) {
	if os.Getenv("BOFH_TEST_CHILD") == "irreversible" {
		err := Run(context.Background(), "w", irreversibleWorkflow(os.Getenv("DIR")), WithStateDir(os.Getenv("STATE")), WithID("irr-1"))
		fmt.Fprintln(os.Stderr, "child survived its failpoint:", err)
		os.Exit(9)
	}
	ctx := context.Background()
	tests := []struct {
		fail     string
		killed   []string // calls when the child dies
		status   []string
		rollback int      // exit code of 'tx rollback'
		undone   []string // calls it adds
	}{
		{"2:before:kill", []string{"do:a", "do:b"},
			[]string{StatusDone, StatusDeferred, StatusDone, StatusDeferred, string(StateInterrupted)},
			ExitOK, []string{"undo:b", "undo:a"}},
		{"2:after:kill", []string{"do:a", "do:b", "drop:old1"},
			[]string{StatusDone, StatusUncertain, StatusDone, StatusDeferred, string(StateInterrupted)},
			ExitRollbackIncomplete, []string{"undo:b"}},
		{"4:before:kill", []string{"do:a", "do:b", "drop:old1"},
			[]string{StatusDone, StatusDone, StatusDone, StatusDeferred, string(StateInterrupted)},
			ExitRollbackIncomplete, []string{"undo:b"}},
		{"4:after:kill", []string{"do:a", "do:b", "drop:old1", "drop:old2"},
			[]string{StatusDone, StatusDone, StatusDone, StatusUncertain, string(StateInterrupted)},
			ExitRollbackIncomplete, nil},
	}
	for _, tt := range tests {
		for _, then := range []string{"resume", "rollback"} {
			t.Run(tt.fail+"-"+then, func(t *testing.T) {
				dir, state := t.TempDir(), t.TempDir()
				for _, n := range []string{"old1", "old2"} {
					if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				cmd := exec.Command(os.Args[0], "-test.run=^TestKillAfterIrreversibleActed$")
				cmd.Env = append(os.Environ(), "BOFH_TEST_CHILD=irreversible", "DIR="+dir, "STATE="+state, FailEnv+"="+tt.fail)
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != -1 {
					t.Fatalf("child was not killed by its failpoint: %v\n%s", err, out)
				}
				if diff := cmp.Diff(tt.killed, readLog(t, dir)); diff != "" {
					t.Errorf("calls before the kill (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(tt.status, statuses(t, state, "irr-1")); diff != "" {
					t.Errorf("journal after the kill (-want +got):\n%s", diff)
				}
				if then == "resume" {
					if err := Run(ctx, "w", irreversibleWorkflow(dir), WithStateDir(state), WithID("irr-1")); err != nil {
						t.Fatalf("resume: %v", err)
					}
					want := []string{"do:a", "do:b", "drop:old1", "drop:old2"}
					if diff := cmp.Diff(want, readLog(t, dir)); diff != "" {
						t.Errorf("calls after resume, each once (-want +got):\n%s", diff)
					}
					if d, _ := Show(state, "irr-1"); d.State != StateCommitted {
						t.Errorf("state after resume: %s", d.State)
					}
					if diff := cmp.Diff([]string{"a", "b"}, present(dir, "a", "b", "old1", "old2")); diff != "" {
						t.Errorf("files after resume (-want +got):\n%s", diff)
					}
					return
				}
				err = RollbackID(ctx, "irr-1", nil, WithStateDir(state))
				if got := ExitCode(err); got != tt.rollback {
					t.Fatalf("rollback: exit %d, want %d: %v", got, tt.rollback, err)
				}
				if diff := cmp.Diff(append(slices.Clone(tt.killed), tt.undone...), readLog(t, dir)); diff != "" {
					t.Errorf("calls after rollback (-want +got):\n%s", diff)
				}
				want := StateRolledBack
				if tt.rollback != ExitOK {
					want = StateRollbackFailed
				}
				if d, _ := Show(state, "irr-1"); d.State != want {
					t.Errorf("state after rollback: %s, want %s", d.State, want)
				}
			})
		}
	}
}

// commitRecords returns the journal's records from the commit on, as
// "type step" ("type" alone for records of the transaction), with the
// error of a fail record.
func commitRecords(t *testing.T, state, id string) []string {
	t.Helper()
	f, err := os.Open(journalPath(state, id))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, _, torn, err := ReadJournal(f)
	if err != nil || torn {
		t.Fatalf("journal: torn %v, %v", torn, err)
	}
	var out []string
	for _, r := range recs {
		if r.Type == recCommitStart {
			out = out[:0]
		}
		switch {
		case r.Type == recFail:
			out = append(out, r.Type+" "+r.Error)
		case r.Step != 0:
			out = append(out, fmt.Sprintf("%s %d", r.Type, r.Step))
		default:
			out = append(out, r.Type)
		}
	}
	return out
}

// requireFailpoint fails the test unless err comes from the failpoint the
// test set (fail, "n:phase:error"): a failpoint that never fires would
// otherwise let a test pass on a transaction that did something else.
func requireFailpoint(t *testing.T, err error, fail string) {
	t.Helper()
	n, phase, _ := strings.Cut(strings.TrimSuffix(fail, ":error"), ":")
	if !errors.Is(err, ErrFailpoint) || !strings.Contains(err.Error(), fmt.Sprintf("failpoint: step %s %s", n, phase)) {
		t.Fatalf("failpoint %s did not fire: %v", fail, err)
	}
}
