package main

import (
	"os"
	"path/filepath"
	"testing"
)

func ipmiSiteEnv(t *testing.T) []string {
	pw := filepath.Join(t.TempDir(), "bmc.pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	return siteFile(t, `ipmi:
  bmcs:
    node07: {address: 192.0.2.7, user: admin, password_file: `+pw+`, interface: lanplus}
    badpw: {address: 192.0.2.8, user: admin, password_file: relative.pw, interface: lanplus}
`)
}

// Every case fails before ipmitool runs (no BMC simulator on this host:
// dry runs of power/bootdev, which ask the BMC first, run in the lab).
func TestCLIIPMIBadInput(t *testing.T) {
	t.Parallel()
	badInput(t, nil, []cliCase{
		bad("no ipmi section", `no BMC named "node07"`, "ipmi", "power", "on", "node07"),
	})
	badInput(t, ipmiSiteEnv(t), []cliCase{
		bad("unknown BMC", `no BMC named "nosuch"`, "ipmi", "power", "on", "nosuch"),
		bad("unknown BMC on a query", `no BMC named "nosuch"`, "ipmi", "sensors", "nosuch"),
		bad("power action", `power action "frob"`, "ipmi", "power", "frob", "node07"),
		bad("boot device", `boot device "usbstick"`, "ipmi", "bootdev", "node07", "usbstick"),
		bad("relative password file", `BMC badpw: password_file "relative.pw"`, "ipmi", "power", "on", "badpw"),
		bad("lan show unknown BMC", `no BMC named "nosuch"`, "ipmi", "lan", "show", "nosuch"),
		bad("lan show channel", `channel 16: want 0 to 15`, "ipmi", "lan", "show", "node07", "--channel", "16"),
		bad("user list channel", `channel -1: want 0 to 15`, "ipmi", "user", "list", "node07", "--channel", "-1"),
		bad("user list no node", ``, "ipmi", "user", "list"),
	})
}

func TestCLIIPMIListJSON(t *testing.T) {
	t.Parallel()
	var bmcs map[string]struct {
		Address, User, Interface string
		PasswordFile             string `json:"password_file"`
	}
	jsonOut(t, ipmiSiteEnv(t), &bmcs, "ipmi", "list")
	if len(bmcs) != 2 || bmcs["node07"].Address != "192.0.2.7" {
		t.Fatalf("ipmi list: %+v", bmcs)
	}
	out, _, code := bofh(t, nil, "ipmi", "list", "-o", "json")
	if code != 0 || out != "{}\n" {
		t.Fatalf("ipmi list without BMCs: exit %d, %q; want {}", code, out)
	}
	helpExample(t, []string{"ipmi"}, []string{"ipmi", "power"}, []string{"ipmi", "bootdev"},
		[]string{"ipmi", "lan", "show"}, []string{"ipmi", "user", "list"}, []string{"ipmi", "lan"}, []string{"ipmi", "user"})
}
