package raid

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

func init() {
	atomic.Register(atomic.Def[Create, createUndo, Array]{
		Doc:     "create an md array (mdadm --create); undo stops it and zeroes the superblocks it wrote on its members, only those",
		Prepare: prepareCreate,
		Do:      doCreate,
		Undo:    undoCreate,
		Check:   checkCreate,
	})
	atomic.Register(atomic.Def[Assemble, struct{}, Array]{
		Doc:     "assemble an md array from its members (mdadm --assemble); undo stops it",
		Prepare: prepareAssemble,
		Do:      doAssemble,
		Undo:    undoAssemble,
		Check:   checkActive[Assemble],
	})
	atomic.Register(atomic.Def[Stop, stopUndo, struct{}]{
		Doc:     "stop an md array (mdadm --stop); undo assembles it again from the members it had",
		Prepare: prepareStop,
		Do:      doStop,
		Undo:    undoStop,
		Check:   checkStop,
	})
	atomic.Register(atomic.Def[Add, addUndo, Array]{
		Doc:     "add a member (or spare) to an md array (mdadm --add); undo fails and removes it and zeroes the superblock if it had none",
		Prepare: prepareAdd,
		Do:      doAdd,
		Undo:    undoAdd,
		Check:   checkAdd,
	})
	atomic.Register(atomic.Def[Remove, struct{}, struct{}]{
		Doc:     "remove a failed or spare member from an md array (mdadm --remove); undo adds it back (--re-add, else --add)",
		Prepare: prepareRemove,
		Do:      doRemove,
		Undo:    undoRemove,
		Check:   checkRemove,
	})
	atomic.Register(atomic.Def[Fail, struct{}, struct{}]{
		Doc:     "mark a member failed (mdadm --fail); undo removes it and adds it back (--re-add, else --add), which resyncs it",
		Prepare: prepareFail,
		Do:      doFail,
		Undo:    undoFail,
		Check:   checkFail,
	})
	atomic.Register(atomic.Def[Grow, struct{}, struct{}]{
		Doc:          "change the number of active devices of an md array (mdadm --grow --raid-devices); irreversible: runs at commit",
		Irreversible: true,
		Prepare:      prepareGrow,
		Do:           doGrow,
	})
}

// Create is the raid.create step: a new md array.
type Create struct {
	Device   string   `json:"device" doc:"array device: /dev/mdN or /dev/md/NAME"`
	Level    string   `json:"level" doc:"RAID level: 0, 1, 5, 6 or 10"`
	Devices  []string `json:"devices" doc:"active member devices"`
	Spares   []string `json:"spares,omitempty" doc:"spare member devices"`
	Metadata string   `json:"metadata,omitempty" doc:"superblock version: 1.2 (default), 1.1, 1.0, 0.90"`
	Chunk    string   `json:"chunk,omitempty" doc:"chunk size in KiB (64, 512K, 1M); not for raid1"`
	Name     string   `json:"name,omitempty" doc:"array name stored in the superblock (metadata 1.x)"`
	Force    bool     `json:"force,omitempty" doc:"create over members that hold a signature (destroys it)"`
	// AssumeClean skips the initial resync (mdadm --assume-clean). Only
	// for raid1 and raid10, whose mirrors of never-written blocks may
	// differ harmlessly (a later "check" counts them as mismatches); a
	// raid5/6 without its initial sync has wrong parity, which a rebuild
	// after a disk failure would turn into wrong data.
	AssumeClean bool `json:"assume_clean,omitempty" doc:"skip the initial resync (raid1, raid10 only: for new, unused members)"`
}

// StepKind names the kind.
func (Create) StepKind() string { return "raid.create" }

// Validate checks the parameters without touching the system.
func (c Create) Validate() error {
	if err := ValidArrayDevice(c.Device); err != nil {
		return err
	}
	lvl, err := NormalizeLevel(c.Level)
	if err != nil {
		return err
	}
	if n := minDevices[lvl]; len(c.Devices) < n {
		return fmt.Errorf("%w: %s needs at least %d devices, got %d", atomic.ErrInvalid, lvl, n, len(c.Devices))
	}
	if lvl == "raid0" && len(c.Spares) > 0 {
		return fmt.Errorf("%w: raid0 has no redundancy and takes no spares", atomic.ErrInvalid)
	}
	if err := validMembers(append(slices.Clone(c.Devices), c.Spares...)); err != nil {
		return err
	}
	if c.Metadata != "" && !metaVers[c.Metadata] {
		return fmt.Errorf("%w: metadata %q: want 1.2, 1.1, 1.0 or 0.90", atomic.ErrInvalid, c.Metadata)
	}
	if c.Chunk != "" {
		if lvl == "raid1" {
			return fmt.Errorf("%w: raid1 has no chunk size", atomic.ErrInvalid)
		}
		if _, err := chunkKiB(c.Chunk); err != nil {
			return err
		}
	}
	if c.Name != "" && !nameRe.MatchString(c.Name) {
		return fmt.Errorf("%w: array name %q: 1-32 letters, digits, '_', '.', ':' or '-'", atomic.ErrInvalid, c.Name)
	}
	if c.AssumeClean && lvl != "raid1" && lvl != "raid10" {
		return fmt.Errorf("%w: assume_clean is for raid1 and raid10 only: %s without its initial sync has no valid redundancy (raid0 has none to sync)", atomic.ErrInvalid, lvl)
	}
	return nil
}

func (c Create) members() []string { return append(slices.Clone(c.Devices), c.Spares...) }

// argv is the mdadm --create command line.
func (c Create) argv() []string {
	lvl, _ := NormalizeLevel(c.Level)
	argv := []string{"mdadm", "--create", c.Device, "--run", "--level=" + lvl,
		"--raid-devices=" + strconv.Itoa(len(c.Devices))}
	if len(c.Spares) > 0 {
		argv = append(argv, "--spare-devices="+strconv.Itoa(len(c.Spares)))
	}
	meta := c.Metadata
	if meta == "" {
		meta = "1.2"
	}
	argv = append(argv, "--metadata="+meta)
	if c.Chunk != "" {
		k, _ := chunkKiB(c.Chunk)
		argv = append(argv, "--chunk="+strconv.Itoa(k))
	}
	if c.Name != "" {
		argv = append(argv, "--name="+c.Name)
	}
	if c.AssumeClean {
		argv = append(argv, "--assume-clean")
	}
	return append(argv, c.members()...)
}

type createUndo struct {
	// Before maps each member to the UUID of the superblock it held
	// before the create ("" for none): undo zeroes only superblocks that
	// differ from these, i.e. the ones this step wrote.
	Before map[string]string `json:"before"`
}

func sameSet(a, b []string) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

func prepareCreate(ctx context.Context, env *atomic.Env, c Create) (atomic.Plan[createUndo, Array], error) {
	var plan atomic.Plan[createUndo, Array]
	lvl, _ := NormalizeLevel(c.Level)
	a, err := Detail(ctx, env.Runner, c.Device)
	switch {
	case err == nil:
		if a.Level == lvl && sameSet(a.Devices(), c.members()) {
			plan.Noop, plan.Result = true, *a
			return plan, nil
		}
		return plan, fmt.Errorf("%w: %s is already running as %s on %v", atomic.ErrInvalid, c.Device, a.Level, a.Devices())
	case !errors.Is(err, ErrNotActive):
		return plan, err
	}
	plan.Undo.Before = map[string]string{}
	for _, d := range c.members() {
		if err := CheckDevice(d); err != nil {
			return plan, err
		}
		sig, err := Signature(ctx, env.Runner, d)
		if err != nil {
			return plan, err
		}
		if sig != "" && !c.Force {
			return plan, fmt.Errorf("%w: %s holds a %s signature; set force to destroy it", atomic.ErrInvalid, d, sig)
		}
		sb, err := Examine(ctx, env.Runner, d)
		if err != nil {
			return plan, err
		}
		plan.Undo.Before[d] = ""
		if sb != nil {
			plan.Undo.Before[d] = sb.UUID
		}
	}
	return plan, nil
}

func doCreate(ctx context.Context, env *atomic.Env, c Create, _ createUndo) (Array, error) {
	if err := run.Mutate(ctx, env.Runner, c.argv()...); err != nil {
		return Array{}, fmt.Errorf("create %s: %w", c.Device, err)
	}
	if env.DryRun {
		lvl, _ := NormalizeLevel(c.Level)
		return Array{Device: c.Device, Level: lvl, RaidDevices: len(c.Devices)}, nil
	}
	a, err := Detail(ctx, env.Runner, c.Device)
	if err != nil {
		return Array{}, err
	}
	return *a, nil
}

// checkCreate reports any trace of the create: the array running, or a
// member holding a superblock it did not hold before (mdadm died after
// writing some). Undo then removes whatever is there.
func checkCreate(ctx context.Context, env *atomic.Env, c Create, u createUndo) (bool, Array, error) {
	a, err := Detail(ctx, env.Runner, c.Device)
	if err == nil {
		return true, *a, nil
	}
	if !errors.Is(err, ErrNotActive) {
		return false, Array{}, err
	}
	for _, d := range c.members() {
		sb, err := Examine(ctx, env.Runner, d)
		if err != nil {
			return false, Array{}, err
		}
		if before, known := u.Before[d]; sb != nil && known && sb.UUID != before {
			return true, Array{}, nil
		}
	}
	return false, Array{}, nil
}

// stopIf stops dev if it is running and (when uuid is set) is that array.
func stopIf(ctx context.Context, r run.Runner, dev, uuid string) error {
	a, err := Detail(ctx, r, dev)
	if errors.Is(err, ErrNotActive) {
		return nil
	}
	if err != nil {
		return err
	}
	if uuid != "" && a.UUID != uuid {
		return fmt.Errorf("%s now runs another array (uuid %s, not %s); not stopping it", dev, a.UUID, uuid)
	}
	if err := run.Mutate(ctx, r, "mdadm", "--stop", dev); err != nil {
		return fmt.Errorf("stop %s: %w", dev, err)
	}
	return nil
}

func undoCreate(ctx context.Context, env *atomic.Env, c Create, u createUndo, r Array) error {
	if err := stopIf(ctx, env.Runner, c.Device, r.UUID); err != nil {
		return err
	}
	for _, d := range c.members() {
		sb, err := Examine(ctx, env.Runner, d)
		if err != nil {
			return err
		}
		if sb == nil {
			continue
		}
		before, known := u.Before[d]
		if !known || sb.UUID == before || (r.UUID != "" && sb.UUID != r.UUID) {
			continue // not ours
		}
		if err := run.Mutate(ctx, env.Runner, "mdadm", "--zero-superblock", d); err != nil {
			return fmt.Errorf("zero superblock of %s: %w", d, err)
		}
	}
	return nil
}

// Assemble is the raid.assemble step: start an existing array.
type Assemble struct {
	Device  string   `json:"device" doc:"array device: /dev/mdN or /dev/md/NAME"`
	Devices []string `json:"devices" doc:"member devices"`
	Run     bool     `json:"run,omitempty" doc:"start the array even if degraded (--run)"`
}

// StepKind names the kind.
func (Assemble) StepKind() string { return "raid.assemble" }

// Validate checks the parameters.
func (a Assemble) Validate() error {
	if err := ValidArrayDevice(a.Device); err != nil {
		return err
	}
	if len(a.Devices) == 0 {
		return fmt.Errorf("%w: assemble needs member devices", atomic.ErrInvalid)
	}
	return validMembers(a.Devices)
}

func (a Assemble) device() string { return a.Device }

func prepareAssemble(ctx context.Context, env *atomic.Env, p Assemble) (atomic.Plan[struct{}, Array], error) {
	var plan atomic.Plan[struct{}, Array]
	a, err := Detail(ctx, env.Runner, p.Device)
	switch {
	case err == nil:
		plan.Noop, plan.Result = true, *a
		return plan, nil
	case !errors.Is(err, ErrNotActive):
		return plan, err
	}
	return plan, nil
}

func doAssemble(ctx context.Context, env *atomic.Env, p Assemble, _ struct{}) (Array, error) {
	argv := []string{"mdadm", "--assemble", p.Device}
	if p.Run {
		argv = append(argv, "--run")
	}
	if err := run.Mutate(ctx, env.Runner, append(argv, p.Devices...)...); err != nil {
		return Array{}, fmt.Errorf("assemble %s: %w", p.Device, err)
	}
	if env.DryRun {
		return Array{Device: p.Device}, nil
	}
	a, err := Detail(ctx, env.Runner, p.Device)
	if err != nil {
		return Array{}, err
	}
	return *a, nil
}

func undoAssemble(ctx context.Context, env *atomic.Env, p Assemble, _ struct{}, r Array) error {
	return stopIf(ctx, env.Runner, p.Device, r.UUID)
}

type deviceParams interface{ device() string }

func checkActive[P deviceParams](ctx context.Context, env *atomic.Env, p P, _ struct{}) (bool, Array, error) {
	a, err := Detail(ctx, env.Runner, p.device())
	if errors.Is(err, ErrNotActive) {
		return false, Array{}, nil
	}
	if err != nil {
		return false, Array{}, err
	}
	return true, *a, nil
}

// Stop is the raid.stop step.
type Stop struct {
	Device string `json:"device" doc:"array device: /dev/mdN or /dev/md/NAME"`
}

// StepKind names the kind.
func (Stop) StepKind() string { return "raid.stop" }

// Validate checks the parameters.
func (s Stop) Validate() error { return ValidArrayDevice(s.Device) }

type stopUndo struct {
	UUID    string   `json:"uuid"`
	Members []string `json:"members"`
}

func prepareStop(ctx context.Context, env *atomic.Env, s Stop) (atomic.Plan[stopUndo, struct{}], error) {
	var plan atomic.Plan[stopUndo, struct{}]
	a, err := Detail(ctx, env.Runner, s.Device)
	if errors.Is(err, ErrNotActive) {
		plan.Noop = true
		return plan, nil
	}
	if err != nil {
		return plan, err
	}
	plan.Undo = stopUndo{UUID: a.UUID}
	for _, m := range a.Members {
		if !m.Faulty {
			plan.Undo.Members = append(plan.Undo.Members, m.Device)
		}
	}
	return plan, nil
}

func doStop(ctx context.Context, env *atomic.Env, s Stop, _ stopUndo) (struct{}, error) {
	if err := run.Mutate(ctx, env.Runner, "mdadm", "--stop", s.Device); err != nil {
		return struct{}{}, fmt.Errorf("stop %s: %w", s.Device, err)
	}
	return struct{}{}, nil
}

func undoStop(ctx context.Context, env *atomic.Env, s Stop, u stopUndo, _ struct{}) error {
	if _, err := Detail(ctx, env.Runner, s.Device); err == nil {
		return nil
	} else if !errors.Is(err, ErrNotActive) {
		return err
	}
	argv := append([]string{"mdadm", "--assemble", s.Device, "--run"}, u.Members...)
	if err := run.Mutate(ctx, env.Runner, argv...); err != nil {
		return fmt.Errorf("assemble %s again: %w", s.Device, err)
	}
	return nil
}

func checkStop(ctx context.Context, env *atomic.Env, s Stop, _ stopUndo) (bool, struct{}, error) {
	_, err := Detail(ctx, env.Runner, s.Device)
	if errors.Is(err, ErrNotActive) {
		return true, struct{}{}, nil
	}
	return false, struct{}{}, err
}

// memberParams are the parameters of add, remove and fail.
type memberParams struct {
	Device string `json:"device" doc:"array device: /dev/mdN or /dev/md/NAME"`
	Member string `json:"member" doc:"member device"`
}

func (m memberParams) validate() error {
	if err := ValidArrayDevice(m.Device); err != nil {
		return err
	}
	return ValidMember(m.Member)
}

// Add is the raid.add step: add a member; it becomes a spare, or is
// rebuilt into a missing slot.
type Add struct {
	Device string `json:"device" doc:"array device: /dev/mdN or /dev/md/NAME"`
	Member string `json:"member" doc:"member device to add"`
	Force  bool   `json:"force,omitempty" doc:"add a device that holds a non-md signature (destroys it)"`
}

// StepKind names the kind.
func (Add) StepKind() string { return "raid.add" }

// Validate checks the parameters.
func (a Add) Validate() error { return memberParams{a.Device, a.Member}.validate() }

type addUndo struct {
	// HadSuperblock says the member held an md superblock before.
	HadSuperblock bool `json:"had_superblock"`
}

func prepareAdd(ctx context.Context, env *atomic.Env, p Add) (atomic.Plan[addUndo, Array], error) {
	var plan atomic.Plan[addUndo, Array]
	a, err := Detail(ctx, env.Runner, p.Device)
	if err != nil {
		return plan, err
	}
	if m, ok := a.Member(p.Member); ok {
		if !m.Faulty {
			plan.Noop, plan.Result = true, *a
			return plan, nil
		}
		return plan, fmt.Errorf("%w: %s is a failed member of %s; remove it first", atomic.ErrInvalid, p.Member, p.Device)
	}
	if err := CheckDevice(p.Member); err != nil {
		return plan, err
	}
	sig, err := Signature(ctx, env.Runner, p.Member)
	if err != nil {
		return plan, err
	}
	sb, err := Examine(ctx, env.Runner, p.Member)
	if err != nil {
		return plan, err
	}
	switch {
	case sb != nil && sb.UUID != a.UUID && !p.Force:
		return plan, fmt.Errorf("%w: %s holds the superblock of another array (%s); set force to destroy it", atomic.ErrInvalid, p.Member, sb.UUID)
	case sb == nil && sig != "" && !p.Force:
		return plan, fmt.Errorf("%w: %s holds a %s signature; set force to destroy it", atomic.ErrInvalid, p.Member, sig)
	}
	plan.Undo.HadSuperblock = sb != nil
	return plan, nil
}

func doAdd(ctx context.Context, env *atomic.Env, p Add, _ addUndo) (Array, error) {
	if err := run.Mutate(ctx, env.Runner, "mdadm", p.Device, "--add", p.Member); err != nil {
		return Array{}, fmt.Errorf("add %s to %s: %w", p.Member, p.Device, err)
	}
	if env.DryRun {
		return Array{Device: p.Device}, nil
	}
	a, err := Detail(ctx, env.Runner, p.Device)
	if err != nil {
		return Array{}, err
	}
	return *a, nil
}

// failAndRemove takes member out of dev: --fail unless already faulty or
// a spare, then --remove.
func failAndRemove(ctx context.Context, r run.Runner, dev, member string) error {
	a, err := Detail(ctx, r, dev)
	if err != nil {
		return err
	}
	m, ok := a.Member(member)
	if !ok {
		return nil
	}
	if !m.Faulty && !m.Spare {
		if err := run.Mutate(ctx, r, "mdadm", dev, "--fail", member); err != nil {
			return fmt.Errorf("fail %s in %s: %w", member, dev, err)
		}
	}
	if err := run.Mutate(ctx, r, "mdadm", dev, "--remove", member); err != nil {
		return fmt.Errorf("remove %s from %s: %w", member, dev, err)
	}
	return nil
}

func undoAdd(ctx context.Context, env *atomic.Env, p Add, u addUndo, _ Array) error {
	if err := failAndRemove(ctx, env.Runner, p.Device, p.Member); err != nil {
		return err
	}
	if u.HadSuperblock {
		return nil
	}
	sb, err := Examine(ctx, env.Runner, p.Member)
	if err != nil || sb == nil {
		return err
	}
	if err := run.Mutate(ctx, env.Runner, "mdadm", "--zero-superblock", p.Member); err != nil {
		return fmt.Errorf("zero superblock of %s: %w", p.Member, err)
	}
	return nil
}

func checkAdd(ctx context.Context, env *atomic.Env, p Add, _ addUndo) (bool, Array, error) {
	a, err := Detail(ctx, env.Runner, p.Device)
	if err != nil {
		return false, Array{}, err
	}
	m, ok := a.Member(p.Member)
	return ok && !m.Faulty, *a, nil
}

// readd puts member back into dev: --re-add (quick with a bitmap), else --add.
func readd(ctx context.Context, r run.Runner, dev, member string) error {
	a, err := Detail(ctx, r, dev)
	if err != nil {
		return err
	}
	if m, ok := a.Member(member); ok && !m.Faulty {
		return nil
	}
	if m, ok := a.Member(member); ok && m.Faulty {
		if err := run.Mutate(ctx, r, "mdadm", dev, "--remove", member); err != nil {
			return fmt.Errorf("remove %s from %s: %w", member, dev, err)
		}
	}
	if err := run.Mutate(ctx, r, "mdadm", dev, "--re-add", member); err == nil {
		return nil
	}
	if err := run.Mutate(ctx, r, "mdadm", dev, "--add", member); err != nil {
		return fmt.Errorf("add %s back to %s: %w", member, dev, err)
	}
	return nil
}

// Remove is the raid.remove step: take a failed or spare member out.
type Remove struct {
	Device string `json:"device" doc:"array device: /dev/mdN or /dev/md/NAME"`
	Member string `json:"member" doc:"failed or spare member to remove"`
}

// StepKind names the kind.
func (Remove) StepKind() string { return "raid.remove" }

// Validate checks the parameters.
func (p Remove) Validate() error { return memberParams{p.Device, p.Member}.validate() }

func prepareRemove(ctx context.Context, env *atomic.Env, p Remove) (atomic.Plan[struct{}, struct{}], error) {
	var plan atomic.Plan[struct{}, struct{}]
	a, err := Detail(ctx, env.Runner, p.Device)
	if err != nil {
		return plan, err
	}
	m, ok := a.Member(p.Member)
	if !ok {
		plan.Noop = true
		return plan, nil
	}
	if !m.Faulty && !m.Spare {
		return plan, fmt.Errorf("%w: %s is an active member of %s; fail it first (raid.fail)", atomic.ErrInvalid, p.Member, p.Device)
	}
	return plan, nil
}

func doRemove(ctx context.Context, env *atomic.Env, p Remove, _ struct{}) (struct{}, error) {
	if err := run.Mutate(ctx, env.Runner, "mdadm", p.Device, "--remove", p.Member); err != nil {
		return struct{}{}, fmt.Errorf("remove %s from %s: %w", p.Member, p.Device, err)
	}
	return struct{}{}, nil
}

func undoRemove(ctx context.Context, env *atomic.Env, p Remove, _ struct{}, _ struct{}) error {
	return readd(ctx, env.Runner, p.Device, p.Member)
}

func checkRemove(ctx context.Context, env *atomic.Env, p Remove, _ struct{}) (bool, struct{}, error) {
	a, err := Detail(ctx, env.Runner, p.Device)
	if err != nil {
		return false, struct{}{}, err
	}
	_, ok := a.Member(p.Member)
	return !ok, struct{}{}, nil
}

// Fail is the raid.fail step: mark a member failed.
type Fail struct {
	Device string `json:"device" doc:"array device: /dev/mdN or /dev/md/NAME"`
	Member string `json:"member" doc:"member to mark failed"`
}

// StepKind names the kind.
func (Fail) StepKind() string { return "raid.fail" }

// Validate checks the parameters.
func (p Fail) Validate() error { return memberParams{p.Device, p.Member}.validate() }

func prepareFail(ctx context.Context, env *atomic.Env, p Fail) (atomic.Plan[struct{}, struct{}], error) {
	var plan atomic.Plan[struct{}, struct{}]
	a, err := Detail(ctx, env.Runner, p.Device)
	if err != nil {
		return plan, err
	}
	m, ok := a.Member(p.Member)
	if !ok {
		return plan, fmt.Errorf("%w: %s is not a member of %s", atomic.ErrInvalid, p.Member, p.Device)
	}
	if m.Faulty {
		plan.Noop = true
	}
	return plan, nil
}

func doFail(ctx context.Context, env *atomic.Env, p Fail, _ struct{}) (struct{}, error) {
	if err := run.Mutate(ctx, env.Runner, "mdadm", p.Device, "--fail", p.Member); err != nil {
		return struct{}{}, fmt.Errorf("fail %s in %s: %w", p.Member, p.Device, err)
	}
	return struct{}{}, nil
}

func undoFail(ctx context.Context, env *atomic.Env, p Fail, _ struct{}, _ struct{}) error {
	return readd(ctx, env.Runner, p.Device, p.Member)
}

func checkFail(ctx context.Context, env *atomic.Env, p Fail, _ struct{}) (bool, struct{}, error) {
	a, err := Detail(ctx, env.Runner, p.Device)
	if err != nil {
		return false, struct{}{}, err
	}
	m, ok := a.Member(p.Member)
	return !ok || m.Faulty, struct{}{}, nil
}

// Grow is the raid.grow step: change the number of active devices
// (a spare becomes active, or a raid1 gains a mirror). Irreversible.
type Grow struct {
	Device      string `json:"device" doc:"array device: /dev/mdN or /dev/md/NAME"`
	RaidDevices int    `json:"raid_devices" doc:"new number of active devices"`
}

// StepKind names the kind.
func (Grow) StepKind() string { return "raid.grow" }

// Validate checks the parameters.
func (g Grow) Validate() error {
	if err := ValidArrayDevice(g.Device); err != nil {
		return err
	}
	if g.RaidDevices < 1 || g.RaidDevices > 256 {
		return fmt.Errorf("%w: raid_devices %d: want 1 to 256", atomic.ErrInvalid, g.RaidDevices)
	}
	return nil
}

func prepareGrow(ctx context.Context, env *atomic.Env, g Grow) (atomic.Plan[struct{}, struct{}], error) {
	var plan atomic.Plan[struct{}, struct{}]
	a, err := Detail(ctx, env.Runner, g.Device)
	if err != nil {
		return plan, err
	}
	if a.RaidDevices == g.RaidDevices {
		plan.Noop = true
		return plan, nil
	}
	if n, ok := minDevices[a.Level]; ok && g.RaidDevices < n {
		return plan, fmt.Errorf("%w: %s needs at least %d devices", atomic.ErrInvalid, a.Level, n)
	}
	if g.RaidDevices > a.RaidDevices && a.Level != "raid1" && len(a.Members) < g.RaidDevices {
		return plan, fmt.Errorf("%w: %s has %d members; add spares before growing to %d devices", atomic.ErrInvalid, g.Device, len(a.Members), g.RaidDevices)
	}
	return plan, nil
}

func doGrow(ctx context.Context, env *atomic.Env, g Grow, _ struct{}) (struct{}, error) {
	if err := run.Mutate(ctx, env.Runner, "mdadm", "--grow", g.Device, "--raid-devices="+strconv.Itoa(g.RaidDevices)); err != nil {
		return struct{}{}, fmt.Errorf("grow %s: %w", g.Device, err)
	}
	return struct{}{}, nil
}
