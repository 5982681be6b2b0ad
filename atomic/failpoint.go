package atomic

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Failpoint phases.
const (
	FailBefore = "before" // after the intent record, before the effect
	FailAfter  = "after"  // after the effect, before the done record
	FailUndo   = "undo"   // in the step's undo
)

// FailEnv is the environment variable holding failpoints:
// BOFH_FAIL=<n>:<before|after|undo>:<error|kill>[,…].
const FailEnv = "BOFH_FAIL"

type failpoint struct {
	step  int
	phase string
	kill  bool
}

// Failpoints is a parsed BOFH_FAIL value.
type Failpoints []failpoint

// ErrFailpoint is returned by a failpoint set to "error".
var ErrFailpoint = fmt.Errorf("failpoint")

// ParseFailpoints parses a BOFH_FAIL value such as "3:after:kill,5:undo:error".
func ParseFailpoints(s string) (Failpoints, error) {
	var out Failpoints
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		f := strings.Split(part, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("%w: %s %q: want <n>:<before|after|undo>:<error|kill>", ErrInvalid, FailEnv, part)
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%w: %s %q: step must be a number from 1", ErrInvalid, FailEnv, part)
		}
		if f[1] != FailBefore && f[1] != FailAfter && f[1] != FailUndo {
			return nil, fmt.Errorf("%w: %s %q: phase must be before, after or undo", ErrInvalid, FailEnv, part)
		}
		if f[2] != "error" && f[2] != "kill" {
			return nil, fmt.Errorf("%w: %s %q: action must be error or kill", ErrInvalid, FailEnv, part)
		}
		out = append(out, failpoint{step: n, phase: f[1], kill: f[2] == "kill"})
	}
	return out, nil
}

// hit fires the failpoint for step n in phase, if one is set: it kills the
// process with SIGKILL or returns an error wrapping ErrFailpoint.
func (fs Failpoints) hit(n int, phase string) error {
	for _, f := range fs {
		if f.step == n && f.phase == phase {
			if f.kill {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				time.Sleep(time.Hour) // the signal is on its way
			}
			return fmt.Errorf("%w: step %d %s", ErrFailpoint, n, phase)
		}
	}
	return nil
}
