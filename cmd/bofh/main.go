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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bofh:", err)
	}
	os.Exit(exitCode(err))
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
