package ipmi

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
	atomic.Register(atomic.Def[Power, powerUndo, PowerResult]{
		Doc:     "power a machine on, off, or soft-off through its BMC; undo restores the power state probed before",
		Prepare: preparePower,
		Do:      doPower,
		Undo:    undoPower,
		Check:   checkPower,
	})
	atomic.Register(atomic.Def[PowerCycle, struct{}, PowerResult]{
		Doc:          "power cycle or hard reset a machine through its BMC; irreversible (a reboot cannot be taken back): runs at commit",
		Irreversible: true,
		Prepare:      prepareCycle,
		Do:           doCycle,
	})
	atomic.Register(atomic.Def[BootDev, BootFlags, BootFlags]{
		Doc:     "set the boot device (next boot or persistent, legacy or UEFI); undo restores the boot flags read before",
		Prepare: prepareBootDev,
		Do:      doBootDev,
		Undo:    undoBootDev,
		Check:   checkBootDev,
	})
}

// PowerStatus returns whether the chassis power is on.
func (c *Client) PowerStatus(ctx context.Context) (bool, error) {
	out, err := c.Query(ctx, "chassis", "power", "status")
	if err != nil {
		return false, err
	}
	return ParsePower(out)
}

// SetPower runs `chassis power <action>` (on, off, soft, cycle, reset).
func (c *Client) SetPower(ctx context.Context, action string) error {
	return c.Mutate(ctx, "chassis", "power", action)
}

// BootFlags reads boot parameter 5.
func (c *Client) BootFlags(ctx context.Context) (BootFlags, error) {
	out, err := c.Query(ctx, "chassis", "bootparam", "get", "5")
	if err != nil {
		return BootFlags{}, err
	}
	return ParseBootFlags(out)
}

// SetBootDev sets the boot device with `chassis bootdev`.
func (c *Client) SetBootDev(ctx context.Context, f BootFlags) error {
	args := []string{"chassis", "bootdev", f.Device}
	var opts []string
	if f.Persistent {
		opts = append(opts, "persistent")
	}
	if f.EFI {
		opts = append(opts, "efiboot")
	}
	if len(opts) > 0 && f.Device != "none" {
		o := "options=" + opts[0]
		for _, x := range opts[1:] {
			o += "," + x
		}
		args = append(args, o)
	}
	return c.Mutate(ctx, args...)
}

// SDR reads every sensor with `sdr elist`.
func (c *Client) SDR(ctx context.Context) ([]Reading, error) {
	out, err := c.Query(ctx, "sdr", "elist")
	if err != nil {
		return nil, err
	}
	return ParseSDR(out)
}

// Sensors reads every sensor with its thresholds (`sensor`).
func (c *Client) Sensors(ctx context.Context) ([]Sensor, error) {
	out, err := c.Query(ctx, "sensor")
	if err != nil {
		return nil, err
	}
	return ParseSensors(out)
}

// SEL lists the system event log (`sel elist`).
func (c *Client) SEL(ctx context.Context) ([]Event, error) {
	out, err := c.Query(ctx, "sel", "elist")
	if err != nil {
		return nil, err
	}
	return ParseSEL(out)
}

// ClearSEL clears the system event log. It is not a step: a cleared log
// cannot be restored.
func (c *Client) ClearSEL(ctx context.Context) error { return c.Mutate(ctx, "sel", "clear") }

// MCInfo reads `mc info`.
func (c *Client) MCInfo(ctx context.Context) (MCInfo, error) {
	out, err := c.Query(ctx, "mc", "info")
	if err != nil {
		return MCInfo{}, err
	}
	return ParseMCInfo(out)
}

// ChassisStatus reads `chassis status` as its fields.
func (c *Client) ChassisStatus(ctx context.Context) (map[string]string, error) {
	out, err := c.Query(ctx, "chassis", "status")
	if err != nil {
		return nil, err
	}
	return ParseFields(out), nil
}

// LAN reads `lan print <channel>`.
func (c *Client) LAN(ctx context.Context, channel int) (LANConfig, error) {
	if err := validChannel(channel); err != nil {
		return LANConfig{}, err
	}
	out, err := c.Query(ctx, "lan", "print", strconv.Itoa(channel))
	if err != nil {
		return LANConfig{}, err
	}
	return ParseLAN(channel, out)
}

// validChannel checks an IPMI channel number (0-15; 14 and 15 are the
// current and system interface channels).
func validChannel(ch int) error {
	if ch < 0 || ch > 15 {
		return fmt.Errorf("%w: channel %d: want 0 to 15", atomic.ErrInvalid, ch)
	}
	return nil
}

// Users lists the users of a channel (`user list <channel>`).
func (c *Client) Users(ctx context.Context, channel int) ([]User, error) {
	if err := validChannel(channel); err != nil {
		return nil, err
	}
	out, err := c.Query(ctx, "user", "list", strconv.Itoa(channel))
	if err != nil {
		return nil, err
	}
	return ParseUsers(out)
}

// SetUserPassword sets user id's password. The new password reaches
// ipmitool on its standard input, read as a command file (`ipmitool exec
// /dev/stdin`), so it is never in argv (ipmitool would otherwise take it
// as an argument or prompt on the terminal) and never written to disk.
// Passwords longer than 16 characters are stored as IPMI 2.0 20-byte
// passwords.
func (c *Client) SetUserPassword(ctx context.Context, id int, password []byte) error {
	if err := validUserPassword(id, password); err != nil {
		return err
	}
	size := "16"
	if len(password) > 16 {
		size = "20"
	}
	cmd := c.cmd(run.Mutation, false, "exec", "/dev/stdin")
	cmd.Stdin = []byte("user set password " + strconv.Itoa(id) + " " + string(password) + " " + size + "\n")
	cmd.Secrets = append(cmd.Secrets, secretOf(password))
	if _, err := c.Runner.Run(ctx, cmd); err != nil {
		return c.classify(ctx, err)
	}
	return nil
}

// validUserPassword checks a user id and a new password: 1 to 20
// printable characters, none that ipmitool's command-file reader splits
// on or treats specially.
func validUserPassword(id int, password []byte) error {
	if id < 1 || id > 63 {
		return fmt.Errorf("%w: user id %d: want 1 to 63", atomic.ErrInvalid, id)
	}
	if len(password) == 0 || len(password) > 20 || slices.ContainsFunc(password, func(b byte) bool { return b <= ' ' || b >= 0x7f || b == '"' || b == '\'' || b == '#' }) {
		return fmt.Errorf("%w: the new password must be 1 to 20 printable characters without spaces, quotes or '#'", atomic.ErrInvalid)
	}
	return nil
}

// Power is the ipmi.power step.
type Power struct {
	BMC
	Action string `json:"action" doc:"on, off, or soft (ACPI shutdown request)"`
}

// StepKind names the kind.
func (Power) StepKind() string { return "ipmi.power" }

// Validate checks the parameters without touching the network.
func (p Power) Validate() error {
	if err := p.BMC.validateStep(); err != nil {
		return err
	}
	if !slices.Contains([]string{"on", "off", "soft"}, p.Action) {
		return fmt.Errorf("power action %q: want on, off or soft (cycle and reset are ipmi.power.cycle)", p.Action)
	}
	return nil
}

// PowerResult is the power state after the step.
type PowerResult struct {
	On bool `json:"on"`
}

type powerUndo struct {
	WasOn bool `json:"was_on"`
}

func (p Power) wantOn() bool { return p.Action == "on" }

func preparePower(ctx context.Context, env *atomic.Env, p Power) (atomic.Plan[powerUndo, PowerResult], error) {
	var plan atomic.Plan[powerUndo, PowerResult]
	if err := p.checkPasswordFile(); err != nil {
		return plan, fmt.Errorf("%w: %w", atomic.ErrInvalid, err)
	}
	on, err := New(p.BMC, env.Runner).PowerStatus(ctx)
	if err != nil {
		return plan, err
	}
	plan.Undo.WasOn = on
	if on == p.wantOn() {
		plan.Noop, plan.Result = true, PowerResult{On: on}
	}
	return plan, nil
}

func doPower(ctx context.Context, env *atomic.Env, p Power, _ powerUndo) (PowerResult, error) {
	if err := New(p.BMC, env.Runner).SetPower(ctx, p.Action); err != nil {
		return PowerResult{}, err
	}
	return PowerResult{On: p.wantOn()}, nil
}

func undoPower(ctx context.Context, env *atomic.Env, p Power, u powerUndo, _ PowerResult) error {
	c := New(p.BMC, env.Runner)
	on, err := c.PowerStatus(ctx)
	if err != nil {
		return err
	}
	if on == u.WasOn {
		return nil
	}
	action := "off"
	if u.WasOn {
		action = "on"
	}
	return c.SetPower(ctx, action)
}

func checkPower(ctx context.Context, env *atomic.Env, p Power, u powerUndo) (bool, PowerResult, error) {
	on, err := New(p.BMC, env.Runner).PowerStatus(ctx)
	if err != nil {
		return false, PowerResult{}, err
	}
	// soft off may still be on its way: "present" when the state moved
	return on != u.WasOn, PowerResult{On: on}, nil
}

// PowerCycle is the ipmi.power.cycle step.
type PowerCycle struct {
	BMC
	Action string `json:"action" doc:"cycle (off, then on) or reset (hard reset)"`
}

// StepKind names the kind.
func (PowerCycle) StepKind() string { return "ipmi.power.cycle" }

// Validate checks the parameters without touching the network.
func (p PowerCycle) Validate() error {
	if err := p.BMC.validateStep(); err != nil {
		return err
	}
	if p.Action != "cycle" && p.Action != "reset" {
		return fmt.Errorf("power action %q: want cycle or reset", p.Action)
	}
	return nil
}

func prepareCycle(ctx context.Context, env *atomic.Env, p PowerCycle) (atomic.Plan[struct{}, PowerResult], error) {
	var plan atomic.Plan[struct{}, PowerResult]
	if err := p.checkPasswordFile(); err != nil {
		return plan, fmt.Errorf("%w: %w", atomic.ErrInvalid, err)
	}
	on, err := New(p.BMC, env.Runner).PowerStatus(ctx)
	if err != nil {
		return plan, err
	}
	if !on {
		return plan, fmt.Errorf("%w: %s: power is off; a %s needs it on (use ipmi.power on)", atomic.ErrInvalid, p.BMC, p.Action)
	}
	return plan, nil
}

func doCycle(ctx context.Context, env *atomic.Env, p PowerCycle, _ struct{}) (PowerResult, error) {
	if err := New(p.BMC, env.Runner).SetPower(ctx, p.Action); err != nil {
		return PowerResult{}, err
	}
	return PowerResult{On: true}, nil
}

// BootDev is the ipmi.bootdev step.
type BootDev struct {
	BMC
	Device     string `json:"device" doc:"pxe, disk, cdrom, bios, safe, diag, floppy or none (clear the override)"`
	Persistent bool   `json:"persistent,omitempty" doc:"for every boot, not only the next"`
	EFI        bool   `json:"efi,omitempty" doc:"UEFI boot (options=efiboot)"`
}

// StepKind names the kind.
func (BootDev) StepKind() string { return "ipmi.bootdev" }

var settableDevices = []string{"none", "pxe", "disk", "safe", "diag", "cdrom", "bios", "floppy"}

// Validate checks the parameters without touching the network.
func (b BootDev) Validate() error {
	if err := b.BMC.validateStep(); err != nil {
		return err
	}
	if !slices.Contains(settableDevices, b.Device) {
		return fmt.Errorf("boot device %q: want one of %v", b.Device, settableDevices)
	}
	if b.Device == "none" && (b.Persistent || b.EFI) {
		return errors.New("device none takes no persistent or efi option")
	}
	return nil
}

func (b BootDev) flags() BootFlags {
	return BootFlags{Valid: true, Persistent: b.Persistent, EFI: b.EFI, Device: b.Device}.Effective()
}

func prepareBootDev(ctx context.Context, env *atomic.Env, b BootDev) (atomic.Plan[BootFlags, BootFlags], error) {
	var plan atomic.Plan[BootFlags, BootFlags]
	if err := b.checkPasswordFile(); err != nil {
		return plan, fmt.Errorf("%w: %w", atomic.ErrInvalid, err)
	}
	cur, err := New(b.BMC, env.Runner).BootFlags(ctx)
	if err != nil {
		return plan, err
	}
	plan.Undo = cur.Effective()
	if plan.Undo == b.flags() {
		plan.Noop, plan.Result = true, plan.Undo
	}
	return plan, nil
}

func doBootDev(ctx context.Context, env *atomic.Env, b BootDev, _ BootFlags) (BootFlags, error) {
	f := b.flags()
	if err := New(b.BMC, env.Runner).SetBootDev(ctx, f); err != nil {
		return BootFlags{}, err
	}
	return f, nil
}

func undoBootDev(ctx context.Context, env *atomic.Env, b BootDev, u BootFlags, _ BootFlags) error {
	c := New(b.BMC, env.Runner)
	cur, err := c.BootFlags(ctx)
	if err != nil {
		return err
	}
	if cur.Effective() == u.Effective() {
		return nil
	}
	prev := u.Effective()
	if !prev.Valid {
		// the flags were not in force: no override is what the BMC did
		prev = BootFlags{Device: "none"}
	}
	if !slices.Contains(settableDevices, prev.Device) {
		return fmt.Errorf("%s: previous boot device %q cannot be set back with chassis bootdev", b.BMC, prev.Device)
	}
	return c.SetBootDev(ctx, prev)
}

// checkBootDev: the effect is present when the flags moved away from what
// they were (some BMCs, ipmi_sim among them, never report the flags valid).
func checkBootDev(ctx context.Context, env *atomic.Env, b BootDev, u BootFlags) (bool, BootFlags, error) {
	cur, err := New(b.BMC, env.Runner).BootFlags(ctx)
	if err != nil {
		return false, BootFlags{}, err
	}
	return cur.Effective() != u.Effective(), cur.Effective(), nil
}
