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
	"sync"
	"syscall"
	"testing"
	"time"

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
			if tt.fail != "" && !errors.Is(err, atomic.ErrFailpoint) {
				t.Fatalf("failpoint %s did not fire: %v", tt.fail, err)
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
			if !errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != 1 || sum(t, img) != changed {
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

// leakCanaries are the passphrases TestSecretsNeverLeak looks for: three
// for the key workflow, one wrong one.
var leakCanaries = []string{"Leak-Canary-One", "Leak-Canary-Two", "Leak-Canary-Three", "Leak-Canary-Wrong"}

func leakWorkflow(img, dir string) func(tx *atomic.Tx) error {
	return keyWorkflow(img, dir, run.Secret(leakCanaries[0]), run.Secret(leakCanaries[1]), run.Secret(leakCanaries[2]))
}

// leakHay collects what a leak could show, by where it was found.
type leakHay struct {
	mu    sync.Mutex
	where map[string]*bytes.Buffer
}

func (h *leakHay) add(where string, b []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.where == nil {
		h.where = map[string]*bytes.Buffer{}
	}
	if h.where[where] == nil {
		h.where[where] = &bytes.Buffer{}
	}
	h.where[where].Write(b)
	h.where[where].WriteByte('\n')
}

// addDir adds every regular file under dir (journal, data/ with the step
// directories, caches); it returns how many it read.
func (h *leakHay) addDir(what, dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, err := os.ReadFile(p); err == nil {
				h.add(what+" "+p, b)
				n++
			}
		}
		return nil
	})
	return n
}

// addProcs adds the command line of every process, and the environment of
// every cryptsetup; it reports whether a cryptsetup was running.
func (h *leakHay) addProcs(what string) bool {
	seen := false
	pids, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range pids {
		cl, err := os.ReadFile(p + "/cmdline")
		if err != nil {
			continue
		}
		h.add(what+" "+p+"/cmdline", cl)
		if bytes.Contains(cl, []byte("cryptsetup")) {
			seen = true
			if env, err := os.ReadFile(p + "/environ"); err == nil {
				h.add(what+" "+p+"/environ", env)
			}
		}
	}
	return seen
}

func (h *leakHay) addErr(what string, err error) {
	if err != nil {
		h.add(what, []byte(fmt.Sprintf("%v\n%+v\n%#v", err, err, err)))
	}
}

// check fails the test for every canary found, naming where.
func (h *leakHay) check(t *testing.T, when string) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for where, b := range h.where {
		for _, s := range leakCanaries {
			if bytes.Contains(b.Bytes(), []byte(s)) {
				t.Errorf("%s: passphrase %q found in %s", when, s, where)
			}
		}
	}
}

// spyRunner runs commands with inner and shows hay what a leak could show
// while the transaction is mid-step: each command's argv and environment,
// every file of the state dir just before a mutation runs (a key staged in
// a step directory is there then), and the command lines of all processes
// while the command runs.
type spyRunner struct {
	inner    run.Runner
	state    string
	hay      *leakHay
	mu       sync.Mutex
	procHits int // /proc snapshots that caught a cryptsetup running
}

func (s *spyRunner) Run(ctx context.Context, c run.Cmd) (run.Result, error) {
	s.hay.add("argv and env", []byte(fmt.Sprintf("%q %q", c.Argv, c.Env)))
	if c.Kind == run.Mutation {
		s.hay.addDir("state dir during "+c.Argv[0]+" "+c.Argv[1], s.state)
	}
	done := make(chan struct{})
	var res run.Result
	var err error
	go func() {
		defer close(done)
		res, err = s.inner.Run(ctx, c)
	}()
	for {
		if s.hay.addProcs("while " + strings.Join(c.Argv[:min(2, len(c.Argv))], " ") + " ran:") {
			s.mu.Lock()
			s.procHits++
			s.mu.Unlock()
		}
		select {
		case <-done:
			return res, err
		case <-time.After(time.Millisecond):
		}
	}
}

// killRunner SIGKILLs its own process just before the k-th command whose
// argv[1] is verb runs: the step is mid-effect, its key material staged.
type killRunner struct {
	inner run.Runner
	verb  string
	k     int
	n     int
}

func (r *killRunner) Run(ctx context.Context, c run.Cmd) (run.Result, error) {
	if len(c.Argv) > 1 && c.Argv[1] == r.verb {
		if r.n++; r.n == r.k {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Hour)
		}
	}
	return r.inner.Run(ctx, c)
}

// TestSecretsNeverLeak runs the key workflow with passphrases at debug log
// level: committed, rolled back, and with a wrong passphrase, checking
// each result; and interrupted (a SIGKILLed child) at every key step,
// both by BOFH_FAIL before and after the step's effect and in the middle
// of its cryptsetup command, then rolled back from the journal. It looks
// for the passphrases in every file of the state dir (journal, data/ with
// the step directories) while the transaction is interrupted and after,
// in the debug logs, the errors, the commands' argv and environment, and
// the command lines of the processes running meanwhile.
func TestSecretsNeverLeak(t *testing.T) {
	if v := os.Getenv("BOFH_CRYPT_LEAK_CHILD"); v != "" {
		leakChild(v)
		return
	}
	needCryptsetup(t)
	ctx := context.Background()
	t.Run("in process", func(t *testing.T) {
		hay := &leakHay{}
		var logBuf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		state := t.TempDir()
		img := image(t, 24<<20)
		dir := t.TempDir()
		spy := &spyRunner{inner: &run.Local{Log: log}, state: state, hay: hay}
		opts := func(fail string) []atomic.Option {
			return []atomic.Option{atomic.WithStateDir(state), atomic.WithLogger(log), atomic.WithRunner(spy), atomic.WithFailpoints(fail)}
		}
		err := atomic.Run(ctx, "rolled back", leakWorkflow(img, dir), opts("5:after:error")...)
		hay.addErr("error of the rolled-back run", err)
		if !errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != atomic.ExitRolledBack {
			t.Errorf("rolled-back run: %v (exit %d), want the failpoint, rolled back", err, atomic.ExitCode(err))
		}
		err = atomic.Run(ctx, "kept", leakWorkflow(img, dir), opts("")...)
		hay.addErr("error of the committed run", err)
		if err != nil {
			t.Errorf("committed run: %v", err)
		}
		// a cryptsetup command that fails with a passphrase on stdin
		c := run.Cmd{Argv: []string{"cryptsetup", "open", "--test-passphrase"}, Kind: run.Query}
		if err := (Key{Passphrase: run.Secret(leakCanaries[3])}).cmd(&c); err != nil {
			t.Fatal(err)
		}
		c.Argv = append(c.Argv, img)
		_, err = spy.Run(ctx, c)
		err = classify(err)
		hay.addErr("error of cryptsetup open", err)
		if !IsWrongPassphrase(err) {
			t.Errorf("wrong passphrase not classified: %v", err)
		}
		err = atomic.Run(ctx, "wrong", func(tx *atomic.Tx) error {
			return tx.Do(ctx, ChangeKey{Device: img, Passphrase: run.Secret(leakCanaries[3]), NewPassphrase: "x"}, nil)
		}, opts("")...)
		hay.addErr("error of the wrong-passphrase run", err)
		if atomic.ExitCode(err) != atomic.ExitInvalid || !IsWrongPassphrase(err) {
			t.Errorf("wrong passphrase: %v (exit %d), want exit 2", err, atomic.ExitCode(err))
		}
		hay.add("debug log", logBuf.Bytes())
		if n := hay.addDir("state dir at the end", state); n == 0 {
			t.Errorf("nothing to grep in the state dir")
		}
		if !strings.Contains(logBuf.String(), "cryptsetup luksAddKey") {
			t.Errorf("the debug log lacks the commands")
		}
		if spy.procHits == 0 {
			t.Errorf("no /proc snapshot caught a cryptsetup running: the command line check saw nothing")
		}
		t.Logf("%d /proc snapshots caught a cryptsetup", spy.procHits)
		hay.check(t, "in process")
	})
	// each key step interrupted: by BOFH_FAIL before and after its effect,
	// and by a kill just before its cryptsetup mutation runs
	type cut struct{ name, fail, verb string }
	var cuts []cut
	for n, verb := range []string{"luksFormat#1", "luksAddKey#1", "luksChangeKey#1", "luksKillSlot#1", "luksHeaderBackup#2"} {
		cuts = append(cuts, cut{fmt.Sprintf("%d-in-%s", n+1, verb), "", verb},
			cut{fmt.Sprintf("%d-before", n+1), fmt.Sprintf("%d:before:kill", n+1), ""},
			cut{fmt.Sprintf("%d-after", n+1), fmt.Sprintf("%d:after:kill", n+1), ""})
	}
	for _, c := range cuts {
		t.Run(c.name, func(t *testing.T) {
			hay := &leakHay{}
			img := image(t, 24<<20)
			before := sum(t, img)
			state, dir := t.TempDir(), t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestSecretsNeverLeak$", "-test.count=1")
			cmd.Env = append(os.Environ(), "BOFH_CRYPT_LEAK_CHILD=kill-at:"+c.verb, "BOFH_CRYPT_LEAK_IMG="+img,
				"BOFH_CRYPT_LEAK_DIR="+dir, "BOFH_CRYPT_LEAK_STATE="+state, atomic.FailEnv+"="+c.fail)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != -1 {
				t.Fatalf("child was not killed: %v\n%s", err, out)
			}
			hay.add("the child's debug log and output", out)
			if n := hay.addDir("state dir of the interrupted transaction:", state); n == 0 {
				t.Errorf("no journal left by the interrupted transaction")
			}
			hay.addProcs("after the kill:")
			hay.check(t, "interrupted")
			hay = &leakHay{}
			var logBuf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			err = atomic.RollbackID(context.Background(), "leak", nil, atomic.WithStateDir(state), atomic.WithLogger(log),
				atomic.WithRunner(&spyRunner{inner: &run.Local{Log: log}, state: state, hay: hay}), atomic.WithFailpoints(""))
			hay.addErr("error of the rollback", err)
			if err != nil {
				t.Errorf("rollback of the interrupted transaction: %v", err)
			}
			if d, err := atomic.Show(state, "leak"); err != nil || d.State != atomic.StateRolledBack {
				t.Errorf("after rollback: %v %v", d.State, err)
			}
			if sum(t, img) != before {
				t.Errorf("rollback did not restore the device")
			}
			hay.add("the rollback's debug log", logBuf.Bytes())
			hay.addDir("state dir after rollback:", state)
			hay.check(t, "rolled back")
		})
	}
}

// leakChild is the child process of TestSecretsNeverLeak: it runs the key
// workflow, killed by BOFH_FAIL or just before the command named by spec
// ("kill-at:verb#k": the k-th cryptsetup verb; "kill-at:" alone leaves it
// to BOFH_FAIL), with a debug log on stderr.
func leakChild(spec string) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var r run.Runner = &run.Local{Log: log}
	if verb, k, ok := strings.Cut(strings.TrimPrefix(spec, "kill-at:"), "#"); ok {
		n, _ := strconv.Atoi(k)
		r = &killRunner{inner: r, verb: verb, k: n}
	}
	err := atomic.Run(context.Background(), "leak", leakWorkflow(os.Getenv("BOFH_CRYPT_LEAK_IMG"), os.Getenv("BOFH_CRYPT_LEAK_DIR")),
		atomic.WithStateDir(os.Getenv("BOFH_CRYPT_LEAK_STATE")), atomic.WithID("leak"), atomic.WithLogger(log), atomic.WithRunner(r))
	fmt.Fprintln(os.Stderr, "child survived:", err)
	os.Exit(9)
}

// TestNewKeyFromFileOrPassphrase adds and changes keys with every mix of
// key file and passphrase for the current and the new key (passphrases
// share stdin, the current one cut by --keyfile-size), and checks with
// cryptsetup which key opens the device afterwards.
func TestNewKeyFromFileOrPassphrase(t *testing.T) {
	needCryptsetup(t)
	ctx := context.Background()
	keys := t.TempDir()
	// a trailing newline is part of a key, in a file as in a passphrase
	cur, nk := "current-key\n", "new-key"
	for _, curFile := range []bool{false, true} {
		for _, newFile := range []bool{false, true} {
			for _, kind := range []string{"add", "change"} {
				t.Run(fmt.Sprintf("%s-file-%v-%v", kind, curFile, newFile), func(t *testing.T) {
					img := image(t, 24<<20)
					f := fastFormat(img)
					f.Passphrase = run.Secret(cur)
					var c, n Key
					if curFile {
						c.File = keyFile(t, keys, cur)
					} else {
						c.Passphrase = run.Secret(cur)
					}
					if newFile {
						n.File = keyFile(t, keys, nk)
					} else {
						n.Passphrase = run.Secret(nk)
					}
					var step atomic.Params = AddKey{Device: img, KeyFile: c.File, Passphrase: c.Passphrase, NewKeyFile: n.File, NewPassphrase: n.Passphrase, KDFCost: fastKDF()}
					if kind == "change" {
						step = ChangeKey{Device: img, KeyFile: c.File, Passphrase: c.Passphrase, NewKeyFile: n.File, NewPassphrase: n.Passphrase, KDFCost: fastKDF()}
					}
					err := atomic.Run(ctx, "keys", func(tx *atomic.Tx) error {
						if err := tx.Do(ctx, f, nil); err != nil {
							return err
						}
						return tx.Do(ctx, step, nil)
					}, atomic.WithStateDir(t.TempDir()))
					if err != nil {
						t.Fatal(err)
					}
					opens := func(key string) bool {
						cmd := exec.Command("cryptsetup", "open", "--test-passphrase", "--key-file=-", img)
						cmd.Stdin = strings.NewReader(key)
						return cmd.Run() == nil
					}
					if !opens(nk) {
						t.Errorf("the new key does not open the device")
					}
					if want := kind == "add"; opens(cur) != want {
						t.Errorf("the current key opens the device: %v, want %v", !want, want)
					}
					if opens(strings.TrimSuffix(cur, "\n")) || opens(nk+"\n") {
						t.Errorf("a key opens without its exact bytes")
					}
				})
			}
		}
	}
}
