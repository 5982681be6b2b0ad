package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bofhkit/bofh/internal/hosttest"
)

// treeStore makes a store with role web in versions 1.0 and 1.1 and the
// 1.0 → 1.1 upgrade metadata, and an empty target directory.
func treeStore(t *testing.T) (store, target string) {
	t.Helper()
	base := t.TempDir()
	store = filepath.Join(base, "store")
	for p, c := range map[string]string{
		"install/1.0/web/etc/motd":     "one\n",
		"install/1.1/web/etc/motd":     "version two\n",
		"install/1.1/web/etc/extra":    "new\n",
		"metadata/1.0/web/1.1/exclude": "",
	} {
		p = filepath.Join(store, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	target = filepath.Join(base, "target")
	os.Mkdir(target, 0o755)
	return store, target
}

func TestCLITreeBadInput(t *testing.T) {
	t.Parallel()
	store, target := treeStore(t)
	before := snapshot(t, store, true) + "\n" + snapshot(t, target, true)
	badInput(t, nil, []cliCase{
		bad("unknown version", "version not in the tree store: 9.9/web", "tree", "--store", store, "deploy", "web", "9.9", target),
		bad("role with slash", `role "we/b"`, "tree", "--store", store, "deploy", "we/b", "1.0", target),
		bad("relative target", `target "relative" must be an absolute, clean path`, "tree", "--store", store, "deploy", "web", "1.0", "relative"),
		bad("unclean target", "must be an absolute, clean path", "tree", "--store", store, "deploy", "web", "1.0", target+"/../etc"),
		bad("store missing", "version not in the tree store", "tree", "--store", filepath.Join(target, "nostore"), "deploy", "web", "1.0", target),
		bad("seed in a dry run", "--dry-run: seed only writes metadata", "--dry-run", "tree", "--store", store, "seed", "web", "1.0", "1.1"),
		bad("upgrade of an undeployed target", "has no recorded tree", "tree", "--store", store, "upgrade", "1.1", target),
	})
	if d := cmp.Diff(strings.Split(before, "\n"), strings.Split(snapshot(t, store, true)+"\n"+snapshot(t, target, true), "\n")); d != "" {
		t.Fatalf("bad input changed the store or the target (-before +after):\n%s", d)
	}
}

func TestCLITreeDryRunAndJSON(t *testing.T) {
	t.Parallel()
	store, target := treeStore(t)
	dryRun(t, nil, "", []string{"tree", "--store", store, "deploy", "web", "1.0", target},
		"would sync "+target+" with 1.0/web: 2 changes", "would write "+target+"/etc/bofh-tree.json")
	if ents, _ := os.ReadDir(target); len(ents) != 0 {
		t.Fatalf("dry run wrote into the target: %v", ents)
	}

	type listing struct {
		Role, Current string
		Versions      []string
		Upgrades      map[string][]string
	}
	var l listing
	jsonOut(t, nil, &l, "tree", "--store", store, "list", "web")
	if l.Role != "web" || len(l.Versions) != 2 || len(l.Upgrades["1.0"]) != 1 || l.Upgrades["1.0"][0] != "1.1" {
		t.Fatalf("list web: %+v", l)
	}
	type report struct {
		Role, Version, To string
		Changes           []struct {
			Path, Kind string
			Details    []string
		}
	}
	var d report
	jsonOut(t, nil, &d, "tree", "--store", store, "diff", "web", "1.0", "1.1")
	if len(d.Changes) != 2 {
		t.Fatalf("diff: %+v", d)
	}

	// deploy for real (into the temp target), then the target's views
	state := t.TempDir()
	if _, errs, code := bofh(t, nil, "--state-dir", state, "tree", "--store", store, "deploy", "web", "1.0", target); code != 0 {
		t.Fatalf("deploy: %d %s", code, errs)
	}
	l = listing{}
	jsonOut(t, nil, &l, "tree", "--store", store, "list", target)
	if l.Current != "1.0" {
		t.Fatalf("list target: %+v", l)
	}
	var v report
	jsonOut(t, nil, &v, "tree", "--store", store, "verify", target)
	if v.Version != "1.0" || len(v.Changes) != 0 {
		t.Fatalf("verify: %+v", v)
	}
	// no drift is an empty list in JSON, not null
	if out, _, code := bofh(t, nil, "tree", "--store", store, "verify", target, "-o", "json"); code != 0 || !strings.Contains(out, `"changes": []`) {
		t.Fatalf("verify -o json: exit %d\n%s", code, out)
	}
	var u report
	jsonOut(t, nil, &u, "tree", "--store", store, "test-upgrade", "1.1", target)
	if len(u.Changes) != 2 {
		t.Fatalf("test-upgrade: %+v", u)
	}
	// kinds are the upgrade's: etc/extra is new in 1.1, so it is added
	for _, c := range u.Changes {
		want := map[string]string{"etc/extra": "added", "etc/motd": "changed"}[c.Path]
		if c.Kind != want {
			t.Errorf("test-upgrade: %s is %q, want %q", c.Path, c.Kind, want)
		}
	}
	before := snapshot(t, target, true)
	dryRun(t, nil, "", []string{"tree", "--store", store, "upgrade", "1.1", target},
		"would sync "+target+" with 1.1/web", "role web version 1.1")
	if snapshot(t, target, true) != before {
		t.Fatal("upgrade dry run changed the target")
	}
	helpExample(t, []string{"tree"}, []string{"tree", "deploy"}, []string{"tree", "list"})
}

// TestCLITreeRemoteStore deploys from a store served by a real rsync
// daemon on loopback, verifies and lists through it; a missing version
// and seed on a remote store exit 2 and change nothing.
func TestCLITreeRemoteStore(t *testing.T) {
	t.Parallel()
	hosttest.RequireRoot(t)
	store, target := treeStore(t)
	url, stop := hosttest.RsyncDaemon(t, store)
	state := t.TempDir()
	openPW := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(openPW, []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, store, true) + "\n" + snapshot(t, target, true)
	badInput(t, nil, []cliCase{ // returns when every case ran: before the daemon stops
		bad("password file readable by others", "must not be readable by group or others", "tree", "--store", url, "--password-file", openPW, "list", "web"),
		bad("password file for a local store", "a password file is for an rsync daemon store", "tree", "--store", store, "--password-file", openPW, "list", "web"),
		bad("missing remote version", "version not in the tree store: 9.9/web at "+url, "tree", "--store", url, "deploy", "web", "9.9", target),
		bad("seed on a remote store", "seed writes metadata: needs a local store", "tree", "--store", url, "seed", "web", "1.0", "1.1"),
		bad("password in the URL", "a password in the URL is refused", "tree", "--store", strings.Replace(url, "rsync://", "rsync://u:pw@", 1), "list", "web"),
		bad("option as a store", "may not start with '-'", "tree", "--store=-e:/x", "list", "web"),
	})
	if d := cmp.Diff(strings.Split(before, "\n"), strings.Split(snapshot(t, store, true)+"\n"+snapshot(t, target, true), "\n")); d != "" {
		t.Fatalf("bad input changed the store or the target (-before +after):\n%s", d)
	}
	if _, errs, _ := bofh(t, nil, "tree", "--store", strings.Replace(url, "rsync://", "rsync://u:pw@", 1), "list", "web"); strings.Contains(errs, "pw@") {
		t.Fatalf("the error shows the password: %s", errs)
	}
	if _, errs, code := bofh(t, nil, "--state-dir", state, "tree", "--store", url, "deploy", "web", "1.0", target); code != 0 {
		t.Fatalf("deploy: %d %s", code, errs)
	}
	if b, err := os.ReadFile(filepath.Join(target, "etc/motd")); err != nil || string(b) != "one\n" {
		t.Fatalf("deployed motd %q %v", b, err)
	}
	out, errs, code := bofh(t, nil, "--state-dir", state, "tree", "--store", url, "verify", target, "-o", "json")
	var v struct {
		Version string
		Changes []any
	}
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Version != "1.0" || len(v.Changes) != 0 {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errs)
	}
	var l struct {
		Current  string
		Versions []string
	}
	jsonOut(t, nil, &l, "tree", "--store", url, "list", target)
	if l.Current != "1.0" || len(l.Versions) != 2 {
		t.Fatalf("list: %+v", l)
	}
	// an upgrade in a dry run fetches 1.1 into the mirror, changes nothing
	before = snapshot(t, target, true)
	dryRun(t, nil, "", []string{"tree", "--store", url, "upgrade", "1.1", target}, "would sync "+target+" with 1.1/web")
	if snapshot(t, target, true) != before {
		t.Fatal("upgrade dry run changed the target")
	}
	os.WriteFile(filepath.Join(target, "etc/motd"), []byte("drift\n"), 0o644)
	if out, _, code := bofh(t, nil, "--state-dir", state, "tree", "--store", url, "verify", target); code == 0 || !strings.Contains(out, "etc/motd") {
		t.Fatalf("verify after drift: exit %d\n%s", code, out)
	}
	stop()
	_, errs, code = bofh(t, nil, "--state-dir", state, "tree", "--store", url, "verify", target)
	if code != 1 || !strings.Contains(errs, "tree store unreachable: "+url) {
		t.Fatalf("daemon down: exit %d, %s", code, errs)
	}
}

// TestCLITreeChecksum: a target file edited in place keeping its size
// and mtime, at a path both versions share, is not part of an upgrade
// unless --checksum; test-upgrade says which.
func TestCLITreeChecksum(t *testing.T) {
	t.Parallel()
	store, target := treeStore(t)
	for _, v := range []string{"1.0", "1.1"} {
		p := filepath.Join(store, "install", v, "web/usr/shared")
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("same in both\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, time.Unix(1e9, 0), time.Unix(1e9, 0))
	}
	state := t.TempDir()
	if out, errs, code := bofh(t, nil, "--state-dir", state, "tree", "--store", store, "deploy", "web", "1.0", target); code != 0 {
		t.Fatalf("deploy: exit %d\n%s%s", code, out, errs)
	}
	p := filepath.Join(target, "usr/shared")
	os.WriteFile(p, []byte("SAME IN BOTH\n"), 0o644)
	os.Chtimes(p, time.Unix(1e9, 0), time.Unix(1e9, 0))
	type report struct {
		Changes []struct{ Path, Kind string }
	}
	var r report
	jsonOut(t, nil, &r, "--state-dir", state, "tree", "--store", store, "test-upgrade", "1.1", target)
	for _, c := range r.Changes {
		if c.Path == "usr/shared" {
			t.Fatalf("test-upgrade without --checksum reports %+v", c)
		}
	}
	r = report{}
	jsonOut(t, nil, &r, "--state-dir", state, "tree", "--store", store, "test-upgrade", "1.1", target, "--checksum")
	found := false
	for _, c := range r.Changes {
		found = found || c.Path == "usr/shared"
	}
	if !found {
		t.Fatalf("test-upgrade --checksum misses the edited file: %+v", r.Changes)
	}
	if out, errs, code := bofh(t, nil, "--state-dir", state, "tree", "--store", store, "upgrade", "1.1", target, "--checksum"); code != 0 {
		t.Fatalf("upgrade --checksum: exit %d\n%s%s", code, out, errs)
	}
	if b, _ := os.ReadFile(p); string(b) != "same in both\n" {
		t.Fatalf("upgrade --checksum left the edited file: %q", b)
	}
}
