package lvm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/bofhkit/bofh/atomic"
)

func init() {
	atomic.Register(atomic.Def[CreateLV, struct{}, LV]{
		Doc:     "create a logical volume (linear, thin-pool, thin or snapshot) tagged with the transaction; undo removes it",
		Prepare: prepareLVCreate,
		Do:      doLVCreate,
		Undo:    undoLVCreate,
		Check:   checkLVCreate,
	})
	atomic.Register(atomic.Def[RemoveLV, struct{}, struct{}]{
		Doc:          "remove a logical volume (lvremove); irreversible: runs at commit (see lvm.lv.set-aside for a removal that can be undone)",
		Irreversible: true,
		Prepare:      prepareLVRemove,
		Do:           doLVRemove,
		Check:        checkLVRemove,
	})
	atomic.Register(atomic.Def[SetAsideLV, setAsideUndo, LV]{
		Doc:     "rename a logical volume out of the way and deactivate it, keeping its data until a later lvm.lv.remove of the aside name at commit; undo puts it back",
		Prepare: prepareLVSetAside,
		Do:      doLVSetAside,
		Undo:    undoLVSetAside,
		// no Check: the step runs three commands, and a crash between
		// them leaves a state no check can call done or not done (the
		// LV deactivated, or renamed but not tagged). Without a Check
		// the engine undoes an interrupted set-aside (which handles
		// every partial state) before a rollback ends or a resume acts
		// again.
	})
	atomic.Register(atomic.Def[RenameLV, renameUndo, LV]{
		Doc:     "rename a logical volume (lvrename); undo renames it back",
		Prepare: prepareLVRename,
		Do:      doLVRename,
		Undo:    undoLVRename,
		Check:   checkLVRename,
	})
	atomic.Register(atomic.Def[ResizeLV, resizeUndo, LV]{
		Doc:     "resize a logical volume to a size (lvresize -l); undo resizes it back (a shrink must be asked for with shrink: true, and its undo restores the size, not the data cut off)",
		Prepare: prepareLVResize,
		Do:      doLVResize,
		Undo:    undoLVResize,
		Check:   checkLVResize,
	})
	atomic.Register(atomic.Def[ActivateLV, struct{}, LV]{
		Doc: "activate a logical volume (lvchange -ay -K); undo deactivates it",
		Prepare: func(ctx context.Context, env *atomic.Env, p ActivateLV) (atomic.Plan[struct{}, LV], error) {
			return prepareActivation(ctx, env, p.VG, p.Name, true)
		},
		Do: func(ctx context.Context, env *atomic.Env, p ActivateLV, _ struct{}) (LV, error) {
			return setActive(ctx, env, p.VG, p.Name, true)
		},
		Undo: func(ctx context.Context, env *atomic.Env, p ActivateLV, _ struct{}, _ LV) error {
			_, err := setActiveIfPresent(ctx, env, p.VG, p.Name, false)
			return err
		},
		Check: func(ctx context.Context, env *atomic.Env, p ActivateLV, _ struct{}) (bool, LV, error) {
			return checkActive(ctx, env, p.VG, p.Name, true)
		},
	})
	atomic.Register(atomic.Def[DeactivateLV, struct{}, LV]{
		Doc: "deactivate a logical volume (lvchange -an); undo activates it again",
		Prepare: func(ctx context.Context, env *atomic.Env, p DeactivateLV) (atomic.Plan[struct{}, LV], error) {
			return prepareActivation(ctx, env, p.VG, p.Name, false)
		},
		Do: func(ctx context.Context, env *atomic.Env, p DeactivateLV, _ struct{}) (LV, error) {
			return setActive(ctx, env, p.VG, p.Name, false)
		},
		Undo: func(ctx context.Context, env *atomic.Env, p DeactivateLV, _ struct{}, _ LV) error {
			_, err := setActiveIfPresent(ctx, env, p.VG, p.Name, true)
			return err
		},
		Check: func(ctx context.Context, env *atomic.Env, p DeactivateLV, _ struct{}) (bool, LV, error) {
			return checkActive(ctx, env, p.VG, p.Name, false)
		},
	})
	atomic.Register(atomic.Def[MergeLV, struct{}, struct{}]{
		Doc:          "merge a snapshot back into its origin (lvconvert --merge); irreversible: runs at commit, the origin's changes since the snapshot are lost",
		Irreversible: true,
		Prepare:      prepareLVMerge,
		Do:           doLVMerge,
		Check:        checkLVMerge,
	})
}

// CreateLV is the lvm.lv.create step.
//
//   - linear (default): Size is required.
//   - thin-pool: Size is the pool's data size; LVM adds its metadata LV.
//   - thin: Size is the virtual size (bytes only), Pool names the thin pool.
//   - snapshot: Origin names the LV to snapshot. A snapshot of a thin LV
//     is thin and takes no Size; a snapshot of any other LV needs Size
//     (its copy-on-write space).
//
// If the LV already exists with the same type, pool, origin and size (when
// the size can be compared: not for percentages), the step does nothing
// and its undo leaves the LV alone; with another shape it is an error.
type CreateLV struct {
	VG     string   `json:"vg" doc:"volume group"`
	Name   string   `json:"name" doc:"LV name"`
	Type   string   `json:"type,omitempty" doc:"linear (default), thin-pool, thin or snapshot"`
	Size   string   `json:"size,omitempty" doc:"10G, 512MiB, 100 (extents), 100%FREE, 50%VG; the virtual size of a thin LV"`
	Pool   string   `json:"pool,omitempty" doc:"thin pool (type thin)"`
	Origin string   `json:"origin,omitempty" doc:"origin LV (type snapshot)"`
	Tags   []string `json:"tags,omitempty" doc:"extra tags (bofh_tx_<id> is always added)"`
}

// StepKind names the kind.
func (CreateLV) StepKind() string { return "lvm.lv.create" }

func (p CreateLV) lvType() string {
	if p.Type == "" {
		return TypeLinear
	}
	return p.Type
}

// Validate checks the parameters without touching the system.
func (p CreateLV) Validate() error {
	if err := ValidateLVFullName(p.VG, p.Name); err != nil {
		return err
	}
	if err := validateTags(p.Tags); err != nil {
		return err
	}
	var z Size
	if p.Size != "" {
		var err error
		if z, err = ParseSize(p.Size); err != nil {
			return err
		}
	}
	switch t := p.lvType(); t {
	case TypeLinear, TypeThinPool:
		if p.Size == "" {
			return fmt.Errorf("type %s needs a size", t)
		}
		if p.Pool != "" || p.Origin != "" {
			return fmt.Errorf("type %s takes no pool or origin", t)
		}
		if z.Of == "ORIGIN" {
			return fmt.Errorf("%w: %s: %%ORIGIN is for snapshots", ErrBadSize, p.Size)
		}
	case TypeThin:
		if err := ValidateLVName(p.Pool); err != nil {
			return fmt.Errorf("pool: %w", err)
		}
		if p.Origin != "" {
			return errors.New("type thin takes no origin (a thin snapshot is type snapshot)")
		}
		if z.Bytes == 0 {
			return fmt.Errorf("%w: type thin needs a virtual size in bytes (e.g. 10G), not %q", ErrBadSize, p.Size)
		}
	case TypeSnapshot:
		if err := ValidateLVName(p.Origin); err != nil {
			return fmt.Errorf("origin: %w", err)
		}
		if p.Pool != "" {
			return errors.New("type snapshot takes no pool")
		}
		if p.Origin == p.Name {
			return errors.New("a snapshot cannot have its own name as origin")
		}
	default:
		return fmt.Errorf("type %q: want linear, thin-pool, thin or snapshot", t)
	}
	return nil
}

// Args returns the lvcreate argv for p in a transaction tagged txTag.
func (p CreateLV) args(txTag string) []string {
	a := []string{"lvcreate", "-y", "-n", p.Name}
	var z Size
	if p.Size != "" {
		z, _ = ParseSize(p.Size)
	}
	tags := []string{"--addtag", txTag}
	for _, t := range p.Tags {
		tags = append(tags, "--addtag", t)
	}
	switch p.lvType() {
	case TypeLinear:
		a = append(append(a, z.Args()...), tags...)
		return append(a, p.VG)
	case TypeThinPool:
		a = append(append(append(a, "--type", TypeThinPool), z.Args()...), tags...)
		return append(a, p.VG)
	case TypeThin:
		a = append(append(a, "--type", TypeThin, "-V", strconv.FormatInt(z.Bytes, 10)+"b", "--thinpool", p.Pool), tags...)
		return append(a, p.VG)
	}
	a = append(a, "-s")
	if p.Size != "" {
		a = append(a, z.Args()...)
	}
	return append(append(a, tags...), p.VG+"/"+p.Origin)
}

func prepareLVCreate(ctx context.Context, env *atomic.Env, p CreateLV) (atomic.Plan[struct{}, LV], error) {
	var plan atomic.Plan[struct{}, LV]
	rep, vg, err := queryVG(ctx, env, p.VG)
	if err != nil {
		return plan, err
	}
	if vg == nil {
		return plan, invalid("%w: VG %s", ErrNotFound, p.VG)
	}
	var z Size
	if p.Size != "" {
		z, _ = ParseSize(p.Size)
	}
	var origin *LV
	switch p.lvType() {
	case TypeThin:
		pool := rep.LV(p.VG, p.Pool)
		if pool == nil || pool.Type != TypeThinPool {
			return plan, invalid("%w: thin pool %s/%s", ErrNotFound, p.VG, p.Pool)
		}
	case TypeSnapshot:
		if origin = rep.LV(p.VG, p.Origin); origin == nil {
			return plan, invalid("%w: origin %s/%s", ErrNotFound, p.VG, p.Origin)
		}
		if origin.Type != TypeThin && p.Size == "" {
			return plan, invalid("a snapshot of %s (%s) needs a size for its copy-on-write space", origin.FullName(), origin.Type)
		}
	}
	want := int64(0) // extents, when comparable
	if z.Of == "" && p.lvType() != TypeThin && !(p.lvType() == TypeSnapshot && p.Size == "") {
		want, _ = z.ExtentsIn(vg, 0, 0)
	}
	if lv := rep.LV(p.VG, p.Name); lv != nil {
		if err := sameShape(p, lv, vg, want, z); err != nil {
			return plan, invalid("%w: LV %s exists with another shape: %w", ErrExists, lv.FullName(), err)
		}
		plan.Noop, plan.Result = true, *lv
		return plan, nil
	}
	if want > vg.FreeCount && p.lvType() != TypeThin {
		return plan, invalid("%w: VG %s has %d free extents, %s/%s needs %d", ErrNoSpace, p.VG, vg.FreeCount, p.VG, p.Name, want)
	}
	if z.Of == "FREE" && vg.FreeCount == 0 {
		return plan, invalid("%w: VG %s has no free extents", ErrNoSpace, p.VG)
	}
	return plan, nil
}

func sameShape(p CreateLV, lv *LV, vg *VG, want int64, z Size) error {
	t := p.lvType()
	switch {
	case t == TypeSnapshot && lv.Origin != p.Origin:
		return fmt.Errorf("origin %q, want %q", lv.Origin, p.Origin)
	case t == TypeSnapshot:
	case t == TypeLinear && (lv.Type == TypeLinear || lv.Type == "striped"):
	case t != lv.Type:
		return fmt.Errorf("type %s, want %s", lv.Type, t)
	}
	if t == TypeThin && lv.Pool != p.Pool {
		return fmt.Errorf("pool %q, want %q", lv.Pool, p.Pool)
	}
	if t == TypeThin && (lv.Size+vg.ExtentSize-1)/vg.ExtentSize != (z.Bytes+vg.ExtentSize-1)/vg.ExtentSize {
		return fmt.Errorf("virtual size %d bytes, want %d", lv.Size, z.Bytes)
	}
	if want > 0 && vg.ExtentSize > 0 && lv.Size/vg.ExtentSize != want && lv.Type != TypeThin {
		return fmt.Errorf("%d extents, want %d", lv.Size/vg.ExtentSize, want)
	}
	return nil
}

func doLVCreate(ctx context.Context, env *atomic.Env, p CreateLV, _ struct{}) (LV, error) {
	if err := mutate(ctx, env, p.args(TxTag(env.TxID))...); err != nil {
		return LV{}, err
	}
	return resultLV(ctx, env, p.VG, p.Name)
}

// resultLV reports an LV a step just changed (a stand-in in a dry run).
func resultLV(ctx context.Context, env *atomic.Env, vg, name string) (LV, error) {
	if env.DryRun {
		return LV{VG: vg, Name: name, Path: "/dev/" + vg + "/" + name}, nil
	}
	rep, err := Query(ctx, env.Runner, vg)
	if err != nil {
		return LV{}, err
	}
	lv := rep.LV(vg, name)
	if lv == nil {
		return LV{}, fmt.Errorf("%w: LV %s/%s is not reported", ErrNotFound, vg, name)
	}
	return *lv, nil
}

// removeOurs removes vg/name if it carries tag and nothing depends on it.
func removeOurs(ctx context.Context, env *atomic.Env, vg, name, tag string) error {
	rep, v, err := queryVG(ctx, env, vg)
	if err != nil || v == nil {
		return err
	}
	lv := rep.LV(vg, name)
	if lv == nil {
		return nil
	}
	if !hasTag(lv.Tags, tag) {
		return fmt.Errorf("LV %s does not carry tag %s: it is not the one this transaction created; not removing it", lv.FullName(), tag)
	}
	if deps := rep.Dependents(vg, name); len(deps) > 0 {
		return fmt.Errorf("%w: %s is needed by %s; not removing it", ErrInUse, lv.FullName(), deps[0].FullName())
	}
	return mutate(ctx, env, "lvremove", "-y", lv.FullName())
}

func undoLVCreate(ctx context.Context, env *atomic.Env, p CreateLV, _ struct{}, _ LV) error {
	return removeOurs(ctx, env, p.VG, p.Name, TxTag(env.TxID))
}

func checkLVCreate(ctx context.Context, env *atomic.Env, p CreateLV, _ struct{}) (bool, LV, error) {
	rep, _, err := queryVG(ctx, env, p.VG)
	if err != nil {
		return false, LV{}, err
	}
	if lv := rep.LV(p.VG, p.Name); lv != nil && hasTag(lv.Tags, TxTag(env.TxID)) {
		return true, *lv, nil
	}
	return false, LV{}, nil
}

// lvRef is a VG and an LV name, validated together.
func validateRef(vg, name string) error { return ValidateLVFullName(vg, name) }

// RemoveLV is the lvm.lv.remove step. lvremove destroys the LV's data, so
// the step is irreversible: it is journaled where it is asked for and runs
// at commit, after every reversible step succeeded. An LV that other LVs
// need (a thin pool with thin LVs, an origin with snapshots) is refused:
// remove those first. To free the name during the transaction and still
// be able to roll back, use lvm.lv.set-aside and remove the aside LV.
type RemoveLV struct {
	VG   string `json:"vg" doc:"volume group"`
	Name string `json:"name" doc:"LV name"`
}

// StepKind names the kind.
func (RemoveLV) StepKind() string { return "lvm.lv.remove" }

// Validate checks the parameters without touching the system.
func (p RemoveLV) Validate() error { return validateRef(p.VG, p.Name) }

func prepareLVRemove(ctx context.Context, env *atomic.Env, p RemoveLV) (atomic.Plan[struct{}, struct{}], error) {
	var plan atomic.Plan[struct{}, struct{}]
	rep, _, err := queryVG(ctx, env, p.VG)
	if err != nil {
		return plan, err
	}
	if rep.LV(p.VG, p.Name) == nil {
		plan.Noop = true
		return plan, nil
	}
	if deps := rep.Dependents(p.VG, p.Name); len(deps) > 0 {
		return plan, invalid("%w: %s/%s is needed by %s: remove that first", ErrInUse, p.VG, p.Name, deps[0].FullName())
	}
	return plan, nil
}

func doLVRemove(ctx context.Context, env *atomic.Env, p RemoveLV, _ struct{}) (struct{}, error) {
	err := mutate(ctx, env, "lvremove", "-y", p.VG+"/"+p.Name)
	if errors.Is(err, ErrNotFound) {
		err = nil // gone already: what was asked for
	}
	return struct{}{}, err
}

func checkLVRemove(ctx context.Context, env *atomic.Env, p RemoveLV, _ struct{}) (bool, struct{}, error) {
	rep, _, err := queryVG(ctx, env, p.VG)
	if err != nil {
		return false, struct{}{}, err
	}
	return rep.LV(p.VG, p.Name) == nil, struct{}{}, nil
}

// SetAsideLV is the lvm.lv.set-aside step: the reversible half of removing
// an LV inside a transaction. It deactivates vg/name and renames it to
// AsideName(txID, name) (tagged bofh_tx_<id>), so the name is free for the
// rest of the transaction while the data stays. Follow it with
// lvm.lv.remove of the aside name (its result's name): that runs at commit.
// If the transaction rolls back before, undo renames the LV back, drops the
// tag and reactivates it if it was active.
type SetAsideLV struct {
	VG   string `json:"vg" doc:"volume group"`
	Name string `json:"name" doc:"LV to set aside"`
}

// StepKind names the kind.
func (SetAsideLV) StepKind() string { return "lvm.lv.set-aside" }

// Validate checks the parameters without touching the system.
func (p SetAsideLV) Validate() error {
	if err := validateRef(p.VG, p.Name); err != nil {
		return err
	}
	return validateRef(p.VG, AsideName("x", p.Name))
}

// AsideName is the name lvm.lv.set-aside gives name in transaction txID:
// "bofh-aside-" and a hash of both, so it is fixed for the transaction.
func AsideName(txID, name string) string {
	h := sha256.Sum256([]byte(txID + "\x00" + name))
	return "bofh-aside-" + hex.EncodeToString(h[:8])
}

type setAsideUndo struct {
	WasActive bool `json:"was_active"`
}

func prepareLVSetAside(ctx context.Context, env *atomic.Env, p SetAsideLV) (atomic.Plan[setAsideUndo, LV], error) {
	var plan atomic.Plan[setAsideUndo, LV]
	rep, _, err := queryVG(ctx, env, p.VG)
	if err != nil {
		return plan, err
	}
	aside := AsideName(env.TxID, p.Name)
	lv, a := rep.LV(p.VG, p.Name), rep.LV(p.VG, aside)
	switch {
	case lv == nil && a != nil:
		plan.Noop, plan.Result = true, *a
	case lv == nil:
		return plan, invalid("%w: LV %s/%s", ErrNotFound, p.VG, p.Name)
	case a != nil:
		return plan, invalid("%w: LV %s/%s", ErrExists, p.VG, aside)
	case lv.Type == TypeThinPool || len(rep.Dependents(p.VG, p.Name)) > 0:
		return plan, invalid("%w: %s has thin LVs or snapshots: set those aside or remove them first", ErrInUse, lv.FullName())
	}
	plan.Undo.WasActive = lv.Active
	return plan, nil
}

func doLVSetAside(ctx context.Context, env *atomic.Env, p SetAsideLV, _ setAsideUndo) (LV, error) {
	aside := AsideName(env.TxID, p.Name)
	if err := mutate(ctx, env, "lvchange", "-an", p.VG+"/"+p.Name); err != nil {
		return LV{}, err
	}
	if err := mutate(ctx, env, "lvrename", p.VG, p.Name, aside); err != nil {
		return LV{}, err
	}
	if err := mutate(ctx, env, "lvchange", "--addtag", TxTag(env.TxID), p.VG+"/"+aside); err != nil {
		return LV{}, err
	}
	return resultLV(ctx, env, p.VG, aside)
}

func undoLVSetAside(ctx context.Context, env *atomic.Env, p SetAsideLV, u setAsideUndo, _ LV) error {
	rep, _, err := queryVG(ctx, env, p.VG)
	if err != nil {
		return err
	}
	aside := AsideName(env.TxID, p.Name)
	a := rep.LV(p.VG, aside)
	if a != nil {
		if rep.LV(p.VG, p.Name) != nil {
			return fmt.Errorf("%w: cannot rename %s/%s back: %s/%s exists", ErrExists, p.VG, aside, p.VG, p.Name)
		}
		if err := mutate(ctx, env, "lvrename", p.VG, aside, p.Name); err != nil {
			return err
		}
		if hasTag(a.Tags, TxTag(env.TxID)) {
			if err := mutate(ctx, env, "lvchange", "--deltag", TxTag(env.TxID), p.VG+"/"+p.Name); err != nil {
				return err
			}
		}
	}
	// deactivation was the first thing Do did
	if !u.WasActive {
		return nil
	}
	_, err = setActiveIfPresent(ctx, env, p.VG, p.Name, true)
	return err
}

// RenameLV is the lvm.lv.rename step.
type RenameLV struct {
	VG      string `json:"vg" doc:"volume group"`
	Name    string `json:"name" doc:"current LV name"`
	NewName string `json:"new_name" doc:"new LV name"`
}

// StepKind names the kind.
func (RenameLV) StepKind() string { return "lvm.lv.rename" }

// Validate checks the parameters without touching the system.
func (p RenameLV) Validate() error {
	if err := validateRef(p.VG, p.Name); err != nil {
		return err
	}
	if err := validateRef(p.VG, p.NewName); err != nil {
		return err
	}
	if p.Name == p.NewName {
		return errors.New("new name is the current name")
	}
	return nil
}

type renameUndo struct {
	UUID string `json:"uuid"`
}

func prepareLVRename(ctx context.Context, env *atomic.Env, p RenameLV) (atomic.Plan[renameUndo, LV], error) {
	var plan atomic.Plan[renameUndo, LV]
	rep, _, err := queryVG(ctx, env, p.VG)
	if err != nil {
		return plan, err
	}
	old, nu := rep.LV(p.VG, p.Name), rep.LV(p.VG, p.NewName)
	switch {
	case old != nil && nu != nil:
		return plan, invalid("%w: LV %s/%s", ErrExists, p.VG, p.NewName)
	case old != nil:
		plan.Undo.UUID = old.UUID
	case nu != nil:
		plan.Noop, plan.Result = true, *nu // renamed already
	default:
		return plan, invalid("%w: LV %s/%s", ErrNotFound, p.VG, p.Name)
	}
	return plan, nil
}

func doLVRename(ctx context.Context, env *atomic.Env, p RenameLV, _ renameUndo) (LV, error) {
	if err := mutate(ctx, env, "lvrename", p.VG, p.Name, p.NewName); err != nil {
		return LV{}, err
	}
	return resultLV(ctx, env, p.VG, p.NewName)
}

func undoLVRename(ctx context.Context, env *atomic.Env, p RenameLV, u renameUndo, _ LV) error {
	rep, _, err := queryVG(ctx, env, p.VG)
	if err != nil {
		return err
	}
	nu := rep.LV(p.VG, p.NewName)
	if nu == nil || nu.UUID != u.UUID {
		return nil // never renamed (or renamed back already)
	}
	if rep.LV(p.VG, p.Name) != nil {
		return fmt.Errorf("%w: cannot rename %s/%s back: %s exists", ErrExists, p.VG, p.NewName, p.Name)
	}
	return mutate(ctx, env, "lvrename", p.VG, p.NewName, p.Name)
}

func checkLVRename(ctx context.Context, env *atomic.Env, p RenameLV, u renameUndo) (bool, LV, error) {
	rep, _, err := queryVG(ctx, env, p.VG)
	if err != nil {
		return false, LV{}, err
	}
	if nu := rep.LV(p.VG, p.NewName); nu != nil && nu.UUID == u.UUID {
		return true, *nu, nil
	}
	return false, LV{}, nil
}

// ResizeLV is the lvm.lv.resize step: it sets vg/name to a size, worked out
// in extents before anything runs (so "+10G" or "100%FREE" mean the same on
// a resume). Making an LV smaller cuts off its data: it must be asked for
// with Shrink, and the undo of a shrink gives back the size, not the data.
// Thin pools cannot be resized by this step (LVM cannot shrink them back).
// No file system on the LV is resized.
type ResizeLV struct {
	VG     string `json:"vg" doc:"volume group"`
	Name   string `json:"name" doc:"LV name"`
	Size   string `json:"size" doc:"new size: 20G, 100 (extents), 100%VG, or relative +5G, +100%FREE, -1G"`
	Shrink bool   `json:"shrink,omitempty" doc:"allow making the LV smaller (destroys the data cut off)"`
}

// StepKind names the kind.
func (ResizeLV) StepKind() string { return "lvm.lv.resize" }

// Validate checks the parameters without touching the system.
func (p ResizeLV) Validate() error {
	if err := validateRef(p.VG, p.Name); err != nil {
		return err
	}
	z, err := ParseResize(p.Size)
	if err != nil {
		return err
	}
	if z.Sign < 0 && !p.Shrink {
		return fmt.Errorf("%w: %q makes the LV smaller: set shrink to allow it", ErrBadSize, p.Size)
	}
	return nil
}

type resizeUndo struct {
	From int64 `json:"from_extents"`
	To   int64 `json:"to_extents"`
}

func prepareLVResize(ctx context.Context, env *atomic.Env, p ResizeLV) (atomic.Plan[resizeUndo, LV], error) {
	var plan atomic.Plan[resizeUndo, LV]
	rep, vg, err := queryVG(ctx, env, p.VG)
	if err != nil {
		return plan, err
	}
	if vg == nil {
		return plan, invalid("%w: VG %s", ErrNotFound, p.VG)
	}
	lv := rep.LV(p.VG, p.Name)
	if lv == nil {
		return plan, invalid("%w: LV %s/%s", ErrNotFound, p.VG, p.Name)
	}
	if lv.Type == TypeThinPool {
		return plan, invalid("%s is a thin pool: LVM cannot shrink a pool back, so bofh does not resize pools in a transaction", lv.FullName())
	}
	for _, d := range rep.Dependents(p.VG, p.Name) {
		if d.Type == TypeSnapshot && lv.Active {
			// LVM 2.03.16: "Snapshot origin volumes can be resized only while inactive"
			return plan, invalid("%w: %s is the origin of snapshot %s: deactivate it first (lvm.lv.deactivate)", ErrInUse, lv.FullName(), d.FullName())
		}
	}
	z, _ := ParseResize(p.Size)
	cur := lv.Size / vg.ExtentSize
	var orig int64
	if o := rep.LV(p.VG, lv.Origin); o != nil {
		orig = o.Size / vg.ExtentSize
	}
	to, err := z.ExtentsIn(vg, cur, orig)
	if err != nil {
		return plan, invalid("%w", err)
	}
	switch {
	case to == cur:
		plan.Noop, plan.Result = true, *lv
	case to < cur && !p.Shrink:
		return plan, invalid("%w: %s would shrink %s from %d to %d extents: set shrink to allow it", ErrBadSize, p.Size, lv.FullName(), cur, to)
	case to > cur && lv.Type != TypeThin && to-cur > vg.FreeCount:
		return plan, invalid("%w: VG %s has %d free extents, growing %s needs %d", ErrNoSpace, p.VG, vg.FreeCount, lv.FullName(), to-cur)
	}
	plan.Undo = resizeUndo{From: cur, To: to}
	return plan, nil
}

func resizeTo(ctx context.Context, env *atomic.Env, vg, name string, extents int64) error {
	return mutate(ctx, env, "lvresize", "-y", "-l", strconv.FormatInt(extents, 10), vg+"/"+name)
}

func doLVResize(ctx context.Context, env *atomic.Env, p ResizeLV, u resizeUndo) (LV, error) {
	if err := resizeTo(ctx, env, p.VG, p.Name, u.To); err != nil {
		return LV{}, err
	}
	return resultLV(ctx, env, p.VG, p.Name)
}

func undoLVResize(ctx context.Context, env *atomic.Env, p ResizeLV, u resizeUndo, _ LV) error {
	rep, vg, err := queryVG(ctx, env, p.VG)
	if err != nil || vg == nil {
		return err
	}
	lv := rep.LV(p.VG, p.Name)
	if lv == nil || lv.Size/vg.ExtentSize == u.From {
		return nil
	}
	return resizeTo(ctx, env, p.VG, p.Name, u.From)
}

func checkLVResize(ctx context.Context, env *atomic.Env, p ResizeLV, u resizeUndo) (bool, LV, error) {
	rep, vg, err := queryVG(ctx, env, p.VG)
	if err != nil || vg == nil {
		return false, LV{}, err
	}
	if lv := rep.LV(p.VG, p.Name); lv != nil && lv.Size/vg.ExtentSize == u.To {
		return true, *lv, nil
	}
	return false, LV{}, nil
}

// ActivateLV is the lvm.lv.activate step. It also activates LVs flagged
// to skip activation (thin snapshots).
type ActivateLV struct {
	VG   string `json:"vg" doc:"volume group"`
	Name string `json:"name" doc:"LV name"`
}

// StepKind names the kind.
func (ActivateLV) StepKind() string { return "lvm.lv.activate" }

// Validate checks the parameters without touching the system.
func (p ActivateLV) Validate() error { return validateRef(p.VG, p.Name) }

// DeactivateLV is the lvm.lv.deactivate step. It fails if the LV is open
// (mounted, or used by another device).
type DeactivateLV struct {
	VG   string `json:"vg" doc:"volume group"`
	Name string `json:"name" doc:"LV name"`
}

// StepKind names the kind.
func (DeactivateLV) StepKind() string { return "lvm.lv.deactivate" }

// Validate checks the parameters without touching the system.
func (p DeactivateLV) Validate() error { return validateRef(p.VG, p.Name) }

func prepareActivation(ctx context.Context, env *atomic.Env, vg, name string, on bool) (atomic.Plan[struct{}, LV], error) {
	var plan atomic.Plan[struct{}, LV]
	rep, _, err := queryVG(ctx, env, vg)
	if err != nil {
		return plan, err
	}
	lv := rep.LV(vg, name)
	if lv == nil {
		return plan, invalid("%w: LV %s/%s", ErrNotFound, vg, name)
	}
	if lv.Active == on {
		plan.Noop, plan.Result = true, *lv
	}
	return plan, nil
}

func activationArgs(vg, name string, on bool) []string {
	if on {
		return []string{"lvchange", "-ay", "-K", vg + "/" + name}
	}
	return []string{"lvchange", "-an", vg + "/" + name}
}

func setActive(ctx context.Context, env *atomic.Env, vg, name string, on bool) (LV, error) {
	if err := mutate(ctx, env, activationArgs(vg, name, on)...); err != nil {
		return LV{}, err
	}
	return resultLV(ctx, env, vg, name)
}

// setActiveIfPresent switches vg/name on or off unless it is gone or
// already so (an idempotent undo).
func setActiveIfPresent(ctx context.Context, env *atomic.Env, vg, name string, on bool) (bool, error) {
	rep, _, err := queryVG(ctx, env, vg)
	if err != nil {
		return false, err
	}
	lv := rep.LV(vg, name)
	if lv == nil || lv.Active == on {
		return false, nil
	}
	return true, mutate(ctx, env, activationArgs(vg, name, on)...)
}

func checkActive(ctx context.Context, env *atomic.Env, vg, name string, on bool) (bool, LV, error) {
	rep, _, err := queryVG(ctx, env, vg)
	if err != nil {
		return false, LV{}, err
	}
	if lv := rep.LV(vg, name); lv != nil && lv.Active == on {
		return true, *lv, nil
	}
	return false, LV{}, nil
}

// MergeLV is the lvm.lv.merge step: merge snapshot vg/name back into its
// origin, which returns to the state of the snapshot. The origin's changes
// since the snapshot are lost and the snapshot is gone, so the step is
// irreversible and runs at commit. If the origin is open, LVM finishes the
// merge the next time it is activated.
type MergeLV struct {
	VG   string `json:"vg" doc:"volume group"`
	Name string `json:"name" doc:"the snapshot to merge"`
}

// StepKind names the kind.
func (MergeLV) StepKind() string { return "lvm.lv.merge" }

// Validate checks the parameters without touching the system.
func (p MergeLV) Validate() error { return validateRef(p.VG, p.Name) }

func prepareLVMerge(ctx context.Context, env *atomic.Env, p MergeLV) (atomic.Plan[struct{}, struct{}], error) {
	var plan atomic.Plan[struct{}, struct{}]
	rep, _, err := queryVG(ctx, env, p.VG)
	if err != nil {
		return plan, err
	}
	lv := rep.LV(p.VG, p.Name)
	if lv == nil {
		return plan, invalid("%w: snapshot %s/%s", ErrNotFound, p.VG, p.Name)
	}
	if lv.Origin == "" {
		return plan, invalid("%s is not a snapshot", lv.FullName())
	}
	return plan, nil
}

func doLVMerge(ctx context.Context, env *atomic.Env, p MergeLV, _ struct{}) (struct{}, error) {
	return struct{}{}, mutate(ctx, env, "lvconvert", "-y", "--merge", p.VG+"/"+p.Name)
}

func checkLVMerge(ctx context.Context, env *atomic.Env, p MergeLV, _ struct{}) (bool, struct{}, error) {
	rep, _, err := queryVG(ctx, env, p.VG)
	if err != nil {
		return false, struct{}{}, err
	}
	lv := rep.LV(p.VG, p.Name)
	return lv == nil || lv.Merging, struct{}{}, nil
}
