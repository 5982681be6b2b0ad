package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

var bofhBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bofh-bin-")
	if err != nil {
		panic(err)
	}
	bofhBin = filepath.Join(dir, "bofh")
	out, err := exec.Command("go", "build", "-o", bofhBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build bofh: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// bofh runs the built binary and returns stdout, stderr and the exit code
// (-9 when killed by SIGKILL).
func bofh(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bofhBin, args...)
	cmd.Env = append(append(os.Environ(), "BOFH_SITE=/dev/null"), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = -int(ws.Signal())
		} else {
			code = ee.ExitCode()
		}
	} else if err != nil {
		t.Fatalf("run bofh: %v", err)
	}
	return out.String(), errb.String(), code
}

// snapshot describes a tree byte for byte: type, content hash, mode,
// owner, mtime (optionally) and symlink targets of every entry.
func snapshot(t *testing.T, root string, mtimes bool) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(root, p)
		line := fmt.Sprintf("%s %s %o %d:%d", rel, fi.Mode().Type(), st.Mode&0o7777, st.Uid, st.Gid)
		if mtimes {
			line += fmt.Sprintf(" m=%d", st.Mtim.Nano())
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			line += " -> " + target
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// fixture makes the starting tree: an existing config (owned by uid 1234,
// mode 0640, old mtime) that the recipe overwrites, and an old file it
// removes.
func fixture(t *testing.T) (root, recipe string) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "root")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	conf := filepath.Join(root, "etc", "app.conf")
	os.WriteFile(conf, []byte("old config\n"), 0o640)
	os.Chmod(conf, 0o640)
	if os.Getuid() == 0 {
		os.Chown(conf, 1234, 1234)
	}
	old := filepath.Join(root, "etc", "legacy.conf")
	os.WriteFile(old, []byte("legacy\n"), 0o600)
	os.Symlink("app.conf", filepath.Join(root, "etc", "legacy.link"))
	for _, p := range []string{conf, old, filepath.Join(root, "etc"), root} {
		ts := syscall.NsecToTimespec(1_600_000_000_123_456_789)
		syscall.UtimesNano(p, []syscall.Timespec{ts, ts})
	}
	recipe = filepath.Join(base, "recipe.yaml")
	y := fmt.Sprintf(`name: crash-matrix
steps:
  - id: d
    kind: dir.create
    with: {path: %[1]s/srv/app, parents: true, mode: "0750"}
  - id: main
    kind: file.write
    with: {path: %[1]s/srv/app/main.conf, content: "listen 80\n", mode: "0600"}
  - kind: file.write
    with: {path: %[1]s/etc/app.conf, content: "include main.conf # ${main.size} bytes, sha256 ${main.sha256}\n", mode: "0644"}
  - kind: symlink.create
    with: {path: %[1]s/srv/current, target: app}
  - kind: file.remove
    with: {path: %[1]s/etc/legacy.conf}
`, root)
	os.WriteFile(recipe, []byte(y), 0o644)
	return root, recipe
}

type txSummary struct {
	ID, Name, State string
	Steps, Done     int
}

func listTx(t *testing.T, state string) []txSummary {
	t.Helper()
	out, errs, code := bofh(t, nil, "--state-dir", state, "tx", "list", "-o", "json")
	if code != 0 {
		t.Fatalf("tx list: %d %s", code, errs)
	}
	var txs []txSummary
	if err := json.Unmarshal([]byte(out), &txs); err != nil {
		t.Fatalf("tx list json: %v\n%s", err, out)
	}
	return txs
}

// endTree is the tree a clean run produces (without mtimes of what it
// wrote, which differ between runs).
func endTree(t *testing.T) string {
	root, recipe := fixture(t)
	state := t.TempDir()
	if _, errs, code := bofh(t, nil, "--state-dir", state, "apply", recipe); code != 0 {
		t.Fatalf("clean apply: %d %s", code, errs)
	}
	return snapshot(t, root, false)
}

func TestCrashMatrix(t *testing.T) {
	want := endTree(t)
	for step := 1; step <= 5; step++ {
		for _, phase := range []string{"before", "after"} {
			for _, finish := range []string{"rollback", "resume"} {
				t.Run(fmt.Sprintf("%d-%s-kill-%s", step, phase, finish), func(t *testing.T) {
					root, recipe := fixture(t)
					state := t.TempDir()
					start := snapshot(t, root, true)
					_, errs, code := bofh(t, []string{fmt.Sprintf("BOFH_FAIL=%d:%s:kill", step, phase)}, "--state-dir", state, "apply", recipe)
					if code != -int(syscall.SIGKILL) {
						t.Fatalf("apply with kill failpoint: exit %d, want SIGKILL\n%s", code, errs)
					}
					txs := listTx(t, state)
					if len(txs) != 1 || txs[0].State != "interrupted" {
						t.Fatalf("tx list after kill: %+v", txs)
					}
					id := txs[0].ID
					_, errs, code = bofh(t, nil, "--state-dir", state, "tx", finish, id)
					if code != 0 {
						t.Fatalf("tx %s: exit %d\n%s", finish, code, errs)
					}
					if finish == "rollback" {
						if got := snapshot(t, root, true); got != start {
							t.Fatalf("after rollback the tree differs\n got:\n%s\nwant:\n%s", got, start)
						}
						if st := listTx(t, state)[0].State; st != "rolled-back" {
							t.Fatalf("state %s", st)
						}
					} else {
						if got := snapshot(t, root, false); got != want {
							t.Fatalf("after resume the tree differs from a clean run\n got:\n%s\nwant:\n%s", got, want)
						}
						if tx := listTx(t, state)[0]; tx.State != "committed" || tx.Done != 5 {
							t.Fatalf("after resume: %+v", tx)
						}
					}
					if ents, _ := os.ReadDir(filepath.Join(state, "data")); len(ents) != 0 {
						t.Errorf("backups left in the state dir after the transaction ended")
					}
				})
			}
		}
	}
}

func TestUndoErrorThenRollbackAgain(t *testing.T) {
	root, recipe := fixture(t)
	state := t.TempDir()
	start := snapshot(t, root, true)
	_, errs, code := bofh(t, []string{"BOFH_FAIL=5:after:error,2:undo:error"}, "--state-dir", state, "apply", recipe)
	if code != 3 {
		t.Fatalf("exit %d, want 3 (rollback incomplete)\n%s", code, errs)
	}
	if !strings.Contains(errs, "rollback incomplete") {
		t.Errorf("stderr does not say the rollback is incomplete: %s", errs)
	}
	txs := listTx(t, state)
	if txs[0].State != "rollback-failed" {
		t.Fatalf("state %s, want rollback-failed", txs[0].State)
	}
	// the cause (the failpoint) is gone in a new process: roll back again
	if _, errs, code := bofh(t, nil, "--state-dir", state, "tx", "rollback", txs[0].ID); code != 0 {
		t.Fatalf("second rollback: %d %s", code, errs)
	}
	if got := snapshot(t, root, true); got != start {
		t.Fatalf("tree differs after the second rollback\n got:\n%s\nwant:\n%s", got, start)
	}
}

func TestApplyFailureRollsBackExit1(t *testing.T) {
	root, recipe := fixture(t)
	state := t.TempDir()
	start := snapshot(t, root, true)
	_, errs, code := bofh(t, []string{"BOFH_FAIL=4:after:error"}, "--state-dir", state, "apply", recipe)
	if code != 1 || !strings.Contains(errs, "rolled back") {
		t.Fatalf("exit %d, want 1\n%s", code, errs)
	}
	if got := snapshot(t, root, true); got != start {
		t.Fatalf("tree differs after rollback\n got:\n%s\nwant:\n%s", got, start)
	}
}

func TestBadInputExit2(t *testing.T) {
	root, _ := fixture(t)
	start := snapshot(t, root, true)
	tests := []struct {
		name   string
		recipe string
		want   string
	}{
		{"unknown kind", "name: x\nsteps:\n  - kind: lvm.frobnicate\n", "unknown step kind"},
		{"bad params", "name: x\nsteps:\n  - kind: file.write\n    with: {path: relative/path}\n", "not absolute"},
		{"unresolved ref", "name: x\nsteps:\n  - kind: file.write\n    with: {path: /tmp/x, content: '${nope.path}'}\n", `no earlier step has id "nope"`},
		{"later step invalid", fmt.Sprintf("name: x\nsteps:\n  - kind: dir.create\n    with: {path: %s/new}\n  - kind: file.write\n    with: {path: %s/f, mode: '999'}\n", root, root), "octal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			state := t.TempDir()
			f := filepath.Join(t.TempDir(), "r.yaml")
			os.WriteFile(f, []byte(tc.recipe), 0o644)
			_, errs, code := bofh(t, nil, "--state-dir", state, "apply", f)
			if code != 2 || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, errs, tc.want)
			}
			if txs := listTx(t, state); len(txs) != 0 {
				t.Fatalf("a transaction was started: %+v", txs)
			}
		})
	}
	if got := snapshot(t, root, true); got != start {
		t.Fatal("bad input changed the tree")
	}
	for _, args := range [][]string{{"apply"}, {"tx", "show"}, {"--output", "yaml", "tx", "list"}, {"tx", "rollback", "../etc"}, {"tx", "rollback", "no-such-tx"}, {"tx", "show", "no-such-tx"}, {"apply", "/nonexistent.yaml"}, {"tx", "list", "--bogus"}, {"frobnicate"}, {"tx", "frob"}, {"lvm", "frob"}} {
		if _, errs, code := bofh(t, nil, append([]string{"--state-dir", t.TempDir()}, args...)...); code != 2 {
			t.Errorf("bofh %v: exit %d, want 2 (%s)", args, code, errs)
		}
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	root, recipe := fixture(t)
	state := t.TempDir()
	start := snapshot(t, root, true)
	_, errs, code := bofh(t, nil, "--state-dir", state, "--dry-run", "apply", recipe)
	if code != 0 {
		t.Fatalf("dry run: %d %s", code, errs)
	}
	for _, want := range []string{"would create directory", "would write", "would link", "would remove"} {
		if !strings.Contains(errs, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, errs)
		}
	}
	if got := snapshot(t, root, true); got != start {
		t.Fatal("dry run changed the tree")
	}
	if txs := listTx(t, state); len(txs) != 0 {
		t.Fatalf("dry run journaled: %+v", txs)
	}
}

func TestStepListAndShow(t *testing.T) {
	out, _, code := bofh(t, nil, "step", "list", "-o", "json")
	var kinds []struct{ Kind string }
	if code != 0 || json.Unmarshal([]byte(out), &kinds) != nil {
		t.Fatalf("step list: %d %s", code, out)
	}
	have := map[string]bool{}
	for _, k := range kinds {
		have[k.Kind] = true
	}
	for _, k := range []string{"dir.create", "file.write", "file.remove", "symlink.create"} {
		if !have[k] {
			t.Errorf("step list lacks %s", k)
		}
	}
	out, _, code = bofh(t, nil, "step", "show", "file.write")
	if code != 0 || !strings.Contains(out, "content_base64") {
		t.Fatalf("step show: %d %s", code, out)
	}
	if _, _, code := bofh(t, nil, "step", "show", "nope"); code != 2 {
		t.Fatalf("step show unknown: exit %d, want 2", code)
	}
}

func TestHelpHasExamples(t *testing.T) {
	root := newRoot()
	var missing []string
	var visit func(cmd *cobraCommand)
	visit = func(cmd *cobraCommand) {
		if cmd.Runnable() && cmd.Example == "" && !cmd.Hidden && cmd.Name() != "help" {
			missing = append(missing, cmd.CommandPath())
		}
		for _, c := range cmd.Commands() {
			visit(c)
		}
	}
	visit(root)
	if len(missing) > 0 {
		t.Errorf("commands without an example in their help: %v", missing)
	}
}
