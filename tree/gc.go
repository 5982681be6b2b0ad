package tree

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/btrfs"
	"github.com/bofhkit/bofh/run"
)

// GCOptions tunes GC.
type GCOptions struct {
	// StateDir holds the journals GC reads to find what an unfinished
	// transaction still needs.
	StateDir string
	// DryRun reports what would be deleted and deletes nothing.
	DryRun bool
}

// Kinds of entries in a GCReport.
const (
	GCTrash        = "trash"         // .<target>.bofh-trash-<uuid>: a tree a rollback replaced
	GCRestorePoint = "restore-point" // .<target>.bofh-<from>-<to>: an upgrade's btrfs snapshot
)

// Actions in a GCReport.
const (
	GCDeleted     = "deleted"
	GCWouldDelete = "would-delete"
	GCKept        = "kept"
	GCFailed      = "failed"
)

// GCEntry is one leftover beside a target that GC looked at.
type GCEntry struct {
	Path   string `json:"path"`
	Kind   string `json:"kind"`
	UUID   string `json:"uuid,omitempty"`
	Action string `json:"action"`
	// Reason says why an entry was kept (or failed), or what makes a
	// deleted one garbage.
	Reason string `json:"reason"`
	// TxID is the transaction the entry belongs to or that holds on to it.
	TxID string `json:"tx_id,omitempty"`
}

// GCReport is what GC did.
type GCReport struct {
	Target  string    `json:"target"`
	DryRun  bool      `json:"dry_run"`
	Entries []GCEntry `json:"entries"`
	Deleted int       `json:"deleted"` // deleted, or would be in a dry run
	Kept    int       `json:"kept"`
}

// snapRef is a tree.snapshot step of some transaction, in btrfs mode, of
// the target GC works on.
type snapRef struct {
	tx         string
	state      atomic.State
	status     string // the step's status
	snapshot   string // its path
	uuid       string // the snapshot's UUID, from the step's result
	targetUUID string // the target's UUID when the snapshot was taken
}

// gcJournals is what GC learnt from the state directory.
type gcJournals struct {
	snaps []snapRef
	// open holds, per unfinished transaction (running, interrupted,
	// rollback-failed), every step's params, undo data and result.
	open map[string][][]byte
	// states of the unfinished transactions.
	states map[string]atomic.State
	// unreadable journals: nothing can be said about what they need.
	unreadable []string
}

func finished(s atomic.State) bool { return s == atomic.StateCommitted || s == atomic.StateRolledBack }

func readGCJournals(stateDir, target string) (*gcJournals, error) {
	list, err := atomic.List(stateDir)
	if err != nil {
		return nil, err
	}
	j := &gcJournals{open: map[string][][]byte{}, states: map[string]atomic.State{}}
	for _, s := range list {
		// (s.Error is a read error or the transaction's last error: Show
		// tells them apart)
		d, err := atomic.Show(stateDir, s.ID)
		if errors.Is(err, atomic.ErrNotFound) {
			continue // forgotten meanwhile
		}
		if err != nil {
			j.unreadable = append(j.unreadable, fmt.Sprintf("%s (%v)", s.ID, err))
			continue
		}
		if !finished(d.State) {
			j.states[d.ID] = d.State
			for _, st := range d.Steps {
				j.open[d.ID] = append(j.open[d.ID], st.Params, st.Undo, st.Result)
			}
		}
		for _, st := range d.Steps {
			if st.Kind != (SnapshotStep{}).StepKind() {
				continue
			}
			var p SnapshotStep
			if json.Unmarshal(st.Params, &p) != nil || p.Mode != ModeBtrfs || p.Target != target {
				continue
			}
			ref := snapRef{tx: d.ID, state: d.State, status: st.Status, snapshot: p.Snapshot}
			var u snapUndo
			if len(st.Undo) > 0 && json.Unmarshal(st.Undo, &u) == nil {
				ref.targetUUID = u.TargetUUID
			}
			var r SnapshotResult
			if len(st.Result) > 0 && json.Unmarshal(st.Result, &r) == nil {
				ref.uuid = r.UUID
			}
			j.snaps = append(j.snaps, ref)
		}
	}
	return j, nil
}

// pinned returns the unfinished transactions whose steps mention path or
// uuid (in parameters, undo data or result), sorted.
func (j *gcJournals) pinned(path, uuid string) []string {
	pj, _ := json.Marshal(path)
	pj = bytes.Trim(pj, `"`)
	var ids []string
	for id, raws := range j.open {
		for _, raw := range raws {
			if bytes.Contains(raw, pj) || (uuid != "" && bytes.Contains(raw, []byte(uuid))) {
				ids = append(ids, id)
				break
			}
		}
	}
	sort.Strings(ids)
	return ids
}

// GC deletes the leftovers of tree upgrades beside target on btrfs:
//
//   - trees that rollbacks moved aside (.<target>.bofh-trash-<uuid>),
//     which the next upgrade would delete anyway, when the subvolume's
//     UUID is the one in its name (the match tree.snapshot's own sweep
//     uses; anything else of a similar name is a look-alike and kept);
//   - restore points (.<target>.bofh-<from>-<to>) left by a transaction
//     that is committed (it meant to delete the snapshot at commit), when
//     the subvolume is still the one that transaction took (the UUID in
//     its journal, a snapshot of the target subvolume it recorded).
//
// Nothing that an unfinished transaction of stateDir (running,
// interrupted, rollback-failed) mentions is deleted: its rollback or
// resume may need it. When a journal cannot be read, nothing is deleted,
// and a restore point no journal records is kept (its journal may have
// been forgotten, or live in another state dir): GC only deletes what is
// certainly garbage and reports why it kept the rest. Deleting is not
// undoable and is not journaled. The report lists every entry looked at.
//
// GC does not lock the target: an upgrade running meanwhile sweeps the
// same trash itself (GC tolerates an entry deleted under it) and a
// running transaction is unfinished, so what it mentions is kept.
func GC(ctx context.Context, r run.Runner, target string, opts GCOptions) (*GCReport, error) {
	if err := CheckRoot("target", target); err != nil {
		return nil, err
	}
	if err := realDir(target); err != nil {
		return nil, invalid(fmt.Errorf("target: %w", err))
	}
	rep := &GCReport{Target: target, DryRun: opts.DryRun, Entries: []GCEntry{}}
	j, err := readGCJournals(opts.StateDir, target)
	if err != nil {
		return nil, fmt.Errorf("read journals in %s: %w", opts.StateDir, err)
	}
	dir, base := filepath.Dir(target), filepath.Base(target)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var targetUUID string
	if ok, err := btrfs.IsSubvolume(target); err != nil {
		return nil, err
	} else if ok {
		info, err := btrfs.Show(ctx, r, target)
		if err != nil {
			return nil, err
		}
		targetUUID = info.UUID
	}
	var errs []error
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "."+base+".bofh-") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		ent := GCEntry{Path: p, Kind: GCRestorePoint, Action: GCKept}
		if strings.HasPrefix(e.Name(), "."+base+trashMark) {
			ent.Kind = GCTrash
		}
		uuid, why, err := gcJudge(ctx, r, j, target, targetUUID, p, &ent)
		switch {
		case err != nil:
			ent.Action, ent.Reason = GCFailed, err.Error()
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
		case why != "":
			ent.Reason = why
		case opts.DryRun:
			ent.Action = GCWouldDelete
		default:
			if err := gcDelete(ctx, r, p, uuid); err != nil {
				ent.Action, ent.Reason = GCFailed, err.Error()
				errs = append(errs, fmt.Errorf("%s: %w", p, err))
			} else {
				ent.Action = GCDeleted
			}
		}
		switch ent.Action {
		case GCDeleted, GCWouldDelete:
			rep.Deleted++
		case GCKept:
			rep.Kept++
		}
		rep.Entries = append(rep.Entries, ent)
	}
	return rep, errors.Join(errs...)
}

// gcJudge decides about one entry named like a leftover of target. It
// returns the subvolume's UUID and "" when the entry is garbage (with
// ent.Reason saying why), or a reason to keep it.
func gcJudge(ctx context.Context, r run.Runner, j *gcJournals, target, targetUUID, p string, ent *GCEntry) (string, string, error) {
	if ok, err := btrfs.IsSubvolume(p); err != nil {
		return "", "", err
	} else if !ok {
		return "", "not a btrfs subvolume: not made by tree", nil
	}
	info, err := btrfs.Show(ctx, r, p)
	if err != nil {
		return "", "", err
	}
	ent.UUID = info.UUID
	if len(j.unreadable) > 0 {
		return "", "journals that cannot be read may need it: " + strings.Join(j.unreadable, "; "), nil
	}
	if ids := j.pinned(p, info.UUID); len(ids) > 0 {
		ent.TxID = ids[0]
		return "", fmt.Sprintf("unfinished transaction %s (%s) refers to it: its rollback or resume may need it ('bofh tx rollback %s' or 'bofh tx resume %s' first)",
			ids[0], j.states[ids[0]], ids[0], ids[0]), nil
	}
	if ent.Kind == GCTrash {
		if trashPath(target, info.UUID) != p {
			return "", fmt.Sprintf("look-alike: its subvolume UUID %s is not the one in its name", info.UUID), nil
		}
		if info.UUID == targetUUID {
			return "", "it is the target's own subvolume", nil
		}
		ent.Reason = "a tree a rollback replaced (its UUID matches its name)"
		for _, s := range j.snaps {
			if s.targetUUID == info.UUID {
				ent.TxID = s.tx
			}
		}
		return info.UUID, "", nil
	}
	// a restore point: only one a committed transaction took
	var refs []snapRef
	for _, s := range j.snaps {
		if s.snapshot == p {
			refs = append(refs, s)
		}
	}
	if len(refs) == 0 {
		return "", "no transaction in the state dir took it (journal forgotten, or another state dir?): delete it by hand if it is not needed", nil
	}
	for _, s := range refs {
		if s.uuid != info.UUID {
			continue
		}
		ent.TxID = s.tx
		switch {
		case s.state != atomic.StateCommitted:
			return "", fmt.Sprintf("taken by transaction %s, which is %s (step %s), not committed: it may be the only copy of the tree before the upgrade", s.tx, s.state, s.status), nil
		case s.targetUUID == "" || info.ParentUUID != s.targetUUID:
			return "", fmt.Sprintf("taken by committed transaction %s, but it is not a snapshot of the subvolume that transaction recorded as the target", s.tx), nil
		}
		ent.Reason = fmt.Sprintf("restore point of committed transaction %s", s.tx)
		return info.UUID, "", nil
	}
	ent.TxID = refs[len(refs)-1].tx
	return "", fmt.Sprintf("its UUID %s is not the snapshot any transaction recorded (made by hand?)", info.UUID), nil
}

// gcDelete deletes the subvolume at p after checking once more, right
// before, that it is still the one judged (uuid).
func gcDelete(ctx context.Context, r run.Runner, p, uuid string) error {
	if ok, err := btrfs.IsSubvolume(p); err != nil || !ok {
		return err // deleted meanwhile (by an upgrade's sweep)
	}
	info, err := btrfs.Show(ctx, r, p)
	if err != nil {
		return err
	}
	if info.UUID != uuid {
		return fmt.Errorf("replaced meanwhile (UUID %s, was %s): not deleted", info.UUID, uuid)
	}
	if err := run.Mutate(ctx, r, "btrfs", "subvolume", "delete", "-c", p); err != nil {
		if ok, _ := btrfs.IsSubvolume(p); !ok {
			return nil
		}
		return fmt.Errorf("delete: %w", err)
	}
	return nil
}
