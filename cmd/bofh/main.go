// Command bofh is the CLI of the bofh transactional sysadmin toolkit.
//
// Every mutating command runs as a journaled transaction: a failure rolls
// back what was done, and a crashed run can be rolled back or resumed with
// 'bofh tx'. See 'bofh --help'.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/bofhkit/bofh/atomic"
)

// stopRun is closed on the first SIGINT or SIGTERM: transactions stop at
// their next step boundary and roll back (see atomic.WithStop).
var stopRun = make(chan struct{})

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	handleSignals(cancel)
	root := newRoot()
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bofh:", err)
	}
	os.Exit(exitCode(err))
}

// handleSignals: the first SIGINT or SIGTERM stops a transaction at its
// next step boundary (the command in progress finishes; what was done is
// rolled back) and cancels a query at once. Later signals are reported,
// never obeyed in the middle of an undo: only SIGKILL stops a rollback,
// and then its journal is kept for 'bofh tx rollback'.
func handleSignals(cancel context.CancelCauseFunc) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		first := true
		for s := range sigs {
			if !first {
				fmt.Fprintf(os.Stderr, "bofh: %v again: finishing the rollback; it is not stopped in the middle of an undo\n", s)
				continue
			}
			first = false
			close(stopRun)
			if atomic.Active() == 0 {
				cancel(fmt.Errorf("%v", s))
				continue
			}
			fmt.Fprintf(os.Stderr, "bofh: %v: stopping before the next step; what was done will be rolled back\n", s)
		}
	}()
}

// usageError marks a bad command line (exit 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func exitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) {
		return atomic.ExitInvalid
	}
	if err != nil {
		// cobra's own command-line errors, which it returns unwrapped
		for _, p := range []string{"unknown command ", "required flag(s) ", "if any flags in the group "} {
			if strings.HasPrefix(err.Error(), p) {
				return atomic.ExitInvalid
			}
		}
	}
	return atomic.ExitCode(err)
}
