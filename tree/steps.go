package tree

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/btrfs"
	"github.com/bofhkit/bofh/internal/fsutil"
	"github.com/bofhkit/bofh/run"
)

func init() {
	atomic.Register(atomic.Def[SnapshotStep, snapUndo, SnapshotResult]{
		Doc:     "take a restore point of a target before an upgrade (btrfs snapshot, or hard-link backup of what will change); undo restores the target from it",
		Prepare: prepareSnapshot,
		Do:      doSnapshot,
		Undo:    undoSnapshot,
		Check:   checkSnapshot,
	})
	atomic.Register(atomic.Def[HookStep, struct{}, HookResult]{
		Doc:  "run an upgrade's pre or post script with a timeout (post exit 100: reboot needed); undo: nothing",
		Do:   doHook,
		Undo: func(context.Context, *atomic.Env, HookStep, struct{}, HookResult) error { return nil },
	})
	atomic.Register(atomic.Def[SyncStep, syncUndo, Stats]{
		Doc:     "make a target match a version's tree with deletes, honouring exclude; undo: tree.snapshot's (upgrade) or empty the target again (deploy)",
		Prepare: prepareSync,
		Do:      doSync,
		Undo:    undoSync,
	})
	atomic.Register(atomic.Def[AddOnlyStep, struct{}, Stats]{
		Doc:  "copy an upgrade's add_only paths that are absent from the target; undo: tree.snapshot's",
		Do:   doAddOnly,
		Undo: func(context.Context, *atomic.Env, AddOnlyStep, struct{}, Stats) error { return nil },
	})
	atomic.Register(atomic.Def[StateStep, stateUndo, State]{
		Doc:     "write a target's role and version (the commit point of a deploy or upgrade); undo puts the previous state back",
		Prepare: prepareState,
		Do:      doState,
		Undo:    undoState,
		Check:   checkState,
	})
}

// Restore point modes of tree.snapshot.
const (
	ModeBtrfs  = "btrfs"
	ModeBackup = "backup"
)

// SnapshotStep is the tree.snapshot step.
type SnapshotStep struct {
	Target   string `json:"target" doc:"target root"`
	Mode     string `json:"mode" doc:"btrfs (target is a subvolume) or backup"`
	Snapshot string `json:"snapshot,omitempty" doc:"btrfs: path of the snapshot (beside the target)"`
	Store    string `json:"store" doc:"tree store"`
	Role     string `json:"role" doc:"role"`
	From     string `json:"from" doc:"current version"`
	To       string `json:"to" doc:"version being installed"`
	Checksum bool   `json:"checksum,omitempty" doc:"compare every file alike in size and mtime byte for byte (no pair cache)"`
}

// StepKind names the kind.
func (SnapshotStep) StepKind() string { return "tree.snapshot" }

// Validate checks the parameters without touching the system.
func (s SnapshotStep) Validate() error {
	if err := CheckRoot("target", s.Target); err != nil {
		return err
	}
	if err := CheckRoot("store", s.Store); err != nil {
		return err
	}
	for _, n := range [][2]string{{"role", s.Role}, {"from", s.From}, {"to", s.To}} {
		if err := CheckName(n[0], n[1]); err != nil {
			return err
		}
	}
	switch s.Mode {
	case ModeBtrfs:
		if err := CheckRoot("snapshot", s.Snapshot); err != nil {
			return err
		}
		if filepath.Dir(s.Snapshot) != filepath.Dir(s.Target) || s.Snapshot == s.Target {
			return fmt.Errorf("snapshot %s must be beside the target %s", s.Snapshot, s.Target)
		}
	case ModeBackup:
	default:
		return fmt.Errorf("mode %q: want btrfs or backup", s.Mode)
	}
	return nil
}

type snapUndo struct {
	TargetUUID string `json:"target_uuid,omitempty"`
}

// SnapshotResult is what tree.snapshot reports.
type SnapshotResult struct {
	Mode     string `json:"mode"`
	Snapshot string `json:"snapshot,omitempty"`
	UUID     string `json:"uuid,omitempty"`
	Paths    int    `json:"paths,omitempty"`
}

func prepareSnapshot(ctx context.Context, env *atomic.Env, s SnapshotStep) (atomic.Plan[snapUndo, SnapshotResult], error) {
	var plan atomic.Plan[snapUndo, SnapshotResult]
	if s.Mode == ModeBtrfs {
		info, err := btrfs.Show(ctx, env.Runner, s.Target)
		if err != nil {
			return plan, err
		}
		plan.Undo.TargetUUID = info.UUID
	}
	return plan, nil
}

// upgradePaths is every target path an upgrade from s.From to s.To will
// touch (sync and add_only).
func upgradePaths(env *atomic.Env, s SnapshotStep) ([]string, error) {
	st := Store{Dir: s.Store}
	src, err := st.TreeDir(s.To, s.Role)
	if err != nil {
		return nil, err
	}
	m, err := st.Metadata(s.From, s.Role, s.To)
	if err != nil {
		return nil, err
	}
	pairs := openPairs(env, s.Store, s.Role, s.From, s.To, s.Checksum)
	defer pairs.close()
	p, err := planSync(src, s.Target, skipper(m.Exclude, m.AddOnly), pairs)
	if err != nil {
		return nil, err
	}
	paths := p.paths()
	adds, err := addOnlyPlan(src, s.Target, m)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, x := range paths {
		seen[x] = true
	}
	for _, a := range adds {
		for _, x := range []string{a, parentRel(a)} {
			if !seen[x] {
				seen[x] = true
				paths = append(paths, x)
			}
		}
	}
	// the state file is written by tree.state, which has its own undo;
	// its directory's times are restored here
	if d := parentRel(StateFile); !seen[d] {
		paths = append(paths, d)
	}
	return paths, nil
}

func parentRel(rel string) string {
	d := filepath.Dir(rel)
	if d == "." {
		return ""
	}
	return d
}

func doSnapshot(ctx context.Context, env *atomic.Env, s SnapshotStep, u snapUndo) (SnapshotResult, error) {
	r := SnapshotResult{Mode: s.Mode, Snapshot: s.Snapshot}
	if s.Mode == ModeBtrfs {
		if !env.DryRun {
			// trees earlier rollbacks replaced: not part of the restore point
			if err := sweepTrash(ctx, env, s.Target); err != nil {
				return r, err
			}
		}
		if err := run.Mutate(ctx, env.Runner, "btrfs", "subvolume", "snapshot", s.Target, s.Snapshot); err != nil {
			return r, fmt.Errorf("snapshot %s: %w", s.Target, err)
		}
		if env.DryRun {
			return r, nil
		}
		info, err := btrfs.Show(ctx, env.Runner, s.Snapshot)
		if err != nil {
			return r, err
		}
		r.UUID = info.UUID
		return r, nil
	}
	paths, err := upgradePaths(env, s)
	if err != nil {
		return r, err
	}
	r.Paths = len(paths)
	if env.Dry("back up %d paths of %s", len(paths), s.Target) {
		return r, nil
	}
	dir, err := env.StepDir()
	if err != nil {
		return r, err
	}
	return r, takeBackup(s.Target, paths, dir)
}

func undoSnapshot(ctx context.Context, env *atomic.Env, s SnapshotStep, u snapUndo, _ SnapshotResult) error {
	if s.Mode == ModeBackup {
		dir, err := env.StepDir()
		if err != nil {
			return err
		}
		return restoreBackup(s.Target, dir)
	}
	if ok, err := btrfs.IsSubvolume(s.Snapshot); err != nil || !ok {
		return err // gone: never taken, or restored and deleted already
	}
	snap, err := btrfs.Show(ctx, env.Runner, s.Snapshot)
	if err != nil {
		return err
	}
	tgt, err := btrfs.Show(ctx, env.Runner, s.Target)
	if err != nil {
		return err
	}
	switch {
	case tgt.UUID == u.TargetUUID && snap.ParentUUID == u.TargetUUID:
		// the upgraded tree is in place: put the snapshot there instead
		if err := btrfs.Exchange(s.Target, s.Snapshot); err != nil {
			return err
		}
	case snap.UUID == u.TargetUUID:
		// swapped already; the upgraded tree waits at the snapshot path
	default:
		return fmt.Errorf("%s (%s) and %s (%s) are not the target %s and its snapshot; not touching them",
			s.Target, tgt.UUID, s.Snapshot, snap.UUID, u.TargetUUID)
	}
	// The upgraded tree (the target's original subvolume, u.TargetUUID)
	// now waits at the snapshot path. Deleting a subvolume costs time in
	// proportion to its cached inodes, so the rollback only moves it
	// aside under a name holding its UUID (one rename, synced: constant
	// time) and the next upgrade of the target deletes it (sweepTrash).
	// A crash before the rename reruns this undo ("swapped already"); one
	// after it finds the snapshot path empty: done.
	trash := trashPath(s.Target, u.TargetUUID)
	if len(filepath.Base(trash)) > 255 || u.TargetUUID == "" {
		if err := run.Mutate(ctx, env.Runner, "btrfs", "subvolume", "delete", "-c", s.Snapshot); err != nil {
			return fmt.Errorf("delete upgraded tree at %s: %w", s.Snapshot, err)
		}
		return nil
	}
	if env.Dry("move the upgraded tree %s aside to %s", s.Snapshot, trash) {
		return nil
	}
	if err := unix.Renameat2(unix.AT_FDCWD, s.Snapshot, unix.AT_FDCWD, trash, unix.RENAME_NOREPLACE); err != nil {
		return fmt.Errorf("move the upgraded tree %s aside to %s: %w", s.Snapshot, trash, err)
	}
	return fsutil.SyncDir(filepath.Dir(trash))
}

// trashMark names a replaced tree a rollback moved aside:
// .<target name>.bofh-trash-<subvolume UUID>, beside the target.
const trashMark = ".bofh-trash-"

func trashPath(target, uuid string) string {
	return filepath.Join(filepath.Dir(target), "."+filepath.Base(target)+trashMark+uuid)
}

// sweepTrash deletes the replaced trees earlier rollbacks of target moved
// aside: subvolumes beside it named by trashPath whose UUID is the one
// in their name (anything else of a similar name is left alone).
func sweepTrash(ctx context.Context, env *atomic.Env, target string) error {
	dir := filepath.Dir(target)
	prefix := "." + filepath.Base(target) + trashMark
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		uuid, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || !e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if ok, err := btrfs.IsSubvolume(p); err != nil || !ok {
			continue
		}
		info, err := btrfs.Show(ctx, env.Runner, p)
		if err != nil {
			return err
		}
		if info.UUID != uuid {
			continue
		}
		if err := run.Mutate(ctx, env.Runner, "btrfs", "subvolume", "delete", "-c", p); err != nil {
			if ok, _ := btrfs.IsSubvolume(p); !ok {
				continue // deleted meanwhile
			}
			return fmt.Errorf("delete the replaced tree %s: %w", p, err)
		}
	}
	return nil
}

func checkSnapshot(ctx context.Context, env *atomic.Env, s SnapshotStep, u snapUndo) (bool, SnapshotResult, error) {
	r := SnapshotResult{Mode: s.Mode, Snapshot: s.Snapshot}
	if s.Mode == ModeBackup {
		dir, err := env.StepDir()
		if err != nil {
			return false, r, err
		}
		man, err := readManifest(dir)
		if errors.Is(err, os.ErrNotExist) {
			return false, r, nil
		}
		r.Paths = len(man)
		return err == nil, r, err
	}
	if ok, err := btrfs.IsSubvolume(s.Snapshot); err != nil || !ok {
		return false, r, err
	}
	info, err := btrfs.Show(ctx, env.Runner, s.Snapshot)
	if err != nil {
		return false, r, err
	}
	r.UUID = info.UUID
	return info.ParentUUID == u.TargetUUID, r, nil
}

// HookStep is the tree.hook step.
type HookStep struct {
	Script     string `json:"script" doc:"the hook (an executable of the tree store's metadata)"`
	Phase      string `json:"phase" doc:"pre or post"`
	Target     string `json:"target" doc:"target root (the hook's working directory, $BOFH_TREE_TARGET)"`
	Role       string `json:"role" doc:"role ($BOFH_TREE_ROLE)"`
	From       string `json:"from" doc:"current version ($BOFH_TREE_FROM)"`
	To         string `json:"to" doc:"new version ($BOFH_TREE_TO)"`
	TimeoutSec int    `json:"timeout_sec,omitempty" doc:"seconds before the hook is killed (default 600)"`
}

// StepKind names the kind.
func (HookStep) StepKind() string { return "tree.hook" }

// Validate checks the parameters without touching the system.
func (h HookStep) Validate() error {
	if err := CheckRoot("script", h.Script); err != nil {
		return err
	}
	if err := CheckRoot("target", h.Target); err != nil {
		return err
	}
	if h.Phase != "pre" && h.Phase != "post" {
		return fmt.Errorf("phase %q: want pre or post", h.Phase)
	}
	if h.TimeoutSec < 0 {
		return errors.New("timeout_sec is negative")
	}
	return nil
}

// HookResult is what tree.hook reports.
type HookResult struct {
	ExitCode     int  `json:"exit_code"`
	RebootNeeded bool `json:"reboot_needed,omitempty"`
}

// RebootExit is the exit code of a post hook that needs a reboot.
const RebootExit = 100

func doHook(ctx context.Context, env *atomic.Env, h HookStep, _ struct{}) (HookResult, error) {
	fi, err := os.Lstat(h.Script)
	if err != nil {
		return HookResult{}, err
	}
	if !fi.Mode().IsRegular() {
		return HookResult{}, fmt.Errorf("hook %s is not a regular file", h.Script)
	}
	t := time.Duration(h.TimeoutSec) * time.Second
	if t == 0 {
		t = 10 * time.Minute
	}
	if env.Dry("run %s hook %s in %s", h.Phase, h.Script, h.Target) {
		return HookResult{}, nil
	}
	// not through the Runner: a hook's children are killed with it (its
	// own process group), so a hung hook cannot outlive its timeout
	hctx, cancel := context.WithTimeout(ctx, t)
	defer cancel()
	cmd := exec.CommandContext(hctx, h.Script)
	cmd.Dir = h.Target
	cmd.Env = append(os.Environ(), "LC_ALL=C", "BOFH_TREE_TARGET="+h.Target, "BOFH_TREE_ROLE="+h.Role, "BOFH_TREE_FROM="+h.From,
		"BOFH_TREE_TO="+h.To, "BOFH_TREE_PHASE="+h.Phase)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // stragglers
	}
	env.Log.Debug("hook", "phase", h.Phase, "script", h.Script, "output", tail(out.Bytes()))
	if hctx.Err() != nil && ctx.Err() == nil {
		return HookResult{}, fmt.Errorf("%s hook %s did not finish within %s: %w", h.Phase, h.Script, t, context.DeadlineExceeded)
	}
	code := 0
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	if err != nil && !(h.Phase == "post" && code == RebootExit) {
		return HookResult{ExitCode: code}, fmt.Errorf("%s hook %s: %w: %s", h.Phase, h.Script, err, tail(out.Bytes()))
	}
	res := struct{ ExitCode int }{code}
	return HookResult{ExitCode: res.ExitCode, RebootNeeded: h.Phase == "post" && res.ExitCode == RebootExit}, nil
}

// Sync modes.
const (
	SyncDeploy  = "deploy"
	SyncUpgrade = "upgrade"
)

// SyncStep is the tree.sync step.
type SyncStep struct {
	Store   string `json:"store" doc:"tree store"`
	Role    string `json:"role" doc:"role"`
	Version string `json:"version" doc:"version to install"`
	Target  string `json:"target" doc:"target root"`
	Mode    string `json:"mode" doc:"deploy (target must be empty) or upgrade (after tree.snapshot)"`
	From    string `json:"from,omitempty" doc:"upgrade: current version (selects the metadata)"`
	// Checksum compares every file alike in size and mtime byte for
	// byte, not trusting the pair cache (see pairCache).
	Checksum bool `json:"checksum,omitempty" doc:"upgrade: compare every file alike in size and mtime byte for byte (no pair cache)"`
}

// StepKind names the kind.
func (SyncStep) StepKind() string { return "tree.sync" }

// Validate checks the parameters without touching the system.
func (s SyncStep) Validate() error {
	if err := CheckRoot("target", s.Target); err != nil {
		return err
	}
	if err := CheckRoot("store", s.Store); err != nil {
		return err
	}
	if err := CheckName("role", s.Role); err != nil {
		return err
	}
	if err := CheckName("version", s.Version); err != nil {
		return err
	}
	switch s.Mode {
	case SyncDeploy:
	case SyncUpgrade:
		return CheckName("from", s.From)
	default:
		return fmt.Errorf("mode %q: want deploy or upgrade", s.Mode)
	}
	return nil
}

type syncUndo struct {
	Root *Entry `json:"root,omitempty"`
}

// emptyExcept are names a target may hold and still be empty.
var emptyExcept = map[string]bool{"lost+found": true}

func isEmpty(dir string) (bool, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range ents {
		if !emptyExcept[e.Name()] {
			return false, nil
		}
	}
	return true, nil
}

func prepareSync(_ context.Context, _ *atomic.Env, s SyncStep) (atomic.Plan[syncUndo, Stats], error) {
	var plan atomic.Plan[syncUndo, Stats]
	if err := realDir(s.Target); err != nil {
		return plan, err
	}
	if s.Mode == SyncDeploy {
		ok, err := isEmpty(s.Target)
		if err != nil {
			return plan, err
		}
		if !ok {
			return plan, fmt.Errorf("%w: target %s is not empty; a first deploy needs an empty target (use upgrade)", atomic.ErrInvalid, s.Target)
		}
		root, err := lstatEntry(s.Target, "")
		if err != nil {
			return plan, err
		}
		plan.Undo.Root = root
	}
	return plan, nil
}

func (s SyncStep) skip() (func(string, bool) bool, *Meta, error) {
	if s.Mode == SyncDeploy {
		return skipper(Rules{{Pattern: "lost+found", Anchored: true, DirOnly: true}}), &Meta{}, nil
	}
	m, err := Store{Dir: s.Store}.Metadata(s.From, s.Role, s.Version)
	if err != nil {
		return nil, nil, err
	}
	return skipper(m.Exclude, m.AddOnly), m, nil
}

func doSync(_ context.Context, env *atomic.Env, s SyncStep, _ syncUndo) (Stats, error) {
	src, err := Store{Dir: s.Store}.TreeDir(s.Version, s.Role)
	if err != nil {
		return Stats{}, err
	}
	skip, _, err := s.skip()
	if err != nil {
		return Stats{}, err
	}
	var pairs *pairCache
	if s.Mode == SyncUpgrade {
		pairs = openPairs(env, s.Store, s.Role, s.From, s.Version, s.Checksum)
		defer pairs.close()
	}
	p, err := planSync(src, s.Target, skip, pairs)
	if err != nil {
		return Stats{}, err
	}
	if env.Dry("sync %s with %s/%s: %d changes", s.Target, s.Version, s.Role, len(p.changes)) {
		return Stats{}, nil
	}
	st, err := p.apply()
	if err != nil {
		return Stats{}, err
	}
	return *st, nil
}

func undoSync(_ context.Context, _ *atomic.Env, s SyncStep, u syncUndo, r Stats) error {
	if s.Mode != SyncDeploy {
		// The upgrade's tree.snapshot restores the target. A sync that
		// was cut short (no result) may have left temporaries beside the
		// files it was writing, which the restore point does not know.
		if r.Created == 0 && r.Updated == 0 && r.Meta == 0 && r.Removed == 0 && r.Bytes == 0 {
			return removeTemporaries(s.Target)
		}
		return nil
	}
	if err := realDir(s.Target); err != nil {
		return err
	}
	ents, err := os.ReadDir(s.Target)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if emptyExcept[e.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.Target, e.Name())); err != nil {
			return fmt.Errorf("empty %s again: %w", s.Target, err)
		}
	}
	if u.Root != nil {
		if err := applyMeta(s.Target, u.Root); err != nil {
			return err
		}
	}
	return syncFS(s.Target)
}

// removeTemporaries deletes the regular files named tmpPrefix* that an
// interrupted sync left anywhere below target (a killed upgrade left a
// 194 MB one that tree verify cannot see). It does not follow symlinks.
func removeTemporaries(target string) error {
	if err := realDir(target); err != nil {
		return err
	}
	return filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // vanished meanwhile, or unreadable: not ours to judge
		}
		if d.Type().IsRegular() && strings.HasPrefix(d.Name(), tmpPrefix) {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove temporary %s: %w", p, err)
			}
		}
		return nil
	})
}

// AddOnlyStep is the tree.add-only step.
type AddOnlyStep struct {
	Store   string `json:"store" doc:"tree store"`
	Role    string `json:"role" doc:"role"`
	From    string `json:"from" doc:"current version"`
	Version string `json:"version" doc:"version being installed"`
	Target  string `json:"target" doc:"target root"`
}

// StepKind names the kind.
func (AddOnlyStep) StepKind() string { return "tree.add-only" }

// Validate checks the parameters without touching the system.
func (a AddOnlyStep) Validate() error {
	return SyncStep{Store: a.Store, Role: a.Role, Version: a.Version, Target: a.Target, Mode: SyncUpgrade, From: a.From}.Validate()
}

// addOnlyPlan lists the add_only paths of the tree (the top-most match)
// that are absent from the target.
func addOnlyPlan(src, dst string, m *Meta) ([]string, error) {
	if len(m.AddOnly) == 0 {
		return nil, nil
	}
	var out []string
	_, err := Scan(src, func(rel string, isDir bool) bool {
		if rel == StateFile || m.Exclude.Match(rel, isDir) {
			return true
		}
		if m.AddOnly.Match(rel, isDir) {
			if _, err := os.Lstat(join(dst, rel)); errors.Is(err, os.ErrNotExist) {
				out = append(out, rel)
			}
			return true
		}
		return false
	})
	return out, err
}

func doAddOnly(_ context.Context, env *atomic.Env, a AddOnlyStep, _ struct{}) (Stats, error) {
	st := Store{Dir: a.Store}
	src, err := st.TreeDir(a.Version, a.Role)
	if err != nil {
		return Stats{}, err
	}
	m, err := st.Metadata(a.From, a.Role, a.Version)
	if err != nil {
		return Stats{}, err
	}
	adds, err := addOnlyPlan(src, a.Target, m)
	if err != nil {
		return Stats{}, err
	}
	if env.Dry("copy %d absent add_only paths into %s", len(adds), a.Target) {
		return Stats{}, nil
	}
	var stats Stats
	dst, err := newPinner(a.Target)
	if err != nil {
		return stats, err
	}
	defer dst.close()
	srcPin, err := newPinner(src)
	if err != nil {
		return stats, err
	}
	defer srcPin.close()
	for _, rel := range adds {
		full, err := dst.path(rel)
		if err != nil {
			return stats, fmt.Errorf("add_only %s: parent directory in the target: %w", rel, err)
		}
		sp, err := srcPin.path(rel)
		if err != nil {
			return stats, fmt.Errorf("add_only %s: %w", rel, err)
		}
		e, err := lstatPath(sp, rel)
		if err != nil {
			return stats, fmt.Errorf("add_only %s: %w", rel, err)
		}
		if e.Type != TypeDir {
			if err := replaceWith(full, func(tmp string) error { return makeEntry(srcPin, e, tmp) }); err != nil {
				return stats, fmt.Errorf("add_only %s: %w", join(a.Target, rel), err)
			}
			stats.Created++
			stats.Bytes += e.Size
			continue
		}
		sub, err := scanFast(sp, nil)
		if err != nil {
			return stats, fmt.Errorf("add_only %s: %w", rel, err)
		}
		for _, e := range sub.Entries {
			c := *e
			c.Rel = join(rel, e.Rel)
			if e.Rel == "" {
				c.Rel = rel
			}
			p, err := dst.path(c.Rel)
			if err != nil {
				return stats, fmt.Errorf("add_only %s: %w", c.Rel, err)
			}
			if err := makeEntry(srcPin, &c, p); err != nil {
				return stats, fmt.Errorf("add_only %s: %w", join(a.Target, c.Rel), err)
			}
			stats.Created++
			stats.Bytes += e.Size
		}
		for i := len(sub.Entries) - 1; i >= 0; i-- {
			if e := sub.Entries[i]; e.Type == TypeDir {
				p, err := dst.path(join(rel, e.Rel))
				if err != nil {
					return stats, err
				}
				if err := applyMeta(p, e); err != nil {
					return stats, fmt.Errorf("add_only %s: %w", join(a.Target, join(rel, e.Rel)), err)
				}
			}
		}
	}
	return stats, syncFS(a.Target)
}

// State is a target's recorded role and version.
type State struct {
	Role    string `json:"role"`
	Version string `json:"version"`
}

// ReadState reads the recorded state of a target; (nil, nil) if it has
// none.
func ReadState(target string) (*State, error) {
	p, done, err := statePath(target)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer done()
	b, err := readNoFollow(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", join(target, StateFile), err)
	}
	p = join(target, StateFile) // for errors
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if CheckName("role", s.Role) != nil || CheckName("version", s.Version) != nil {
		return nil, fmt.Errorf("%s: bad role or version", p)
	}
	return &s, nil
}

// StateStep is the tree.state step.
type StateStep struct {
	Target  string `json:"target" doc:"target root"`
	Role    string `json:"role" doc:"role"`
	Version string `json:"version" doc:"version now installed"`
}

// StepKind names the kind.
func (StateStep) StepKind() string { return "tree.state" }

// Validate checks the parameters without touching the system.
func (s StateStep) Validate() error {
	if err := CheckRoot("target", s.Target); err != nil {
		return err
	}
	if err := CheckName("role", s.Role); err != nil {
		return err
	}
	return CheckName("version", s.Version)
}

type stateUndo struct {
	Existed bool   `json:"existed"`
	Content []byte `json:"content,omitempty"`
	Entry   *Entry `json:"entry,omitempty"`
	EtcMade bool   `json:"etc_made,omitempty"`
}

func (s StateStep) content() []byte {
	b, _ := json.Marshal(State{Role: s.Role, Version: s.Version})
	return append(b, '\n')
}

func prepareState(_ context.Context, _ *atomic.Env, s StateStep) (atomic.Plan[stateUndo, State], error) {
	var plan atomic.Plan[stateUndo, State]
	p, done, err := statePath(s.Target)
	if errors.Is(err, os.ErrNotExist) {
		plan.Undo.EtcMade = true // no etc
		return plan, nil
	}
	if err != nil {
		return plan, err
	}
	defer done()
	e, err := lstatPath(p, StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return plan, nil
	}
	if err != nil {
		return plan, err
	}
	if e.Type != TypeFile {
		return plan, fmt.Errorf("%s is not a regular file", join(s.Target, StateFile))
	}
	b, err := readNoFollow(p)
	if err != nil {
		return plan, fmt.Errorf("%s: %w", join(s.Target, StateFile), err)
	}
	plan.Undo = stateUndo{Existed: true, Content: b, Entry: e}
	return plan, nil
}

func writeAtomic(p string, data []byte, meta *Entry) error {
	return replaceWith(p, func(tmp string) error {
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o644)
		if err != nil {
			return err
		}
		if err := fsutil.WriteSyncClose(f, data); err != nil {
			return err
		}
		if meta != nil {
			return applyMeta(tmp, meta)
		}
		return nil
	})
}

func doState(_ context.Context, env *atomic.Env, s StateStep, u stateUndo) (State, error) {
	st := State{Role: s.Role, Version: s.Version}
	if env.Dry("write %s: role %s version %s", join(s.Target, StateFile), s.Role, s.Version) {
		return st, nil
	}
	pin, err := newPinner(s.Target)
	if err != nil {
		return st, err
	}
	defer pin.close()
	etc, err := pin.path(parentRel(StateFile))
	if err != nil {
		return st, err
	}
	if err := os.Mkdir(etc, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return st, fmt.Errorf("mkdir %s: %w", join(s.Target, parentRel(StateFile)), err)
	}
	// the state file's parent is opened with no symlink on the way:
	// an etc that is a symlink is refused, never written through
	p, err := pin.path(StateFile)
	if err != nil {
		return st, err
	}
	if err := writeAtomic(p, s.content(), nil); err != nil {
		return st, fmt.Errorf("%s: %w", join(s.Target, StateFile), err)
	}
	return st, syncFS(s.Target)
}

func undoState(_ context.Context, _ *atomic.Env, s StateStep, u stateUndo, _ State) error {
	p, done, err := statePath(s.Target)
	if errors.Is(err, os.ErrNotExist) && !u.Existed {
		return nil // no etc: nothing was written
	}
	if err != nil {
		return err
	}
	defer done()
	if u.Existed {
		if err := writeAtomic(p, u.Content, u.Entry); err != nil {
			return err
		}
		return applyMeta(p, u.Entry)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if u.EtcMade {
		if pin, err := newPinner(s.Target); err == nil {
			if etc, err := pin.path(parentRel(StateFile)); err == nil {
				_ = unix.Rmdir(etc) // only if empty
			}
			pin.close()
		}
	}
	return nil
}

// statePath pins <target>/etc/bofh-tree.json (see pinner): its parent
// is opened with no symlink on the way, so the state of a target whose
// etc is a symlink is never read or written outside it. done releases
// the pin.
func statePath(target string) (p string, done func(), err error) {
	pin, err := newPinner(target)
	if err != nil {
		return "", nil, err
	}
	if p, err = pin.path(StateFile); err != nil {
		pin.close()
		return "", nil, err
	}
	return p, pin.close, nil
}

// readNoFollow reads the regular file p, never through a symlink at its
// last component nor blocking on a FIFO.
func readNoFollow(p string) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	return io.ReadAll(f)
}

func checkState(_ context.Context, _ *atomic.Env, s StateStep, _ stateUndo) (bool, State, error) {
	p, done, err := statePath(s.Target)
	if errors.Is(err, os.ErrNotExist) {
		return false, State{}, nil
	}
	if err != nil {
		return false, State{}, err
	}
	defer done()
	b, err := readNoFollow(p)
	if errors.Is(err, os.ErrNotExist) {
		return false, State{}, nil
	}
	return err == nil && bytes.Equal(b, s.content()), State{Role: s.Role, Version: s.Version}, err
}

func tail(b []byte) string {
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return string(bytes.TrimSpace(b))
}

// openPairs opens the pair cache of an upgrade, kept in the state dir's
// cache/tree-pairs (nil with checksum set: every file alike in size and
// mtime is then compared byte for byte).
func openPairs(env *atomic.Env, store, role, from, to string, checksum bool) *pairCache {
	if checksum {
		return nil
	}
	dir := ""
	if env != nil {
		dir, _ = env.CacheDir("tree-pairs") // none: answers last for this step only
	}
	c, _ := openPairCache(dir, store, role, from, to)
	return c
}
