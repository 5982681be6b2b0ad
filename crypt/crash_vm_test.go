//go:build vm

package crypt

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
	"github.com/bofhkit/bofh/internal/vmtest"
)

// The crash child of TestVMKindsCrash: a re-exec of this test binary that
// applies the recipe in $BOFH_CRYPT_KINDS_RECIPE, or rolls back the
// transaction, with BOFH_FAIL from its environment (a kill).
const (
	kindsModeEnv   = "BOFH_CRYPT_KINDS_MODE" // apply or rollback
	kindsRecipeEnv = "BOFH_CRYPT_KINDS_RECIPE"
	kindsStateEnv  = "BOFH_CRYPT_KINDS_STATE"
	kindsIDEnv     = "BOFH_CRYPT_KINDS_ID"
)

func init() {
	if mode := os.Getenv(kindsModeEnv); mode != "" {
		os.Exit(kindsChild(mode))
	}
}

func kindsChild(mode string) int {
	ctx := context.Background()
	opts := []atomic.Option{atomic.WithStateDir(os.Getenv(kindsStateEnv))}
	var err error
	switch mode {
	case "apply":
		var r *atomic.Recipe
		if r, err = atomic.ParseRecipe([]byte(os.Getenv(kindsRecipeEnv))); err == nil {
			_, err = atomic.Apply(ctx, r, append(opts, atomic.WithID(os.Getenv(kindsIDEnv)))...)
		}
	case "rollback":
		err = atomic.RollbackID(ctx, os.Getenv(kindsIDEnv), nil, opts...)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	fmt.Fprintf(os.Stderr, "kinds crash child (%s): not killed: %v\n", mode, err)
	return 5
}

// killedChild runs the crash child in mode with BOFH_FAIL=fail; it must
// die of SIGKILL.
func killedChild(t *testing.T, mode, state, id, recipe, fail string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), kindsModeEnv+"="+mode, kindsRecipeEnv+"="+recipe, kindsStateEnv+"="+state,
		kindsIDEnv+"="+id, atomic.FailEnv+"="+fail)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != -1 {
		t.Fatalf("%s child with %s was not killed: %v\n%s", mode, fail, err, out)
	}
}

// sumFrom is the sha256 of path from off to its end.
func sumFrom(t *testing.T, path string, off int64) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, off, 1<<40)); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// luksProbe describes a LUKS device with cryptsetup itself: its active key
// slots (luksDump --dump-json-metadata), which of keys open it
// (open --test-passphrase) and a sha256 of everything after the 16 MiB
// header area.
func luksProbe(t *testing.T, dev string, keys []string) string {
	t.Helper()
	var b strings.Builder
	js := sh(t, "cryptsetup", "luksDump", "--dump-json-metadata", dev)
	var md struct {
		Keyslots map[string]json.RawMessage `json:"keyslots"`
	}
	if err := json.Unmarshal([]byte(js), &md); err != nil {
		t.Fatalf("luksDump json: %v\n%s", err, js)
	}
	var slots []string
	for k := range md.Keyslots {
		slots = append(slots, k)
	}
	slices.Sort(slots)
	fmt.Fprintf(&b, "keyslots %v\n", slots)
	for _, k := range keys {
		_, ok := shOK("cryptsetup", "open", "--test-passphrase", "--key-file", k, dev)
		fmt.Fprintf(&b, "key %s opens: %v\n", filepath.Base(k), ok)
	}
	fmt.Fprintf(&b, "data sha256 %s\n", sumFrom(t, dev, headBackup))
	return b.String()
}

// TestVMKindsCrash crashes every crypt step kind in the middle of its
// effect against the real cryptsetup and device-mapper, and rolls back to
// the starting state. A child applies the step and is SIGKILLed mid-step
// (before the k-th command of a step of several, else right after its
// effect); a first 'tx rollback' is SIGKILLed in the step's undo
// (undo:kill) where the step took effect, a second one finishes. The
// starting state is then checked with the real tools: whole-image sha256
// of the blank device (format, header restore), cryptsetup's own view of
// the LUKS device (UUID, key slots, which keys open it, the data area's
// sha256), the device-mapper tables and sizes, and the header backup file.
func TestVMKindsCrash(t *testing.T) {
	vmtest.Require(t)
	ctx := context.Background()
	blank, blankFile := loopDev(t, 24<<20) // a device with a pattern and no signature
	luks, _ := loopDev(t, 24<<20)          // LUKS2: k1 in slot 0, k2 in slot 1
	luks2, _ := loopDev(t, 24<<20)         // LUKS2 with k1, open as bofhkc
	dir := t.TempDir()
	k1, k2, k3 := keyFile(t, dir, "key one"), keyFile(t, dir, "key two"), keyFile(t, dir, "key three")
	keys := []string{k1, k2, k3}
	hdr := filepath.Join(dir, "luks.hdr")      // a header backup of luks made before
	bk := filepath.Join(dir, "new-backup.hdr") // made by crypt.header.backup
	const open = "bofhkc"
	t.Cleanup(func() {
		for _, n := range []string{open, "bofhko"} {
			exec.Command("cryptsetup", "close", n).Run()
		}
	})
	format := func(dev string) Format {
		f := fastFormat(dev)
		f.KeyFile = k1
		return f
	}
	setup := []atomic.Params{
		format(luks),
		AddKey{Device: luks, KeyFile: k1, NewKeyFile: k2, KDFCost: fastKDF()},
		HeaderBackup{Device: luks, File: hdr},
		format(luks2),
		Open{Device: luks2, Name: open, KeyFile: k1, Backend: BackendCryptsetup},
	}
	if err := do(t, t.TempDir(), setup...); err != nil {
		t.Fatal(err)
	}
	probe := func(t *testing.T) string {
		t.Helper()
		var b strings.Builder
		fmt.Fprintf(&b, "blank: sha256 %s\n", sum(t, blankFile))
		fmt.Fprintf(&b, "luks: %s", luksProbe(t, luks, keys))
		tables, _ := shOK("dmsetup", "table")
		for _, l := range strings.Split(tables, "\n") {
			if strings.HasPrefix(l, "bofhk") {
				fmt.Fprintf(&b, "dm %s\n", l)
			}
		}
		if mapped(open) {
			fmt.Fprintf(&b, "%s sectors %s\n", open, sh(t, "blockdev", "--getsz", mapperPath(open)))
		}
		_, err := os.Lstat(bk)
		fmt.Fprintf(&b, "backup file exists: %v\n", err == nil)
		return b.String()
	}
	start := probe(t)
	if !strings.Contains(start, "keyslots [0 1]") || !strings.Contains(start, "dm "+open+":") {
		t.Fatalf("unexpected starting state:\n%s", start)
	}
	cases := []struct {
		name string
		step atomic.Params
		fail string // where the apply child is killed
		undo string // where the first rollback is killed ("" for none)
	}{
		{"format", format(blank), "1:after:kill", "1:undo:kill"},
		{"key.add", AddKey{Device: luks, KeyFile: k1, NewKeyFile: k3, KDFCost: fastKDF()}, "1:after:kill", "1:undo:kill"},
		// key.change and key.remove back the header up (cryptsetup
		// luksHeaderBackup), then act: killed in between, nothing is
		// changed yet and the rollback has nothing to undo
		{"key.change cmd2", ChangeKey{Device: luks, KeyFile: k2, NewKeyFile: k3, KDFCost: fastKDF()}, "1:cmd2:kill", ""},
		{"key.change", ChangeKey{Device: luks, KeyFile: k2, NewKeyFile: k3, KDFCost: fastKDF()}, "1:after:kill", "1:undo:kill"},
		{"key.remove cmd2", RemoveKey{Device: luks, KeyFile: k2}, "1:cmd2:kill", ""},
		{"key.remove", RemoveKey{Device: luks, KeyFile: k2}, "1:after:kill", "1:undo:kill"},
		{"header.backup", HeaderBackup{Device: luks, File: bk}, "1:after:kill", "1:undo:kill"},
		{"header.restore", HeaderRestore{Device: blank, File: hdr}, "1:after:kill", "1:undo:kill"},
		// luks.go loads the table, then dmsetup mknodes runs: killed
		// between the two
		{"open luksgo cmd1", Open{Device: luks, Name: "bofhko", KeyFile: k1}, "1:cmd1:kill", "1:undo:kill"},
		// opened by cryptsetup, the volume key is in the kernel keyring:
		// cryptsetup resize needs the key
		{"resize", Resize{Name: open, Size: "4MiB", KeyFile: k1}, "1:after:kill", "1:undo:kill"},
		{"close", Close{Name: open, KeyFile: k1}, "1:after:kill", "1:undo:kill"},
	}
	total := time.Now()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t0 := time.Now()
			state, id := t.TempDir(), atomic.NewID()
			killedChild(t, "apply", state, id, hosttest.RecipeOf(t, "crypt-kinds-crash", c.step), c.fail)
			if c.undo != "" {
				killedChild(t, "rollback", state, id, "", c.undo)
			}
			if err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(state), atomic.WithFailpoints("")); err != nil {
				t.Fatalf("rollback: %v", err)
			}
			if got := probe(t); got != start {
				t.Fatalf("after a kill at %s, a kill at %q in the rollback and a second rollback:\n got:\n%s\nwant:\n%s", c.fail, c.undo, got, start)
			}
			t.Logf("%s: %.1fs", c.name, time.Since(t0).Seconds())
		})
		if t.Failed() {
			break // the starting state is gone
		}
	}
	t.Logf("%d cases: %.1fs", len(cases), time.Since(total).Seconds())
}
