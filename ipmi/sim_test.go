package ipmi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
	"github.com/bofhkit/bofh/run"
)

const simPassword = "s3cr3tpass"

// simOpsPassword is user 3 ("ops")'s password, changed by TestSimUserPassword.
const simOpsPassword = "0ldpass"

// sim is an ipmi_sim BMC simulator on a free loopback UDP port; its
// chassis control script keeps power and boot device in files.
type sim struct {
	dir string
	bmc BMC
}

const chassisScript = `#!/bin/sh
dir=$(dirname "$0")
mc=$1; op=$2; shift 2
case $op in
get) for p in "$@"; do echo "$p:$(cat "$dir/$p" 2>/dev/null || echo 0)"; done ;;
set) while [ $# -ge 2 ]; do echo "$2" > "$dir/$1"; shift 2; done ;;
esac
`

const emu = `mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
mc_setbmc 0x20
sel_enable 0x20 1000 0x0a
main_sdr_add 0x20 0x01 0x00 0x51 0x01 0x33 0x20 0x00 0x01 0x03 0x01 0x67 0x44 0x01 0x01 0x00 0x00 0x00 0x00 0x3f 0x00 0x00 0x01 0x00 0x00 0x01 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0xff 0x00 0x64 0x5a 0x50 0x00 0x05 0x0a 0x00 0x00 0x00 0x00 0x00 0xc8 0x43 0x50 0x55 0x20 0x54 0x65 0x6d 0x70
sensor_add 0x20 0 1 0x01 0x01
sensor_set_threshold 0x20 0 1 readable 111111 0x64 0x5a 0x50 0x00 0x05 0x0a
sensor_set_value 0x20 0 1 45 0
mc_enable 0x20
`

func freeUDPPort(t *testing.T) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// startSim starts ipmi_sim; a missing simulator fails the test (see
// deps/ipmi.txt), it never skips silently.
func startSim(t *testing.T) *sim {
	t.Helper()
	for _, p := range []string{"ipmi_sim", "ipmitool"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is needed for the BMC simulator tests (apt-get install openipmi ipmitool; see deps/ipmi.txt): %v", p, err)
		}
	}
	dir := t.TempDir()
	port := freeUDPPort(t)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "chassis.sh"), []byte(chassisScript), 0o755))
	must(os.WriteFile(filepath.Join(dir, "power"), []byte("0\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "boot"), []byte("none\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "sim.emu"), []byte(emu), 0o644))
	must(os.WriteFile(filepath.Join(dir, "pw"), []byte(simPassword+"\n"), 0o600))
	must(os.Mkdir(filepath.Join(dir, "state"), 0o700))
	conf := fmt.Sprintf(`name "bofhtest"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 %d
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "%s/chassis.sh 0x20"
  user 2 true "admin" %q admin 10 none md2 md5 straight
  user 3 true "ops" %q admin 10 none md2 md5 straight
`, port, dir, simPassword, simOpsPassword)
	must(os.WriteFile(filepath.Join(dir, "lan.conf"), []byte(conf), 0o600))
	cmd := exec.Command("ipmi_sim", "-c", filepath.Join(dir, "lan.conf"), "-f", filepath.Join(dir, "sim.emu"), "-s", filepath.Join(dir, "state"), "-n")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	// ipmi_sim dies with the test binary, even a SIGKILLed one
	must(hosttest.StartDaemon(cmd))
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); _ = cmd.Wait() })
	s := &sim{dir: dir, bmc: BMC{Address: "127.0.0.1", Port: port, User: "admin", PasswordFile: filepath.Join(dir, "pw"), Cipher: 3, Timeout: 2, Retries: 2}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := New(s.bmc, &run.Local{}).PowerStatus(context.Background())
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("ipmi_sim did not come up: %v\n%s", err, out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (s *sim) state(t *testing.T) string {
	t.Helper()
	var parts []string
	for _, f := range []string{"power", "boot"} {
		b, err := os.ReadFile(filepath.Join(s.dir, f))
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, f+"="+strings.TrimSpace(string(b)))
	}
	return strings.Join(parts, " ")
}

func TestSimQueries(t *testing.T) {
	s := startSim(t)
	ctx := context.Background()
	c := New(s.bmc, &run.Local{})
	if on, err := c.PowerStatus(ctx); err != nil || on {
		t.Errorf("power: %v %v", on, err)
	}
	rs, err := c.SDR(ctx)
	if err != nil || len(rs) != 1 || rs[0].Name != "CPU Temp" || rs[0].Value == nil || *rs[0].Value != 45 {
		t.Errorf("sdr: %+v %v", rs, err)
	}
	ss, err := c.Sensors(ctx)
	if err != nil || len(ss) != 1 || ss[0].UCR == nil || *ss[0].UCR != 90 {
		t.Errorf("sensors: %+v %v", ss, err)
	}
	if mc, err := c.MCInfo(ctx); err != nil || mc.IPMIVersion != "2.0" {
		t.Errorf("mc info: %+v %v", mc, err)
	}
	if us, err := c.Users(ctx, 1); err != nil || len(us) != 2 || us[0].Name != "admin" || us[1].Name != "ops" || us[1].ID != 3 || us[0].PrivLimit != "ADMINISTRATOR" {
		t.Errorf("users: %+v %v", us, err)
	}
	if l, err := c.LAN(ctx, 1); err != nil || l.Channel != 1 || l.IP != "0.0.0.0" || l.VLAN != 0 || len(l.CipherSuites) != 15 || l.CipherSuites[2] != 3 || l.CipherPrivMax != "aaaaaaaaaaaaaaa" {
		t.Errorf("lan print: %+v %v", l, err)
	}
	if err := c.ClearSEL(ctx); err != nil {
		t.Errorf("sel clear: %v", err)
	}
	if ev, err := c.SEL(ctx); err != nil || len(ev) != 0 {
		t.Errorf("sel after clear: %+v %v", ev, err)
	}
	// lan as well as lanplus
	lan := s.bmc
	lan.Interface, lan.Cipher = "lan", 0
	if _, err := New(lan, &run.Local{}).PowerStatus(ctx); err != nil {
		t.Errorf("lan interface: %v", err)
	}
}

func TestSimErrors(t *testing.T) {
	s := startSim(t)
	ctx := context.Background()
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("not-the-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	closed := freeUDPPort(t)
	for _, iface := range []string{"lanplus", "lan"} {
		bad := s.bmc
		bad.Interface, bad.PasswordFile = iface, wrong
		_, err := New(bad, &run.Local{}).PowerStatus(ctx)
		if !errors.Is(err, ErrAuth) || errors.Is(err, ErrUnreachable) {
			t.Errorf("%s wrong password: %v, want ErrAuth", iface, err)
		}
		if err != nil && strings.Contains(err.Error(), "not-the-password") {
			t.Errorf("password in error: %v", err)
		}
		gone := s.bmc
		gone.Interface, gone.Port = iface, closed
		gone.Timeout, gone.Retries = 1, 0 // nothing answers: no need to wait long
		_, err = New(gone, &run.Local{}).PowerStatus(ctx)
		if !errors.Is(err, ErrUnreachable) || errors.Is(err, ErrAuth) {
			t.Errorf("%s closed port: %v, want ErrUnreachable", iface, err)
		}
	}
}

func simRecipe(b BMC) []atomic.Params {
	return []atomic.Params{
		BootDev{BMC: b, Device: "pxe", Persistent: true, EFI: true},
		Power{BMC: b, Action: "on"},
		BootDev{BMC: b, Device: "cdrom"},
		Power{BMC: b, Action: "off"},
		Power{BMC: b, Action: "on"},
	}
}

func runSim(ctx context.Context, b BMC, opts ...atomic.Option) error {
	return atomic.Run(ctx, "ipmi-recipe", func(tx *atomic.Tx) error {
		for _, p := range simRecipe(b) {
			if err := tx.Do(ctx, p, nil); err != nil {
				return err
			}
		}
		return nil
	}, opts...)
}

// TestSimRecipe: power and boot device changes against the simulator; a
// failure injected before and after every step rolls back to the start.
func TestSimRecipe(t *testing.T) {
	s := startSim(t)
	ctx := context.Background()
	start := s.state(t)
	for i := 1; i <= len(simRecipe(s.bmc)); i++ {
		for _, phase := range []string{"before", "after"} {
			fp := fmt.Sprintf("%d:%s:error", i, phase)
			err := runSim(ctx, s.bmc, atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints(fp))
			if !errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != atomic.ExitRolledBack {
				t.Fatalf("%s: %v (exit %d)", fp, err, atomic.ExitCode(err))
			}
			if now := s.state(t); now != start {
				t.Fatalf("%s: state %s, want %s", fp, now, start)
			}
		}
	}
	if err := runSim(ctx, s.bmc, atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints("")); err != nil {
		t.Fatal(err)
	}
	if got := s.state(t); got != "power=1 boot=cdrom" {
		t.Fatalf("end state %s", got)
	}
	// power cycle is irreversible: it runs at commit, after the rest
	err := atomic.Run(ctx, "cycle", func(tx *atomic.Tx) error {
		if err := tx.Do(ctx, PowerCycle{BMC: s.bmc, Action: "reset"}, nil); err != nil {
			return err
		}
		return tx.Do(ctx, BootDev{BMC: s.bmc, Device: "pxe"}, nil)
	}, atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints(""))
	if err != nil {
		t.Fatal(err)
	}
}

const childEnv = "BOFH_IPMI_CRASH_CHILD"

// TestCrashChild is the child of TestSimKill.
func TestCrashChild(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		t.Skip("helper process for TestSimKill")
	}
	f := strings.Split(spec, "|")
	var port int
	fmt.Sscan(f[3], &port)
	b := BMC{Address: "127.0.0.1", Port: port, User: "admin", PasswordFile: f[2], Cipher: 3, Timeout: 2, Retries: 2}
	err := runSim(context.Background(), b, atomic.WithStateDir(f[0]), atomic.WithID(f[1]))
	t.Fatalf("not killed: %v", err)
}

// TestSimKill kills a child process before and after every step; rolling
// back its journal returns the simulator to its starting state.
func TestSimKill(t *testing.T) {
	s := startSim(t)
	start := s.state(t)
	for i := 1; i <= len(simRecipe(s.bmc)); i++ {
		for _, phase := range []string{"before", "after"} {
			fp := fmt.Sprintf("%d:%s:kill", i, phase)
			dir, id := t.TempDir(), fmt.Sprintf("ipmi-kill-%d-%s", i, phase)
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%s|%s|%d", childEnv, dir, id, s.bmc.PasswordFile, s.bmc.Port), atomic.FailEnv+"="+fp)
			out, err := hosttest.CombinedOutput(cmd) // dies with this test binary
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != -1 {
				t.Fatalf("%s: child not killed: %v\n%s", fp, err, out)
			}
			if err := atomic.RollbackID(context.Background(), id, nil, atomic.WithStateDir(dir), atomic.WithFailpoints("")); err != nil {
				t.Fatalf("%s: rollback: %v", fp, err)
			}
			if now := s.state(t); now != start {
				t.Fatalf("%s: state %s, want %s", fp, now, start)
			}
		}
	}
}

// TestSimUserPassword: admin sets user 3's password through the Client;
// ops then authenticates with the new password, and the old one is
// refused with ErrAuth.
func TestSimUserPassword(t *testing.T) {
	s := startSim(t)
	ctx := context.Background()
	pwFile := func(pw string) string {
		f := filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(f, []byte(pw+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	ops := s.bmc
	ops.User, ops.PasswordFile = "ops", pwFile(simOpsPassword)
	if _, err := New(ops, &run.Local{}).PowerStatus(ctx); err != nil {
		t.Fatalf("ops with the old password before the change: %v", err)
	}
	if err := New(s.bmc, &run.Local{}).SetUserPassword(ctx, 3, []byte("N3w-pass.16chars")); err != nil {
		t.Fatalf("set password: %v", err)
	}
	neu := ops
	neu.PasswordFile = pwFile("N3w-pass.16chars")
	for _, iface := range []string{"lanplus", "lan"} {
		n, o := neu, ops
		n.Interface, o.Interface = iface, iface
		if iface == "lan" {
			n.Cipher, o.Cipher = 0, 0
		}
		if _, err := New(n, &run.Local{}).PowerStatus(ctx); err != nil {
			t.Errorf("%s: ops with the new password: %v", iface, err)
		}
		_, err := New(o, &run.Local{}).PowerStatus(ctx)
		if !errors.Is(err, ErrAuth) {
			t.Errorf("%s: ops with the old password: %v, want ErrAuth", iface, err)
		}
		if err != nil && (strings.Contains(err.Error(), simOpsPassword) || strings.Contains(err.Error(), "N3w-pass")) {
			t.Errorf("password in error: %v", err)
		}
	}
	// admin is unaffected
	if _, err := New(s.bmc, &run.Local{}).PowerStatus(ctx); err != nil {
		t.Errorf("admin after the change: %v", err)
	}
}
