package crypt

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/anatol/luks.go"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

// Backends that open a LUKS device.
const (
	// BackendLuksGo unlocks in Go (github.com/anatol/luks.go) and loads the
	// dm-crypt table with ioctls: no cryptsetup process.
	BackendLuksGo = "luksgo"
	// BackendCryptsetup runs `cryptsetup open`.
	BackendCryptsetup = "cryptsetup"
)

// Open is the crypt.open step: unlock Device as /dev/mapper/Name.
type Open struct {
	Device     string     `json:"device" doc:"LUKS device"`
	Name       string     `json:"name" doc:"mapping name (/dev/mapper/NAME)"`
	KeyFile    string     `json:"key_file,omitempty" doc:"key file (used byte for byte)"`
	Passphrase run.Secret `json:"passphrase,omitempty" doc:"passphrase (Go API; never journaled)"`
	Backend    string     `json:"backend,omitempty" doc:"luksgo (default: pure Go) or cryptsetup"`
	ReadOnly   bool       `json:"read_only,omitempty" doc:"open read-only (cryptsetup backend)"`
}

// StepKind names the kind.
func (Open) StepKind() string { return "crypt.open" }

func (o Open) key() Key { return Key{File: o.KeyFile, Passphrase: o.Passphrase} }

var nameRe = regexp.MustCompile(`^[A-Za-z0-9_+.-]{1,127}$`)

// ValidName checks a device-mapper mapping name.
func ValidName(name string) error {
	if !nameRe.MatchString(name) || name == "." || name == ".." || name == "control" {
		return fmt.Errorf("mapping name %q: want 1-127 of A-Z a-z 0-9 _ + . -", name)
	}
	return nil
}

func validBackend(b string) error {
	if b != "" && b != BackendLuksGo && b != BackendCryptsetup {
		return fmt.Errorf("backend %q: want luksgo or cryptsetup", b)
	}
	return nil
}

// Validate checks the parameters without touching the system.
func (o Open) Validate() error {
	if err := checkDevice("device", o.Device); err != nil {
		return err
	}
	if err := ValidName(o.Name); err != nil {
		return err
	}
	if err := validBackend(o.Backend); err != nil {
		return err
	}
	if o.ReadOnly && o.Backend != BackendCryptsetup {
		return errors.New("read_only needs backend cryptsetup")
	}
	return o.key().validate("open", true)
}

// Opened is an open mapping.
type Opened struct {
	Name   string `json:"name"`
	Path   string `json:"path" doc:"/dev/mapper/NAME"`
	Device string `json:"device"`
	UUID   string `json:"uuid"`
}

type openUndo struct {
	UUID    string `json:"uuid"`
	Version int    `json:"version"`
}

func prepareOpen(ctx context.Context, env *atomic.Env, o Open) (atomic.Plan[openUndo, Opened], error) {
	var plan atomic.Plan[openUndo, Opened]
	if err := o.key().usable(); err != nil {
		return plan, err
	}
	h, err := ReadHeader(o.Device)
	if err != nil {
		return plan, invalid(err)
	}
	plan.Undo = openUndo{UUID: h.UUID, Version: h.Version}
	res := Opened{Name: o.Name, Path: mapperPath(o.Name), Device: o.Device, UUID: h.UUID}
	m, err := Mapping(ctx, env.Runner, o.Name)
	switch {
	case errors.Is(err, ErrNoMapping):
		// check the key before acting: a wrong one changes nothing (exit 2)
		if _, err := findSlot(o.Device, o.key()); err != nil {
			return plan, err
		}
		return plan, nil
	case err != nil:
		return plan, err
	case m.Of(h):
		plan.Noop, plan.Result = true, res // already open with this device
		return plan, nil
	}
	return plan, invalid(fmt.Errorf("%w: mapping %s exists for another device (dm uuid %q)", ErrBusy, o.Name, m.UUID))
}

// unlockGo unlocks with luks.go; tests replace it.
var unlockGo = func(device, name string, key []byte) error {
	d, err := luks.Open(device)
	if err != nil {
		return fmt.Errorf("read LUKS header of %s: %w", device, err)
	}
	defer d.Close()
	err = d.UnlockAny(key, name)
	if errors.Is(err, luks.ErrPassphraseDoesNotMatch) {
		return fmt.Errorf("%s: %w", device, ErrWrongPassphrase)
	}
	if err != nil {
		return fmt.Errorf("unlock %s as %s: %w", device, name, scrub(err, key))
	}
	return nil
}

func openMapping(ctx context.Context, env *atomic.Env, device, name, backend string, readOnly bool, k Key) error {
	if backend == "" {
		backend = BackendLuksGo
	}
	if backend == BackendLuksGo {
		if env.Dry("unlock %s as %s with luks.go", device, name) {
			return nil
		}
		key, err := k.bytes()
		if err != nil {
			return err
		}
		err = unlockGo(device, name, key)
		clear(key)
		if err != nil {
			return err
		}
		// luks.go loads the table with ioctls and waits for no udev:
		// make sure /dev/mapper/NAME exists (no-op where udev made it)
		if err := run.Mutate(ctx, env.Runner, "dmsetup", "mknodes", name); err != nil {
			return fmt.Errorf("create /dev/mapper/%s: %w", name, err)
		}
		return nil
	}
	c := run.Cmd{Argv: []string{"cryptsetup", "open", "--type", "luks"}, Kind: run.Mutation}
	if readOnly {
		c.Argv = append(c.Argv, "--readonly")
	}
	if err := k.cmd(&c); err != nil {
		return err
	}
	c.Argv = append(c.Argv, device, name)
	if _, err := env.Runner.Run(ctx, c); err != nil {
		return classify(err)
	}
	return nil
}

func doOpen(ctx context.Context, env *atomic.Env, o Open, u openUndo) (Opened, error) {
	res := Opened{Name: o.Name, Path: mapperPath(o.Name), Device: o.Device, UUID: u.UUID}
	err := openMapping(ctx, env, o.Device, o.Name, o.Backend, o.ReadOnly, o.key())
	if IsWrongPassphrase(err) {
		err = invalid(err)
	}
	return res, err
}

// closeOurs closes mapping name if it is the mapping of the LUKS header
// with uuid; a missing mapping (or someone else's) is left alone.
func closeOurs(ctx context.Context, env *atomic.Env, name, uuid string) error {
	m, err := Mapping(ctx, env.Runner, name)
	if errors.Is(err, ErrNoMapping) {
		return nil
	}
	if err != nil {
		return err
	}
	if !m.Of(&Header{UUID: uuid}) {
		env.Log.Warn("mapping is not ours: left alone", "name", name, "dm_uuid", m.UUID)
		return nil
	}
	return closeMapping(ctx, env.Runner, name)
}

func closeMapping(ctx context.Context, r run.Runner, name string) error {
	if err := run.Mutate(ctx, r, "cryptsetup", "close", name); err != nil {
		return classify(err)
	}
	return nil
}

func undoOpen(ctx context.Context, env *atomic.Env, o Open, u openUndo, _ Opened) error {
	return closeOurs(ctx, env, o.Name, u.UUID)
}

func checkOpen(ctx context.Context, env *atomic.Env, o Open, u openUndo) (bool, Opened, error) {
	res := Opened{Name: o.Name, Path: mapperPath(o.Name), Device: o.Device, UUID: u.UUID}
	m, err := Mapping(ctx, env.Runner, o.Name)
	if errors.Is(err, ErrNoMapping) {
		return false, res, nil
	}
	if err != nil {
		return false, res, err
	}
	return m.Of(&Header{UUID: u.UUID}), res, nil
}

// Close is the crypt.close step: close mapping Name. Its undo opens the
// mapping again, so it needs a key; after a crash only a key file works.
type Close struct {
	Name       string     `json:"name" doc:"mapping name"`
	KeyFile    string     `json:"key_file,omitempty" doc:"key file to reopen it on undo"`
	Passphrase run.Secret `json:"passphrase,omitempty" doc:"passphrase to reopen it on undo (Go API; lost after a crash)"`
}

// StepKind names the kind.
func (Close) StepKind() string { return "crypt.close" }

func (c Close) key() Key { return Key{File: c.KeyFile, Passphrase: c.Passphrase} }

// Validate checks the parameters without touching the system.
func (c Close) Validate() error {
	if err := ValidName(c.Name); err != nil {
		return err
	}
	return c.key().validate("close (its undo reopens the mapping)", true)
}

type closeUndo struct {
	Device string `json:"device"`
	UUID   string `json:"uuid"`
}

func prepareClose(ctx context.Context, env *atomic.Env, c Close) (atomic.Plan[closeUndo, struct{}], error) {
	var plan atomic.Plan[closeUndo, struct{}]
	m, err := Mapping(ctx, env.Runner, c.Name)
	if errors.Is(err, ErrNoMapping) {
		plan.Noop = true
		return plan, nil
	}
	if err != nil {
		return plan, err
	}
	_, uuid, ok := m.LUKS()
	if !ok || len(m.Devices) != 1 {
		return plan, invalid(fmt.Errorf("mapping %s is not a LUKS mapping (dm uuid %q)", c.Name, m.UUID))
	}
	if m.Open > 0 {
		return plan, invalid(fmt.Errorf("%w: mapping %s is open %d time(s) (mounted?)", ErrBusy, c.Name, m.Open))
	}
	if err := c.key().usable(); err != nil {
		return plan, err
	}
	dev := "/dev/" + m.Devices[0]
	key, _ := c.key().bytes()
	_, err = slotOf(dev, key)
	clear(key)
	if err != nil {
		return plan, invalid(fmt.Errorf("the key given would not reopen %s: %w", c.Name, err))
	}
	plan.Undo = closeUndo{Device: dev, UUID: uuid}
	return plan, nil
}

func doClose(ctx context.Context, env *atomic.Env, c Close, _ closeUndo) (struct{}, error) {
	return struct{}{}, closeMapping(ctx, env.Runner, c.Name)
}

func undoClose(ctx context.Context, env *atomic.Env, c Close, u closeUndo, _ struct{}) error {
	if _, err := Mapping(ctx, env.Runner, c.Name); err == nil {
		return nil
	} else if !errors.Is(err, ErrNoMapping) {
		return err
	}
	return openMapping(ctx, env, u.Device, c.Name, BackendCryptsetup, false, c.key())
}

func checkClose(ctx context.Context, env *atomic.Env, c Close, _ closeUndo) (bool, struct{}, error) {
	_, err := Mapping(ctx, env.Runner, c.Name)
	if errors.Is(err, ErrNoMapping) {
		return true, struct{}{}, nil
	}
	return false, struct{}{}, err
}

func init() {
	atomic.Register(atomic.Def[Open, openUndo, Opened]{
		Doc:     "open a LUKS device as /dev/mapper/NAME (luks.go or cryptsetup); undo closes that mapping",
		Prepare: prepareOpen,
		Do:      doOpen,
		Undo:    undoOpen,
		Check:   checkOpen,
	})
	atomic.Register(atomic.Def[Close, closeUndo, struct{}]{
		Doc:     "close a LUKS mapping; undo reopens it with the key given",
		Prepare: prepareClose,
		Do:      doClose,
		Undo:    undoClose,
		Check:   checkClose,
	})
}
