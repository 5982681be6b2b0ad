package ipmi

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

var conn = []string{"ipmitool", "-I", "lanplus", "-H", "10.0.0.7", "-U", "admin", "-E", "-N", "2", "-R", "3"}

func fileConn(pw string) []string {
	return []string{"ipmitool", "-I", "lanplus", "-H", "10.0.0.7", "-U", "admin", "-f", pw, "-N", "2", "-R", "3"}
}

func argv(args ...string) []string { return append(append([]string{}, conn...), args...) }

// TestTranscriptRecipe: bootdev then power on, failing after every step,
// gives exactly the reverse undo sequence (an uncertain step is checked
// first); the password stays in its file, never in argv.
func TestTranscriptRecipe(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("hunter2-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bmc := BMC{Address: "10.0.0.7", User: "admin", PasswordFile: pw}
	a := func(args ...string) []string { return append(fileConn(pw), args...) }
	off, on, disk, pxe := "Chassis Power is off\n", "Chassis Power is on\n", "Boot parameter data: 0008000000\n", "Boot parameter data: 80e4000000\n"
	for fail := 0; fail <= 2; fail++ {
		f := run.NewFake(t)
		f.Expect(a("chassis", "bootparam", "get", "5")...).Out(disk).Kind(run.Query)
		f.Expect(a("chassis", "bootdev", "pxe", "options=persistent,efiboot")...).Kind(run.Mutation)
		if fail != 1 {
			f.Expect(a("chassis", "power", "status")...).Out(off)
			f.Expect(a("chassis", "power", "on")...).Kind(run.Mutation)
		}
		if fail == 2 { // check (uncertain), then undo
			f.Expect(a("chassis", "power", "status")...).Out(on)
			f.Expect(a("chassis", "power", "status")...).Out(on)
			f.Expect(a("chassis", "power", "off")...).Kind(run.Mutation)
		}
		if fail == 1 {
			f.Expect(a("chassis", "bootparam", "get", "5")...).Out(pxe)
		}
		if fail != 0 {
			f.Expect(a("chassis", "bootparam", "get", "5")...).Out(pxe)
			f.Expect(a("chassis", "bootdev", "none")...).Kind(run.Mutation)
		}
		fp := ""
		if fail > 0 {
			fp = fmt.Sprintf("%d:after:error", fail)
		}
		err := atomic.Run(context.Background(), "t", func(tx *atomic.Tx) error {
			if err := tx.Do(context.Background(), BootDev{BMC: bmc, Device: "pxe", Persistent: true, EFI: true}, nil); err != nil {
				return err
			}
			return tx.Do(context.Background(), Power{BMC: bmc, Action: "on"}, nil)
		}, atomic.WithRunner(f), atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints(fp))
		if (fail == 0) != (err == nil) {
			t.Fatalf("fail at %d: %v", fail, err)
		}
		f.Done()
		for _, c := range f.Calls() {
			if strings.Contains(c.String(), "hunter2") || len(c.Env) != 0 {
				t.Errorf("password leaked into %q %q", c.String(), c.Env)
			}
		}
	}
}

// TestSecretInEnv: a Client given a Secret passes it as IPMI_PASSWORD
// with -E, listed as a secret, never in argv.
func TestSecretInEnv(t *testing.T) {
	f := run.NewFake(t)
	f.Expect(argv("chassis", "power", "status")...).Out("Chassis Power is on\n")
	_, err := New(BMC{Address: "10.0.0.7", User: "admin", Password: "hunter2"}, f).PowerStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c := f.Calls()[0]
	if len(c.Env) != 1 || c.Env[0] != "IPMI_PASSWORD=hunter2" || len(c.Secrets) != 1 || strings.Contains(c.String(), "hunter2") {
		t.Errorf("env %q secrets %d argv %q", c.Env, len(c.Secrets), c.String())
	}
	f.Done()
}

// TestTranscriptClassify: a session failure is diagnosed with a -v probe.
func TestTranscriptClassify(t *testing.T) {
	bmc := BMC{Address: "10.0.0.7", User: "admin", Password: "pw"}
	for _, c := range []struct {
		probe string
		want  error
	}{
		{"> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session\n", ErrAuth},
		{"Get Auth Capabilities error\nError issuing Get Channel Authentication Capabilities request\n", ErrUnreachable},
	} {
		f := run.NewFake(t)
		f.Expect(argv("chassis", "power", "status")...).Fail(1, "Error: Unable to establish IPMI v2 / RMCP+ session\n")
		f.Expect(append(append([]string{}, conn...), "-v", "chassis", "power", "status")...).Fail(1, c.probe)
		_, err := New(bmc, f).PowerStatus(context.Background())
		if !errors.Is(err, c.want) {
			t.Errorf("got %v, want %v", err, c.want)
		}
		f.Done()
	}
}

func TestValidate(t *testing.T) {
	good := BMC{Address: "bmc07.example", User: "admin", PasswordFile: "/etc/bofh/bmc.pw"}
	cases := []struct {
		name string
		p    atomic.Params
	}{
		{"inline password", Power{BMC: BMC{Address: "h", User: "a", Password: "pw"}, Action: "on"}},
		{"no address", Power{BMC: BMC{User: "a", PasswordFile: "/x"}, Action: "on"}},
		{"option address", Power{BMC: BMC{Address: "-oProxy", User: "a", PasswordFile: "/x"}, Action: "on"}},
		{"no password", Power{BMC: BMC{Address: "h", User: "a"}, Action: "on"}},
		{"redacted", Power{BMC: BMC{Address: "h", User: "a", Password: run.Redacted}, Action: "on"}},
		{"relative file", Power{BMC: BMC{Address: "h", User: "a", PasswordFile: "pw"}, Action: "on"}},
		{"bad iface", Power{BMC: BMC{Address: "h", User: "a", PasswordFile: "/x", Interface: "serial"}, Action: "on"}},
		{"bad action", Power{BMC: good, Action: "cycle"}},
		{"bad cycle", PowerCycle{BMC: good, Action: "off"}},
		{"bad device", BootDev{BMC: good, Device: "usb"}},
		{"none persistent", BootDev{BMC: good, Device: "none", Persistent: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := run.NewFake(t) // no command may run
			err := atomic.Run(context.Background(), "v", func(tx *atomic.Tx) error { return tx.Do(context.Background(), c.p, nil) },
				atomic.WithRunner(f), atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints(""))
			if atomic.ExitCode(err) != atomic.ExitInvalid {
				t.Fatalf("got %v (exit %d), want exit 2", err, atomic.ExitCode(err))
			}
			f.Done()
		})
	}
}

// TestTranscriptUserPassword: the new password travels on stdin as an
// ipmitool command file, never in argv or the environment; the BMC's own
// password stays in its file.
func TestTranscriptUserPassword(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	f := run.NewFake(t)
	f.Expect(append(fileConn(pw), "exec", "/dev/stdin")...).Kind(run.Mutation).Stdin("user set password 3 hunter2-new 16\n")
	f.Expect(append(fileConn(pw), "exec", "/dev/stdin")...).Kind(run.Mutation).Stdin("user set password 4 abcdefghij0123456789 20\n")
	c := New(BMC{Address: "10.0.0.7", User: "admin", PasswordFile: pw}, f)
	if err := c.SetUserPassword(context.Background(), 3, []byte("hunter2-new")); err != nil {
		t.Fatal(err)
	}
	if err := c.SetUserPassword(context.Background(), 4, []byte("abcdefghij0123456789")); err != nil {
		t.Fatal(err)
	}
	f.Done()
	for _, call := range f.Calls() {
		if strings.Contains(call.String(), "hunter2") || strings.Contains(call.String(), "abcdefghij") || len(call.Env) != 0 || len(call.Secrets) != 1 {
			t.Errorf("password leaked: argv %q env %q secrets %d", call.String(), call.Env, len(call.Secrets))
		}
	}
	// bad input runs nothing
	g := run.NewFake(t)
	c = New(BMC{Address: "10.0.0.7", User: "admin", PasswordFile: pw}, g)
	for _, bad := range []struct {
		id int
		pw string
	}{{0, "x"}, {64, "x"}, {3, ""}, {3, "has space"}, {3, "with#hash"}, {3, "abcdefghij0123456789X"}, {3, "quo\"te"}, {3, "new\nline"}} {
		if err := c.SetUserPassword(context.Background(), bad.id, []byte(bad.pw)); !errors.Is(err, atomic.ErrInvalid) || (bad.pw != "" && strings.Contains(err.Error(), bad.pw)) {
			t.Errorf("id %d password %q: %v, want ErrInvalid without the password", bad.id, bad.pw, err)
		}
	}
	g.Done()
}
