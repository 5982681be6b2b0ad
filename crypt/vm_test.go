//go:build vm

package crypt

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	_ "github.com/bofhkit/bofh/blockdev" // loop.attach, fs.mkfs, mount for the lab recipe
	"github.com/bofhkit/bofh/internal/vmtest"
	"github.com/bofhkit/bofh/run"
)

func sh(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

func shOK(argv ...string) (string, bool) {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	return string(out), err == nil
}

// loopDev attaches a sparse file as a loop device, detached at cleanup.
func loopDev(t *testing.T, size int64) (dev, file string) {
	t.Helper()
	file = image(t, size)
	dev = strings.TrimSpace(sh(t, "losetup", "--find", "--show", file))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev, file
}

func mapped(name string) bool {
	out, _ := shOK("dmsetup", "ls")
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

func mounted(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

func do(t *testing.T, state string, steps ...atomic.Params) error {
	t.Helper()
	ctx := context.Background()
	return atomic.Run(ctx, "vm", func(tx *atomic.Tx) error {
		for _, p := range steps {
			if err := tx.Do(ctx, p, nil); err != nil {
				return err
			}
		}
		return nil
	}, atomic.WithStateDir(state))
}

// TestVMLifecycle: LUKS2 format -> open (luks.go, then cryptsetup) -> mkfs
// -> mount -> write -> close -> reopen -> data intact; key add/remove;
// header backup/restore; LUKS1 format + open; wrong passphrase and a busy
// device change nothing.
func TestVMLifecycle(t *testing.T) {
	vmtest.Require(t)
	ctx := context.Background()
	for _, typ := range []string{"luks2", "luks1"} {
		t.Run(typ, func(t *testing.T) {
			dev, _ := loopDev(t, 64<<20)
			keys := t.TempDir()
			k1 := keyFile(t, keys, "first key\n")
			k2 := keyFile(t, keys, "second key")
			name := "bofh-" + typ
			mnt := t.TempDir()
			state := t.TempDir()
			f := fastFormat(dev)
			f.Type, f.KeyFile = typ, k1
			if err := do(t, state, f); err != nil {
				t.Fatal(err)
			}
			if _, ok := shOK("cryptsetup", "isLuks", dev); !ok {
				t.Fatal("cryptsetup isLuks: not LUKS after format")
			}
			// wrong passphrase: exit 2, no mapping
			err := do(t, state, Open{Device: dev, Name: name, Passphrase: "wrong-vm-pass"})
			if atomic.ExitCode(err) != 2 || !IsWrongPassphrase(err) || strings.Contains(err.Error(), "wrong-vm-pass") || mapped(name) {
				t.Fatalf("wrong passphrase: %v", err)
			}
			for i, backend := range []string{BackendLuksGo, BackendCryptsetup} {
				o := Open{Device: dev, Name: name, KeyFile: k1, Backend: backend}
				if err := do(t, state, o); err != nil {
					t.Fatalf("open with %s: %v", backend, err)
				}
				if !mapped(name) {
					t.Fatalf("%s: no mapping after open", backend)
				}
				if err := do(t, state, o); err != nil { // already open: no-op
					t.Fatalf("second open: %v", err)
				}
				path := mapperPath(name)
				if i == 0 {
					sh(t, "mkfs.ext4", "-q", path)
				}
				sh(t, "mount", path, mnt)
				if i == 0 {
					if err := os.WriteFile(filepath.Join(mnt, "data"), []byte("intact "+typ), 0o644); err != nil {
						t.Fatal(err)
					}
					// busy: closing a mounted mapping is refused, nothing changed
					err := do(t, state, Close{Name: name, KeyFile: k1})
					if atomic.ExitCode(err) != 2 || !IsBusy(err) || !mapped(name) {
						t.Fatalf("close while mounted: %v", err)
					}
					// format over an open device is refused
					ff := fastFormat(dev)
					ff.Force, ff.KeyFile = true, k2
					if err := do(t, state, ff); atomic.ExitCode(err) != 2 || !IsBusy(err) {
						t.Fatalf("format while open: %v", err)
					}
				} else if b, err := os.ReadFile(filepath.Join(mnt, "data")); err != nil || string(b) != "intact "+typ {
					t.Fatalf("data after reopen: %q %v", b, err)
				}
				sh(t, "umount", mnt)
				if err := do(t, state, Close{Name: name, KeyFile: k1}); err != nil {
					t.Fatal(err)
				}
				if mapped(name) {
					t.Fatal("mapping left after close")
				}
			}
			// keys: add k2, open with it, remove k1 (rolled back, then kept)
			if err := do(t, state, AddKey{Device: dev, KeyFile: k1, NewKeyFile: k2, KDFCost: fastKDF()}); err != nil {
				t.Fatal(err)
			}
			if err := do(t, state, Open{Device: dev, Name: name, KeyFile: k2, Backend: BackendCryptsetup}); err != nil {
				t.Fatalf("open with the added key: %v", err)
			}
			sh(t, "cryptsetup", "close", name)
			bk := filepath.Join(keys, "hdr")
			if err := do(t, state, HeaderBackup{Device: dev, File: bk}); err != nil {
				t.Fatal(err)
			}
			if err := do(t, state, RemoveKey{Device: dev, KeyFile: k1}); err != nil {
				t.Fatal(err)
			}
			if err := do(t, state, Open{Device: dev, Name: name, KeyFile: k1}); !IsWrongPassphrase(err) {
				t.Fatalf("removed key still opens: %v", err)
			}
			if err := do(t, state, HeaderRestore{Device: dev, File: bk}); err != nil {
				t.Fatal(err)
			}
			if err := do(t, state, Open{Device: dev, Name: name, KeyFile: k1}); err != nil {
				t.Fatalf("key not back after header restore: %v", err)
			}
			if err := do(t, state, Resize{Name: name, Size: "8MiB"}); err != nil {
				t.Fatalf("resize: %v", err)
			}
			if n, err := Sectors(ctx, &run.Local{}, mapperPath(name)); err != nil || n != 16384 {
				t.Fatalf("size after resize: %d %v", n, err)
			}
			sh(t, "cryptsetup", "close", name)
		})
	}
}

// TestVMBadCipher: luksFormat with a cipher the lab kernel lacks (aria:
// Debian's 6.1 kernel has no aria module) fails at the effect, cryptsetup
// naming the cipher; the transaction is rolled back (exit 1, journal
// rolled-back), the device keeps every byte and shows no signature
// (cryptsetup isLuks, blkid -p), and no temporary mapping is left. A
// format that succeeds fails the test: pick a cipher the kernel lacks.
func TestVMBadCipher(t *testing.T) {
	vmtest.Require(t)
	dev, file := loopDev(t, 32<<20)
	before := sum(t, file)
	state := t.TempDir()
	f := fastFormat(dev)
	f.Cipher, f.Passphrase = "aria-xts-plain64", "bad-cipher-pass"
	err := do(t, state, f)
	if err == nil {
		t.Fatalf("luksFormat with %s succeeded: this kernel has the cipher, the test needs one it lacks", f.Cipher)
	}
	t.Logf("format with aria: %v", err)
	var re *run.Error
	if atomic.ExitCode(err) != atomic.ExitRolledBack || !errors.As(err, &re) || !strings.Contains(err.Error(), "kernel supports aria-xts-plain64") {
		t.Errorf("format with a missing cipher: %v (exit %d), want cryptsetup's failure naming the cipher, rolled back (exit 1)", err, atomic.ExitCode(err))
	}
	if strings.Contains(err.Error(), "bad-cipher-pass") {
		t.Errorf("the error leaks the passphrase: %v", err)
	}
	sh(t, "sync")
	if sum(t, file) != before {
		t.Error("failed format changed the device")
	}
	if out, ok := shOK("cryptsetup", "isLuks", dev); ok {
		t.Errorf("cryptsetup isLuks succeeds after a failed format: %s", out)
	}
	if out, _ := shOK("blkid", "-p", "-o", "export", dev); strings.Contains(out, "TYPE=") {
		t.Errorf("blkid finds a signature after a failed format: %s", out)
	}
	if out, _ := shOK("dmsetup", "ls"); strings.Contains(out, "temporary-cryptsetup") {
		t.Errorf("a cryptsetup mapping was left: %s", out)
	}
	txs, lerr := atomic.List(state)
	if lerr != nil {
		t.Fatal(lerr)
	}
	if len(txs) != 1 || txs[0].State != atomic.StateRolledBack {
		t.Errorf("journals: %+v, want one rolled back", txs)
	}
}

const labName = "bofh-lab-crypt"

type labEnv struct {
	file, key, mnt, state, recipe string
	chunks                        []string // sha256 of each MiB of the file at the start
}

func newLab(t *testing.T) *labEnv {
	t.Helper()
	l := &labEnv{file: image(t, 48<<20), mnt: t.TempDir(), state: t.TempDir()}
	l.key = keyFile(t, t.TempDir(), "lab key")
	tpl, err := os.ReadFile(filepath.Join("..", "testdata", "crypt", "lab-recipe.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r := strings.NewReplacer("@FILE@", l.file, "@KEY@", l.key, "@MNT@", l.mnt, "@NAME@", labName).Replace(string(tpl))
	l.recipe = filepath.Join(t.TempDir(), "recipe.yaml")
	if err := os.WriteFile(l.recipe, []byte(r), 0o600); err != nil {
		t.Fatal(err)
	}
	l.chunks = fileChunks(t, l.file)
	return l
}

// fileChunks returns the sha256 of each MiB of a file, read with os.File
// (not the package's readAt), so a rollback is checked byte for byte.
func fileChunks(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	buf := make([]byte, 1<<20)
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			out = append(out, fmt.Sprintf("%x", sha256.Sum256(buf[:n])))
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// labDataMiB reports whether MiB i of the lab file is in the LUKS2 data
// area: past the 16 MiB header, before the last MiB (crypt.format backs up
// and restores both; the data area holds what mkfs wrote through the
// mapping, as ciphertext, which mkfs's undo does not promise to restore).
func labDataMiB(i, total int) bool { return i >= 16 && i < total-1 }

// clean checks the starting state with the real tools: no mapping
// (dmsetup), no mount, no loop device on the file (losetup), no LUKS
// header (cryptsetup isLuks), no signature (blkid -p), and the original
// bytes of the whole file (see mkfsActed below).
func (l *labEnv) clean(t *testing.T, mkfsActed bool) {
	t.Helper()
	if mapped(labName) {
		t.Error("mapping left after rollback")
	}
	if mounted(l.mnt) {
		t.Error("mount left after rollback")
	}
	if out, _ := shOK("losetup", "-j", l.file); strings.TrimSpace(out) != "" {
		t.Errorf("loop device left: %s", out)
	}
	if _, ok := shOK("cryptsetup", "isLuks", l.file); ok {
		t.Error("LUKS header left (cryptsetup isLuks succeeds)")
	}
	if out, _ := shOK("blkid", "-p", "-o", "export", l.file); strings.Contains(out, "TYPE=") {
		t.Errorf("blkid finds a signature: %s", out)
	}
	// every byte is as it was, except, once mkfs has acted through the
	// mapping, the data area: mkfs's undo wipes the filesystem's
	// signatures there (as ciphertext) and does not restore the rest
	cur := fileChunks(t, l.file)
	if len(cur) != len(l.chunks) {
		t.Fatalf("file size changed: %d MiB, was %d", len(cur), len(l.chunks))
	}
	var bad []int
	for i := range cur {
		if cur[i] != l.chunks[i] && !(mkfsActed && labDataMiB(i, len(cur))) {
			bad = append(bad, i)
		}
	}
	if len(bad) != 0 {
		t.Errorf("the file differs from the start in MiB %v (mkfs acted: %v)", bad, mkfsActed)
	}
}

// done checks the end state and tears it down by hand.
func (l *labEnv) done(t *testing.T) {
	t.Helper()
	if !mounted(l.mnt) || !mapped(labName) {
		t.Fatalf("not mounted/open after resume (mounted %v, mapped %v)", mounted(l.mnt), mapped(labName))
	}
	if err := os.WriteFile(filepath.Join(l.mnt, "x"), []byte("x"), 0o644); err != nil {
		t.Error(err)
	}
	sh(t, "umount", l.mnt)
	sh(t, "cryptsetup", "close", labName)
	out := strings.TrimSpace(sh(t, "losetup", "-j", l.file))
	if dev, _, ok := strings.Cut(out, ":"); ok {
		sh(t, "losetup", "-d", dev)
	}
}

func applyRecipe(path string, opts ...atomic.Option) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	r, err := atomic.ParseRecipe(b)
	if err != nil {
		return "", err
	}
	return atomic.Apply(context.Background(), r, opts...)
}

// TestVMRecipeChild is the child process of the kill matrix: it applies
// the recipe named by BOFH_CRYPT_RECIPE with BOFH_FAIL from the
// environment (and dies there). Run directly, it has nothing to do.
func TestVMRecipeChild(t *testing.T) {
	p := os.Getenv("BOFH_CRYPT_RECIPE")
	if p == "" {
		t.Skip("helper process of TestVMRecipeFailures")
	}
	_, err := applyRecipe(p, atomic.WithStateDir(os.Getenv("BOFH_CRYPT_STATE")), atomic.WithID(os.Getenv("BOFH_CRYPT_TXID")))
	t.Fatalf("child survived its failpoint: %v", err)
}

// TestVMRecipeFailures: loop → LUKS2 → open → ext4 → mount, with a failure
// at every step (vmtest.CrashCases: an in-process error, and a SIGKILL of a child
// finished by rollback or resume from the journal). Rollback restores the
// starting state (clean), resume reaches the end state (done).
func TestVMRecipeFailures(t *testing.T) {
	vmtest.Require(t)
	ctx := context.Background()
	const steps = 5
	for _, c := range vmtest.CrashCases(t, steps) {
		t.Run(c.String(), func(t *testing.T) {
			l := newLab(t)
			if c.How == "error" {
				_, err := applyRecipe(l.recipe, atomic.WithStateDir(l.state), atomic.WithFailpoints(c.Failpoint()))
				if !errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != 1 {
					t.Fatalf("want a rolled-back failpoint: %v", err)
				}
				l.clean(t, c.Step > 4 || (c.Step == 4 && c.Phase == "after"))
				return
			}
			id := atomic.NewID()
			cmd := exec.Command(os.Args[0], "-test.run", "^TestVMRecipeChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "BOFH_CRYPT_RECIPE="+l.recipe, "BOFH_CRYPT_STATE="+l.state,
				"BOFH_CRYPT_TXID="+id, atomic.FailEnv+"="+c.Failpoint())
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != -1 {
				t.Fatalf("child was not killed: %v\n%s", err, out)
			}
			if c.Then == "rollback" {
				if err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(l.state)); err != nil {
					t.Fatalf("rollback: %v", err)
				}
				l.clean(t, c.Step > 4 || (c.Step == 4 && c.Phase == "after"))
				return
			}
			if err := atomic.ResumeID(ctx, id, atomic.WithStateDir(l.state)); err != nil {
				t.Fatalf("resume: %v", err)
			}
			l.done(t)
		})
	}
}
