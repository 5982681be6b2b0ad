package atomic

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// requireRoot is hosttest.RequireRoot (which imports atomic, so it cannot
// be imported here).
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("BOFH_SKIP_ROOT") == "1" {
		t.Skip("SKIPPED: needs root (BOFH_SKIP_ROOT=1 set)")
	}
	t.Fatal("this test needs root: run it as root, or set BOFH_SKIP_ROOT=1 to skip")
}

// interrupted leaves an interrupted transaction with one step in state:
// a journal whose lock nobody holds.
func interrupted(t *testing.T, state, id string) {
	t.Helper()
	j, err := createJournal(state, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.append(&Record{Type: recBegin, TxID: id, Name: "t"}); err != nil {
		t.Fatal(err)
	}
	j.close()
}

// TestStateDirRefusesWhatBofhDidNotMake is issue 12 cases 2 and 3: every
// way of pointing bofh's journal reading and writing at something it did
// not make is refused (exit 2), and the thing pointed at is unchanged.
func TestStateDirRefusesWhatBofhDidNotMake(t *testing.T) {
	requireRoot(t)
	type setup func(t *testing.T, state string) (check func(t *testing.T))
	victimFile := func(t *testing.T) (string, func(t *testing.T)) {
		v := filepath.Join(t.TempDir(), "hostname")
		os.WriteFile(v, []byte("precious\n"), 0o644)
		return v, func(t *testing.T) {
			if b, err := os.ReadFile(v); err != nil || string(b) != "precious\n" {
				t.Errorf("victim changed: %q, %v", b, err)
			}
		}
	}
	tests := []struct {
		name  string
		setup setup
		want  string
	}{
		{"journal is a symlink to a file", func(t *testing.T, state string) func(*testing.T) {
			v, check := victimFile(t)
			os.MkdirAll(filepath.Join(state, "journal"), 0o700)
			os.Symlink(v, filepath.Join(state, "journal", "T1.jsonl"))
			return check
		}, "symlink"},
		{"journal is a hard link to a file", func(t *testing.T, state string) func(*testing.T) {
			v, check := victimFile(t)
			os.Chmod(v, 0o600)
			os.MkdirAll(filepath.Join(state, "journal"), 0o700)
			if err := os.Link(v, filepath.Join(state, "journal", "T1.jsonl")); err != nil {
				t.Skipf("cannot hard-link across these directories: %v", err)
			}
			return check
		}, "hard links"},
		{"journal/ is a symlink to a directory", func(t *testing.T, state string) func(*testing.T) {
			d := t.TempDir()
			os.Chmod(d, 0o755)
			os.WriteFile(filepath.Join(d, "T1.jsonl"), []byte("x\n"), 0o600)
			os.Symlink(d, filepath.Join(state, "journal"))
			return func(t *testing.T) {
				fi, _ := os.Stat(d)
				if fi.Mode().Perm() != 0o755 {
					t.Errorf("the symlinked directory was chmod'ed to %v", fi.Mode().Perm())
				}
				if b, _ := os.ReadFile(filepath.Join(d, "T1.jsonl")); string(b) != "x\n" {
					t.Errorf("file in the symlinked directory changed: %q", b)
				}
			}
		}, "not a directory bofh made"},
		{"journal owned by another user", func(t *testing.T, state string) func(*testing.T) {
			interrupted(t, state, "T1")
			os.Chown(filepath.Join(state, "journal", "T1.jsonl"), 65534, 65534)
			return func(*testing.T) {}
		}, "owned by uid 65534"},
		{"journal/ writable by others", func(t *testing.T, state string) func(*testing.T) {
			interrupted(t, state, "T1")
			os.Chmod(filepath.Join(state, "journal"), 0o777)
			return func(t *testing.T) {
				fi, _ := os.Stat(filepath.Join(state, "journal"))
				if fi.Mode().Perm() != 0o777 {
					t.Errorf("an existing directory was chmod'ed: %v", fi.Mode().Perm())
				}
			}
		}, "writable by group or others"},
		{"state dir owned by another user", func(t *testing.T, state string) func(*testing.T) {
			interrupted(t, state, "T1")
			os.Chown(state, 65534, 65534)
			return func(*testing.T) {}
		}, "owned by uid 65534"},
		{"journal is a FIFO", func(t *testing.T, state string) func(*testing.T) {
			os.MkdirAll(filepath.Join(state, "journal"), 0o700)
			if err := syscall.Mkfifo(filepath.Join(state, "journal", "T1.jsonl"), 0o600); err != nil {
				t.Fatal(err)
			}
			return func(*testing.T) {}
		}, "not a regular file"},
	}
	ops := []struct {
		name string
		do   func(state string) error
	}{
		{"rollback", func(state string) error {
			return RollbackID(context.Background(), "T1", nil, WithStateDir(state), WithFailpoints(""))
		}},
		{"forget", func(state string) error { return Forget(state, "T1", true) }},
		{"show", func(state string) error { _, err := Show(state, "T1"); return err }},
		{"list", func(state string) error {
			s, err := List(state)
			if err != nil {
				return err
			}
			if len(s) != 1 || s[0].Error == "" {
				return nil // not refused
			}
			return errors.New(s[0].Error)
		}},
	}
	for _, tc := range tests {
		for _, op := range ops {
			t.Run(tc.name+"/"+op.name, func(t *testing.T) {
				state := filepath.Join(t.TempDir(), "state")
				os.Mkdir(state, 0o700)
				check := tc.setup(t, state)
				done := make(chan error, 1)
				go func() { done <- op.do(state) }()
				var err error
				select {
				case err = <-done:
				case <-time.After(10 * time.Second):
					t.Fatalf("%s hangs", op.name)
				}
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: err = %v, want a refusal containing %q", op.name, err, tc.want)
				}
				if op.name != "list" && ExitCode(err) != ExitInvalid {
					t.Errorf("%s: exit %d, want %d (refused, nothing done)", op.name, ExitCode(err), ExitInvalid)
				}
				check(t)
			})
		}
	}
}

// TestReadersNeverBlockWriters is issue 12 case 13: two loops listing
// transactions never make a rollback's lock fail, and a journal that is
// created but has no begin record yet is running, never interrupted.
func TestReadersNeverBlockWriters(t *testing.T) {
	state := t.TempDir()
	interrupted(t, state, "T1")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := List(state); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	failures := 0
	for range 300 {
		j, _, err := openJournal(state, "T1")
		if err != nil {
			failures++
			continue
		}
		j.close()
	}
	close(stop)
	wg.Wait()
	if failures > 0 {
		t.Errorf("%d of 300 writer locks failed while readers listed", failures)
	}

	j, err := createJournal(state, "T2")
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	s, err := List(state)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range s {
		if x.ID == "T2" && (x.State != StateRunning || x.Error != "") {
			t.Errorf("a starting journal lists as %s (%q), want running", x.State, x.Error)
		}
	}
}

// TestNewStateDirIs0700: a state dir and journal/ that bofh creates are
// 0700; an existing state dir keeps its mode.
func TestNewStateDirIs0700(t *testing.T) {
	base := t.TempDir()
	state := filepath.Join(base, "a", "state")
	interrupted(t, state, "T1")
	for _, d := range []string{state, filepath.Join(state, "journal")} {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v; want 0700", d, fi.Mode().Perm(), err)
		}
	}
	old := filepath.Join(base, "old")
	os.Mkdir(old, 0o755)
	os.Chmod(old, 0o755)
	interrupted(t, old, "T1")
	if fi, _ := os.Stat(old); fi.Mode().Perm() != 0o755 {
		t.Errorf("an existing state dir was chmod'ed to %v", fi.Mode().Perm())
	}
}

// TestDryRunWritesNothingUnderState is issue 12 case 14: a dry run leaves
// nothing under the state dir (it wrote data/dry-run/), its scratch space
// is gone at its end, and two dry runs do not share an ID.
func TestDryRunWritesNothingUnderState(t *testing.T) {
	state := t.TempDir()
	var ids []string
	var scratch string
	for range 2 {
		err := Run(context.Background(), "dry", func(tx *Tx) error {
			ids = append(ids, tx.ID())
			d, err := tx.env(1).StepDir()
			if err != nil {
				return err
			}
			scratch = d
			return os.WriteFile(filepath.Join(d, "backup"), []byte("x"), 0o600)
		}, WithStateDir(state), WithDryRun(io.Discard))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(scratch); !os.IsNotExist(err) {
			t.Errorf("dry-run scratch %s survived the run", scratch)
		}
	}
	if ids[0] == ids[1] {
		t.Errorf("two dry runs share the ID %s", ids[0])
	}
	if ents, _ := os.ReadDir(state); len(ents) != 0 {
		t.Errorf("a dry run wrote under the state dir: %v", ents)
	}
}
