package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLILibvirtBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	spec := func(name, y string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(y), 0o644)
		return p
	}
	zeroCPU := spec("zero.yaml", "name: web\nvcpus: 0\nmemory: 2G\n")
	unknown := spec("unknown.yaml", "name: web\nbogus: 1\n")
	slash := spec("slash.yaml", "name: a/b\nvcpus: 1\nmemory: 1G\n")
	badInput(t, nil, []cliCase{
		bad("domain name with slash", `domain name "a/b"`, "libvirt", "domain", "start", "a/b"),
		bad("state of a domain name with slash", `domain name "a/b"`, "libvirt", "domain", "state", "a/b"),
		bad("spec name with slash", `domain name "a/b"`, "libvirt", "domain", "define", slash),
		bad("spec vcpus 0", "vcpus 0", "libvirt", "domain", "define", zeroCPU),
		bad("spec unknown field", "field bogus not found", "libvirt", "domain", "define", unknown),
		bad("spec missing", "no such file or directory", "libvirt", "domain", "define", filepath.Join(dir, "missing.yaml")),
		bad("bad timeout", `timeout "forever"`, "libvirt", "domain", "shutdown", "web", "--timeout", "forever"),
		bad("pool type", `pool type "zfs"`, "libvirt", "pool", "define", "images", "--type", "zfs", "--path", "/srv"),
		bad("pool path relative", `pool path "relative"`, "libvirt", "pool", "define", "images", "--path", "relative"),
		bad("volume capacity", `size "10Q"`, "libvirt", "volume", "create", "images", "web.img", "--capacity", "10Q"),
		bad("network forward", `forward "teleport"`, "libvirt", "network", "define", "lan", "--bridge", "br0", "--forward", "teleport"),
	})
	badInput(t, siteFile(t, "libvirt:\n  socket: relative\n"), []cliCase{
		bad("site socket relative", `socket "relative"`, "libvirt", "domain", "list"),
	})
}

// Without libvirtd (none on this host) the dry run cannot run: Prepare
// asks libvirtd for the domain's state. It fails clearly and journals
// nothing; the real dry run is tested against libvirtd in the lab.
func TestCLILibvirtNoDaemon(t *testing.T) {
	t.Parallel()
	env := siteFile(t, "libvirt:\n  socket: "+filepath.Join(t.TempDir(), "no-sock")+"\n")
	state := t.TempDir()
	_, errs, code := bofh(t, env, "--state-dir", state, "--dry-run", "libvirt", "domain", "start", "web")
	if code != 1 || !strings.Contains(errs, "libvirtd unreachable") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	noTx(t, state)
	helpExample(t, []string{"libvirt"}, []string{"libvirt", "domain", "define"}, []string{"libvirt", "pool", "define"})
}
