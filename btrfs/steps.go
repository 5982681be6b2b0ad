package btrfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/fsutil"
	"github.com/bofhkit/bofh/run"
)

func init() {
	atomic.Register(atomic.Def[CreateSubvol, struct{}, Result]{
		Doc:     "create a btrfs subvolume; undo deletes it if it is still the one created (same UUID)",
		Prepare: prepareCreate,
		Do:      doCreate,
		Undo:    undoCreate,
		Check:   checkCreate,
	})
	atomic.Register(atomic.Def[DeleteSubvol, struct{}, struct{}]{
		Doc:          "delete a btrfs subvolume and everything in it; irreversible, runs at commit",
		Irreversible: true,
		Prepare:      prepareDelete,
		Do:           doDelete,
		Check:        checkDelete,
	})
	atomic.Register(atomic.Def[Snapshot, snapUndo, Result]{
		Doc:     "snapshot a btrfs subvolume (read-only with readonly: true); undo deletes the snapshot",
		Prepare: prepareSnapshot,
		Do:      doSnapshot,
		Undo:    undoSnapshot,
		Check:   checkSnapshot,
	})
	atomic.Register(atomic.Def[SetDefault, defaultUndo, Result]{
		Doc:     "make a subvolume the default of its filesystem; undo restores the previous default",
		Prepare: prepareDefault,
		Do:      doDefault,
		Undo:    undoDefault,
		Check:   checkDefault,
	})
	atomic.Register(atomic.Def[Swap, SwapUndo, struct{}]{
		Doc:     "exchange two subvolumes' places atomically (renameat2 RENAME_EXCHANGE); undo exchanges them back",
		Prepare: prepareSwap,
		Do:      doSwap,
		Undo:    undoSwap,
		Check:   checkSwap,
	})
}

// Result is what the subvolume steps report about the subvolume they made
// or changed.
type Result struct {
	Path     string `json:"path"`
	UUID     string `json:"uuid"`
	ID       uint64 `json:"id"`
	ReadOnly bool   `json:"readonly,omitempty"`
}

func resultOf(path string, i *Info) Result {
	return Result{Path: path, UUID: i.UUID, ID: i.ID, ReadOnly: i.ReadOnly}
}

// CheckPath validates a path argument: absolute, clean, not "/", no NUL.
func CheckPath(what, p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%s: path is required", what)
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%s: path contains a NUL byte", what)
	case !filepath.IsAbs(p):
		return fmt.Errorf("%s: path %q is not absolute", what, p)
	case filepath.Clean(p) != p:
		return fmt.Errorf("%s: path %q is not clean (use %q)", what, p, filepath.Clean(p))
	case p == "/":
		return fmt.Errorf("%s: path is the root directory", what)
	}
	return nil
}

// invalid is an error that is certainly the operator's input (a path
// that is missing, of the wrong kind or on another filesystem), found
// while preparing a step, before anything was done: it wraps
// atomic.ErrInvalid (exit 2, nothing journaled). Never used for a
// command that failed or a system call that failed otherwise.
func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", atomic.ErrInvalid, fmt.Sprintf(format, a...))
}

// checkParent checks that the directory a new subvolume or snapshot at
// path goes into exists and is on btrfs.
func checkParent(path string) error {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTDIR):
		return invalid("parent directory of %s: %v", path, err)
	case err != nil:
		return fmt.Errorf("parent directory of %s: %w", path, err)
	case !fi.IsDir():
		return invalid("parent %s of %s is not a directory", dir, path)
	}
	if ok, err := IsBtrfs(dir); err != nil {
		return fmt.Errorf("parent of %s: %w", path, err)
	} else if !ok {
		return invalid("%s is not on a btrfs filesystem", dir)
	}
	return nil
}

// mustBeSubvol is Prepare's check that path is a subvolume: a path that
// is missing or not a subvolume is bad input.
func mustBeSubvol(what, path string) error {
	ex, sv, err := subvolAt(path)
	switch {
	case err != nil:
		return err
	case !ex:
		return invalid("%s%s is not a btrfs subvolume: it does not exist", what, path)
	case !sv:
		return invalid("%s%s is not a btrfs subvolume", what, path)
	}
	return nil
}

// subvolAt says whether path exists and whether it is a subvolume.
func subvolAt(path string) (exists, subvol bool, err error) {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return false, false, nil
	} else if err != nil {
		return false, false, fmt.Errorf("stat %s: %w", path, err)
	}
	sv, err := IsSubvolume(path)
	return true, sv, err
}

func deleteSubvol(ctx context.Context, r run.Runner, path string) error {
	// -c: wait for the transaction commit, so a deletion that returned is
	// on disk before the journal says so.
	if err := run.Mutate(ctx, r, "btrfs", "subvolume", "delete", "-c", path); err != nil {
		return fmt.Errorf("delete subvolume %s: %w", path, err)
	}
	return nil
}

// CreateSubvol is the btrfs.subvol.create step.
type CreateSubvol struct {
	Path string `json:"path" doc:"absolute path of the new subvolume (its parent must exist on btrfs)"`
}

// StepKind names the kind.
func (CreateSubvol) StepKind() string { return "btrfs.subvol.create" }

// Validate checks the parameters without touching the system.
func (c CreateSubvol) Validate() error { return CheckPath("path", c.Path) }

func prepareCreate(ctx context.Context, env *atomic.Env, c CreateSubvol) (atomic.Plan[struct{}, Result], error) {
	var plan atomic.Plan[struct{}, Result]
	ex, sv, err := subvolAt(c.Path)
	if err != nil {
		return plan, err
	}
	if ex && !sv {
		return plan, invalid("%s exists and is not a subvolume", c.Path)
	}
	if sv {
		info, err := Show(ctx, env.Runner, c.Path)
		if err != nil {
			return plan, err
		}
		plan.Noop, plan.Result = true, resultOf(c.Path, info)
		return plan, nil
	}
	return plan, checkParent(c.Path)
}

func doCreate(ctx context.Context, env *atomic.Env, c CreateSubvol, _ struct{}) (Result, error) {
	if err := run.Mutate(ctx, env.Runner, "btrfs", "subvolume", "create", c.Path); err != nil {
		return Result{}, fmt.Errorf("create subvolume %s: %w", c.Path, err)
	}
	if env.DryRun {
		return Result{Path: c.Path}, nil
	}
	info, err := Show(ctx, env.Runner, c.Path)
	if err != nil {
		return Result{}, err
	}
	return resultOf(c.Path, info), nil
}

func undoCreate(ctx context.Context, env *atomic.Env, c CreateSubvol, _ struct{}, r Result) error {
	ex, sv, err := subvolAt(c.Path)
	if err != nil || !ex {
		return err
	}
	if !sv {
		return fmt.Errorf("%s is no longer a subvolume; not deleting it", c.Path)
	}
	if r.UUID != "" {
		info, err := Show(ctx, env.Runner, c.Path)
		if err != nil {
			return err
		}
		if info.UUID != r.UUID {
			return fmt.Errorf("%s is now subvolume %s, not the %s this transaction created; not deleting it", c.Path, info.UUID, r.UUID)
		}
	}
	return deleteSubvol(ctx, env.Runner, c.Path)
}

func checkCreate(ctx context.Context, env *atomic.Env, c CreateSubvol, _ struct{}) (bool, Result, error) {
	_, sv, err := subvolAt(c.Path)
	if err != nil || !sv {
		return false, Result{}, err
	}
	info, err := Show(ctx, env.Runner, c.Path)
	if err != nil {
		return false, Result{}, err
	}
	return true, resultOf(c.Path, info), nil
}

// DeleteSubvol is the btrfs.subvol.delete step. It is irreversible: it
// runs at commit, after every reversible step succeeded.
type DeleteSubvol struct {
	Path string `json:"path" doc:"absolute path of the subvolume to delete, with everything in it"`
}

// StepKind names the kind.
func (DeleteSubvol) StepKind() string { return "btrfs.subvol.delete" }

// Validate checks the parameters without touching the system.
func (d DeleteSubvol) Validate() error { return CheckPath("path", d.Path) }

func prepareDelete(_ context.Context, _ *atomic.Env, d DeleteSubvol) (atomic.Plan[struct{}, struct{}], error) {
	var plan atomic.Plan[struct{}, struct{}]
	ex, sv, err := subvolAt(d.Path)
	switch {
	case err != nil:
		return plan, err
	case !ex:
		plan.Noop = true // already gone
	case !sv:
		return plan, invalid("%s is not a btrfs subvolume", d.Path)
	}
	return plan, nil
}

func doDelete(ctx context.Context, env *atomic.Env, d DeleteSubvol, _ struct{}) (struct{}, error) {
	ex, _, err := subvolAt(d.Path)
	if err != nil || (!ex && !env.DryRun) {
		return struct{}{}, err
	}
	return struct{}{}, deleteSubvol(ctx, env.Runner, d.Path)
}

func checkDelete(_ context.Context, _ *atomic.Env, d DeleteSubvol, _ struct{}) (bool, struct{}, error) {
	ex, _, err := subvolAt(d.Path)
	return !ex && err == nil, struct{}{}, err
}

// Snapshot is the btrfs.snapshot step.
type Snapshot struct {
	Source   string `json:"source" doc:"subvolume to snapshot"`
	Dest     string `json:"dest" doc:"path of the new snapshot (must not exist)"`
	ReadOnly bool   `json:"readonly,omitempty" doc:"make a read-only snapshot"`
}

// StepKind names the kind.
func (Snapshot) StepKind() string { return "btrfs.snapshot" }

// Validate checks the parameters without touching the system.
func (s Snapshot) Validate() error {
	if err := CheckPath("source", s.Source); err != nil {
		return err
	}
	if err := CheckPath("dest", s.Dest); err != nil {
		return err
	}
	if s.Source == s.Dest {
		return errors.New("source and dest are the same path")
	}
	return nil
}

type snapUndo struct {
	SourceUUID string `json:"source_uuid"`
}

func prepareSnapshot(ctx context.Context, env *atomic.Env, s Snapshot) (atomic.Plan[snapUndo, Result], error) {
	var plan atomic.Plan[snapUndo, Result]
	if err := mustBeSubvol("source ", s.Source); err != nil {
		return plan, err
	}
	src, err := Show(ctx, env.Runner, s.Source)
	if err != nil {
		return plan, err
	}
	plan.Undo.SourceUUID = src.UUID
	ex, sv, err := subvolAt(s.Dest)
	if err != nil {
		return plan, err
	}
	if !ex {
		return plan, checkParent(s.Dest)
	}
	if sv {
		d, err := Show(ctx, env.Runner, s.Dest)
		if err != nil {
			return plan, err
		}
		if d.ParentUUID == src.UUID && d.ReadOnly == s.ReadOnly {
			plan.Noop, plan.Result = true, resultOf(s.Dest, d)
			return plan, nil
		}
	}
	return plan, invalid("dest %s already exists", s.Dest)
}

func doSnapshot(ctx context.Context, env *atomic.Env, s Snapshot, _ snapUndo) (Result, error) {
	argv := []string{"btrfs", "subvolume", "snapshot"}
	if s.ReadOnly {
		argv = append(argv, "-r")
	}
	argv = append(argv, s.Source, s.Dest)
	if err := run.Mutate(ctx, env.Runner, argv...); err != nil {
		return Result{}, fmt.Errorf("snapshot %s: %w", s.Source, err)
	}
	if env.DryRun {
		return Result{Path: s.Dest, ReadOnly: s.ReadOnly}, nil
	}
	info, err := Show(ctx, env.Runner, s.Dest)
	if err != nil {
		return Result{}, err
	}
	return resultOf(s.Dest, info), nil
}

func undoSnapshot(ctx context.Context, env *atomic.Env, s Snapshot, u snapUndo, r Result) error {
	ex, sv, err := subvolAt(s.Dest)
	if err != nil || !ex {
		return err
	}
	if !sv {
		return fmt.Errorf("%s is no longer a subvolume; not deleting it", s.Dest)
	}
	info, err := Show(ctx, env.Runner, s.Dest)
	if err != nil {
		return err
	}
	ours := info.UUID == r.UUID || (r.UUID == "" && info.ParentUUID == u.SourceUUID)
	if !ours {
		return fmt.Errorf("%s is subvolume %s, not the snapshot this transaction made; not deleting it", s.Dest, info.UUID)
	}
	return deleteSubvol(ctx, env.Runner, s.Dest)
}

func checkSnapshot(ctx context.Context, env *atomic.Env, s Snapshot, u snapUndo) (bool, Result, error) {
	_, sv, err := subvolAt(s.Dest)
	if err != nil || !sv {
		return false, Result{}, err
	}
	info, err := Show(ctx, env.Runner, s.Dest)
	if err != nil {
		return false, Result{}, err
	}
	if info.ParentUUID != u.SourceUUID {
		return false, Result{}, fmt.Errorf("%s is a subvolume but not a snapshot of %s", s.Dest, s.Source)
	}
	return true, resultOf(s.Dest, info), nil
}

// SetDefault is the btrfs.set-default step.
type SetDefault struct {
	Path string `json:"path" doc:"subvolume to make the default of its filesystem"`
}

// StepKind names the kind.
func (SetDefault) StepKind() string { return "btrfs.set-default" }

// Validate checks the parameters without touching the system.
func (s SetDefault) Validate() error { return CheckPath("path", s.Path) }

type defaultUndo struct {
	OldID uint64 `json:"old_id"`
	// FSPath is a path on the filesystem to run set-default against when
	// undoing (the subvolume's parent: it outlives the subvolume).
	FSPath string `json:"fs_path"`
}

func prepareDefault(ctx context.Context, env *atomic.Env, s SetDefault) (atomic.Plan[defaultUndo, Result], error) {
	var plan atomic.Plan[defaultUndo, Result]
	if err := mustBeSubvol("", s.Path); err != nil {
		return plan, err
	}
	info, err := Show(ctx, env.Runner, s.Path)
	if err != nil {
		return plan, err
	}
	old, err := GetDefault(ctx, env.Runner, s.Path)
	if err != nil {
		return plan, err
	}
	plan.Undo = defaultUndo{OldID: old, FSPath: filepath.Dir(s.Path)}
	if old == info.ID {
		plan.Noop, plan.Result = true, resultOf(s.Path, info)
	}
	return plan, nil
}

func doDefault(ctx context.Context, env *atomic.Env, s SetDefault, _ defaultUndo) (Result, error) {
	info, err := Show(ctx, env.Runner, s.Path)
	if err != nil {
		return Result{}, err
	}
	if err := run.Mutate(ctx, env.Runner, "btrfs", "subvolume", "set-default", fmt.Sprint(info.ID), s.Path); err != nil {
		return Result{}, fmt.Errorf("set default subvolume: %w", err)
	}
	return resultOf(s.Path, info), nil
}

func undoDefault(ctx context.Context, env *atomic.Env, s SetDefault, u defaultUndo, _ Result) error {
	cur, err := GetDefault(ctx, env.Runner, u.FSPath)
	if err != nil {
		return err
	}
	if cur == u.OldID {
		return nil
	}
	if err := run.Mutate(ctx, env.Runner, "btrfs", "subvolume", "set-default", fmt.Sprint(u.OldID), u.FSPath); err != nil {
		return fmt.Errorf("restore default subvolume %d: %w", u.OldID, err)
	}
	return nil
}

func checkDefault(ctx context.Context, env *atomic.Env, s SetDefault, u defaultUndo) (bool, Result, error) {
	info, err := Show(ctx, env.Runner, s.Path)
	if err != nil {
		return false, Result{}, err
	}
	cur, err := GetDefault(ctx, env.Runner, u.FSPath)
	if err != nil {
		return false, Result{}, err
	}
	return cur == info.ID, resultOf(s.Path, info), nil
}

// Swap is the btrfs.swap step: the subvolumes at Path and With exchange
// places in one renameat2(RENAME_EXCHANGE) call. Used for rollback: swap
// a live subvolume with its snapshot, then delete the old one (with
// btrfs.subvol.delete, at commit).
type Swap struct {
	Path string `json:"path" doc:"a subvolume"`
	With string `json:"with" doc:"the subvolume to put in its place (gets Path's old subvolume)"`
}

// StepKind names the kind.
func (Swap) StepKind() string { return "btrfs.swap" }

// Validate checks the parameters without touching the system.
func (s Swap) Validate() error {
	if err := CheckPath("path", s.Path); err != nil {
		return err
	}
	if err := CheckPath("with", s.With); err != nil {
		return err
	}
	if s.Path == s.With {
		return errors.New("path and with are the same")
	}
	if strings.HasPrefix(s.With, s.Path+"/") || strings.HasPrefix(s.Path, s.With+"/") {
		return errors.New("one path is inside the other")
	}
	return nil
}

// SwapUndo holds the UUIDs found at both paths before the swap.
type SwapUndo struct {
	PathUUID string `json:"path_uuid"`
	WithUUID string `json:"with_uuid"`
}

func uuidAt(ctx context.Context, r run.Runner, path string) (string, error) {
	if _, sv, err := subvolAt(path); err != nil {
		return "", err
	} else if !sv {
		return "", fmt.Errorf("%s is not a btrfs subvolume", path)
	}
	info, err := Show(ctx, r, path)
	if err != nil {
		return "", err
	}
	return info.UUID, nil
}

func prepareSwap(ctx context.Context, env *atomic.Env, s Swap) (atomic.Plan[SwapUndo, struct{}], error) {
	var plan atomic.Plan[SwapUndo, struct{}]
	for _, p := range []string{s.Path, s.With} {
		if err := mustBeSubvol("", p); err != nil {
			return plan, err
		}
	}
	var err error
	if plan.Undo.PathUUID, err = uuidAt(ctx, env.Runner, s.Path); err != nil {
		return plan, err
	}
	if plan.Undo.WithUUID, err = uuidAt(ctx, env.Runner, s.With); err != nil {
		return plan, err
	}
	return plan, nil
}

// Exchange swaps two directory entries atomically with renameat2
// RENAME_EXCHANGE and syncs both parent directories.
func Exchange(a, b string) error {
	if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE); err != nil {
		return fmt.Errorf("exchange %s and %s: %w", a, b, err)
	}
	for _, d := range []string{filepath.Dir(a), filepath.Dir(b)} {
		if err := fsutil.SyncDir(d); err != nil {
			return err
		}
	}
	return nil
}

func doSwap(_ context.Context, env *atomic.Env, s Swap, _ SwapUndo) (struct{}, error) {
	if env.Dry("exchange subvolumes %s and %s", s.Path, s.With) {
		return struct{}{}, nil
	}
	return struct{}{}, Exchange(s.Path, s.With)
}

func undoSwap(ctx context.Context, env *atomic.Env, s Swap, u SwapUndo, _ struct{}) error {
	cur, err := uuidAt(ctx, env.Runner, s.Path)
	if err != nil {
		return err
	}
	switch cur {
	case u.PathUUID:
		return nil // not swapped, or swapped back already
	case u.WithUUID:
		return Exchange(s.Path, s.With)
	}
	return fmt.Errorf("%s holds subvolume %s, neither of the two swapped (%s, %s)", s.Path, cur, u.PathUUID, u.WithUUID)
}

func checkSwap(ctx context.Context, env *atomic.Env, s Swap, u SwapUndo) (bool, struct{}, error) {
	cur, err := uuidAt(ctx, env.Runner, s.Path)
	if err != nil {
		return false, struct{}{}, err
	}
	return cur == u.WithUUID, struct{}{}, nil
}
