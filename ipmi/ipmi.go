// Package ipmi controls BMCs through ipmitool over the lanplus, lan or
// local open interface: chassis power and status, the boot device, sensors
// (SDR), the SEL, MC info, LAN and user settings.
//
// The BMC password never appears in argv, logs, journals or error text: it
// reaches ipmitool through the environment (-E, IPMI_PASSWORD) when given
// as a run.Secret, or through a file (-f) when the BMC names one. Steps
// journal only the password file's path, so a transaction can be rolled
// back from its journal alone. UDP timeouts and retries are -N and -R.
// A session that cannot be established is diagnosed with a verbose probe
// and reported as ErrAuth (wrong user or password) or ErrUnreachable
// (no answer), never the same message for both.
//
// ipmitool prints text for everything used here; the parsers read the
// formats captured from ipmitool 1.8.19 under testdata/ipmi.
//
// Step kinds:
//
//   - ipmi.power: power on, off or soft (ACPI) off; undo restores the power
//     state probed before the step.
//   - ipmi.power.cycle: power cycle or hard reset; irreversible (a reboot
//     cannot be taken back), so it runs at commit, after every reversible
//     step (e.g. after ipmi.bootdev) succeeded.
//   - ipmi.bootdev: set the boot device (pxe, disk, cdrom, bios, none), for
//     the next boot or persistently, legacy or UEFI; undo restores the boot
//     flags read before the step (chassis bootparam get 5).
package ipmi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bofhkit/bofh/run"
)

// Errors a command's failure is classified as.
var (
	// ErrAuth is a BMC that answered but refused the user or password.
	ErrAuth = errors.New("BMC refused the user name or password")
	// ErrUnreachable is a BMC that did not answer.
	ErrUnreachable = errors.New("BMC unreachable (no answer)")
	// ErrNoDevice is the local open interface without /dev/ipmi0.
	ErrNoDevice = errors.New("no local IPMI device (load ipmi_si and ipmi_devintf)")
)

// Interfaces ipmitool is used with.
var interfaces = []string{"lanplus", "lan", "open"}

// BMC says how to reach a BMC. It is part of every step's parameters, so
// it holds the password file's path, never a password, unless Password is
// set from Go (which journals as "<redacted>" and cannot be replayed).
type BMC struct {
	Address      string     `json:"address,omitempty" yaml:"address" doc:"host name or IP of the BMC (lan, lanplus)"`
	Port         int        `json:"port,omitempty" yaml:"port" doc:"UDP port (default 623)"`
	User         string     `json:"user,omitempty" yaml:"user" doc:"user name"`
	PasswordFile string     `json:"password_file,omitempty" yaml:"password_file" doc:"file holding the password (passed with -f)"`
	Password     run.Secret `json:"password,omitempty" yaml:"-" doc:"password (Go callers; passed through the environment)"`
	Interface    string     `json:"interface,omitempty" yaml:"interface" doc:"lanplus (default), lan or open"`
	Cipher       int        `json:"cipher,omitempty" yaml:"cipher" doc:"lanplus cipher suite (-C); 0: ipmitool's choice"`
	Timeout      int        `json:"timeout,omitempty" yaml:"timeout" doc:"seconds per UDP try (-N, default 2)"`
	Retries      int        `json:"retries,omitempty" yaml:"retries" doc:"UDP retries (-R, default 3)"`
}

func (b BMC) iface() string {
	if b.Interface == "" {
		return "lanplus"
	}
	return b.Interface
}

// Validate checks the BMC's parameters without touching the network.
func (b BMC) Validate() error {
	if !slices.Contains(interfaces, b.iface()) {
		return fmt.Errorf("interface %q: want lanplus, lan or open", b.Interface)
	}
	if b.iface() == "open" {
		return nil
	}
	if b.Address == "" {
		return errors.New("address is required for lan and lanplus")
	}
	if strings.HasPrefix(b.Address, "-") || strings.ContainsAny(b.Address, " \t\n/") {
		return fmt.Errorf("address %q is not a host name or IP address", b.Address)
	}
	if net.ParseIP(b.Address) == nil {
		for _, label := range strings.Split(strings.TrimSuffix(b.Address, "."), ".") {
			if label == "" || len(label) > 63 {
				return fmt.Errorf("address %q is not a host name or IP address", b.Address)
			}
		}
	}
	if b.Port < 0 || b.Port > 65535 {
		return fmt.Errorf("port %d out of range", b.Port)
	}
	if b.User == "" || len(b.User) > 16 || strings.HasPrefix(b.User, "-") {
		return fmt.Errorf("user %q: want 1 to 16 characters", b.User)
	}
	if b.PasswordFile != "" && b.Password != "" {
		return errors.New("give password or password_file, not both")
	}
	if b.PasswordFile == "" && b.Password == "" {
		return errors.New("a password_file (or password) is required")
	}
	if b.Password == run.Redacted {
		return errors.New("the password was redacted (read back from a journal); use password_file")
	}
	if b.PasswordFile != "" && !strings.HasPrefix(b.PasswordFile, "/") {
		return fmt.Errorf("password_file %q: want an absolute path", b.PasswordFile)
	}
	if b.Cipher < 0 || b.Cipher > 17 || b.Timeout < 0 || b.Timeout > 300 || b.Retries < 0 || b.Retries > 20 {
		return errors.New("cipher must be 0-17, timeout 0-300 s, retries 0-20")
	}
	return nil
}

// validateStep is Validate for step parameters: they are journaled and
// undone from the journal, where a Secret reads back as "<redacted>", so
// a step takes its password from password_file only.
func (b BMC) validateStep() error {
	if b.Password != "" {
		return errors.New("steps take the BMC password from password_file (a password given inline cannot be journaled for the undo)")
	}
	return b.Validate()
}

// checkPasswordFile verifies the password file can be read (before the
// first command).
func (b BMC) checkPasswordFile() error {
	if b.PasswordFile == "" || b.iface() == "open" {
		return nil
	}
	f, err := os.Open(b.PasswordFile)
	if err != nil {
		return fmt.Errorf("password_file: %w", err)
	}
	return f.Close()
}

// String names the BMC for messages.
func (b BMC) String() string {
	if b.iface() == "open" {
		return "local BMC"
	}
	if b.Port != 0 && b.Port != 623 {
		return fmt.Sprintf("BMC %s:%d", b.Address, b.Port)
	}
	return "BMC " + b.Address
}

// Client runs ipmitool against one BMC.
type Client struct {
	BMC    BMC
	Runner run.Runner
}

// New returns a client for b using r.
func New(b BMC, r run.Runner) *Client { return &Client{BMC: b, Runner: r} }

func (c *Client) base(verbose bool) []string {
	b := c.BMC
	argv := []string{"ipmitool", "-I", b.iface()}
	if b.iface() != "open" {
		argv = append(argv, "-H", b.Address)
		if b.Port != 0 {
			argv = append(argv, "-p", strconv.Itoa(b.Port))
		}
		argv = append(argv, "-U", b.User)
		if b.PasswordFile != "" {
			argv = append(argv, "-f", b.PasswordFile)
		} else {
			argv = append(argv, "-E")
		}
		if b.Cipher != 0 && b.iface() == "lanplus" {
			argv = append(argv, "-C", strconv.Itoa(b.Cipher))
		}
		to, rt := b.Timeout, b.Retries
		if to == 0 {
			to = 2
		}
		if rt == 0 {
			rt = 3
		}
		argv = append(argv, "-N", strconv.Itoa(to), "-R", strconv.Itoa(rt))
	}
	if verbose {
		argv = append(argv, "-v")
	}
	return argv
}

func (c *Client) cmd(kind run.Kind, verbose bool, args ...string) run.Cmd {
	cmd := run.Cmd{Argv: append(c.base(verbose), args...), Kind: kind}
	if c.BMC.Password != "" && c.BMC.iface() != "open" {
		cmd.Env = []string{"IPMI_PASSWORD=" + c.BMC.Password.Reveal()}
		cmd.Secrets = []run.Secret{c.BMC.Password}
	}
	to, rt := c.BMC.Timeout, c.BMC.Retries
	if to == 0 {
		to = 2
	}
	if rt == 0 {
		rt = 3
	}
	cmd.Timeout = time.Duration(to*(rt+1)*4+30) * time.Second
	return cmd
}

// Query runs a read-only ipmitool command and returns its stdout.
func (c *Client) Query(ctx context.Context, args ...string) (string, error) {
	res, err := c.Runner.Run(ctx, c.cmd(run.Query, false, args...))
	if err != nil {
		return "", c.classify(ctx, err)
	}
	return string(res.Stdout), nil
}

// Mutate runs an ipmitool command that changes the BMC's state.
func (c *Client) Mutate(ctx context.Context, args ...string) error {
	_, err := c.Runner.Run(ctx, c.cmd(run.Mutation, false, args...))
	if err != nil {
		return c.classify(ctx, err)
	}
	return nil
}

// sessionFailed reports a failure to establish a session (either cause).
func sessionFailed(err error) bool {
	return run.StderrContains(err, "Unable to establish", "Error issuing Get Channel Authentication")
}

// Classify maps ipmitool's standard error (of a -v run) to ErrAuth,
// ErrUnreachable or ErrNoDevice; nil if it says neither.
func Classify(stderr string) error {
	s := strings.ToLower(stderr)
	switch {
	case strings.Contains(s, "could not open device"):
		return ErrNoDevice
	case strings.Contains(s, "rakp 2 hmac is invalid"), strings.Contains(s, "unauthorized name"),
		strings.Contains(s, "invalid user name"), strings.Contains(s, "activate session command failed"),
		strings.Contains(s, "insufficient resources for session"), strings.Contains(s, "invalid session id"),
		strings.Contains(s, "rakp 4 message has invalid integrity check"), strings.Contains(s, "invalid authentication"):
		return ErrAuth
	case strings.Contains(s, "get auth capabilities"), strings.Contains(s, "no response from remote controller"),
		strings.Contains(s, "unable to send"), strings.Contains(s, "address lookup"):
		return ErrUnreachable
	}
	return nil
}

// classify turns a failed command's error into ErrAuth/ErrUnreachable
// when the session could not be established: plain ipmitool prints the
// same line for both, so a verbose probe tells them apart.
func (c *Client) classify(ctx context.Context, err error) error {
	if e := Classify(stderrOf(err)); e != nil {
		return fmt.Errorf("%s: %w: %w", c.BMC, e, err)
	}
	if !sessionFailed(err) {
		return fmt.Errorf("%s: %w", c.BMC, err)
	}
	_, perr := c.Runner.Run(ctx, c.cmd(run.Query, true, "chassis", "power", "status"))
	if e := Classify(stderrOf(perr)); e != nil {
		return fmt.Errorf("%s: %w: %w", c.BMC, e, err)
	}
	return fmt.Errorf("%s: %w", c.BMC, err)
}

func stderrOf(err error) string {
	var e *run.Error
	if errors.As(err, &e) {
		return e.Stderr
	}
	return ""
}

func secretOf(b []byte) run.Secret { return run.Secret(b) }
