package atomic

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bofhkit/bofh/run"
)

// ErrInvalid marks bad input: nothing was done. The CLI exits 2 on it.
var ErrInvalid = errors.New("invalid input")

// ErrNotFound is returned for a transaction ID with no journal.
var ErrNotFound = errors.New("no such transaction")

// ErrDiverged is returned when a replayed workflow asks for a different
// step than its journal recorded at that position.
var ErrDiverged = errors.New("workflow diverged from its journal")

// ErrRollbackIncomplete marks a failure whose rollback did not finish;
// the journal is kept for 'bofh tx rollback'. The CLI exits 3 on it.
var ErrRollbackIncomplete = errors.New("rollback incomplete")

// DefaultStateDir is used when neither an option nor BOFH_STATE_DIR says
// where journals live.
const DefaultStateDir = "/var/lib/bofh"

// StateDirFromEnv returns $BOFH_STATE_DIR, or DefaultStateDir.
func StateDirFromEnv() string {
	if d := os.Getenv("BOFH_STATE_DIR"); d != "" {
		return d
	}
	return DefaultStateDir
}

// Env is what a step sees while it prepares, acts, checks or undoes.
type Env struct {
	// Runner executes external commands (a DryRun runner in a dry run).
	Runner run.Runner
	// Log is the transaction's logger.
	Log *slog.Logger
	// TxID is the transaction's ID.
	TxID string
	// Step is the step's 1-based number in the transaction.
	Step int
	// DryRun is set when nothing may change: steps that act without the
	// Runner (file steps) must describe their effect on Out instead.
	DryRun bool
	// Out receives dry-run descriptions ("would write /etc/x").
	Out io.Writer

	stateDir string
	// dryDir is the transaction's private scratch directory in a dry run.
	dryDir *string
}

// StepDir returns a private directory (0700) for this step's backups under
// the state dir, creating it. It is removed when the transaction ends.
func (e *Env) StepDir() (string, error) {
	if e.DryRun {
		// A dry run writes nothing under the state dir: its steps get a
		// private scratch directory of this transaction's, removed at its
		// end.
		if e.dryDir == nil {
			return "", errors.New("step has no state directory")
		}
		if *e.dryDir == "" {
			d, err := os.MkdirTemp("", "bofh-dry-run-")
			if err != nil {
				return "", fmt.Errorf("create dry-run scratch dir: %w", err)
			}
			*e.dryDir = d
		}
		d := filepath.Join(*e.dryDir, strconv.Itoa(e.Step))
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", fmt.Errorf("create dry-run scratch dir: %w", err)
		}
		return d, nil
	}
	if e.stateDir == "" {
		return "", errors.New("step has no state directory")
	}
	// Each level is opened without following a symlink and checked, and
	// each one created is fsync'ed into its parent, so a backup that
	// survives a power cut is also found again.
	s, err := openStateDir(e.stateDir, true)
	if err != nil {
		return "", fmt.Errorf("create step data dir: %w", err)
	}
	defer s.close()
	d := s
	for _, name := range []string{"data", e.TxID, strconv.Itoa(e.Step)} {
		sub, err := d.sub(name, true)
		if d != s {
			d.close()
		}
		if err != nil {
			return "", fmt.Errorf("create step data dir: %w", err)
		}
		d = sub
	}
	d.close()
	return d.path, nil
}

// CacheDir returns a private directory (0700) for caches a step kind
// keeps across transactions, <state dir>/cache/<name>, creating it.
// What is in it must be safe to lose: it is never journaled.
func (e *Env) CacheDir(name string) (string, error) {
	if e.stateDir == "" {
		return "", errors.New("step has no state directory")
	}
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return "", fmt.Errorf("%w: cache name %q", ErrInvalid, name)
	}
	d := filepath.Join(e.stateDir, "cache", name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", fmt.Errorf("create cache dir: %w", err)
	}
	return d, nil
}

// Dry prints a dry-run description of an effect and reports whether the
// step must stop there.
func (e *Env) Dry(format string, args ...any) bool {
	if !e.DryRun {
		return false
	}
	if e.Out != nil {
		fmt.Fprintf(e.Out, "would "+format+"\n", args...)
	}
	return true
}

// Option configures a transaction.
type Option func(*options)

type options struct {
	stateDir   string
	id         string
	runner     run.Runner
	log        *slog.Logger
	dryRun     bool
	out        io.Writer
	failpoints *string
	recipe     json.RawMessage
	noSync     bool
	stop       <-chan struct{}
}

// WithStateDir sets where journals and backups live.
func WithStateDir(dir string) Option { return func(o *options) { o.stateDir = dir } }

// WithID names the transaction. If a journal with that ID exists and was
// interrupted, the transaction replays it: steps already done return their
// recorded results.
func WithID(id string) Option { return func(o *options) { o.id = id } }

// WithRunner sets the runner steps use (default: run.Local).
func WithRunner(r run.Runner) Option { return func(o *options) { o.runner = r } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithDryRun makes the transaction change nothing: queries run, mutations
// are printed to out, and no journal is written.
func WithDryRun(out io.Writer) Option {
	return func(o *options) { o.dryRun, o.out = true, out }
}

// WithFailpoints sets failpoints (BOFH_FAIL syntax) instead of reading the
// environment; "" disables them.
func WithFailpoints(spec string) Option { return func(o *options) { o.failpoints = &spec } }

// withRecipe stores a recipe in the begin record so it can be resumed.
func withRecipe(r json.RawMessage) Option { return func(o *options) { o.recipe = r } }

// withoutSync disables fdatasync (benchmarks of the CPU cost only).
func withoutSync() Option { return func(o *options) { o.noSync = true } }

// step is a step's state in a transaction.
type step struct {
	n        int
	kind     string
	id       string
	params   json.RawMessage
	undo     json.RawMessage
	noop     bool
	deferred bool
	done     bool // effect known present (done record, or a noop)
	ran      bool // deferred step started at commit
	result   json.RawMessage
	undone   bool
	skipped  bool
	failed   bool
}

// Tx is a transaction: an ordered list of steps journaled on disk.
type Tx struct {
	id     string
	name   string
	o      options
	j      *journal
	fp     Failpoints
	steps  []*step
	replay []*step // steps recorded by an earlier run, not yet reached
	ended  bool
	recipe json.RawMessage
	// counted: this transaction is in Active until it is closed.
	counted bool
	// dryDir is a dry run's scratch directory ("" until a step asks).
	dryDir string
}

// NewID returns a fresh transaction ID: a UTC timestamp and random suffix.
func NewID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
}

func buildOptions(opts []Option) (options, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.stateDir == "" {
		o.stateDir = StateDirFromEnv()
	}
	if o.runner == nil {
		o.runner = &run.Local{Log: o.log}
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	if o.dryRun {
		o.runner = &run.DryRun{Inner: o.runner, Out: o.out}
	}
	return o, nil
}

// parseFailpoints returns the failpoints of WithFailpoints, or of BOFH_FAIL.
func (o options) parseFailpoints() (Failpoints, error) {
	spec := os.Getenv(FailEnv)
	if o.failpoints != nil {
		spec = *o.failpoints
	}
	return ParseFailpoints(spec)
}

// Begin opens a transaction. With WithID naming an interrupted
// transaction, the new Tx replays it; a committed one replays to its end
// (every step returns its recorded result, Commit does nothing).
func Begin(ctx context.Context, name string, opts ...Option) (*Tx, error) {
	o, err := buildOptions(opts)
	if err != nil {
		return nil, err
	}
	fp, err := o.parseFailpoints()
	if err != nil {
		return nil, err
	}
	tx := &Tx{name: name, o: o, fp: fp, recipe: o.recipe}
	if o.dryRun {
		tx.id = "dry-run-" + NewID()
		if o.id != "" {
			tx.id = o.id
		}
		return tx.begun(), nil
	}
	if o.id != "" {
		if err := ValidID(o.id); err != nil {
			return nil, err
		}
		j, recs, err := openJournal(o.stateDir, o.id)
		switch {
		case err == nil:
			tx.j = j
			tx.id = o.id
			if err := tx.load(recs); err != nil {
				j.close()
				return nil, err
			}
			tx.j.sync = !o.noSync
			return tx.begun(), nil
		case !errors.Is(err, ErrNotFound):
			return nil, err
		}
		tx.id = o.id
	} else {
		tx.id = NewID()
	}
	j, err := createJournal(o.stateDir, tx.id)
	if err != nil {
		return nil, err
	}
	j.sync = !o.noSync
	tx.j = j
	// A reused ID must not adopt the backups an earlier transaction of
	// that name left behind.
	if err := removeData(o.stateDir, tx.id); err != nil {
		j.remove()
		return nil, err
	}
	if err := j.append(&Record{Type: recBegin, TxID: tx.id, Name: name, PID: os.Getpid(), Recipe: o.recipe}); err != nil {
		// A journal without its begin record (disk full) is no
		// transaction: leave nothing an operator must forget by hand.
		j.remove()
		return nil, err
	}
	sweepData(o.stateDir)
	return tx.begun(), nil
}

// begun counts tx in Active.
func (tx *Tx) begun() *Tx {
	active.Add(1)
	tx.counted = true
	return tx
}

// load replays journal records into tx for a resumed run.
func (tx *Tx) load(recs []*Record) error {
	h, err := buildHistory(recs)
	if err != nil {
		return err
	}
	switch h.state {
	case StateRolledBack:
		return fmt.Errorf("%w: transaction %s was rolled back; start a new one", ErrInvalid, tx.id)
	case StateRollbackFailed:
		return fmt.Errorf("%w: transaction %s failed and its rollback is incomplete; run 'bofh tx rollback %s'", ErrInvalid, tx.id, tx.id)
	}
	if h.rollingBack {
		return fmt.Errorf("%w: transaction %s was being rolled back; run 'bofh tx rollback %s'", ErrInvalid, tx.id, tx.id)
	}
	if h.failed {
		return fmt.Errorf("%w: transaction %s failed before it was interrupted; run 'bofh tx rollback %s'", ErrInvalid, tx.id, tx.id)
	}
	tx.name = h.name
	if tx.recipe == nil {
		tx.recipe = h.recipe
	}
	tx.replay = h.steps
	tx.ended = h.state == StateCommitted
	return nil
}

// ID returns the transaction's ID.
func (tx *Tx) ID() string { return tx.id }

// Name returns the transaction's name.
func (tx *Tx) Name() string { return tx.name }

// Replaying reports whether steps recorded by an earlier run remain.
func (tx *Tx) Replaying() bool { return len(tx.replay) > 0 }

func (tx *Tx) env(n int) *Env {
	return &Env{Runner: tx.o.runner, Log: tx.o.log, TxID: tx.id, Step: n, DryRun: tx.o.dryRun, Out: tx.o.out, stateDir: tx.o.stateDir, dryDir: &tx.dryDir}
}

func (tx *Tx) append(r *Record) error {
	if tx.j == nil {
		return nil
	}
	return tx.j.append(r)
}

// StepError is a step that failed.
type StepError struct {
	Step int
	Kind string
	ID   string
	Err  error
}

func (e *StepError) Error() string {
	who := e.Kind
	if e.ID != "" {
		who = e.ID + " (" + e.Kind + ")"
	}
	return fmt.Sprintf("step %d %s: %v", e.Step, who, e.Err)
}

// Unwrap returns the step's error.
func (e *StepError) Unwrap() error { return e.Err }

// Validate checks a step's parameters without running anything: the kind
// is registered and its own validation passes. Errors wrap ErrInvalid.
func Validate(p Params) error {
	k, err := lookup(p.StepKind())
	if err != nil {
		return err
	}
	return k.validate(p)
}

// Do runs one step: it validates p, works out its undo, journals the
// intent, acts, and journals the result, which it decodes into out (a
// pointer, or nil). An irreversible step is only journaled here; it runs
// at Commit. When replaying, a step already done returns its recorded
// result without acting.
func (tx *Tx) Do(ctx context.Context, p Params, out any) error {
	return tx.do(ctx, "", p, out)
}

func (tx *Tx) do(ctx context.Context, id string, p Params, out any) error {
	if tx.ended && len(tx.replay) == 0 {
		return errors.New("atomic: transaction already ended")
	}
	k, err := lookup(p.StepKind())
	if err != nil {
		return err
	}
	n := len(tx.steps) + 1
	fail := func(err error) error { return &StepError{Step: n, Kind: k.name(), ID: id, Err: err} }
	if err := k.validate(p); err != nil {
		return fail(err)
	}
	params, err := json.Marshal(p)
	if err != nil {
		return fail(fmt.Errorf("encode parameters: %w", err))
	}
	env := tx.env(n)

	if len(tx.replay) > 0 {
		rec := tx.replay[0]
		if rec.kind != k.name() || !bytes.Equal(rec.params, params) {
			return fail(fmt.Errorf("%w: journal has %s %s at step %d, the workflow asks for %s %s",
				ErrDiverged, rec.kind, rec.params, n, k.name(), params))
		}
		tx.replay = tx.replay[1:]
		tx.steps = append(tx.steps, rec)
		if err := tx.resolve(ctx, k, p, rec, env); err != nil {
			rec.failed = true
			return fail(err)
		}
		return decodeOut(rec.result, out, fail)
	}

	if err := tx.interrupted(ctx, n); err != nil {
		return fail(err)
	}
	undo, result, noop, err := k.prepare(ctx, env, p)
	if err != nil {
		return fail(err)
	}
	st := &step{n: n, kind: k.name(), id: id, params: params, undo: undo, noop: noop, deferred: k.irreversible() && !noop}
	if noop {
		st.done, st.result = true, result
	}
	tx.steps = append(tx.steps, st)
	if err := tx.append(&Record{Type: recIntent, Step: n, Kind: st.kind, ID: id, Params: params, Undo: undo,
		Noop: noop, Deferred: st.deferred, Result: result}); err != nil {
		return fail(err)
	}
	if noop {
		tx.o.log.Info("step already in effect", "step", n, "kind", st.kind)
		return decodeOut(result, out, fail)
	}
	if st.deferred {
		tx.o.log.Info("step deferred to commit", "step", n, "kind", st.kind)
		return nil
	}
	if err := tx.act(ctx, k, p, st, env); err != nil {
		st.failed = true
		return fail(err)
	}
	return decodeOut(st.result, out, fail)
}

// act runs a step's effect between its intent and done records.
func (tx *Tx) act(ctx context.Context, k kind, p Params, st *step, env *Env) error {
	if err := tx.fp.hit(st.n, FailBefore); err != nil {
		return err
	}
	return tx.perform(ctx, k, p, st, env)
}

// perform runs Do, the "after" failpoint and the done record.
func (tx *Tx) perform(ctx context.Context, k kind, p Params, st *step, env *Env) error {
	start := time.Now()
	denv := *env
	if !tx.o.dryRun {
		denv.Runner = tx.fp.runner(env.Runner, st.n, FailCmd)
	}
	res, err := k.do(ctx, &denv, p, st.undo)
	if err != nil {
		return err
	}
	if err := tx.fp.hit(st.n, FailAfter); err != nil {
		// the effect happened but is not journaled: rollback resolves it
		return err
	}
	if err := tx.append(&Record{Type: recDone, Step: st.n, Result: res}); err != nil {
		return err
	}
	st.done, st.result = true, res
	tx.o.log.Info("step done", "step", st.n, "kind", st.kind, "duration", time.Since(start))
	return nil
}

// resolve brings a replayed step to done: a recorded result is reused; an
// uncertain step is checked, or undone and redone when it has no Check.
func (tx *Tx) resolve(ctx context.Context, k kind, p Params, st *step, env *Env) error {
	if st.done || (st.deferred && !st.ran) {
		return nil
	}
	present, res, hasCheck, err := k.check(ctx, env, p, st.undo)
	if err != nil {
		return fmt.Errorf("check interrupted step: %w", err)
	}
	if present {
		if err := tx.append(&Record{Type: recDone, Step: st.n, Result: res}); err != nil {
			return err
		}
		st.done, st.result = true, res
		return nil
	}
	if !hasCheck {
		// no way to know: make the state known by undoing, then act again
		if err := k.undo(ctx, env, p, st.undo, nil); err != nil {
			return fmt.Errorf("undo uncertain step before redoing it: %w", err)
		}
	}
	if st.deferred {
		return nil // runs again at commit
	}
	return tx.act(ctx, k, p, st, env)
}

func decodeOut(result json.RawMessage, out any, fail func(error) error) error {
	if out == nil || len(result) == 0 {
		return nil
	}
	if err := json.Unmarshal(result, out); err != nil {
		return fail(fmt.Errorf("decode result: %w", err))
	}
	return nil
}

// Commit runs the deferred irreversible steps in order and marks the
// transaction committed. If a deferred step fails before any other has
// run, the transaction can still be rolled back.
func (tx *Tx) Commit(ctx context.Context) error {
	if len(tx.replay) > 0 {
		return fmt.Errorf("%w: the workflow ended after %d steps, the journal has %d", ErrDiverged, len(tx.steps), len(tx.steps)+len(tx.replay))
	}
	if tx.ended {
		return tx.close()
	}
	var deferred []*step
	for _, st := range tx.steps {
		if st.deferred && !st.done {
			deferred = append(deferred, st)
		}
	}
	if len(deferred) > 0 {
		if err := tx.append(&Record{Type: recCommitStart}); err != nil {
			return err
		}
	}
	for _, st := range deferred {
		k, err := lookup(st.kind)
		if err != nil {
			return err
		}
		p, err := k.decodeParams(st.params)
		if err != nil {
			return err
		}
		env := tx.env(st.n)
		if st.ran { // interrupted during an earlier commit
			if err := tx.resolve(ctx, k, p, st, env); err != nil {
				return &StepError{Step: st.n, Kind: st.kind, ID: st.id, Err: err}
			}
			if st.done {
				continue
			}
		}
		if err := tx.fp.hit(st.n, FailBefore); err != nil {
			st.failed = true
			return &StepError{Step: st.n, Kind: st.kind, ID: st.id, Err: err}
		}
		if err := tx.append(&Record{Type: recRun, Step: st.n}); err != nil {
			return err
		}
		st.ran = true
		if err := tx.perform(ctx, k, p, st, env); err != nil {
			st.failed = true
			// a deferred step that failed without taking effect does not
			// stand in the way of a rollback; one that may have acted does
			if present, _, hasCheck, cerr := k.check(ctx, env, p, st.undo); cerr == nil && hasCheck && !present {
				if tx.append(&Record{Type: recNotRun, Step: st.n}) == nil {
					st.ran = false
				}
			}
			return &StepError{Step: st.n, Kind: st.kind, ID: st.id, Err: err}
		}
	}
	if err := tx.append(&Record{Type: recCommitted}); err != nil {
		return err
	}
	tx.ended = true
	tx.cleanupData()
	return tx.close()
}

// Rollback undoes every step in reverse order. It stops at the first undo
// that fails: the journal records it and the error wraps
// ErrRollbackIncomplete; run it again after fixing the cause.
func (tx *Tx) Rollback(ctx context.Context) error {
	if tx.ended {
		return errors.New("atomic: transaction already ended")
	}
	// The rollback runs to its end whatever stopped the run: a signal or
	// a cancelled context must not cut an undo short.
	ctx = context.WithoutCancel(ctx)
	// steps recorded by an earlier run but not reached by this one are
	// part of the transaction too
	tx.steps = append(tx.steps, tx.replay...)
	tx.replay = nil
	err := rollbackSteps(ctx, tx, tx.steps)
	tx.ended = true
	if err == nil {
		tx.cleanupData()
	}
	if cerr := tx.close(); err == nil {
		err = cerr
	}
	return err
}

func rollbackSteps(ctx context.Context, tx *Tx, steps []*step) error {
	if err := tx.append(&Record{Type: recRollback}); err != nil {
		return err
	}
	for i := len(steps) - 1; i >= 0; i-- {
		st := steps[i]
		if st.undone || st.skipped || st.noop {
			continue
		}
		if st.deferred && !st.ran {
			continue // never ran
		}
		k, err := lookup(st.kind)
		if err == nil && st.deferred {
			err = fmt.Errorf("step %d (%s) is irreversible and already ran at commit: it cannot be undone; skip it to roll back the rest (the transaction cannot be resumed once its rollback began)", st.n, st.kind)
		}
		if err == nil {
			err = undoStep(ctx, tx, k, st)
		}
		if err != nil {
			_ = tx.append(&Record{Type: recUndoFailed, Step: st.n, Error: err.Error()})
			_ = tx.append(&Record{Type: recRollbackFailed, Step: st.n, Error: err.Error()})
			return fmt.Errorf("%w: undo of step %d (%s): %w", ErrRollbackIncomplete, st.n, st.kind, err)
		}
		if err := tx.append(&Record{Type: recUndone, Step: st.n}); err != nil {
			return fmt.Errorf("%w: %w", ErrRollbackIncomplete, err)
		}
		st.undone = true
		tx.o.log.Info("step undone", "step", st.n, "kind", st.kind)
	}
	return tx.append(&Record{Type: recRolledBack})
}

func undoStep(ctx context.Context, tx *Tx, k kind, st *step) error {
	p, err := k.decodeParams(st.params)
	if err != nil {
		return err
	}
	env := tx.env(st.n)
	result := []byte(st.result)
	if !st.done {
		present, res, hasCheck, err := k.check(ctx, env, p, st.undo)
		if err != nil {
			return fmt.Errorf("check uncertain step: %w", err)
		}
		if hasCheck && !present {
			// Never took effect; clear what its Do may have started.
			return k.cleanup(ctx, env, p, st.undo)
		}
		result = res
	}
	if err := tx.fp.hit(st.n, FailUndo); err != nil {
		return err
	}
	env.Runner = tx.fp.runner(env.Runner, st.n, FailUndoCmd)
	return k.undo(ctx, env, p, st.undo, result)
}

// Close releases the transaction without ending it: if it neither
// committed nor rolled back, its journal stays interrupted for
// 'bofh tx rollback' or 'resume'.
func (tx *Tx) Close() error { return tx.close() }

func (tx *Tx) close() error {
	if tx.counted {
		tx.counted = false
		active.Add(-1)
	}
	if tx.dryDir != "" {
		_ = os.RemoveAll(tx.dryDir)
		tx.dryDir = ""
	}
	if tx.j == nil {
		return nil
	}
	err := tx.j.close()
	tx.j = nil
	return err
}

func (tx *Tx) cleanupData() {
	if tx.o.dryRun {
		return
	}
	if tx.fp.hit(0, FailEnd) != nil {
		return // "0:end:error": leave the backups, as a crash here would
	}
	// Best effort: what a crash leaves here, sweepData removes later.
	_ = removeData(tx.o.stateDir, tx.id)
}

// Run runs fn in a transaction named name: it commits if fn returns nil
// and rolls back otherwise. The error says what failed and whether the
// rollback finished (see ExitCode). A workflow that diverged from its
// journal is not rolled back automatically.
func Run(ctx context.Context, name string, fn func(tx *Tx) error, opts ...Option) error {
	tx, err := Begin(ctx, name, opts...)
	if err != nil {
		return err
	}
	return finish(ctx, tx, fn(tx))
}

func finish(ctx context.Context, tx *Tx, ferr error) error {
	if ferr == nil {
		ferr = tx.Commit(ctx)
		if ferr == nil {
			return nil
		}
		if tx.ended {
			return ferr
		}
	}
	if errors.Is(ferr, ErrDiverged) {
		tx.Close()
		return fmt.Errorf("%w (journal %s kept; roll it back with 'bofh tx rollback %s')", ferr, tx.id, tx.id)
	}
	if errors.Is(ferr, ErrInvalid) && !tx.didAnything() {
		// bad input, nothing done: leave no journal behind
		_ = tx.append(&Record{Type: recFail, Error: ferr.Error()})
		if tx.Rollback(ctx) == nil && !tx.o.dryRun {
			_ = Forget(tx.o.stateDir, tx.id, false)
		}
		return ferr
	}
	_ = tx.append(&Record{Type: recFail, Error: ferr.Error()})
	if rerr := tx.Rollback(ctx); rerr != nil {
		return &Failed{Err: ferr, RollbackErr: rerr, TxID: tx.id}
	}
	return &Failed{Err: ferr, TxID: tx.id}
}

func (tx *Tx) didAnything() bool {
	for _, st := range tx.steps {
		if st.noop || st.done || st.failed || st.ran {
			return true
		}
	}
	return false
}

// Failed is a transaction that failed and was rolled back (RollbackErr
// nil) or whose rollback is incomplete.
type Failed struct {
	Err         error
	RollbackErr error
	TxID        string
}

func (f *Failed) Error() string {
	if f.RollbackErr != nil {
		return fmt.Sprintf("%v; rollback incomplete: %v (journal %s kept: fix the cause and run 'bofh tx rollback %s')", f.Err, f.RollbackErr, f.TxID, f.TxID)
	}
	return fmt.Sprintf("%v; rolled back", f.Err)
}

// Unwrap returns the failure and, if any, the rollback error.
func (f *Failed) Unwrap() []error {
	if f.RollbackErr != nil {
		return []error{f.Err, f.RollbackErr}
	}
	return []error{f.Err}
}

// Exit codes of the bofh CLI.
const (
	ExitOK                 = 0
	ExitRolledBack         = 1
	ExitInvalid            = 2
	ExitRollbackIncomplete = 3
)

// ExitCode maps an error from Run, Apply, Rollback or Resume to the CLI's
// exit code: 0 ok, 1 failed and rolled back, 2 bad input (nothing done),
// 3 rollback incomplete or journal needs attention.
func ExitCode(err error) int {
	var f *Failed
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrRollbackIncomplete), errors.Is(err, ErrDiverged), errors.Is(err, ErrCorrupt):
		// A corrupt journal: what it held cannot be rolled back as it is.
		return ExitRollbackIncomplete
	case errors.As(err, &f) && f.RollbackErr != nil:
		return ExitRollbackIncomplete
	case errors.As(err, &f):
		return ExitRolledBack
	case errors.Is(err, ErrInvalid), errors.Is(err, ErrNotFound), errors.Is(err, ErrLocked):
		return ExitInvalid // nothing was done
	}
	return ExitRolledBack
}
