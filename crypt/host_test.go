package crypt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

// needCryptsetup fails the test when cryptsetup is missing (deps/crypt.txt),
// unless the runner opted out with BOFH_SKIP_ROOT=1.
func needCryptsetup(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("cryptsetup"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("BOFH_SKIP_ROOT") == "1" {
			t.Skip("BOFH_SKIP_ROOT=1: cryptsetup host tests skipped")
		}
		t.Fatalf("cryptsetup host tests need root and cryptsetup (make deps): %v", err)
	}
}

// image returns a sparse image file of size bytes filled with a pattern
// at its head and tail, so that a restore is byte-exact to check.
func image(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	pat := bytes.Repeat([]byte("bofh-pattern-"), 1<<16)
	if _, err := f.WriteAt(pat, 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(pat[:100000], size-100000); err != nil {
		t.Fatal(err)
	}
	return p
}

func sum(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

func keyFile(t *testing.T, dir, content string) string {
	t.Helper()
	p := filepath.Join(dir, "key-"+strconv.Itoa(len(content))+"-"+fmt.Sprintf("%x", sha256.Sum256([]byte(content)))[:6])
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func fastFormat(dev string) Format {
	f := Format{Device: dev, PBKDF: "pbkdf2", PBKDFIterations: 1000, Hash: "sha256"}
	return f
}

func fastKDF() KDFCost { return KDFCost{PBKDF: "pbkdf2", PBKDFIterations: 1000} }

func TestFormatHost(t *testing.T) {
	needCryptsetup(t)
	ctx := context.Background()
	tests := []struct {
		name      string
		prep      func(t *testing.T, img string)
		force     bool
		luks1     bool
		fail      string // failpoint
		wantExit  int
		wantLUKS  bool
		unchanged bool
	}{
		{"luks2 commit", nil, false, false, "", 0, true, false},
		{"luks1 commit", nil, false, true, "", 0, true, false},
		{"fail after format rolls back", nil, false, false, "1:after:error", 1, false, true},
		{"fail before format", nil, false, false, "1:before:error", 1, false, true},
		{"ext4 refused", mkext4, false, false, "", 2, false, true},
		{"ext4 forced then rolled back", mkext4, true, false, "1:after:error", 1, false, true},
		{"luks refused", mkluks, false, false, "", 2, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := image(t, 24<<20)
			if tt.prep != nil {
				tt.prep(t, img)
			}
			before := sum(t, img)
			f := fastFormat(img)
			f.Force = tt.force
			f.Passphrase = "correct horse"
			if tt.luks1 {
				f.Type = "luks1"
			}
			err := atomic.Run(ctx, "format", func(tx *atomic.Tx) error {
				return tx.Do(ctx, f, nil)
			}, atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints(tt.fail))
			if got := atomic.ExitCode(err); got != tt.wantExit {
				t.Fatalf("exit %d (%v), want %d", got, err, tt.wantExit)
			}
			h, herr := ReadHeader(img)
			if tt.wantLUKS {
				if herr != nil {
					t.Fatalf("no LUKS header after format: %v", herr)
				}
				want := 2
				if tt.luks1 {
					want = 1
				}
				if h.Version != want || len(h.Slots) != 1 {
					t.Errorf("header %+v", h)
				}
				if s, err := slotOf(img, []byte("correct horse")); err != nil || s != 0 {
					t.Errorf("passphrase opens slot %d, %v", s, err)
				}
			}
			if tt.unchanged && sum(t, img) != before {
				t.Errorf("device changed")
			}
		})
	}
}

func mkext4(t *testing.T, img string) {
	t.Helper()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
}

func mkluks(t *testing.T, img string) {
	t.Helper()
	cmd := exec.Command("cryptsetup", "luksFormat", "-q", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file=-", img)
	cmd.Stdin = strings.NewReader("other")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("luksFormat: %v %s", err, out)
	}
}

// keyWorkflow is format → add → change → remove → header backup.
func keyWorkflow(img, dir string, pass, added, changed run.Secret) func(tx *atomic.Tx) error {
	ctx := context.Background()
	return func(tx *atomic.Tx) error {
		f := fastFormat(img)
		f.Passphrase = pass
		f.UUID = "6f1c7a52-1d1e-4b0e-8d3c-0a1b2c3d4e5f"
		steps := []atomic.Params{
			f,
			AddKey{Device: img, Passphrase: pass, NewPassphrase: added, KDFCost: fastKDF()},
			ChangeKey{Device: img, Passphrase: added, NewPassphrase: changed, KDFCost: fastKDF()},
			RemoveKey{Device: img, Passphrase: pass},
			HeaderBackup{Device: img, File: filepath.Join(dir, "hdr.img")},
		}
		for _, p := range steps {
			if err := tx.Do(ctx, p, nil); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestKeyStepsRollbackAtEveryStep(t *testing.T) {
	needCryptsetup(t)
	ctx := context.Background()
	for n := 1; n <= 5; n++ {
		for _, phase := range []string{"before", "after"} {
			t.Run(fmt.Sprintf("%d:%s", n, phase), func(t *testing.T) {
				img := image(t, 24<<20)
				dir := t.TempDir()
				before := sum(t, img)
				err := atomic.Run(ctx, "keys", keyWorkflow(img, dir, "pass-one", "pass-two", "pass-three"),
					atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints(fmt.Sprintf("%d:%s:error", n, phase)))
				if atomic.ExitCode(err) != 1 || !errors.Is(err, atomic.ErrFailpoint) {
					t.Fatalf("want a rolled-back failpoint, got %v", err)
				}
				if sum(t, img) != before {
					t.Error("device not restored")
				}
				if _, err := os.Stat(filepath.Join(dir, "hdr.img")); !errors.Is(err, fs.ErrNotExist) {
					t.Error("header backup file left behind")
				}
			})
		}
	}
	t.Run("commit", func(t *testing.T) {
		img := image(t, 24<<20)
		dir := t.TempDir()
		if err := atomic.Run(ctx, "keys", keyWorkflow(img, dir, "pass-one", "pass-two", "pass-three"), atomic.WithStateDir(t.TempDir())); err != nil {
			t.Fatal(err)
		}
		h, err := ReadHeader(img)
		if err != nil || len(h.Slots) != 1 {
			t.Fatalf("header %+v %v", h, err)
		}
		for pass, ok := range map[string]bool{"pass-one": false, "pass-two": false, "pass-three": true} {
			if _, err := slotOf(img, []byte(pass)); (err == nil) != ok {
				t.Errorf("%s opens: %v, want %v", pass, err == nil, ok)
			}
		}
		if same, err := sameHeader(img, filepath.Join(dir, "hdr.img")); err != nil || !same {
			t.Errorf("header backup differs: %v", err)
		}
	})
}

// TestHeaderRestoreHost restores a backup over a changed header and
// rolls the restore back.
func TestHeaderRestoreHost(t *testing.T) {
	needCryptsetup(t)
	ctx := context.Background()
	img := image(t, 24<<20)
	dir := t.TempDir()
	if err := atomic.Run(ctx, "keys", keyWorkflow(img, dir, "p1", "p2", "p3"), atomic.WithStateDir(t.TempDir())); err != nil {
		t.Fatal(err)
	}
	bk := filepath.Join(dir, "hdr.img")
	// change the header: add a key
	if err := atomic.Run(ctx, "add", func(tx *atomic.Tx) error {
		return tx.Do(ctx, AddKey{Device: img, Passphrase: "p3", NewPassphrase: "p4", KDFCost: fastKDF()}, nil)
	}, atomic.WithStateDir(t.TempDir())); err != nil {
		t.Fatal(err)
	}
	changed := sum(t, img)
	for _, fail := range []string{"1:after:error", ""} {
		err := atomic.Run(ctx, "restore", func(tx *atomic.Tx) error {
			return tx.Do(ctx, HeaderRestore{Device: img, File: bk}, nil)
		}, atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints(fail))
		if fail != "" {
			if atomic.ExitCode(err) != 1 || sum(t, img) != changed {
				t.Fatalf("rolled back restore: %v, device restored to pre-step: %v", err, sum(t, img) == changed)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := slotOf(img, []byte("p4")); !IsWrongPassphrase(err) {
		t.Errorf("p4 still opens after header restore: %v", err)
	}
	// a device holding another header is refused
	other := image(t, 24<<20)
	mkluks(t, other)
	err := atomic.Run(ctx, "restore", func(tx *atomic.Tx) error {
		return tx.Do(ctx, HeaderRestore{Device: other, File: bk}, nil)
	}, atomic.WithStateDir(t.TempDir()))
	if atomic.ExitCode(err) != 2 || !errors.Is(err, ErrSignature) {
		t.Errorf("restore over another header: %v", err)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	needCryptsetup(t)
	ctx := context.Background()
	img := image(t, 24<<20)
	dir := t.TempDir()
	if err := atomic.Run(ctx, "keys", keyWorkflow(img, dir, "p1", "p2", "secret-three"), atomic.WithStateDir(t.TempDir())); err != nil {
		t.Fatal(err)
	}
	before := sum(t, img)
	tests := []struct {
		name string
		step atomic.Params
		is   error
	}{
		{"wrong passphrase add", AddKey{Device: img, Passphrase: "wrong-secret-xyz", NewPassphrase: "n", KDFCost: fastKDF()}, ErrWrongPassphrase},
		{"wrong passphrase change", ChangeKey{Device: img, Passphrase: "wrong-secret-xyz", NewPassphrase: "n", KDFCost: fastKDF()}, ErrWrongPassphrase},
		{"wrong passphrase remove", RemoveKey{Device: img, Passphrase: "wrong-secret-xyz"}, ErrWrongPassphrase},
		{"missing key file", AddKey{Device: img, KeyFile: "/nonexistent/key", NewPassphrase: "n"}, fs.ErrNotExist},
		{"last slot", RemoveKey{Device: img, Passphrase: "secret-three"}, nil},
		{"bad cipher", Format{Device: img, Force: true, Cipher: "aes-foo-plain64", Passphrase: "x"}, nil},
		{"format over luks", Format{Device: img, Passphrase: "x", PBKDF: "pbkdf2", PBKDFIterations: 1000}, ErrSignature},
		{"not luks", AddKey{Device: image(t, 8<<20), Passphrase: "x", NewPassphrase: "y"}, ErrNotLUKS},
		{"redacted", AddKey{Device: img, Passphrase: run.Redacted, NewPassphrase: "y"}, ErrRedacted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state := t.TempDir()
			err := atomic.Run(ctx, "bad", func(tx *atomic.Tx) error { return tx.Do(ctx, tt.step, nil) }, atomic.WithStateDir(state))
			if atomic.ExitCode(err) != 2 {
				t.Fatalf("exit %d: %v", atomic.ExitCode(err), err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			if strings.Contains(err.Error(), "wrong-secret-xyz") || strings.Contains(err.Error(), "secret-three") {
				t.Errorf("error leaks the passphrase: %v", err)
			}
			if sum(t, img) != before {
				t.Error("device changed")
			}
		})
	}
}

// TestSecretsNeverLeak runs key steps with passphrases, a rollback and a
// failing command at debug log level, then greps every file of the state
// dir, the log and the errors for the passphrases.
func TestSecretsNeverLeak(t *testing.T) {
	needCryptsetup(t)
	ctx := context.Background()
	secrets := []string{"Leak-Canary-One", "Leak-Canary-Two", "Leak-Canary-Three", "Leak-Canary-Wrong"}
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	state := t.TempDir()
	img := image(t, 24<<20)
	dir := t.TempDir()
	var errs []error
	opts := func(fail string) []atomic.Option {
		return []atomic.Option{atomic.WithStateDir(state), atomic.WithLogger(log),
			atomic.WithRunner(&run.Local{Log: log}), atomic.WithFailpoints(fail)}
	}
	errs = append(errs, atomic.Run(ctx, "rolled back", keyWorkflow(img, dir, run.Secret(secrets[0]), run.Secret(secrets[1]), run.Secret(secrets[2])), opts("5:after:error")...))
	errs = append(errs, atomic.Run(ctx, "kept", keyWorkflow(img, dir, run.Secret(secrets[0]), run.Secret(secrets[1]), run.Secret(secrets[2])), opts("")...))
	// a cryptsetup command that fails with a passphrase on stdin
	c := run.Cmd{Argv: []string{"cryptsetup", "open", "--test-passphrase"}, Kind: run.Query}
	_ = Key{Passphrase: run.Secret(secrets[3])}.cmd(&c)
	c.Argv = append(c.Argv, img)
	_, err := (&run.Local{Log: log}).Run(ctx, c)
	errs = append(errs, classify(err))
	errs = append(errs, atomic.Run(ctx, "wrong", func(tx *atomic.Tx) error {
		return tx.Do(ctx, ChangeKey{Device: img, Passphrase: run.Secret(secrets[3]), NewPassphrase: "x"}, nil)
	}, opts("")...))
	if !IsWrongPassphrase(errs[2]) {
		t.Errorf("wrong passphrase not classified: %v", errs[2])
	}
	var hay bytes.Buffer
	hay.Write(logBuf.Bytes())
	for _, e := range errs {
		if e != nil {
			fmt.Fprintf(&hay, "%v\n%+v\n%#v\n", e, e, e)
		}
	}
	files := 0
	_ = filepath.WalkDir(state, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			hay.Write(b)
			files++
		}
		return nil
	})
	if files == 0 || logBuf.Len() == 0 {
		t.Fatalf("nothing to grep: %d files, %d log bytes", files, logBuf.Len())
	}
	if !strings.Contains(logBuf.String(), "cryptsetup") {
		t.Errorf("debug log lacks the commands")
	}
	for _, s := range secrets {
		if bytes.Contains(hay.Bytes(), []byte(s)) {
			t.Errorf("passphrase %q leaked into journal, log or errors", s)
		}
	}
}
