package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const cryptSecret = "hunter2-Zq9-s3cret"

func TestCLICryptBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte(cryptSecret), 0o600)
	img := filepath.Join(dir, "disk.img")
	os.WriteFile(img, make([]byte, 1<<20), 0o600)
	missing := filepath.Join(dir, "missing")
	before := snapshot(t, dir, true)
	badInput(t, nil, []cliCase{
		bad("no key file", "passphrases are never taken as flag values", "crypt", "format", img),
		bad("passphrase as a flag", "unknown flag: --passphrase", "crypt", "format", img, "--passphrase", cryptSecret),
		bad("device missing", "no such file or directory", "crypt", "format", missing, "--key-file", key),
		bad("bad luks type", `type "luks3"`, "crypt", "format", img, "--key-file", key, "--type", "luks3"),
		bad("mapping name with slash", `mapping name "bad/name"`, "crypt", "open", img, "bad/name", "--key-file", key),
		bad("key file missing", "key file "+missing, "crypt", "open", img, "data", "--key-file", missing),
		bad("bad resize size", `size "10Q"`, "crypt", "resize", "data", "--size", "10Q"),
		{name: "two keys from stdin", want: "only one key can come from stdin", args: []string{"crypt", "key", "add", img, "--key-file", "-", "--new-key-file", "-"}, stdin: cryptSecret + "\n"},
		bad("empty key on stdin", "empty key on stdin", "crypt", "close", "data", "--key-file", "-"),
	})
	if d := cmp.Diff(strings.Split(before, "\n"), strings.Split(snapshot(t, dir, true), "\n")); d != "" {
		t.Fatalf("bad input changed the device or its directory (-before +after):\n%s", d)
	}
}

// A passphrase must never reach argv, logs or output, even at debug level
// and in error messages.
func TestCLICryptSecretNotLogged(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte(cryptSecret), 0o600)
	missing := filepath.Join(dir, "missing")
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, make([]byte, 32<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir, true)
	runs := []struct {
		name  string
		stdin string
		args  []string
		code  int
	}{
		{"key file, device missing", "", []string{"crypt", "format", missing, "--key-file", key}, 2},
		{"stdin, device missing", cryptSecret + "\n", []string{"crypt", "format", missing, "--key-file", "-"}, 2},
		{"stdin, open fails", cryptSecret, []string{"crypt", "open", img, "data", "--key-file", "-"}, 2},
		{"stdin, key add, json", cryptSecret, []string{"-o", "json", "crypt", "key", "add", missing, "--key-file", key, "--new-key-file", "-"}, 2},
		{"stdin, dry-run format", cryptSecret, []string{"--dry-run", "crypt", "format", img, "--key-file", "-", "--fast"}, 0},
		{"stdin, dry-run format, json", cryptSecret, []string{"--dry-run", "-o", "json", "crypt", "format", img, "--key-file", "-", "--fast"}, 0},
	}
	// a group: t.Run returns when its parallel subtests have run, so the
	// check below sees what they did
	t.Run("runs", func(t *testing.T) {
		for _, r := range runs {
			t.Run(r.name, func(t *testing.T) {
				t.Parallel()
				state := t.TempDir()
				out, errs, code := bofhIn(t, nil, r.stdin, append([]string{"--state-dir", state, "--log-level", "debug"}, r.args...)...)
				if code != r.code {
					t.Fatalf("exit %d, want %d\n%s", code, r.code, errs)
				}
				if strings.Contains(errs, cryptSecret) || strings.Contains(out, cryptSecret) {
					t.Fatalf("the passphrase leaked:\nstdout: %s\nstderr: %s", out, errs)
				}
				noTx(t, state)
			})
		}
	})
	if d := cmp.Diff(strings.Split(before, "\n"), strings.Split(snapshot(t, dir, true), "\n")); d != "" {
		t.Fatalf("the failed commands or a dry run changed the device or its directory (-before +after):\n%s", d)
	}
}

// Dry run over a file-backed "device": prints the backup and the
// luksFormat argv (the key from stdin as --key-file=-), changes nothing.
func TestCLICryptDryRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, make([]byte, 32<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	before := fileSum(t, img)
	dryRun(t, nil, cryptSecret, []string{"crypt", "format", img, "--key-file", "-", "--fast"},
		"would back up the first 16777216 and last 1048576 bytes of "+img,
		"would run: cryptsetup luksFormat --batch-mode --type luks2",
		"--key-file=- "+img)
	if fileSum(t, img) != before {
		t.Fatal("dry run changed the device")
	}
	if _, err := os.Stat(filepath.Join(dir, "hdr")); err == nil {
		t.Fatal("dry run wrote a file")
	}
}

func TestCLICryptJSON(t *testing.T) {
	t.Parallel()
	img := filepath.Join(t.TempDir(), "plain.img")
	os.WriteFile(img, make([]byte, 1<<20), 0o600)
	// is-luks prints {"luks": false} and exits 1 on a device without a header
	out, errs, code := bofh(t, nil, "--state-dir", t.TempDir(), "crypt", "is-luks", img, "-o", "json")
	if code != 1 || strings.TrimSpace(out) != "{\n  \"luks\": false\n}" || !strings.Contains(errs, "not a LUKS device") {
		t.Fatalf("is-luks: exit %d\nstdout %q\nstderr %q", code, out, errs)
	}
	helpExample(t, []string{"crypt"}, []string{"crypt", "format"}, []string{"crypt", "key", "add"}, []string{"crypt", "header", "backup"})
}
