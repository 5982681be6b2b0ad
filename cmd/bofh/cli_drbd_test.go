package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func drbdSite(t *testing.T) (env []string, dir string) {
	dir = filepath.Join(t.TempDir(), "drbd.d")
	os.Mkdir(dir, 0o755)
	return siteFile(t, "drbd:\n  config_dir: "+dir+"\n"), dir
}

func TestCLIDRBDBadInput(t *testing.T) {
	t.Parallel()
	env, dir := drbdSite(t)
	nodes := []string{"--node", "alpha=10.0.0.1:/dev/vg0/data", "--node", "beta=10.0.0.2:/dev/vg0/data"}
	w := func(extra ...string) []string {
		return append(append([]string{"drbd", "config", "write", "data"}, nodes...), extra...)
	}
	before := snapshot(t, dir, true)
	badInput(t, env, []cliCase{
		bad("name with space", `DRBD resource name "bad name"`, "drbd", "up", "bad name"),
		bad("name with slash", `DRBD resource name "a/b"`, "drbd", "status", "a/b"),
		bad("drbdadm keyword", `DRBD resource name "all"`, "drbd", "up", "all"),
		bad("config name with slash", `DRBD resource name "a/b"`, append([]string{"drbd", "config", "write", "a/b"}, nodes...)...),
		bad("protocol", `protocol "D"`, w("--protocol", "D")...),
		bad("port", "port 99999", w("--port", "99999")...),
		bad("malformed node", "want HOST=IP:DISK", "drbd", "config", "write", "data", "--node", "alpha-10.0.0.1"),
		bad("node twice", "node alpha listed twice", "drbd", "config", "write", "data", "--node", "alpha=10.0.0.1:/dev/sdb", "--node", "alpha=10.0.0.2:/dev/sdb"),
		bad("relative disk", `disk "relative"`, "drbd", "config", "write", "data", "--node", "alpha=10.0.0.1:relative"),
		bad("spec file missing", "no such file or directory", "drbd", "config", "write", "--spec", filepath.Join(dir, "missing.json")),
	})
	if d := cmp.Diff(strings.Split(before, "\n"), strings.Split(snapshot(t, dir, true), "\n")); d != "" {
		t.Fatalf("bad input changed the config dir (-before +after):\n%s", d)
	}
}

// The config steps are files in a directory: their dry run and the JSON of
// 'config used' run here. drbdadm up/down/primary need the DRBD module:
// VM lab only.
func TestCLIDRBDConfig(t *testing.T) {
	t.Parallel()
	env, dir := drbdSite(t)
	nodes := []string{"--node", "alpha=10.0.0.1:/dev/vg0/data", "--node", "beta=10.0.0.2:/dev/vg0/data"}
	dryRun(t, env, "", append([]string{"drbd", "config", "write", "r0"}, nodes...),
		"would write "+filepath.Join(dir, "r0.res")+" (port 7789, minor 0)")
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("dry run wrote into the config dir: %v", ents)
	}
	// a real write (into the temp dir), then 'config used' sees it
	state := t.TempDir()
	if _, errs, code := bofh(t, env, append([]string{"--state-dir", state, "drbd", "config", "write", "r0"}, nodes...)...); code != 0 {
		t.Fatalf("config write: %d %s", code, errs)
	}
	var used struct {
		Dir       string `json:"dir"`
		NextPort  int    `json:"next_port"`
		NextMinor int    `json:"next_minor"`
		Used      struct {
			Ports, Minors []int
			Names         []string
		} `json:"used"`
	}
	jsonOut(t, env, &used, "drbd", "config", "used")
	if used.Dir != dir || used.NextPort != 7790 || used.NextMinor != 1 || len(used.Used.Names) != 1 || used.Used.Names[0] != "r0" {
		t.Fatalf("config used: %+v", used)
	}
	helpExample(t, []string{"drbd"}, []string{"drbd", "config", "write"}, []string{"drbd", "up"})
}
