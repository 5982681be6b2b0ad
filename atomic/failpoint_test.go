package atomic

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/bofhkit/bofh/run"
)

// cmds is a test step kind of several commands: its Do runs "mk" three
// times (files Name.1 to Name.3 in Dir), its Undo "rm" three times; the
// commands go through the step's runner, so cmd<k> and undocmd<k>
// failpoints fire between them.
type cmds struct {
	Dir  string `json:"dir"`
	Name string `json:"name"`
}

func (cmds) StepKind() string { return "test.cmds" }

func (c cmds) file(i int) string { return filepath.Join(c.Dir, fmt.Sprintf("%s.%d", c.Name, i)) }

func init() {
	Register(Def[cmds, struct{}, struct{}]{
		Doc: "test step of three commands",
		Do: func(ctx context.Context, env *Env, c cmds, _ struct{}) (struct{}, error) {
			for i := 1; i <= 3; i++ {
				if _, err := env.Runner.Run(ctx, run.M("mk", c.file(i))); err != nil {
					return struct{}{}, err
				}
			}
			return struct{}{}, nil
		},
		Undo: func(ctx context.Context, env *Env, c cmds, _ struct{}, _ struct{}) error {
			for i := 1; i <= 3; i++ {
				if _, err := env.Runner.Run(ctx, run.M("rm", c.file(i))); err != nil {
					return err
				}
			}
			return nil
		},
		// present if any command took effect: a partial effect is undone
		Check: func(ctx context.Context, env *Env, c cmds, _ struct{}) (bool, struct{}, error) {
			for i := 1; i <= 3; i++ {
				if _, err := env.Runner.Run(ctx, run.Q("test", "-e", c.file(i))); err == nil {
					return true, struct{}{}, nil
				}
			}
			return false, struct{}{}, nil
		},
	})
}

// fileRunner plays mk (create a file), rm (remove it) and test -e, and
// logs each mutation as "mk:<base>" or "rm:<base>" to <dir>/cmdlog, across
// processes.
type fileRunner struct{ dir string }

func (r fileRunner) Run(_ context.Context, c run.Cmd) (run.Result, error) {
	path := c.Argv[len(c.Argv)-1]
	var err error
	switch c.Argv[0] {
	case "mk":
		err = os.WriteFile(path, nil, 0o600)
	case "rm":
		if err = os.Remove(path); errors.Is(err, os.ErrNotExist) {
			err = nil
		}
	case "test":
		if _, serr := os.Stat(path); serr != nil {
			return run.Result{ExitCode: 1}, &run.Error{Argv: c.Argv, ExitCode: 1}
		}
		return run.Result{}, nil
	}
	if err != nil {
		return run.Result{ExitCode: 1}, err
	}
	f, err := os.OpenFile(filepath.Join(r.dir, "cmdlog"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return run.Result{}, err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%s:%s\n", c.Argv[0], filepath.Base(path))
	return run.Result{}, err
}

func cmdLog(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cmdlog"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// effects lists the files the steps made (the log aside).
func effects(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Name() != "cmdlog" {
			out = append(out, e.Name())
		}
	}
	return out
}

func cmdsWorkflow(dir string) func(*Tx) error {
	return func(tx *Tx) error {
		for _, n := range []string{"a", "b"} {
			if err := tx.Do(context.Background(), cmds{Dir: dir, Name: n}, nil); err != nil {
				return err
			}
		}
		return nil
	}
}

func mk(names ...string) []string {
	var out []string
	for _, n := range names {
		out = append(out, "mk:"+n)
	}
	return out
}

func rm(names ...string) []string {
	var out []string
	for _, n := range names {
		out = append(out, "rm:"+n)
	}
	return out
}

func cat(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestParseCmdFailpoints(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Failpoints
	}{
		{"2:cmd1:kill", Failpoints{{step: 2, phase: FailCmd, cmd: 1, kill: true}}},
		{"1:cmd12:error", Failpoints{{step: 1, phase: FailCmd, cmd: 12}}},
		{"3:undocmd2:kill", Failpoints{{step: 3, phase: FailUndoCmd, cmd: 2, kill: true}}},
		{"0:end:kill", Failpoints{{step: 0, phase: FailEnd, kill: true}}},
		{"1:undo:kill, 4:cmd3:error", Failpoints{{step: 1, phase: FailUndo, kill: true}, {step: 4, phase: FailCmd, cmd: 3}}},
	} {
		got, err := ParseFailpoints(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(failpoint{})); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.in, diff)
		}
	}
	for _, s := range []string{"1:cmd:kill", "1:cmd0:kill", "1:cmd-1:kill", "1:cmd01:kill", "1:cmdx:kill",
		"1:undocmd:error", "1:undocmd0:error", "1:cmd1", "1:cmd1:explode", "0:cmd1:kill", "1:cmd 1:kill", "1:end:kill", "0:before:kill"} {
		if _, err := ParseFailpoints(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: err %v, want ErrInvalid", s, err)
		}
	}
}

// TestCmdFailpointError fails a step between its commands, in its Do and
// in its Undo, in process: rollback undoes the partial effect, in reverse.
func TestCmdFailpointError(t *testing.T) {
	all := cat(mk("a.1", "a.2", "a.3"), mk("b.1", "b.2", "b.3"))
	undoAll := cat(rm("b.1", "b.2", "b.3"), rm("a.1", "a.2", "a.3"))
	for _, tc := range []struct {
		fail   string
		code   int
		log    []string // after the run
		second []string // after a second rollback, if the first failed
	}{
		{"2:cmd2:error", ExitRolledBack, cat(mk("a.1", "a.2", "a.3", "b.1"), undoAll), nil},
		{"1:cmd1:error", ExitRolledBack, nil, nil}, // nothing took effect: Check finds nothing, nothing undone
		{"1:cmd3:error", ExitRolledBack, cat(mk("a.1", "a.2"), rm("a.1", "a.2", "a.3")), nil},
		{"2:cmd4:error", ExitOK, all, nil}, // only three commands: never fires
		{"2:after:error,2:undocmd2:error", ExitRollbackIncomplete, cat(all, rm("b.1")), undoAll},
		{"2:after:error,1:undocmd3:error", ExitRollbackIncomplete, cat(all, rm("b.1", "b.2", "b.3", "a.1", "a.2")), rm("a.1", "a.2", "a.3")},
	} {
		t.Run(tc.fail, func(t *testing.T) {
			dir, state := t.TempDir(), t.TempDir()
			opts := []Option{WithStateDir(state), WithRunner(fileRunner{dir}), WithFailpoints(tc.fail)}
			err := Run(context.Background(), "cmds", cmdsWorkflow(dir), opts...)
			if ExitCode(err) != tc.code || (tc.code != ExitOK && !errors.Is(err, ErrFailpoint)) {
				t.Fatalf("got %v (exit %d), want exit %d from the failpoint", err, ExitCode(err), tc.code)
			}
			if diff := cmp.Diff(tc.log, cmdLog(t, dir), cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("commands (-want +got):\n%s", diff)
			}
			if tc.code == ExitOK {
				return
			}
			if tc.second != nil {
				list, err := List(state)
				if err != nil || len(list) != 1 || list[0].State != StateRollbackFailed {
					t.Fatalf("journals: %+v %v", list, err)
				}
				if err := RollbackID(context.Background(), list[0].ID, nil, WithStateDir(state), WithRunner(fileRunner{dir}), WithFailpoints("")); err != nil {
					t.Fatalf("second rollback: %v", err)
				}
				if diff := cmp.Diff(cat(tc.log, tc.second), cmdLog(t, dir), cmpopts.EquateEmpty()); diff != "" {
					t.Fatalf("commands after the second rollback (-want +got):\n%s", diff)
				}
			}
			if left := effects(t, dir); len(left) != 0 {
				t.Fatalf("left behind: %v", left)
			}
		})
	}
}

// TestHelperFailpointChild is the child process of TestCmdFailpointKill:
// it runs the two-step cmds workflow with $BOFH_FAIL and the state dir and
// directory from the environment.
func TestHelperFailpointChild(t *testing.T) {
	dir := os.Getenv("BOFH_FAILPOINT_CHILD_DIR")
	if dir == "" {
		t.Skip("child process of TestCmdFailpointKill")
	}
	err := Run(context.Background(), "cmds", cmdsWorkflow(dir), WithStateDir(os.Getenv("BOFH_FAILPOINT_CHILD_STATE")), WithRunner(fileRunner{dir}))
	t.Fatalf("not killed: %v", err)
}

// TestCmdFailpointKill SIGKILLs a child process between two commands of a
// step's Do (cmd<k>), between two commands of its Undo (undocmd<k>), and
// right before its Undo (undo:kill) during the rollback of a failure; a
// rollback from the journal alone then finishes the job, in reverse
// order, and leaves nothing behind.
func TestCmdFailpointKill(t *testing.T) {
	all := cat(mk("a.1", "a.2", "a.3"), mk("b.1", "b.2", "b.3"))
	undoAll := cat(rm("b.1", "b.2", "b.3"), rm("a.1", "a.2", "a.3"))
	for _, tc := range []struct {
		fail    string
		killed  []string // commands the child ran
		effects []string // files left by the child
		rest    []string // commands of the rollback from the journal
	}{
		{"2:cmd2:kill", mk("a.1", "a.2", "a.3", "b.1"), []string{"a.1", "a.2", "a.3", "b.1"}, undoAll},
		{"1:cmd1:kill", nil, nil, nil},
		{"2:after:error,2:undocmd3:kill", cat(all, rm("b.1", "b.2")), []string{"a.1", "a.2", "a.3", "b.3"}, undoAll},
		{"2:after:error,2:undo:kill", all, []string{"a.1", "a.2", "a.3", "b.1", "b.2", "b.3"}, undoAll},
		{"2:after:error,1:undo:kill", cat(all, rm("b.1", "b.2", "b.3")), []string{"a.1", "a.2", "a.3"}, rm("a.1", "a.2", "a.3")},
	} {
		t.Run(tc.fail, func(t *testing.T) {
			dir, state := t.TempDir(), t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperFailpointChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "BOFH_FAILPOINT_CHILD_DIR="+dir, "BOFH_FAILPOINT_CHILD_STATE="+state, FailEnv+"="+tc.fail)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("child: %v, want killed by SIGKILL\n%s", err, out)
			}
			if diff := cmp.Diff(tc.killed, cmdLog(t, dir), cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("commands of the child (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.effects, effects(t, dir), cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("files after the kill (-want +got):\n%s", diff)
			}
			list, err := List(state)
			if err != nil || len(list) != 1 || list[0].State != StateInterrupted {
				t.Fatalf("journals: %+v %v", list, err)
			}
			if err := RollbackID(context.Background(), list[0].ID, nil, WithStateDir(state), WithRunner(fileRunner{dir}), WithFailpoints("")); err != nil {
				t.Fatalf("rollback: %v", err)
			}
			if diff := cmp.Diff(cat(tc.killed, tc.rest), cmdLog(t, dir), cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("commands after the rollback (-want +got):\n%s", diff)
			}
			if left := effects(t, dir); len(left) != 0 {
				t.Fatalf("left behind: %v", left)
			}
			if d, err := Show(state, list[0].ID); err != nil || d.State != StateRolledBack {
				t.Fatalf("after rollback: %+v %v", d, err)
			}
		})
	}
}
