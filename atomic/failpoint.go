package atomic

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bofhkit/bofh/run"
)

// Failpoint phases.
const (
	FailBefore = "before" // after the intent record, before the effect
	FailAfter  = "after"  // after the effect, before the done record
	FailUndo   = "undo"   // in the step's undo, before it runs
	// FailCmd, followed by a number k ("cmd2"), fires right before the
	// k-th mutating command (run.Mutation) that the step's Do runs: a
	// crash in the middle of a step of several commands. Queries are not
	// counted. If Do runs fewer than k mutations, it never fires.
	FailCmd = "cmd"
	// FailUndoCmd, followed by a number k ("undocmd1"), fires right before
	// the k-th mutating command that the step's Undo runs.
	FailUndoCmd = "undocmd"
	// FailEnd fires after the transaction's terminal record (committed or
	// rolled back) and before its backups are removed: "0:end:kill"
	// crashes between the two ("error" skips the removal). Its step
	// number is 0: it belongs to the transaction, not to a step.
	FailEnd = "end"
)

// FailEnv is the environment variable holding failpoints:
// BOFH_FAIL=<n>:<before|after|undo|cmd<k>|undocmd<k>>:<error|kill>[,…],
// or 0:end:<error|kill> (see FailEnd).
// n is the step's 1-based number in the transaction, k a mutating
// command's 1-based number within the step's Do (cmd) or Undo (undocmd).
// "error" makes the step fail with an error wrapping ErrFailpoint (for
// cmd<k>: instead of running the command); "kill" SIGKILLs the process.
const FailEnv = "BOFH_FAIL"

type failpoint struct {
	step  int
	phase string // FailBefore, FailAfter, FailUndo, FailCmd or FailUndoCmd
	cmd   int    // k of cmd<k> and undocmd<k>
	kill  bool
}

// Failpoints is a parsed BOFH_FAIL value.
type Failpoints []failpoint

// ErrFailpoint is returned by a failpoint set to "error".
var ErrFailpoint = fmt.Errorf("failpoint")

// ParseFailpoints parses a BOFH_FAIL value such as
// "3:after:kill,5:undo:error,2:cmd2:kill".
func ParseFailpoints(s string) (Failpoints, error) {
	var out Failpoints
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		f := strings.Split(part, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("%w: %s %q: want <n>:<before|after|undo|cmd<k>|undocmd<k>>:<error|kill>", ErrInvalid, FailEnv, part)
		}
		n, err := strconv.Atoi(f[0])
		if f[1] == FailEnd {
			if err != nil || n != 0 {
				return nil, fmt.Errorf("%w: %s %q: the end failpoint is written 0:end:<error|kill>", ErrInvalid, FailEnv, part)
			}
		} else if err != nil || n < 1 {
			return nil, fmt.Errorf("%w: %s %q: step must be a number from 1", ErrInvalid, FailEnv, part)
		}
		fp := failpoint{step: n, phase: f[1]}
		switch {
		case f[1] == FailEnd:
		case f[1] == FailBefore, f[1] == FailAfter, f[1] == FailUndo:
		case strings.HasPrefix(f[1], FailUndoCmd), strings.HasPrefix(f[1], FailCmd):
			fp.phase = FailCmd
			if strings.HasPrefix(f[1], FailUndoCmd) {
				fp.phase = FailUndoCmd
			}
			k, err := strconv.Atoi(strings.TrimPrefix(f[1], fp.phase))
			if err != nil || k < 1 || strconv.Itoa(k) != strings.TrimPrefix(f[1], fp.phase) {
				return nil, fmt.Errorf("%w: %s %q: %s must be followed by a command number from 1", ErrInvalid, FailEnv, part, fp.phase)
			}
			fp.cmd = k
		default:
			return nil, fmt.Errorf("%w: %s %q: phase must be before, after, undo, cmd<k>, undocmd<k> or end", ErrInvalid, FailEnv, part)
		}
		if f[2] != "error" && f[2] != "kill" {
			return nil, fmt.Errorf("%w: %s %q: action must be error or kill", ErrInvalid, FailEnv, part)
		}
		fp.kill = f[2] == "kill"
		out = append(out, fp)
	}
	return out, nil
}

// hit fires the failpoint for step n in phase, if one is set: it kills the
// process with SIGKILL or returns an error wrapping ErrFailpoint.
func (fs Failpoints) hit(n int, phase string) error {
	for _, f := range fs {
		if f.step == n && f.phase == phase {
			return f.fire(fmt.Sprintf("step %d %s", n, phase))
		}
	}
	return nil
}

func (f failpoint) fire(what string) error {
	if f.kill {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Hour) // the signal is on its way
	}
	return fmt.Errorf("%w: %s", ErrFailpoint, what)
}

// runner returns r, wrapped to fire a cmd<k> (phase FailCmd) or
// undocmd<k> (FailUndoCmd) failpoint set for step n: the wrapper counts
// the mutating commands run through it. Without such a failpoint it
// returns r itself.
func (fs Failpoints) runner(r run.Runner, n int, phase string) run.Runner {
	var at []failpoint
	for _, f := range fs {
		if f.step == n && f.phase == phase {
			at = append(at, f)
		}
	}
	if len(at) == 0 {
		return r
	}
	return &failRunner{inner: r, at: at, step: n}
}

// failRunner counts a step's mutating commands and fires its failpoints
// before the k-th.
type failRunner struct {
	inner     run.Runner
	at        []failpoint
	step      int
	mutations int
}

// Run fires a failpoint set for this command's number, or runs it.
func (f *failRunner) Run(ctx context.Context, c run.Cmd) (run.Result, error) {
	if c.Kind == run.Mutation {
		f.mutations++
		for _, fp := range f.at {
			if fp.cmd == f.mutations {
				err := fp.fire(fmt.Sprintf("step %d %s%d (before %s)", f.step, fp.phase, fp.cmd, c.String()))
				return run.Result{ExitCode: -1}, err
			}
		}
	}
	return f.inner.Run(ctx, c)
}
