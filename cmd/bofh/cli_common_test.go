package main

// Helpers shared by the per-area CLI tests (cli_<area>_test.go): they run
// the binary TestMain built, each case in a fresh state directory.

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// cliCase is one command line and what its stderr must say.
type cliCase struct {
	name  string
	args  []string // after --state-dir DIR
	want  string   // substring of stderr
	stdin string
}

// bad is a cliCase: a name, the stderr substring wanted, the arguments.
func bad(name, want string, args ...string) cliCase {
	return cliCase{name: name, args: args, want: want}
}

// bofhIn is bofh with standard input.
func bofhIn(t *testing.T, env []string, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bofhBin, args...)
	cmd.Env = append(append(os.Environ(), "BOFH_SITE=/dev/null"), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return out.String(), errb.String(), -int(ws.Signal())
		}
		return out.String(), errb.String(), ee.ExitCode()
	case err != nil:
		t.Fatalf("run bofh: %v", err)
	}
	return out.String(), errb.String(), 0
}

// badInput runs every case (in parallel, each with its own state dir) and
// wants exit 2, a "bofh: " message containing tc.want, nothing on stdout
// and no transaction in the state dir. It returns when every case has
// run: the cases are subtests of one group, and t.Run of a group waits
// for its parallel subtests, so a "bad input changed nothing" check after
// it sees what they did. (Parallel subtests of t itself would only start
// after the test function returned, after such a check.)
func badInput(t *testing.T, env []string, cases []cliCase) {
	t.Helper()
	t.Run("bad input", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				state := t.TempDir()
				out, errs, code := bofhIn(t, env, tc.stdin, append([]string{"--state-dir", state}, tc.args...)...)
				if code != 2 || !strings.HasPrefix(errs, "bofh: ") || !strings.Contains(errs, tc.want) {
					t.Fatalf("bofh %q: exit %d, stderr %q; want exit 2 and %q", tc.args, code, errs, tc.want)
				}
				if out != "" {
					t.Errorf("bad input printed on stdout: %q", out)
				}
				noTx(t, state)
			})
		}
	})
}

// noTx fails unless the state dir holds no transaction and no journal file.
func noTx(t *testing.T, state string) {
	t.Helper()
	if txs := listTx(t, state); len(txs) != 0 {
		t.Fatalf("a transaction was journaled: %+v", txs)
	}
	if ents, _ := os.ReadDir(filepath.Join(state, "journal")); len(ents) != 0 {
		t.Fatalf("journal files left: %v", ents)
	}
}

// dryRun runs a --dry-run command line, wants exit 0, every want on stderr
// (the "would …" lines), "dry-run" in the report on stdout, and no
// transaction. It returns stdout and stderr.
func dryRun(t *testing.T, env []string, stdin string, args []string, wants ...string) (string, string) {
	t.Helper()
	state := t.TempDir()
	out, errs, code := bofhIn(t, env, stdin, append([]string{"--state-dir", state, "--dry-run"}, args...)...)
	if code != 0 {
		t.Fatalf("bofh --dry-run %q: exit %d\n%s", args, code, errs)
	}
	for _, w := range wants {
		if !strings.Contains(errs, w) {
			t.Errorf("bofh --dry-run %q: stderr lacks %q:\n%s", args, w, errs)
		}
	}
	if !strings.Contains(out, "dry-run") {
		t.Errorf("bofh --dry-run %q: the report does not say dry-run: %q", args, out)
	}
	noTx(t, state)
	return out, errs
}

// jsonOut runs a read-only command with -o json, wants exit 0 and decodes
// stdout into v.
func jsonOut(t *testing.T, env []string, v any, args ...string) {
	t.Helper()
	args = append([]string{"--state-dir", t.TempDir()}, append(args, "-o", "json")...)
	out, errs, code := bofh(t, env, args...)
	if code != 0 {
		t.Fatalf("bofh %q: exit %d\n%s", args, code, errs)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("bofh %q: stdout is not the JSON wanted: %v\n%s", args, err, out)
	}
}

// siteFile writes a site file in a temp dir and returns the env entry
// pointing BOFH_SITE at it.
func siteFile(t *testing.T, yaml string) []string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "site.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"BOFH_SITE=" + p}
}

// fileSum returns the sha256 of a file's content.
func fileSum(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// helpExample runs CMD --help for each command path and wants an Examples
// section.
func helpExample(t *testing.T, paths ...[]string) {
	t.Helper()
	for _, p := range paths {
		out, errs, code := bofh(t, nil, append(p, "--help")...)
		if code != 0 || !strings.Contains(out, "Examples:") {
			t.Errorf("bofh %s --help: exit %d, no Examples section\n%s%s", strings.Join(p, " "), code, out, errs)
		}
	}
}
