package atomic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// State is a transaction's state as its journal and lock tell it.
type State string

// Transaction states.
const (
	StateRunning        State = "running"
	StateCommitted      State = "committed"
	StateRolledBack     State = "rolled-back"
	StateRollbackFailed State = "rollback-failed"
	StateInterrupted    State = "interrupted"
)

// history is what a journal's records say.
type history struct {
	id, name    string
	started     time.Time
	updated     time.Time
	recipe      json.RawMessage
	steps       []*step
	state       State // from terminal records; "" if none
	failed      bool
	rollingBack bool
	lastError   string
}

func buildHistory(recs []*Record) (*history, error) {
	if len(recs) == 0 || recs[0].Type != recBegin {
		return nil, fmt.Errorf("%w: no begin record", ErrCorrupt)
	}
	h := &history{id: recs[0].TxID, name: recs[0].Name, started: recs[0].Time, recipe: recs[0].Recipe}
	byN := map[int]*step{}
	get := func(r *Record) (*step, error) {
		st, ok := byN[r.Step]
		if !ok {
			return nil, fmt.Errorf("%w: record %d (%s) names unknown step %d", ErrCorrupt, r.Seq, r.Type, r.Step)
		}
		return st, nil
	}
	for _, r := range recs[1:] {
		h.updated = r.Time
		switch r.Type {
		case recIntent:
			if r.Step != len(h.steps)+1 {
				return nil, fmt.Errorf("%w: record %d: step %d out of order", ErrCorrupt, r.Seq, r.Step)
			}
			st := &step{n: r.Step, kind: r.Kind, id: r.ID, params: r.Params, undo: r.Undo, noop: r.Noop, deferred: r.Deferred}
			if r.Noop {
				st.done, st.result = true, r.Result
			}
			h.steps = append(h.steps, st)
			byN[r.Step] = st
		case recDone, recRun, recNotRun, recUndone, recSkip, recUndoFailed:
			st, err := get(r)
			if err != nil {
				return nil, err
			}
			switch r.Type {
			case recDone:
				st.done, st.result = true, r.Result
			case recRun:
				st.ran = true
			case recNotRun:
				st.ran = false
			case recUndone:
				st.undone = true
			case recSkip:
				st.skipped = true
			case recUndoFailed:
				h.lastError = r.Error
			}
		case recFail:
			h.failed = true
			h.lastError = r.Error
		case recCommitStart:
		case recRollback:
			h.rollingBack = true
			h.state = ""
		case recCommitted:
			h.state = StateCommitted
		case recRolledBack:
			h.state = StateRolledBack
			h.rollingBack = false
		case recRollbackFailed:
			h.state = StateRollbackFailed
			h.rollingBack = false
			h.lastError = r.Error
		default:
			return nil, fmt.Errorf("%w: record %d: unknown type %q", ErrCorrupt, r.Seq, r.Type)
		}
	}
	if h.updated.IsZero() {
		h.updated = h.started
	}
	return h, nil
}

// Summary is one line of 'bofh tx list'.
type Summary struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	State   State     `json:"state"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
	Steps   int       `json:"steps"`
	Done    int       `json:"done"`
	Error   string    `json:"error,omitempty"`
}

// StepInfo is one step as 'bofh tx show' reports it.
type StepInfo struct {
	Step     int             `json:"step"`
	ID       string          `json:"id,omitempty"`
	Kind     string          `json:"kind"`
	Status   string          `json:"status"`
	Params   json.RawMessage `json:"params"`
	Undo     json.RawMessage `json:"undo,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Deferred bool            `json:"deferred,omitempty"`
}

// Detail is a transaction with its steps.
type Detail struct {
	Summary
	Recipe json.RawMessage `json:"recipe,omitempty"`
	Steps  []StepInfo      `json:"steps"`
}

// Step statuses in a Detail.
const (
	StatusDone      = "done"      // effect present, journaled
	StatusNoop      = "noop"      // effect was already present; nothing done
	StatusUncertain = "uncertain" // intent journaled, outcome unknown
	StatusDeferred  = "deferred"  // irreversible; waits for commit
	StatusUndone    = "undone"
	StatusSkipped   = "skipped" // handled by the operator
	StatusFailed    = "failed"
)

func (st *step) status() string {
	switch {
	case st.skipped:
		return StatusSkipped
	case st.undone:
		return StatusUndone
	case st.noop:
		return StatusNoop
	case st.done:
		return StatusDone
	case st.deferred && !st.ran:
		return StatusDeferred
	}
	return StatusUncertain
}

func (h *history) summary(locked bool) Summary {
	s := Summary{ID: h.id, Name: h.name, Started: h.started, Updated: h.updated, Steps: len(h.steps), Error: h.lastError}
	for _, st := range h.steps {
		if st.done {
			s.Done++
		}
	}
	switch {
	case locked:
		s.State = StateRunning
	case h.state != "":
		s.State = h.state
	default:
		s.State = StateInterrupted
	}
	return s
}

// readTx reads a journal without taking its lock, and reports whether a
// live process holds it. The journal is opened without following a
// symlink and must be bofh's own regular file; a reader never holds the
// lock, so it never makes a writer fail.
func readTx(stateDir, id string) (*history, bool, error) {
	jd, err := openJournalDir(stateDir, false)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, fmt.Errorf("transaction %s: %w", id, ErrNotFound)
		}
		return nil, false, err
	}
	defer jd.close()
	return readTxIn(jd, id)
}

func readTxIn(jd *pinned, id string) (*history, bool, error) {
	f, err := jd.openFile(id+".jsonl", unix.O_RDONLY)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, false, fmt.Errorf("transaction %s: %w", id, ErrNotFound)
		}
		return nil, false, fmt.Errorf("open journal: %w", err)
	}
	defer f.Close()
	locked, err := heldByOther(f)
	if err != nil {
		return nil, false, err
	}
	recs, _, _, err := ReadJournal(f)
	if err != nil {
		return nil, locked, fmt.Errorf("transaction %s: %w", id, err)
	}
	if len(recs) == 0 && locked {
		// Created and held, its begin record not yet written: starting.
		return &history{id: id}, true, nil
	}
	h, err := buildHistory(recs)
	if err != nil {
		return nil, locked, fmt.Errorf("transaction %s: %w", id, err)
	}
	h.id = id
	return h, locked, nil
}

// List returns every transaction under stateDir, oldest first. A journal
// that cannot be read is listed with its error rather than hidden.
func List(stateDir string) ([]Summary, error) {
	jd, err := openJournalDir(stateDir, false)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list journals: %w", err)
	}
	defer jd.close()
	sweepData(stateDir)
	names, err := jd.names()
	if err != nil {
		return nil, fmt.Errorf("list journals: %w", err)
	}
	var out []Summary
	for _, name := range names {
		id, ok := strings.CutSuffix(name, ".jsonl")
		if !ok || ValidID(id) != nil {
			continue
		}
		h, locked, err := readTxIn(jd, id)
		if err != nil {
			out = append(out, Summary{ID: id, State: StateInterrupted, Error: err.Error()})
			continue
		}
		out = append(out, h.summary(locked))
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.Before(out[j].Started)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Show returns one transaction with its steps.
func Show(stateDir, id string) (*Detail, error) {
	if err := ValidID(id); err != nil {
		return nil, err
	}
	h, locked, err := readTx(stateDir, id)
	if err != nil {
		return nil, err
	}
	d := &Detail{Summary: h.summary(locked), Recipe: h.recipe}
	for _, st := range h.steps {
		d.Steps = append(d.Steps, StepInfo{Step: st.n, ID: st.id, Kind: st.kind, Status: st.status(),
			Params: st.params, Undo: st.undo, Result: st.result, Deferred: st.deferred})
	}
	return d, nil
}

// Forget deletes a transaction's journal and backups. A transaction that
// is not over (interrupted, rollback-failed) is only forgotten with force:
// without its journal it can no longer be rolled back.
func Forget(stateDir, id string, force bool) error {
	if err := ValidID(id); err != nil {
		return err
	}
	j, recs, err := openJournal(stateDir, id)
	if err != nil {
		return err
	}
	defer j.close()
	h, err := buildHistory(recs)
	if err != nil && !force {
		return fmt.Errorf("%w (use --force to delete it anyway)", err)
	}
	if err == nil && h.state != StateCommitted && h.state != StateRolledBack && !force {
		st := h.state
		if st == "" {
			st = StateInterrupted
		}
		return fmt.Errorf("%w: transaction %s is %s: forgetting it loses the way back; roll it back first, or use --force", ErrInvalid, id, st)
	}
	if err := removeData(stateDir, id); err != nil {
		return err
	}
	jd, err := openJournalDir(stateDir, false)
	if err != nil {
		return err
	}
	defer jd.close()
	if err := unix.Unlinkat(jd.fd, id+".jsonl", 0); err != nil {
		return fmt.Errorf("remove journal %s: %w", j.path, err)
	}
	return jd.sync()
}

// RollbackID rolls back an interrupted or rollback-failed transaction from
// its journal alone. skip lists step numbers the operator handled by hand;
// they are journaled as skipped and not undone.
func RollbackID(ctx context.Context, id string, skip []int, opts ...Option) error {
	o, err := buildOptions(opts)
	if err != nil {
		return err
	}
	if err := ValidID(id); err != nil {
		return err
	}
	fp, err := o.parseFailpoints()
	if err != nil {
		return err
	}
	j, recs, err := openJournal(o.stateDir, id)
	if err != nil {
		return err
	}
	tx := &Tx{id: id, o: o, j: j, fp: fp}
	defer tx.close()
	h, err := buildHistory(recs)
	if err != nil {
		return err
	}
	switch h.state {
	case StateCommitted:
		return fmt.Errorf("%w: transaction %s is committed; there is nothing to roll back", ErrInvalid, id)
	case StateRolledBack:
		return nil
	}
	for _, n := range skip {
		if n < 1 || n > len(h.steps) {
			return fmt.Errorf("%w: --skip %d: transaction has steps 1 to %d", ErrInvalid, n, len(h.steps))
		}
		if err := tx.append(&Record{Type: recSkip, Step: n}); err != nil {
			return err
		}
		h.steps[n-1].skipped = true
	}
	tx.name = h.name
	tx.steps = h.steps
	if err := rollbackSteps(ctx, tx, h.steps); err != nil {
		return err
	}
	tx.cleanupData()
	return nil
}
