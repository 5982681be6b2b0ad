package attack

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bofhkit/bofh/internal/hosttest"
)

// TestCase12Signals is issue 12 case 12: SIGINT/SIGTERM were ignored by
// file-only recipes (a 10,000-step run committed after three signals). A
// signal stops the run at the next step boundary and rolls back (exit 1);
// a second signal during the rollback is reported, not obeyed.
func TestCase12Signals(t *testing.T) {
	hosttest.RequireRoot(t)
	for _, tc := range []struct {
		name    string
		signals []syscall.Signal
	}{
		{"SIGTERM", []syscall.Signal{syscall.SIGTERM}},
		{"SIGINT then SIGTERM during the rollback", []syscall.Signal{syscall.SIGINT, syscall.SIGTERM}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := baseDir(t)
			dir := filepath.Join(base, "out")
			var b strings.Builder
			fmt.Fprintf(&b, "name: long\nsteps:\n  - kind: dir.create\n    with: {path: %s}\n", dir)
			for i := range 2000 {
				fmt.Fprintf(&b, "  - kind: file.write\n    with: {path: %s/f%05d, content: \"x\"}\n", dir, i)
			}
			recipe := filepath.Join(base, "r.yaml")
			write(t, recipe, b.String(), 0o644)
			state := filepath.Join(base, "state")
			cmd := exec.Command(bin, "--state-dir", state, "apply", recipe)
			cmd.Env = append(os.Environ(), "BOFH_SITE=/dev/null", "BOFH_FAIL=")
			var errb bytes.Buffer
			cmd.Stderr = &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill() })
			count := func() int { e, _ := os.ReadDir(dir); return len(e) }
			if !waitFor(30*time.Second, func() bool { return count() > 100 }) {
				t.Fatal("the run never wrote 100 files")
			}
			cmd.Process.Signal(tc.signals[0])
			if len(tc.signals) > 1 {
				// The rollback has begun when files disappear.
				n := count()
				waitFor(10*time.Second, func() bool { return count() < n-5 || count() == 0 })
				cmd.Process.Signal(tc.signals[1])
			}
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatalf("the run did not stop 30 s after %v", tc.signals)
			}
			if code := cmd.ProcessState.ExitCode(); code != 1 {
				t.Errorf("exit %d, want 1 (stopped and rolled back)\n%s", code, errb.String())
			}
			if _, err := os.Lstat(dir); !os.IsNotExist(err) {
				t.Errorf("%s still exists with %d files after the rollback", dir, count())
			}
			if len(tc.signals) > 1 && !strings.Contains(errb.String(), "again") {
				t.Errorf("the second signal was not reported:\n%s", errb.String())
			}
			if rows := list(t, state); len(rows) != 1 || rows[0].State != "rolled-back" {
				t.Errorf("tx list: %+v, want one rolled-back transaction", rows)
			}
		})
	}
}

// listLoops runs n loops of tx list against state until stop is closed;
// it returns a function that waits for them and reports what they saw that
// they should not have: an error exit, or an "interrupted" row whose ID is
// not in allowed.
func listLoops(t *testing.T, n int, state string, allowed map[string]bool) (stop func() []string) {
	t.Helper()
	quit := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-quit:
					return
				default:
				}
				r := bofhTimeout(t, 10*time.Second, nil, "--state-dir", state, "tx", "list", "--all")
				var why string
				if r.code != 0 {
					why = r.String()
				}
				for _, line := range strings.Split(r.out, "\n") {
					if f := strings.Fields(line); len(f) > 2 && strings.Contains(line, "interrupted") && !allowed[f[0]] {
						why = "a transaction that is not interrupted is listed so: " + line
					}
				}
				if why != "" {
					mu.Lock()
					bad = append(bad, why)
					mu.Unlock()
				}
			}
		}()
	}
	return func() []string {
		close(quit)
		wg.Wait()
		return bad
	}
}

// TestCase13ListNeverBlocksResume is issue 12 case 13: with two tx list
// loops running, tx resume of an interrupted transaction failed 18 of 18
// times ("held by a running process"), and a transaction still starting
// was listed as "interrupted, 0001-01-01". Every resume must succeed, and
// the lists never show a running transaction as interrupted.
func TestCase13ListNeverBlocksResume(t *testing.T) {
	hosttest.RequireRoot(t)
	t.Run("resume", func(t *testing.T) {
		f := newFixture(t)
		// A journal of some megabytes (the contents are in the recipe and
		// the intents), as a long transaction's is: a reader that locks it
		// while parsing holds the lock long enough to be in the way.
		big := strings.Repeat("x", 512<<10)
		write(t, f.recipe, fmt.Sprintf(`name: big
steps:
  - kind: file.write
    with: {path: %[1]s/a.conf, content: "%[2]s"}
  - kind: file.write
    with: {path: %[1]s/b.conf, content: "%[2]s"}
  - kind: file.write
    with: {path: %[1]s/c.conf, content: "%[2]s"}
`, f.dir, big), 0o644)
		stop := func() []string { return nil }
		defer func() { stop() }()
		failed := 0
		for i := range 4 {
			id := f.interrupt(t, "2:after:kill")
			stop = listLoops(t, 2, f.state, map[string]bool{id: true})
			r := bofh(t, nil, "--state-dir", f.state, "tx", "resume", id)
			if r.code != 0 {
				failed++
				t.Errorf("resume %d under two list loops: %s", i, r)
			}
			for _, b := range stop() {
				t.Errorf("list loop: %s", b)
			}
			stop = func() []string { return nil }
			if r := bofh(t, nil, "--state-dir", f.state, "tx", "forget", "--force", id); r.code != 0 {
				t.Fatalf("tx forget: %s", r)
			}
			// The next round starts from the old files again.
			write(t, filepath.Join(f.dir, "a.conf"), "old a\n", 0o640)
			write(t, filepath.Join(f.dir, "b.conf"), "old b\n", 0o600)
			os.Remove(filepath.Join(f.dir, "c.conf"))
		}
		t.Logf("4 resumes under two list loops, %d failed", failed)
	})
	t.Run("starting", func(t *testing.T) {
		f := newFixture(t)
		stop := listLoops(t, 2, f.state, nil)
		for i := range 15 {
			if r := bofh(t, nil, "--state-dir", f.state, "apply", f.recipe); r.code != 0 {
				t.Errorf("apply %d under two list loops: %s", i, r)
			}
		}
		for _, b := range stop() {
			t.Errorf("list loop: %s", b)
		}
	})
}

// TestCase14Smaller is issue 12 case 14, one row per finding.
func TestCase14Smaller(t *testing.T) {
	hosttest.RequireRoot(t)
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, f *fixture)
	}{
		{"a reference into a non-object result is refused before step 1", func(t *testing.T, f *fixture) {
			write(t, f.recipe, fmt.Sprintf("name: ref\nsteps:\n  - id: a\n    kind: file.write\n    with: {path: %[1]s/a.conf, content: \"new\"}\n  - kind: file.write\n    with: {path: %[1]s/b.conf, content: \"${a.path.deeper}\"}\n", f.dir), 0o644)
			unchanged(t, f, 2, "apply", f.recipe)
		}},
		{"control characters in a recipe name are refused", func(t *testing.T, f *fixture) {
			write(t, f.recipe, fmt.Sprintf("name: \"web\\r9999  forged  committed\\x1b[2K\"\nsteps:\n  - kind: file.write\n    with: {path: %s/a.conf, content: \"new\"}\n", f.dir), 0o644)
			unchanged(t, f, 2, "apply", f.recipe)
		}},
		{"control characters in a journal's name are listed escaped", func(t *testing.T, f *fixture) {
			const id = "20260101T000000-c0c0c0"
			os.MkdirAll(filepath.Join(f.state, "journal"), 0o700)
			writeJournal(t, f.journal(id), []record{{"seq": 1, "type": "begin", "time": time.Now().UTC(), "tx": id, "name": "web\r9999  forged  committed\x1b[2K", "pid": 999999}})
			for _, args := range [][]string{{"tx", "list"}, {"tx", "show", id}} {
				r := bofh(t, nil, append([]string{"--state-dir", f.state}, args...)...)
				if r.code != 0 || strings.ContainsAny(r.out+r.err, "\r\x1b") {
					t.Errorf("%v printed the name raw: %s", args, strings.NewReplacer("\r", "<CR>", "\x1b", "<ESC>").Replace(r.String()))
				}
			}
		}},
		{"a dry run writes nothing under the state dir and has its own ID", func(t *testing.T, f *fixture) {
			ids := map[string]bool{}
			for range 2 {
				r := unchanged(t, f, 0, "--dry-run", "apply", f.recipe)
				ids[r.out] = true
			}
			if len(ids) != 2 {
				t.Errorf("two dry runs printed the same ID: %v", ids)
			}
			if _, err := os.Lstat(f.state); !os.IsNotExist(err) {
				t.Errorf("the dry runs made the state dir %s", f.state)
			}
		}},
		{"a reused --id does not adopt a stale backup", func(t *testing.T, f *fixture) {
			const id = "20260101T000000-5ea1ed"
			stale := filepath.Join(f.state, "data", id, "1")
			os.MkdirAll(stale, 0o700)
			write(t, filepath.Join(stale, "backup"), "stale backup\n", 0o600)
			want := snapshot(t, f.dir)
			r := bofh(t, []string{"BOFH_FAIL=3:after:error"}, "--state-dir", f.state, "apply", "--id", id, f.recipe)
			if r.code != 1 && r.code != 2 {
				t.Errorf("apply --id %s: %s; want 1 or 2", id, r)
			}
			if got := snapshot(t, f.dir); got != want {
				t.Errorf("the directory after the rollback:\n got %s\nwant %s", got, want)
			}
		}},
		{"file.write over a directory is bad input", func(t *testing.T, f *fixture) {
			os.Mkdir(filepath.Join(f.dir, "sub"), 0o755)
			// As found: a recipe whose only step writes over a directory.
			// (After a step that ran, the same refusal rolls that step back:
			// exit 1.)
			write(t, f.recipe, fmt.Sprintf("name: dir\nsteps:\n  - kind: file.write\n    with: {path: %s/sub, content: \"x\"}\n", f.dir), 0o644)
			unchanged(t, f, 2, "apply", f.recipe)
		}},
		{`--state-dir "" is bad input`, func(t *testing.T, f *fixture) {
			for _, args := range [][]string{{"tx", "list"}, {"apply", f.recipe}} {
				if r := bofh(t, nil, append([]string{"--state-dir", ""}, args...)...); r.code != 2 {
					t.Errorf("%v: %s; want 2", args, r)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newFixture(t)) })
	}
}

// unchanged runs bofh with args against f's state dir, wants exit code
// want, and checks that f's directory did not change and that nothing but
// (empty) directories is under the state dir, absent before.
func unchanged(t *testing.T, f *fixture, want int, args ...string) result {
	t.Helper()
	before := snapshot(t, f.dir)
	r := bofh(t, nil, append([]string{"--state-dir", f.state}, args...)...)
	if r.code != want {
		t.Errorf("%v: %s; want exit %d", args, r, want)
	}
	if got := snapshot(t, f.dir); got != before {
		t.Errorf("%v changed the directory:\n got %s\nwant %s", args, got, before)
	}
	if out, _ := exec.Command("find", f.state, "-not", "-type", "d").CombinedOutput(); len(out) != 0 && !bytes.Contains(out, []byte("No such file")) {
		t.Errorf("%v left files under the state dir:\n%s", args, out)
	}
	return r
}
