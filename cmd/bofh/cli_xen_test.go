package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCLIXenBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	badMem := cfg("badmem.cfg", "name = \"web\"\nmemory = \"lots\"\n")
	noValue := cfg("novalue.cfg", "name = \n")
	site := siteFile(t, "xen:\n  config_dir: "+dir+"\n")
	cases := []cliCase{
		bad("name with slash", `domain name "a/b"`, "xen", "create", "a/b"),
		bad("name escaping the dir", `domain name "../etc"`, "xen", "create", "../etc"),
		bad("name with space", `domain name "bad name"`, "xen", "pause", "bad name"),
		bad("bad timeout", `timeout "soon"`, "xen", "shutdown", "web", "--timeout", "soon"),
		bad("config file missing", "no such file or directory", "xen", "config", "check", filepath.Join(dir, "missing.cfg")),
		bad("config memory not a number", "memory: want a number", "xen", "config", "check", badMem),
		bad("config value missing", "line 1", "xen", "config", "check", noValue),
		// xl create needs <config_dir>/NAME.cfg: checked before xl runs
		bad("domain config missing", filepath.Join(dir, "nosuch.cfg"), "xen", "create", "nosuch"),
	}
	badInput(t, site, cases)
	badInput(t, siteFile(t, "xen:\n  config_dir: relative\n"), []cliCase{
		bad("site config_dir relative", `config dir "relative"`, "xen", "create", "web"),
	})
}

// xl is not installed on this host: the dry run of create/shutdown (which
// asks xl for the domain's state first) runs in the VM lab only. The
// config check is pure parsing and runs here.
func TestCLIXenConfigJSON(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "web.cfg")
	os.WriteFile(p, []byte(`name = "web"
type = "pvh"
memory = 1024
vcpus = 2
kernel = "/boot/vmlinuz"
disk = [ 'phy:/dev/vg0/web,xvda,w' ]
vif = [ 'bridge=br0' ]
`), 0o644)
	var c struct {
		Name   string
		Type   string
		VCPUs  int
		Memory int
		Disks  []struct{ Protocol, Target, VDev, Access string }
		VIFs   []string
	}
	jsonOut(t, nil, &c, "xen", "config", "check", p)
	if c.Name != "web" || c.Type != "pvh" || c.VCPUs != 2 || c.Memory != 1024 || len(c.Disks) != 1 || c.Disks[0].Target != "/dev/vg0/web" || len(c.VIFs) != 1 {
		t.Fatalf("config check -o json: %+v", c)
	}
	helpExample(t, []string{"xen"}, []string{"xen", "create"}, []string{"xen", "config", "check"})
}
