package crypt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

// KDFCost is the key derivation cost of a new key slot; zero fields use
// cryptsetup's defaults (benchmarked).
type KDFCost struct {
	PBKDF           string `json:"pbkdf,omitempty" doc:"argon2id, argon2i or pbkdf2"`
	PBKDFMemory     int    `json:"pbkdf_memory,omitempty" doc:"argon2 memory cost in KiB"`
	PBKDFIterations int    `json:"pbkdf_iterations,omitempty" doc:"forced iterations / argon2 time cost"`
}

func (c KDFCost) validate() error {
	if c.PBKDF != "" && !pbkdfs[c.PBKDF] {
		return fmt.Errorf("pbkdf %q: want argon2id, argon2i or pbkdf2", c.PBKDF)
	}
	if c.PBKDFMemory < 0 || c.PBKDFIterations < 0 || (c.PBKDFMemory != 0 && c.PBKDFMemory < 32) {
		return errors.New("pbkdf costs out of range")
	}
	return nil
}

func (c KDFCost) args(luks1 bool) []string {
	var a []string
	if c.PBKDF != "" && !luks1 {
		a = append(a, "--pbkdf", c.PBKDF)
	}
	if c.PBKDFMemory != 0 && !luks1 {
		a = append(a, "--pbkdf-memory", strconv.Itoa(c.PBKDFMemory))
	}
	if c.PBKDFIterations != 0 {
		a = append(a, "--pbkdf-force-iterations", strconv.Itoa(c.PBKDFIterations))
	}
	return a
}

// KDFFromConfig returns the key slot cost a site Config sets.
func KDFFromConfig(c Config) KDFCost {
	f := Format{}
	c.ApplyFormat(&f)
	return KDFCost{PBKDF: f.PBKDF, PBKDFMemory: f.PBKDFMemory, PBKDFIterations: f.PBKDFIterations}
}

// AddKey is the crypt.key.add step: add a key slot opened by the new key.
type AddKey struct {
	Device        string     `json:"device" doc:"LUKS device"`
	KeyFile       string     `json:"key_file,omitempty" doc:"an existing key (file)"`
	Passphrase    run.Secret `json:"passphrase,omitempty" doc:"an existing key (Go API)"`
	NewKeyFile    string     `json:"new_key_file,omitempty" doc:"the key to add (file)"`
	NewPassphrase run.Secret `json:"new_passphrase,omitempty" doc:"the key to add (Go API)"`
	Slot          *int       `json:"slot,omitempty" doc:"key slot number (first free if unset)"`
	KDFCost
}

// StepKind names the kind.
func (AddKey) StepKind() string { return "crypt.key.add" }

// Validate checks the parameters without touching the system.
func (a AddKey) Validate() error {
	if err := checkDevice("device", a.Device); err != nil {
		return err
	}
	if err := (Key{a.KeyFile, a.Passphrase}).validate("existing key", true); err != nil {
		return err
	}
	if err := (Key{a.NewKeyFile, a.NewPassphrase}).validate("new key", true); err != nil {
		return err
	}
	if a.Slot != nil && (*a.Slot < 0 || *a.Slot > 31) {
		return fmt.Errorf("slot %d: want 0-31", *a.Slot)
	}
	return a.KDFCost.validate()
}

// SlotResult names a key slot.
type SlotResult struct {
	Device string `json:"device"`
	Slot   int    `json:"slot"`
}

type addUndo struct {
	UUID  string `json:"uuid"`
	Slots []int  `json:"slots"`
	LUKS1 bool   `json:"luks1,omitempty"`
}

// header reads the header and refuses a device whose UUID changed.
func headerOf(dev, uuid string) (*Header, error) {
	h, err := ReadHeader(dev)
	if err != nil {
		return nil, err
	}
	if uuid != "" && !strings.EqualFold(h.UUID, uuid) {
		return nil, fmt.Errorf("%s now holds LUKS header %s, not %s: not touching it", dev, h.UUID, uuid)
	}
	return h, nil
}

func keysUsable(dev string, keys ...Key) (*Header, error) {
	for _, k := range keys {
		if err := k.usable(); err != nil {
			return nil, err
		}
	}
	h, err := ReadHeader(dev)
	if err != nil {
		return nil, invalid(err)
	}
	return h, nil
}

func findSlot(dev string, k Key) (int, error) {
	b, err := k.bytes()
	if err != nil {
		return -1, invalid(err)
	}
	defer clear(b)
	s, err := slotOf(dev, b)
	if IsWrongPassphrase(err) {
		return -1, invalid(err)
	}
	return s, err
}

func prepareAdd(ctx context.Context, env *atomic.Env, a AddKey) (atomic.Plan[addUndo, SlotResult], error) {
	var plan atomic.Plan[addUndo, SlotResult]
	old, nk := Key{a.KeyFile, a.Passphrase}, Key{a.NewKeyFile, a.NewPassphrase}
	h, err := keysUsable(a.Device, old, nk)
	if err != nil {
		return plan, err
	}
	if s, err := findSlot(a.Device, nk); err == nil {
		plan.Noop, plan.Result = true, SlotResult{Device: a.Device, Slot: s}
		return plan, nil
	}
	if _, err := findSlot(a.Device, old); err != nil {
		return plan, fmt.Errorf("existing key: %w", err)
	}
	if a.Slot != nil && slices.Contains(h.Slots, *a.Slot) {
		return plan, invalid(fmt.Errorf("key slot %d of %s is in use", *a.Slot, a.Device))
	}
	plan.Undo = addUndo{UUID: h.UUID, Slots: h.Slots, LUKS1: h.Version == 1}
	return plan, nil
}

func newSlots(dev string, u addUndo) ([]int, error) {
	h, err := headerOf(dev, u.UUID)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, s := range h.Slots {
		if !slices.Contains(u.Slots, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func doAdd(ctx context.Context, env *atomic.Env, a AddKey, u addUndo) (SlotResult, error) {
	res := SlotResult{Device: a.Device, Slot: -1}
	c := run.Cmd{Argv: []string{"cryptsetup", "luksAddKey", "--batch-mode"}, Kind: run.Mutation}
	if a.Slot != nil {
		c.Argv = append(c.Argv, "--key-slot", strconv.Itoa(*a.Slot))
	}
	c.Argv = append(c.Argv, a.KDFCost.args(u.LUKS1)...)
	if err := cmdWithNew(&c, Key{a.KeyFile, a.Passphrase}, Key{a.NewKeyFile, a.NewPassphrase}, a.Device); err != nil {
		return res, err
	}
	if _, err := env.Runner.Run(ctx, c); err != nil {
		return res, classify(err)
	}
	if env.DryRun {
		return res, nil
	}
	added, err := newSlots(a.Device, u)
	if err != nil {
		return res, err
	}
	if len(added) != 1 {
		return res, fmt.Errorf("luksAddKey: expected one new key slot on %s, found %v", a.Device, added)
	}
	res.Slot = added[0]
	return res, nil
}

func killSlot(ctx context.Context, r run.Runner, dev string, slot int) error {
	if err := run.Mutate(ctx, r, "cryptsetup", "luksKillSlot", "--batch-mode", dev, strconv.Itoa(slot)); err != nil {
		return classify(err)
	}
	return nil
}

func undoAdd(ctx context.Context, env *atomic.Env, a AddKey, u addUndo, _ SlotResult) error {
	added, err := newSlots(a.Device, u)
	if err != nil {
		return err
	}
	for _, s := range added {
		if err := killSlot(ctx, env.Runner, a.Device, s); err != nil {
			return err
		}
	}
	return nil
}

func checkAdd(ctx context.Context, env *atomic.Env, a AddKey, u addUndo) (bool, SlotResult, error) {
	added, err := newSlots(a.Device, u)
	if err != nil || len(added) == 0 {
		return false, SlotResult{}, err
	}
	return true, SlotResult{Device: a.Device, Slot: added[0]}, nil
}

// RemoveKey is the crypt.key.remove step: kill the key slot a key opens,
// or a given slot. The header is backed up first; undo restores it.
type RemoveKey struct {
	Device     string     `json:"device" doc:"LUKS device"`
	KeyFile    string     `json:"key_file,omitempty" doc:"the key to remove (file)"`
	Passphrase run.Secret `json:"passphrase,omitempty" doc:"the key to remove (Go API)"`
	Slot       *int       `json:"slot,omitempty" doc:"key slot to kill (instead of a key)"`
}

// StepKind names the kind.
func (RemoveKey) StepKind() string { return "crypt.key.remove" }

// Validate checks the parameters without touching the system.
func (r RemoveKey) Validate() error {
	if err := checkDevice("device", r.Device); err != nil {
		return err
	}
	k := Key{r.KeyFile, r.Passphrase}
	if r.Slot != nil {
		if k.set() {
			return errors.New("give a key or a slot, not both")
		}
		if *r.Slot < 0 || *r.Slot > 31 {
			return fmt.Errorf("slot %d: want 0-31", *r.Slot)
		}
		return nil
	}
	return k.validate("key to remove", true)
}

type headerUndo struct {
	UUID  string `json:"uuid"`
	Slot  int    `json:"slot"`
	LUKS1 bool   `json:"luks1,omitempty"`
}

func prepareRemove(ctx context.Context, env *atomic.Env, r RemoveKey) (atomic.Plan[headerUndo, SlotResult], error) {
	var plan atomic.Plan[headerUndo, SlotResult]
	k := Key{r.KeyFile, r.Passphrase}
	var keys []Key
	if r.Slot == nil {
		keys = append(keys, k)
	}
	h, err := keysUsable(r.Device, keys...)
	if err != nil {
		return plan, err
	}
	slot := -1
	if r.Slot != nil {
		slot = *r.Slot
		if !slices.Contains(h.Slots, slot) {
			plan.Noop, plan.Result = true, SlotResult{Device: r.Device, Slot: slot}
			return plan, nil
		}
	} else if slot, err = findSlot(r.Device, k); err != nil {
		return plan, err
	}
	if len(h.Slots) == 1 {
		return plan, invalid(fmt.Errorf("key slot %d is the last one of %s: removing it would lose the data", slot, r.Device))
	}
	plan.Undo = headerUndo{UUID: h.UUID, Slot: slot}
	return plan, nil
}

// headerFile is the step's private header backup.
func headerFile(env *atomic.Env) (string, error) {
	dir, err := env.StepDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "header.img"), nil
}

// backupHeader saves the header into the step's directory, unless an
// earlier attempt did.
func backupHeader(ctx context.Context, env *atomic.Env, dev string) error {
	f, err := headerFile(env)
	if err != nil {
		return err
	}
	if _, err := os.Stat(f); err == nil {
		return nil
	}
	tmp := f + ".tmp"
	os.Remove(tmp)
	if err := run.Mutate(ctx, env.Runner, "cryptsetup", "luksHeaderBackup", "--batch-mode", dev, "--header-backup-file", tmp); err != nil {
		return fmt.Errorf("back up LUKS header of %s: %w", dev, classify(err))
	}
	if env.DryRun {
		return nil
	}
	if err := os.Rename(tmp, f); err != nil {
		return err
	}
	return nil
}

// headerChanged reports whether the device's header differs from the
// step's backup; ok is false when there is no backup.
func headerChanged(env *atomic.Env, dev string) (changed, ok bool, err error) {
	f, err := headerFile(env)
	if err != nil {
		return false, false, err
	}
	b, err := os.ReadFile(f)
	if errors.Is(err, os.ErrNotExist) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	cur, err := readAt(dev, 0, int64(len(b)))
	if err != nil {
		return false, true, err
	}
	return !bytes.Equal(cur, b), true, nil
}

// restoreHeader puts the step's header backup back if the header changed.
func restoreHeader(ctx context.Context, env *atomic.Env, dev, uuid string) error {
	ch, ok, err := headerChanged(env, dev)
	if err != nil || !ok || !ch {
		return err
	}
	if _, err := headerOf(dev, uuid); err != nil {
		return err
	}
	f, _ := headerFile(env)
	if err := run.Mutate(ctx, env.Runner, "cryptsetup", "luksHeaderRestore", "--batch-mode", dev, "--header-backup-file", f); err != nil {
		return fmt.Errorf("restore LUKS header of %s: %w", dev, classify(err))
	}
	return nil
}

func doRemove(ctx context.Context, env *atomic.Env, r RemoveKey, u headerUndo) (SlotResult, error) {
	res := SlotResult{Device: r.Device, Slot: u.Slot}
	if err := backupHeader(ctx, env, r.Device); err != nil {
		return res, err
	}
	return res, killSlot(ctx, env.Runner, r.Device, u.Slot)
}

func checkRemove(ctx context.Context, env *atomic.Env, r RemoveKey, u headerUndo) (bool, SlotResult, error) {
	h, err := headerOf(r.Device, u.UUID)
	if err != nil {
		return false, SlotResult{}, err
	}
	return !slices.Contains(h.Slots, u.Slot), SlotResult{Device: r.Device, Slot: u.Slot}, nil
}

// ChangeKey is the crypt.key.change step: replace the key of the slot the
// old key opens. The header is backed up first; undo restores it.
type ChangeKey struct {
	Device        string     `json:"device" doc:"LUKS device"`
	KeyFile       string     `json:"key_file,omitempty" doc:"the current key (file)"`
	Passphrase    run.Secret `json:"passphrase,omitempty" doc:"the current key (Go API)"`
	NewKeyFile    string     `json:"new_key_file,omitempty" doc:"the new key (file)"`
	NewPassphrase run.Secret `json:"new_passphrase,omitempty" doc:"the new key (Go API)"`
	KDFCost
}

// StepKind names the kind.
func (ChangeKey) StepKind() string { return "crypt.key.change" }

// Validate checks the parameters without touching the system.
func (c ChangeKey) Validate() error {
	if err := checkDevice("device", c.Device); err != nil {
		return err
	}
	if err := (Key{c.KeyFile, c.Passphrase}).validate("current key", true); err != nil {
		return err
	}
	if err := (Key{c.NewKeyFile, c.NewPassphrase}).validate("new key", true); err != nil {
		return err
	}
	return c.KDFCost.validate()
}

func prepareChange(ctx context.Context, env *atomic.Env, c ChangeKey) (atomic.Plan[headerUndo, SlotResult], error) {
	var plan atomic.Plan[headerUndo, SlotResult]
	old, nk := Key{c.KeyFile, c.Passphrase}, Key{c.NewKeyFile, c.NewPassphrase}
	h, err := keysUsable(c.Device, old, nk)
	if err != nil {
		return plan, err
	}
	slot, err := findSlot(c.Device, old)
	if err != nil {
		if s, nerr := findSlot(c.Device, nk); nerr == nil && IsWrongPassphrase(err) {
			plan.Noop, plan.Result = true, SlotResult{Device: c.Device, Slot: s}
			return plan, nil
		}
		return plan, fmt.Errorf("current key: %w", err)
	}
	plan.Undo = headerUndo{UUID: h.UUID, Slot: slot, LUKS1: h.Version == 1}
	return plan, nil
}

func doChange(ctx context.Context, env *atomic.Env, c ChangeKey, u headerUndo) (SlotResult, error) {
	slot, luks1 := u.Slot, u.LUKS1
	res := SlotResult{Device: c.Device, Slot: slot}
	if err := backupHeader(ctx, env, c.Device); err != nil {
		return res, err
	}
	cmd := run.Cmd{Argv: []string{"cryptsetup", "luksChangeKey", "--batch-mode", "--key-slot", strconv.Itoa(slot)}, Kind: run.Mutation}
	cmd.Argv = append(cmd.Argv, c.KDFCost.args(luks1)...)
	if err := cmdWithNew(&cmd, Key{c.KeyFile, c.Passphrase}, Key{c.NewKeyFile, c.NewPassphrase}, c.Device); err != nil {
		return res, err
	}
	_, err := env.Runner.Run(ctx, cmd)
	return res, classify(err)
}

func checkChange(ctx context.Context, env *atomic.Env, c ChangeKey, u headerUndo) (bool, SlotResult, error) {
	ch, ok, err := headerChanged(env, c.Device)
	return ch && ok, SlotResult{Device: c.Device, Slot: u.Slot}, err
}

func init() {
	atomic.Register(atomic.Def[AddKey, addUndo, SlotResult]{
		Doc:     "add a LUKS key slot; undo kills the slot it added",
		Prepare: prepareAdd,
		Do:      doAdd,
		Undo:    undoAdd,
		Check:   checkAdd,
	})
	atomic.Register(atomic.Def[RemoveKey, headerUndo, SlotResult]{
		Doc:     "kill the LUKS key slot a key opens (or a given slot; never the last); undo restores the header backed up before",
		Prepare: prepareRemove,
		Do:      doRemove,
		Undo: func(ctx context.Context, env *atomic.Env, r RemoveKey, u headerUndo, _ SlotResult) error {
			return restoreHeader(ctx, env, r.Device, u.UUID)
		},
		Check: checkRemove,
	})
	atomic.Register(atomic.Def[ChangeKey, headerUndo, SlotResult]{
		Doc:     "change the key of the LUKS slot the current key opens; undo restores the header backed up before",
		Prepare: prepareChange,
		Do:      doChange,
		Undo: func(ctx context.Context, env *atomic.Env, c ChangeKey, u headerUndo, _ SlotResult) error {
			return restoreHeader(ctx, env, c.Device, u.UUID)
		},
		Check: checkChange,
	})
}
