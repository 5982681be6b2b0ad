package lvm

import (
	"context"
	"fmt"

	"github.com/bofhkit/bofh/atomic"
)

func init() {
	atomic.Register(atomic.Def[CreatePV, struct{}, PV]{
		Doc:     "initialise a device as an LVM physical volume (pvcreate); undo removes the label",
		Prepare: preparePVCreate,
		Do:      doPVCreate,
		Undo:    undoPVCreate,
		Check:   checkPVCreate,
	})
	atomic.Register(atomic.Def[RemovePV, pvRemoveUndo, struct{}]{
		Doc:     "remove the LVM label of a PV that belongs to no VG (pvremove); undo writes it back with the same UUID",
		Prepare: preparePVRemove,
		Do:      doPVRemove,
		Undo:    undoPVRemove,
		Check:   checkPVRemove,
	})
}

// CreatePV is the lvm.pv.create step. pvcreate refuses a device that holds
// a signature (a file system, a partition table) unless Force is set.
type CreatePV struct {
	Device string `json:"device" doc:"block device, e.g. /dev/sdb"`
	Force  bool   `json:"force,omitempty" doc:"wipe an existing signature on the device (destroys what it holds)"`
}

// StepKind names the kind.
func (CreatePV) StepKind() string { return "lvm.pv.create" }

// Validate checks the parameters without touching the system.
func (p CreatePV) Validate() error { return validateDevice(p.Device) }

func preparePVCreate(ctx context.Context, env *atomic.Env, p CreatePV) (atomic.Plan[struct{}, PV], error) {
	var plan atomic.Plan[struct{}, PV]
	if err := checkBlockDevice(p.Device); err != nil {
		return plan, err
	}
	rep, err := Query(ctx, env.Runner)
	if err != nil {
		return plan, err
	}
	if pv := findPV(rep, p.Device); pv != nil {
		plan.Noop, plan.Result = true, *pv
	}
	return plan, nil
}

func doPVCreate(ctx context.Context, env *atomic.Env, p CreatePV, _ struct{}) (PV, error) {
	argv := []string{"pvcreate"}
	if p.Force {
		argv = append(argv, "-y")
	}
	if err := mutate(ctx, env, append(argv, p.Device)...); err != nil {
		return PV{}, err
	}
	if env.DryRun {
		return PV{Name: p.Device}, nil
	}
	ok, pv, err := checkPVCreate(ctx, env, p, struct{}{})
	if err == nil && !ok {
		err = fmt.Errorf("pvcreate %s succeeded but the PV is not reported", p.Device)
	}
	return pv, err
}

func undoPVCreate(ctx context.Context, env *atomic.Env, p CreatePV, _ struct{}, _ PV) error {
	rep, err := Query(ctx, env.Runner)
	if err != nil {
		return err
	}
	pv := findPV(rep, p.Device)
	if pv == nil {
		return nil
	}
	if pv.VG != "" {
		return fmt.Errorf("%w: PV %s now belongs to VG %s; not removing its label", ErrInUse, p.Device, pv.VG)
	}
	return mutate(ctx, env, "pvremove", "-y", pv.Name)
}

func checkPVCreate(ctx context.Context, env *atomic.Env, p CreatePV, _ struct{}) (bool, PV, error) {
	rep, err := Query(ctx, env.Runner)
	if err != nil {
		return false, PV{}, err
	}
	if pv := findPV(rep, p.Device); pv != nil {
		return true, *pv, nil
	}
	return false, PV{}, nil
}

// RemovePV is the lvm.pv.remove step: it removes the label of a PV that
// belongs to no VG. Such a PV holds no data, so the step is reversible:
// undo writes a label with the same UUID back.
type RemovePV struct {
	Device string `json:"device" doc:"the PV's device"`
}

// StepKind names the kind.
func (RemovePV) StepKind() string { return "lvm.pv.remove" }

// Validate checks the parameters without touching the system.
func (p RemovePV) Validate() error { return validateDevice(p.Device) }

type pvRemoveUndo struct {
	Device string `json:"device"` // as LVM names it
	UUID   string `json:"uuid"`
}

func preparePVRemove(ctx context.Context, env *atomic.Env, p RemovePV) (atomic.Plan[pvRemoveUndo, struct{}], error) {
	var plan atomic.Plan[pvRemoveUndo, struct{}]
	if err := checkBlockDevice(p.Device); err != nil {
		return plan, err
	}
	rep, err := Query(ctx, env.Runner)
	if err != nil {
		return plan, err
	}
	pv := findPV(rep, p.Device)
	if pv == nil {
		plan.Noop = true
		return plan, nil
	}
	if pv.VG != "" {
		return plan, invalid("%w: PV %s belongs to VG %s: reduce the VG first (lvm.vg.reduce)", ErrInUse, p.Device, pv.VG)
	}
	plan.Undo = pvRemoveUndo{Device: pv.Name, UUID: pv.UUID}
	return plan, nil
}

func doPVRemove(ctx context.Context, env *atomic.Env, p RemovePV, u pvRemoveUndo) (struct{}, error) {
	return struct{}{}, mutate(ctx, env, "pvremove", "-y", u.Device)
}

func undoPVRemove(ctx context.Context, env *atomic.Env, p RemovePV, u pvRemoveUndo, _ struct{}) error {
	rep, err := Query(ctx, env.Runner)
	if err != nil {
		return err
	}
	if findPV(rep, u.Device) != nil {
		return nil
	}
	return mutate(ctx, env, "pvcreate", "--uuid", u.UUID, "--norestorefile", u.Device)
}

func checkPVRemove(ctx context.Context, env *atomic.Env, p RemovePV, u pvRemoveUndo) (bool, struct{}, error) {
	rep, err := Query(ctx, env.Runner)
	if err != nil {
		return false, struct{}{}, err
	}
	return findPV(rep, u.Device) == nil, struct{}{}, nil
}
