package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bofhkit/bofh/internal/hosttest"
)

// waitFor polls until cond holds or fails the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestSignalStopsAtStepBoundary is issue 12 case 12 for a file-only
// recipe: SIGTERM stops a long run at the next step boundary and rolls
// back what it did (a 10,000-step run committed after three signals
// before).
func TestSignalStopsAtStepBoundary(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "out")
	var b strings.Builder
	fmt.Fprintf(&b, "name: long\nsteps:\n  - kind: dir.create\n    with: {path: %s}\n", dir)
	for i := range 3000 {
		fmt.Fprintf(&b, "  - kind: file.write\n    with: {path: %s/f%05d, content: \"x\"}\n", dir, i)
	}
	recipe := filepath.Join(base, "r.yaml")
	os.WriteFile(recipe, []byte(b.String()), 0o644)
	state := t.TempDir()
	cmd := exec.Command(bofhBin, "--state-dir", state, "apply", recipe)
	cmd.Env = append(os.Environ(), "BOFH_SITE=/dev/null")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the first files", func() bool {
		ents, _ := os.ReadDir(dir)
		return len(ents) > 20
	})
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	code := cmd.ProcessState.ExitCode()
	if code != 1 {
		t.Fatalf("exit %d (%v), want 1 (stopped and rolled back)\n%s", code, err, errb.String())
	}
	if !strings.Contains(errb.String(), "stopping before the next step") || !strings.Contains(errb.String(), "interrupted") {
		t.Errorf("stderr does not say it stopped:\n%s", errb.String())
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		ents, _ := os.ReadDir(dir)
		t.Errorf("%s still exists with %d files after the rollback", dir, len(ents))
	}
	txs := listTx(t, state)
	if len(txs) != 1 || txs[0].State != "rolled-back" {
		t.Errorf("tx list = %+v, want one rolled-back transaction", txs)
	}
}

// TestSignalDuringCommandAndRollback is issue 12 case 12 for a step that
// runs a command: SIGTERM in the middle of losetup lets it finish (the
// command is not killed), the run stops at the next boundary, and a
// second SIGTERM during the undo's losetup is reported, not obeyed: the
// rollback completes (it was cancelled before: exit 3, rollback-failed).
func TestSignalDuringCommandAndRollback(t *testing.T) {
	hosttest.RequireRoot(t)
	base := t.TempDir()
	real, err := exec.LookPath("losetup")
	if err != nil {
		t.Fatal(err)
	}
	marks := filepath.Join(base, "marks")
	slow := filepath.Join(base, "slow-losetup")
	os.WriteFile(slow, []byte(fmt.Sprintf("#!/bin/sh\ncase \"$*\" in *--find*|*--detach*) echo \"$*\" >>%s; sleep 1.5;; esac\nexec %s \"$@\"\n", marks, real)), 0o755)
	env := siteFile(t, fmt.Sprintf("paths:\n  losetup: %s\n", slow))
	img := filepath.Join(base, "disk.img")
	os.WriteFile(img, make([]byte, 8<<20), 0o600)
	out := filepath.Join(base, "a.conf")
	recipe := filepath.Join(base, "r.yaml")
	os.WriteFile(recipe, []byte(fmt.Sprintf(`name: sig
steps:
  - kind: file.write
    with: {path: %[1]s, content: "a"}
  - kind: loop.attach
    with: {file: %[2]s}
  - kind: file.write
    with: {path: %[1]s.2, content: "b"}
`, out, img)), 0o644)
	state := t.TempDir()
	cmd := exec.Command(bofhBin, "--state-dir", state, "apply", recipe)
	cmd.Env = append(os.Environ(), env...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	count := func() int { b, _ := os.ReadFile(marks); return strings.Count(string(b), "\n") }
	waitFor(t, 30*time.Second, "losetup --find", func() bool { return count() >= 1 })
	cmd.Process.Signal(syscall.SIGTERM) // during the attach
	waitFor(t, 30*time.Second, "losetup --detach (the undo)", func() bool { return count() >= 2 })
	cmd.Process.Signal(syscall.SIGTERM) // during the undo
	cmd.Wait()
	code := cmd.ProcessState.ExitCode()
	if code != 1 {
		t.Fatalf("exit %d, want 1 (stopped, rolled back completely)\n%s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "again: finishing the rollback") {
		t.Errorf("the second signal was not reported:\n%s", errb.String())
	}
	if o, _ := exec.Command(real, "--associated", img).Output(); len(bytes.TrimSpace(o)) != 0 {
		t.Errorf("loop device still attached: %s", o)
		exec.Command(real, "-d", strings.SplitN(string(o), ":", 2)[0]).Run()
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s survived the rollback", out)
	}
	if _, err := os.Stat(out + ".2"); !os.IsNotExist(err) {
		t.Errorf("step 3 ran after the signal")
	}
}
