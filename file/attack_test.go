package file

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
)

// worldDir makes a directory tree an unprivileged user can reach: base
// (0755) holding a world-writable, non-sticky dir "w" and a root-only
// victim file in "etc".
func worldDir(t *testing.T) (w, victim string) {
	t.Helper()
	base, err := os.MkdirTemp("", "bofh-attack-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	for _, d := range []string{base, filepath.Join(base, "etc")} {
		if err := os.Chmod(d, 0o755); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	w = filepath.Join(base, "w")
	if err := os.Mkdir(w, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(w, 0o777); err != nil { // no sticky bit
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(base, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	victim = filepath.Join(base, "etc", "victim")
	if err := os.WriteFile(victim, []byte("root only\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return w, victim
}

// attacker runs script as uid/gid 65534 until the test ends.
func attacker(t *testing.T, script string) {
	t.Helper()
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is needed to run the attacker unprivileged: %v", err)
	}
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
}

// TestAttackTempSymlink is issue 12 case 1: a user who can write in the
// target's directory swaps every bofh temporary there for a symlink to a
// root-only file. bofh must never write through it nor change its mode:
// each apply either commits with the right content in a regular file, or
// fails and rolls back.
func TestAttackTempSymlink(t *testing.T) {
	hosttest.RequireRoot(t)
	w, victim := worldDir(t)
	target := filepath.Join(w, "app.conf")
	if err := os.WriteFile(target, []byte("v0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Replace every temporary (and plant guesses of the old fixed name)
	// with a symlink to the victim, as fast as the shell can.
	attacker(t, fmt.Sprintf(`cd %s || exit 1
while :; do
  ln -sf %s .bofh-tmp-app.conf 2>/dev/null
  for f in .bofh-tmp-*; do
    [ -L "$f" ] && continue
    [ -e "$f" ] && rm -f "$f" && ln -s %s "$f"
  done
done`, w, victim, victim))
	time.Sleep(50 * time.Millisecond)
	state := t.TempDir()
	committed, failed := 0, 0
	for i := 0; i < 150; i++ {
		content := fmt.Sprintf("v%d\n", i+1)
		err := atomic.Run(context.Background(), "attack", func(tx *atomic.Tx) error {
			return tx.Do(context.Background(), Write{Path: target, Content: content, Mode: "0666"}, nil)
		}, atomic.WithStateDir(state), atomic.WithFailpoints(""))
		if err != nil {
			// 1: failed and rolled back; 2: refused before acting (the
			// attacker left a symlink at the target).
			if c := atomic.ExitCode(err); c != 1 && c != 2 {
				t.Fatalf("apply %d: exit %d (want 0, 1 or 2): %v", i, c, err)
			}
			failed++
		} else {
			committed++
			fi, err := os.Lstat(target)
			if err == nil && fi.Mode().IsRegular() {
				// The attacker may replace the target itself after the commit
				// (it can write in the directory); bofh's part was done.
				if got, _ := os.ReadFile(target); string(got) != content && !strings.HasPrefix(string(got), "v") {
					t.Errorf("apply %d: target holds %q", i, got)
				}
			}
		}
		got, err := os.ReadFile(victim)
		if err != nil || string(got) != "root only\n" {
			t.Fatalf("apply %d: the victim was written through a temporary: %q, %v", i, got, err)
		}
		fi, err := os.Stat(victim)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("apply %d: the victim's mode changed: %v, %v", i, fi.Mode(), err)
		}
	}
	t.Logf("150 applies under attack: %d committed, %d refused and rolled back; victim untouched", committed, failed)
}

// TestParallelWritersOfOnePath: twelve transactions writing one path at
// once never collide on a temporary name (issue 12 case 1). Each commits,
// or — when another writer replaced the file between its plan and its
// backup — refuses and rolls back saying so (until claims serialise them);
// no temporary is left behind and the file holds one writer's content.
func TestParallelWritersOfOnePath(t *testing.T) {
	d := t.TempDir()
	target := filepath.Join(d, "f")
	state := t.TempDir()
	var wg sync.WaitGroup
	var mu sync.Mutex
	committed, replaced := 0, 0
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				err := atomic.Run(context.Background(), "par", func(tx *atomic.Tx) error {
					return tx.Do(context.Background(), Write{Path: target, Content: fmt.Sprintf("%d.%d\n", i, j)}, nil)
				}, atomic.WithStateDir(state), atomic.WithFailpoints(""))
				mu.Lock()
				switch {
				case err == nil:
					committed++
				case atomic.ExitCode(err) == 1 && strings.Contains(err.Error(), "was replaced since the step was planned"):
					replaced++
				default:
					t.Errorf("writer %d: %v", i, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	t.Logf("240 writes: %d committed, %d refused (file replaced meanwhile)", committed, replaced)
	if committed == 0 {
		t.Error("no write committed")
	}
	ents, _ := os.ReadDir(d)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			t.Errorf("temporary left behind: %s", e.Name())
		}
	}
	if b, err := os.ReadFile(target); err != nil || !strings.HasSuffix(string(b), "\n") || strings.Count(string(b), "\n") != 1 {
		t.Errorf("target = %q, %v", b, err)
	}
}

// TestUndoRemovesItsTemporary: a write cut short between creating its
// temporary and renaming it leaves the temporary; the rollback removes it
// (issue 12 case 8) — also when Check finds the write never took effect
// (before: the step's undo was skipped and the temporary stayed) — and
// only its own step's.
func TestUndoRemovesItsTemporary(t *testing.T) {
	for _, fp := range []string{"1:after:error", "1:before:error"} {
		t.Run(fp, func(t *testing.T) {
			d := t.TempDir()
			target := filepath.Join(d, "f")
			os.WriteFile(target, []byte("old\n"), 0o644)
			other := filepath.Join(d, tempTag("othertx", 1)+"0123456789abcdef")
			os.WriteFile(other, nil, 0o600)
			state := t.TempDir()
			err := atomic.Run(context.Background(), "t", func(tx *atomic.Tx) error {
				// What a Do killed after creating its temporary leaves behind.
				if err := os.WriteFile(filepath.Join(d, tempTag(tx.ID(), 1)+"00000000deadbeef"), []byte("partial"), 0o600); err != nil {
					return err
				}
				return tx.Do(context.Background(), Write{Path: target, Content: "new\n"}, nil)
			}, atomic.WithStateDir(state), atomic.WithFailpoints(fp))
			if atomic.ExitCode(err) != 1 {
				t.Fatalf("want a rolled-back failure, got %v", err)
			}
			if got, _ := os.ReadFile(target); string(got) != "old\n" {
				t.Errorf("target = %q after rollback", got)
			}
			ents, _ := os.ReadDir(d)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			if want := []string{filepath.Base(other), "f"}; strings.Join(names, " ") != strings.Join(want, " ") {
				t.Errorf("after rollback the directory holds %v, want %v (own temporaries removed, others' kept)", names, want)
			}
		})
	}
}

// TestUndoDataIsAName is issue 12 case 2: a journal's undo data that names
// a path outside the step's directory is refused, never joined.
func TestUndoDataIsAName(t *testing.T) {
	d := t.TempDir()
	target := filepath.Join(d, "f")
	os.WriteFile(target, []byte("old\n"), 0o644)
	payload := filepath.Join(d, "payload")
	os.WriteFile(payload, []byte("evil\n"), 0o644)
	env := &atomic.Env{TxID: "T", Step: 1}
	for _, bk := range []string{"../../../payload", "..", "", "a/b"} {
		u := writeUndo{Existed: true, Meta: &Meta{Mode: 0o644}, Backup: bk}
		err := undoWrite(context.Background(), env, Write{Path: target}, u, WriteResult{})
		if err == nil || !strings.Contains(err.Error(), "not a file in the step's directory") {
			t.Errorf("backup %q: undo err = %v, want a refusal", bk, err)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "old\n" {
		t.Errorf("target = %q", b)
	}
}

// TestPrepareRefusalExits2 is issue 12 case 14: a refusal found while
// planning (file.write over a directory), before anything acted, is bad
// input: exit 2 and no journal (it was exit 1, "rolled back").
func TestPrepareRefusalExits2(t *testing.T) {
	d := t.TempDir()
	os.Mkdir(filepath.Join(d, "sub"), 0o755)
	state := t.TempDir()
	for _, p := range []atomic.Params{
		Write{Path: filepath.Join(d, "sub"), Content: "x"},
		Remove{Path: filepath.Join(d, "sub")},
		Symlink{Path: filepath.Join(d, "sub"), Target: "x"},
		Dir{Path: filepath.Join(d, "a", "b")},
	} {
		err := atomic.Run(context.Background(), "t", func(tx *atomic.Tx) error {
			return tx.Do(context.Background(), p, nil)
		}, atomic.WithStateDir(state), atomic.WithFailpoints(""))
		if atomic.ExitCode(err) != atomic.ExitInvalid {
			t.Errorf("%s: exit %d (%v), want 2", p.StepKind(), atomic.ExitCode(err), err)
		}
	}
	if l, _ := atomic.List(state); len(l) != 0 {
		t.Errorf("refusals left journals: %+v", l)
	}
}
