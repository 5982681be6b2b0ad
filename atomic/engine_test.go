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
