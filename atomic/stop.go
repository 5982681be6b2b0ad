package atomic

import (
	"context"
	"errors"
	"fmt"
	satomic "sync/atomic"
)

// ErrInterrupted wraps the failure of a step that was not started because
// the run was asked to stop (a signal, through WithStop, or a cancelled
// context): the steps before it are rolled back as after any failure.
var ErrInterrupted = errors.New("interrupted")

// WithStop makes the transaction stop at the next step boundary once stop
// is closed: the step in progress (and its commands) finishes, no new step
// starts, and what was done is rolled back. The CLI closes it on the first
// SIGINT or SIGTERM.
func WithStop(stop <-chan struct{}) Option { return func(o *options) { o.stop = stop } }

// active counts the transactions of this process that have begun and not
// ended; see Active.
var active satomic.Int64

// Active reports how many transactions of this process are under way. The
// CLI uses it to tell whether a signal must wait for a step boundary (a
// transaction is running) or may cancel the command at once (a query).
func Active() int64 { return active.Load() }

// interrupted reports, before step n starts, whether the run was asked to
// stop.
func (tx *Tx) interrupted(ctx context.Context, n int) error {
	select {
	case <-tx.o.stop:
		return fmt.Errorf("%w: asked to stop; step %d was not started", ErrInterrupted, n)
	default:
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: step %d was not started: %w", ErrInterrupted, n, context.Cause(ctx))
	}
	return nil
}
