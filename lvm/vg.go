package lvm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/bofhkit/bofh/atomic"
)

func init() {
	atomic.Register(atomic.Def[CreateVG, vgCreateUndo, VG]{
		Doc:     "create a volume group on devices (vgcreate), tagged with the transaction; undo removes it and the PV labels vgcreate wrote",
		Prepare: prepareVGCreate,
		Do:      doVGCreate,
		Undo:    undoVGCreate,
		Check:   checkVGCreate,
	})
	atomic.Register(atomic.Def[ExtendVG, vgDevsUndo, VG]{
		Doc:     "add devices to a volume group (vgextend); undo takes them out again",
		Prepare: prepareVGExtend,
		Do:      doVGExtend,
		Undo:    undoVGExtend,
		Check:   checkVGExtend,
	})
	atomic.Register(atomic.Def[ReduceVG, vgDevsUndo, VG]{
		Doc:     "take unused PVs out of a volume group (vgreduce); undo adds them back",
		Prepare: prepareVGReduce,
		Do:      doVGReduce,
		Undo:    undoVGReduce,
		Check:   checkVGReduce,
	})
	atomic.Register(atomic.Def[RemoveVG, vgRemoveUndo, struct{}]{
		Doc:     "remove an empty volume group (vgremove); undo creates it again on the same PVs with the same extent size and tags",
		Prepare: prepareVGRemove,
		Do:      doVGRemove,
		Undo:    undoVGRemove,
		Check:   checkVGRemove,
	})
}

// CreateVG is the lvm.vg.create step. Devices that are not PVs yet are
// initialised by vgcreate (which refuses one that holds a signature).
type CreateVG struct {
	Name       string   `json:"name" doc:"VG name"`
	Devices    []string `json:"devices" doc:"block devices or PVs"`
	ExtentSize string   `json:"extent_size,omitempty" doc:"physical extent size, a power of 2 (default 4MiB)"`
	Tags       []string `json:"tags,omitempty" doc:"extra tags (bofh_tx_<id> is always added)"`
}

// StepKind names the kind.
func (CreateVG) StepKind() string { return "lvm.vg.create" }

// Validate checks the parameters without touching the system.
func (p CreateVG) Validate() error {
	if err := ValidateVGName(p.Name); err != nil {
		return err
	}
	if err := validateDevices(p.Devices); err != nil {
		return err
	}
	if _, err := extentSize(p.ExtentSize); err != nil {
		return err
	}
	return validateTags(p.Tags)
}

// extentSize parses an extent size into KiB ("" is LVM's default).
func extentSize(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	z, err := ParseSize(s)
	if err != nil {
		return 0, err
	}
	if z.Bytes < 1024 || z.Bytes&(z.Bytes-1) != 0 {
		return 0, fmt.Errorf("%w: extent size %q must be a power of 2 of at least 1KiB", ErrBadSize, s)
	}
	return z.Bytes / 1024, nil
}

type vgCreateUndo struct {
	// NewPVs are the devices vgcreate turns into PVs: undo removes
	// their labels too.
	NewPVs []string `json:"new_pvs,omitempty"`
}

func prepareVGCreate(ctx context.Context, env *atomic.Env, p CreateVG) (atomic.Plan[vgCreateUndo, VG], error) {
	var plan atomic.Plan[vgCreateUndo, VG]
	rep, err := Query(ctx, env.Runner)
	if err != nil {
		return plan, err
	}
	if vg := rep.VG(p.Name); vg != nil {
		for _, d := range p.Devices {
			if pv := findPV(rep, d); pv == nil || pv.VG != p.Name {
				return plan, invalid("%w: VG %s exists and %s is not one of its PVs", ErrExists, p.Name, d)
			}
		}
		if len(rep.PVsOf(p.Name)) != len(p.Devices) {
			return plan, invalid("%w: VG %s exists with other PVs", ErrExists, p.Name)
		}
		plan.Noop, plan.Result = true, *vg
		return plan, nil
	}
	if _, err := os.Lstat("/dev/" + p.Name); err == nil {
		return plan, invalid("VG name %q: /dev/%s exists", p.Name, p.Name)
	}
	for _, d := range p.Devices {
		if err := checkBlockDevice(d); err != nil {
			return plan, err
		}
		pv := findPV(rep, d)
		switch {
		case pv == nil:
			plan.Undo.NewPVs = append(plan.Undo.NewPVs, d)
		case pv.VG != "":
			return plan, invalid("%w: %s belongs to VG %s", ErrInUse, d, pv.VG)
		}
	}
	return plan, nil
}

func doVGCreate(ctx context.Context, env *atomic.Env, p CreateVG, _ vgCreateUndo) (VG, error) {
	argv := append([]string{"vgcreate"}, txTagArgs(env, p.Tags)...)
	if kib, _ := extentSize(p.ExtentSize); kib > 0 {
		argv = append(argv, "-s", strconv.FormatInt(kib, 10)+"k")
	}
	argv = append(append(argv, p.Name), p.Devices...)
	if err := mutate(ctx, env, argv...); err != nil {
		return VG{}, err
	}
	return resultVG(ctx, env, p.Name)
}

// resultVG reports a VG a step just changed (a stand-in in a dry run).
func resultVG(ctx context.Context, env *atomic.Env, name string) (VG, error) {
	if env.DryRun {
		return VG{Name: name}, nil
	}
	_, vg, err := queryVG(ctx, env, name)
	if err == nil && vg == nil {
		err = fmt.Errorf("VG %s is not reported", name)
	}
	if err != nil {
		return VG{}, err
	}
	return *vg, nil
}

func undoVGCreate(ctx context.Context, env *atomic.Env, p CreateVG, u vgCreateUndo, _ VG) error {
	rep, err := Query(ctx, env.Runner)
	if err != nil {
		return err
	}
	if vg := rep.VG(p.Name); vg != nil {
		if !hasTag(vg.Tags, TxTag(env.TxID)) {
			return fmt.Errorf("VG %s does not carry tag %s: it is not the one this transaction created; not removing it", p.Name, TxTag(env.TxID))
		}
		if lvs := rep.LVsOf(p.Name); len(lvs) > 0 || vg.LVCount > 0 {
			return fmt.Errorf("%w: VG %s holds %d LVs (e.g. %s) that this transaction did not create; not removing it", ErrInUse, p.Name, vg.LVCount, firstLV(lvs))
		}
		if err := mutate(ctx, env, "vgremove", p.Name); err != nil {
			return err
		}
		if rep, err = Query(ctx, env.Runner); err != nil {
			return err
		}
	}
	return removeLabels(ctx, env, rep, u.NewPVs)
}

func firstLV(lvs []LV) string {
	if len(lvs) == 0 {
		return "?"
	}
	return lvs[0].FullName()
}

// removeLabels pvremoves those of devs that are orphan PVs.
func removeLabels(ctx context.Context, env *atomic.Env, rep *Report, devs []string) error {
	var rm []string
	for _, d := range devs {
		if pv := findPV(rep, d); pv != nil && pv.VG == "" {
			rm = append(rm, pv.Name)
		}
	}
	if len(rm) == 0 {
		return nil
	}
	return mutate(ctx, env, append([]string{"pvremove", "-y"}, rm...)...)
}

func checkVGCreate(ctx context.Context, env *atomic.Env, p CreateVG, _ vgCreateUndo) (bool, VG, error) {
	_, vg, err := queryVG(ctx, env, p.Name)
	if err != nil || vg == nil || !hasTag(vg.Tags, TxTag(env.TxID)) {
		return false, VG{}, err
	}
	return true, *vg, nil
}

// ExtendVG is the lvm.vg.extend step.
type ExtendVG struct {
	VG      string   `json:"vg" doc:"volume group"`
	Devices []string `json:"devices" doc:"devices or PVs to add"`
}

// StepKind names the kind.
func (ExtendVG) StepKind() string { return "lvm.vg.extend" }

// Validate checks the parameters without touching the system.
func (p ExtendVG) Validate() error {
	if err := ValidateVGName(p.VG); err != nil {
		return err
	}
	return validateDevices(p.Devices)
}

type vgDevsUndo struct {
	// Devices are the devices the step moves (LVM's names).
	Devices []string `json:"devices"`
	// NewPVs are devices vgextend turns into PVs.
	NewPVs []string `json:"new_pvs,omitempty"`
}

func prepareVGExtend(ctx context.Context, env *atomic.Env, p ExtendVG) (atomic.Plan[vgDevsUndo, VG], error) {
	var plan atomic.Plan[vgDevsUndo, VG]
	rep, err := Query(ctx, env.Runner)
	if err != nil {
		return plan, err
	}
	vg := rep.VG(p.VG)
	if vg == nil {
		return plan, invalid("%w: VG %s", ErrNotFound, p.VG)
	}
	for _, d := range p.Devices {
		if err := checkBlockDevice(d); err != nil {
			return plan, err
		}
		pv := findPV(rep, d)
		switch {
		case pv == nil:
			plan.Undo.Devices = append(plan.Undo.Devices, d)
			plan.Undo.NewPVs = append(plan.Undo.NewPVs, d)
		case pv.VG == p.VG:
		case pv.VG != "":
			return plan, invalid("%w: %s belongs to VG %s", ErrInUse, d, pv.VG)
		default:
			plan.Undo.Devices = append(plan.Undo.Devices, pv.Name)
		}
	}
	if len(plan.Undo.Devices) == 0 {
		plan.Noop, plan.Result = true, *vg
	}
	return plan, nil
}

func doVGExtend(ctx context.Context, env *atomic.Env, p ExtendVG, u vgDevsUndo) (VG, error) {
	if err := mutate(ctx, env, append([]string{"vgextend", p.VG}, u.Devices...)...); err != nil {
		return VG{}, err
	}
	return resultVG(ctx, env, p.VG)
}

func undoVGExtend(ctx context.Context, env *atomic.Env, p ExtendVG, u vgDevsUndo, _ VG) error {
	rep, err := Query(ctx, env.Runner)
	if err != nil {
		return err
	}
	var out []string
	for _, d := range u.Devices {
		pv := findPV(rep, d)
		if pv == nil || pv.VG != p.VG {
			continue
		}
		if pv.PEAlloc > 0 {
			return fmt.Errorf("%w: PV %s has %d extents allocated; move them off first (pvmove)", ErrInUse, d, pv.PEAlloc)
		}
		out = append(out, pv.Name)
	}
	if len(out) > 0 {
		if err := mutate(ctx, env, append([]string{"vgreduce", p.VG}, out...)...); err != nil {
			return err
		}
		if rep, err = Query(ctx, env.Runner); err != nil {
			return err
		}
	}
	return removeLabels(ctx, env, rep, u.NewPVs)
}

func checkVGExtend(ctx context.Context, env *atomic.Env, p ExtendVG, u vgDevsUndo) (bool, VG, error) {
	rep, vg, err := queryVG(ctx, env, p.VG)
	if err != nil || vg == nil {
		return false, VG{}, err
	}
	for _, d := range u.Devices {
		if pv := findPV(rep, d); pv == nil || pv.VG != p.VG {
			return false, VG{}, nil
		}
	}
	return true, *vg, nil
}

// ReduceVG is the lvm.vg.reduce step: it takes PVs with no allocated
// extents out of a VG; they stay PVs.
type ReduceVG struct {
	VG      string   `json:"vg" doc:"volume group"`
	Devices []string `json:"devices" doc:"PVs to take out (none of their extents may be allocated)"`
}

// StepKind names the kind.
func (ReduceVG) StepKind() string { return "lvm.vg.reduce" }

// Validate checks the parameters without touching the system.
func (p ReduceVG) Validate() error {
	if err := ValidateVGName(p.VG); err != nil {
		return err
	}
	return validateDevices(p.Devices)
}

func prepareVGReduce(ctx context.Context, env *atomic.Env, p ReduceVG) (atomic.Plan[vgDevsUndo, VG], error) {
	var plan atomic.Plan[vgDevsUndo, VG]
	rep, vg, err := queryVG(ctx, env, p.VG)
	if err != nil {
		return plan, err
	}
	if vg == nil {
		return plan, invalid("%w: VG %s", ErrNotFound, p.VG)
	}
	for _, d := range p.Devices {
		pv := findPV(rep, d)
		if pv == nil {
			continue // not in this VG (already out)
		}
		if pv.PEAlloc > 0 {
			return plan, invalid("%w: PV %s has %d extents allocated; move them off first (pvmove)", ErrInUse, d, pv.PEAlloc)
		}
		plan.Undo.Devices = append(plan.Undo.Devices, pv.Name)
	}
	if len(plan.Undo.Devices) == len(rep.PVsOf(p.VG)) {
		return plan, invalid("cannot take every PV out of VG %s; remove the VG instead", p.VG)
	}
	if len(plan.Undo.Devices) == 0 {
		plan.Noop, plan.Result = true, *vg
	}
	return plan, nil
}

func doVGReduce(ctx context.Context, env *atomic.Env, p ReduceVG, u vgDevsUndo) (VG, error) {
	if err := mutate(ctx, env, append([]string{"vgreduce", p.VG}, u.Devices...)...); err != nil {
		return VG{}, err
	}
	return resultVG(ctx, env, p.VG)
}

func undoVGReduce(ctx context.Context, env *atomic.Env, p ReduceVG, u vgDevsUndo, _ VG) error {
	rep, err := Query(ctx, env.Runner)
	if err != nil {
		return err
	}
	var back []string
	for _, d := range u.Devices {
		pv := findPV(rep, d)
		switch {
		case pv == nil:
			return fmt.Errorf("%w: %s is no longer a PV; cannot put it back into VG %s", ErrNotFound, d, p.VG)
		case pv.VG == "":
			back = append(back, pv.Name)
		case pv.VG != p.VG:
			return fmt.Errorf("%w: %s now belongs to VG %s", ErrInUse, d, pv.VG)
		}
	}
	if len(back) == 0 {
		return nil
	}
	return mutate(ctx, env, append([]string{"vgextend", p.VG}, back...)...)
}

func checkVGReduce(ctx context.Context, env *atomic.Env, p ReduceVG, u vgDevsUndo) (bool, VG, error) {
	rep, vg, err := queryVG(ctx, env, p.VG)
	if err != nil || vg == nil {
		return false, VG{}, err
	}
	for _, d := range u.Devices {
		if findPV(rep, d) != nil {
			return false, VG{}, nil
		}
	}
	return true, *vg, nil
}

// RemoveVG is the lvm.vg.remove step. It removes only an empty VG (remove
// its LVs with lvm.lv.remove first); its PVs stay PVs. An empty VG holds no
// data, so the step is reversible: undo creates the VG again on the same
// PVs with the same extent size and tags (LVM gives it a new UUID).
type RemoveVG struct {
	Name string `json:"name" doc:"VG name"`
}

// StepKind names the kind.
func (RemoveVG) StepKind() string { return "lvm.vg.remove" }

// Validate checks the parameters without touching the system.
func (p RemoveVG) Validate() error { return ValidateVGName(p.Name) }

type vgRemoveUndo struct {
	PVs        []string `json:"pvs"`
	ExtentSize int64    `json:"extent_size"`
	Tags       []string `json:"tags,omitempty"`
}

func prepareVGRemove(ctx context.Context, env *atomic.Env, p RemoveVG) (atomic.Plan[vgRemoveUndo, struct{}], error) {
	var plan atomic.Plan[vgRemoveUndo, struct{}]
	rep, vg, err := queryVG(ctx, env, p.Name)
	if err != nil {
		return plan, err
	}
	if vg == nil {
		plan.Noop = true
		return plan, nil
	}
	if lvs := rep.LVsOf(p.Name); len(lvs) > 0 || vg.LVCount > 0 {
		return plan, invalid("%w: VG %s holds %d LVs (e.g. %s): remove them first (lvm.lv.remove)", ErrInUse, p.Name, vg.LVCount, firstLV(lvs))
	}
	for _, pv := range rep.PVsOf(p.Name) {
		plan.Undo.PVs = append(plan.Undo.PVs, pv.Name)
	}
	plan.Undo.ExtentSize, plan.Undo.Tags = vg.ExtentSize, vg.Tags
	return plan, nil
}

func doVGRemove(ctx context.Context, env *atomic.Env, p RemoveVG, _ vgRemoveUndo) (struct{}, error) {
	return struct{}{}, mutate(ctx, env, "vgremove", p.Name)
}

func undoVGRemove(ctx context.Context, env *atomic.Env, p RemoveVG, u vgRemoveUndo, _ struct{}) error {
	_, vg, err := queryVG(ctx, env, p.Name)
	if err != nil || vg != nil {
		return err
	}
	argv := []string{"vgcreate"}
	for _, t := range u.Tags {
		argv = append(argv, "--addtag", t)
	}
	if u.ExtentSize > 0 {
		argv = append(argv, "-s", strconv.FormatInt(u.ExtentSize/1024, 10)+"k")
	}
	if len(u.PVs) == 0 {
		return errors.New("no PVs recorded for the removed VG")
	}
	return mutate(ctx, env, append(append(argv, p.Name), u.PVs...)...)
}

func checkVGRemove(ctx context.Context, env *atomic.Env, p RemoveVG, _ vgRemoveUndo) (bool, struct{}, error) {
	_, vg, err := queryVG(ctx, env, p.Name)
	return err == nil && vg == nil, struct{}{}, err
}
