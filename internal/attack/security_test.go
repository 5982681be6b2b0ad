package attack

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bofhkit/bofh/internal/hosttest"
)

// TestCase01TempRedirect is issue 12 case 1: a user who can write in the
// target's directory (0777, not sticky) loops `ln -s victim
// .bofh-tmp-<name>` and swaps every bofh temporary for a symlink to a
// root-only file. No apply may write the victim or change its mode; each
// commits (the target a regular file) or refuses (1 or 2).
func TestCase01TempRedirect(t *testing.T) {
	hosttest.RequireRoot(t)
	base := baseDir(t)
	w := filepath.Join(base, "w")
	os.Mkdir(w, 0o777)
	os.Chmod(w, 0o777)
	os.Mkdir(filepath.Join(base, "etc"), 0o755)
	victim := filepath.Join(base, "etc", "victim")
	write(t, victim, "root only\n", 0o600)
	want := fileState(victim)
	target := filepath.Join(w, "app.conf")
	write(t, target, "v0\n", 0o644)
	recipe := filepath.Join(base, "r.yaml")
	state := filepath.Join(base, "state")
	attacker(t, fmt.Sprintf(`cd %[1]s || exit 1
while :; do
  ln -sf %[2]s .bofh-tmp-app.conf 2>/dev/null
  for f in .bofh-tmp-* .bofh*; do
    [ -L "$f" ] && continue
    [ -e "$f" ] && rm -f "$f" && ln -s %[2]s "$f"
  done
done`, w, victim))
	time.Sleep(50 * time.Millisecond)
	counts := map[int]int{}
	for i := 0; i < 150; i++ {
		write(t, recipe, fmt.Sprintf("name: attack\nsteps:\n  - kind: file.write\n    with: {path: %s, content: \"v%d\\n\", mode: \"0666\"}\n", target, i+1), 0o644)
		r := bofh(t, nil, "--state-dir", state, "apply", recipe)
		counts[r.code]++
		if r.code != 0 && r.code != 1 && r.code != 2 {
			t.Fatalf("apply %d: %s; want 0, 1 or 2", i, r)
		}
		if got := fileState(victim); got != want {
			t.Fatalf("apply %d (exit %d): the victim was written through a temporary:\n got %s\nwant %s", i, r.code, got, want)
		}
	}
	t.Logf("150 applies under attack, exit codes %v; the victim is untouched", counts)
}

// TestCase01ParallelWriters is issue 12 case 1's second half: twelve
// parallel applies writing one path collided on the fixed temporary name.
// Each must commit, or refuse because another writer replaced the file
// (exit 1, saying so); no temporary is left and the file holds one
// writer's content.
func TestCase01ParallelWriters(t *testing.T) {
	hosttest.RequireRoot(t)
	base := baseDir(t)
	d := filepath.Join(base, "d")
	os.Mkdir(d, 0o755)
	target := filepath.Join(d, "f")
	state := filepath.Join(base, "state")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	committed := 0
	for i := range 12 {
		recipe := filepath.Join(base, fmt.Sprintf("r%d.yaml", i))
		write(t, recipe, fmt.Sprintf("name: par\nsteps:\n  - kind: file.write\n    with: {path: %s, content: \"writer %d\\n\"}\n", target, i), 0o644)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 4 {
				r := bofh(t, nil, "--state-dir", state, "apply", recipe)
				mu.Lock()
				switch {
				case r.code == 0:
					committed++
				case r.code == 1 && strings.Contains(r.err, "was replaced since the step was planned"):
				default:
					bad = append(bad, fmt.Sprintf("writer %d: %s", i, r))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, b := range bad {
		t.Error(b)
	}
	if committed == 0 {
		t.Error("no write committed")
	}
	ents, _ := os.ReadDir(d)
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("the directory holds %v, want just f (no temporaries)", names)
	}
	if b, err := os.ReadFile(target); err != nil || !strings.HasPrefix(string(b), "writer ") || strings.Count(string(b), "\n") != 1 {
		t.Errorf("target = %q, %v", b, err)
	}
}

// forgedJournal writes, into journal/<id>.jsonl under state, a journal
// with valid CRCs of an interrupted transaction whose step 1 (done)
// overwrote target and whose undo data points its backup at
// "../../../payload": joined unchecked, data/<id>/1/../../../payload is
// <state>/payload, which holds a sudoers line.
func forgedJournal(t *testing.T, state, id, target string) {
	t.Helper()
	os.MkdirAll(filepath.Join(state, "journal"), 0o700)
	os.MkdirAll(filepath.Join(state, "data", id, "1"), 0o700)
	write(t, filepath.Join(state, "payload"), "nobody ALL=(ALL) NOPASSWD: ALL\n", 0o440)
	now := time.Now().UTC()
	writeJournal(t, filepath.Join(state, "journal", id+".jsonl"), []record{
		{"seq": 1, "type": "begin", "time": now, "tx": id, "name": "forged", "pid": 999999,
			"recipe": record{"name": "forged", "steps": []record{{"kind": "file.write", "with": record{"path": target, "content": "x\n"}}}}},
		{"seq": 2, "type": "intent", "time": now, "step": 1, "kind": "file.write",
			"params": record{"path": target, "content": "x\n"},
			"undo":   record{"existed": true, "backup": "../../../payload", "meta": record{"mode": 0o440, "uid": 0, "gid": 0}}},
		{"seq": 3, "type": "done", "time": now, "step": 1, "result": record{"path": target, "size": 2}},
	})
}

// TestCase02ForeignStateDir is issue 12 case 2: a state dir, journal dir
// or journal that someone else owns (or may write) gave that someone
// root: a forged journal with a valid CRC made tx rollback copy a sudoers
// line over a root-only file. Every such state is refused (exit 2) and
// the target is untouched; a root-owned journal whose undo data is a path
// is refused too (the rollback fails, exit 3) and copies nothing.
func TestCase02ForeignStateDir(t *testing.T) {
	hosttest.RequireRoot(t)
	const id = "20260101T000000-f0f0f0"
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, state string)
		want  int // of tx rollback
		list  int // of tx list: 2 when the state dir is refused, 0 when only the journal is (it is not read)
	}{
		{"state dir owned by the attacker", func(t *testing.T, state string) {
			chownTree(t, state)
		}, 2, 2},
		{"journal dir owned by the attacker", func(t *testing.T, state string) {
			chownTree(t, filepath.Join(state, "journal"))
		}, 2, 2},
		{"journal owned by the attacker", func(t *testing.T, state string) {
			os.Chown(filepath.Join(state, "journal", id+".jsonl"), 65534, 65534)
		}, 2, 0},
		{"state dir writable by others", func(t *testing.T, state string) {
			os.Chmod(state, 0o777)
		}, 2, 2},
		{"journal writable by others", func(t *testing.T, state string) {
			os.Chmod(filepath.Join(state, "journal", id+".jsonl"), 0o666)
		}, 2, 0},
		{"root's journal with a path as undo data", func(t *testing.T, state string) {}, 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := baseDir(t)
			os.Mkdir(filepath.Join(base, "etc"), 0o755)
			sudoers := filepath.Join(base, "etc", "sudoers")
			write(t, sudoers, "root ALL=(ALL) ALL\n", 0o440)
			want := fileState(sudoers)
			state := filepath.Join(base, "state")
			os.Mkdir(state, 0o700)
			forgedJournal(t, state, id, sudoers)
			tc.setup(t, state)
			if r := bofh(t, nil, "--state-dir", state, "tx", "list"); r.code != tc.list || (tc.want == 2 && strings.Contains(r.out, "forged")) {
				t.Errorf("tx list: %s; want exit %d and nothing read from the forged journal", r, tc.list)
			}
			r := bofh(t, nil, "--state-dir", state, "tx", "rollback", id)
			if r.code != tc.want {
				t.Errorf("tx rollback: %s; want %d", r, tc.want)
			}
			if got := fileState(sudoers); got != want {
				t.Errorf("the root-only file changed:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// chownTree gives dir and everything below it to uid/gid 65534.
func chownTree(t *testing.T, dir string) {
	t.Helper()
	if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, 65534, 65534)
	}); err != nil {
		t.Fatal(err)
	}
}

// TestCase03SymlinkedJournal is issue 12 case 3: a journal that is a
// symlink (or a hard link) to a one-line file without a newline looked
// like a torn tail, and tx rollback|resume|forget and apply --id cut it to
// 0 bytes. Each is refused now and the file is untouched.
func TestCase03SymlinkedJournal(t *testing.T) {
	hosttest.RequireRoot(t)
	const id = "20260101T000000-abcdef"
	for _, link := range []string{"symlink", "hardlink"} {
		for _, cmd := range [][]string{{"tx", "rollback", id}, {"tx", "resume", id}, {"tx", "forget", id}, {"tx", "forget", "--force", id}, {"apply", "--id", id, "RECIPE"}} {
			t.Run(link+" "+strings.Join(cmd[:len(cmd)-1], " "), func(t *testing.T) {
				f := newFixture(t)
				key := filepath.Join(f.base, "key")
				write(t, key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKEY root@host", 0o600)
				want := fileState(key)
				wantDir := snapshot(t, f.dir)
				os.MkdirAll(filepath.Join(f.state, "journal"), 0o700)
				j := f.journal(id)
				if link == "symlink" {
					os.Symlink(key, j)
				} else if err := os.Link(key, j); err != nil {
					t.Fatal(err)
				}
				if link == "hardlink" {
					want = strings.Replace(want, "nlink=1", "nlink=2", 1)
				}
				args := append([]string{"--state-dir", f.state}, cmd...)
				if args[len(args)-1] == "RECIPE" {
					args[len(args)-1] = f.recipe
				}
				r := bofh(t, nil, args...)
				if r.code == 0 || r.code == timedOut {
					t.Errorf("%v: %s; want a refusal", cmd, r)
				}
				if got := fileState(key); got != want {
					t.Errorf("the key file changed:\n got %s\nwant %s", got, want)
				}
				if got := snapshot(t, f.dir); got != wantDir {
					t.Errorf("the recipe's files changed:\n got %s\nwant %s", got, wantDir)
				}
			})
		}
	}
}

// TestCase03SymlinkedJournalDir: a journal/ that is a symlink to another
// directory got that directory chmod'ed 0700 (journal -> /etc would make
// /etc 0700). It is refused and the directory keeps its mode and content.
func TestCase03SymlinkedJournalDir(t *testing.T) {
	hosttest.RequireRoot(t)
	f := newFixture(t)
	os.Mkdir(f.state, 0o700)
	if err := os.Symlink(f.dir, filepath.Join(f.state, "journal")); err != nil {
		t.Fatal(err)
	}
	want := snapshot(t, f.dir)
	for _, args := range [][]string{{"tx", "list"}, {"apply", f.recipe}, {"tx", "rollback", "20260101T000000-abcdef"}} {
		r := bofh(t, nil, append([]string{"--state-dir", f.state}, args...)...)
		if r.code != 2 {
			t.Errorf("%v: %s; want 2 (untrusted state)", args, r)
		}
		if got := snapshot(t, f.dir); got != want {
			t.Errorf("%v changed the directory journal/ points to:\n got %s\nwant %s", args, got, want)
		}
	}
}

// TestCase03FIFOJournal: a FIFO named *.jsonl hung tx list forever, deaf
// to SIGTERM. tx list and tx rollback of it return promptly.
func TestCase03FIFOJournal(t *testing.T) {
	hosttest.RequireRoot(t)
	f := newFixture(t)
	f.interrupt(t, "2:after:kill")
	const id = "20260101T000000-ff0ff0"
	if err := syscall.Mkfifo(f.journal(id), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"tx", "list"}, {"tx", "list", "-o", "json"}, {"tx", "show", id}, {"tx", "rollback", id}} {
		start := time.Now()
		r := bofhTimeout(t, 5*time.Second, nil, append([]string{"--state-dir", f.state}, args...)...)
		if r.code == timedOut {
			t.Errorf("%v hung on the FIFO (killed after %v)", args, time.Since(start).Round(time.Millisecond))
			continue
		}
		if args[1] == "list" && (r.code != 0 || !strings.Contains(r.out, "interrupted")) {
			t.Errorf("%v: %s; want exit 0 and the real interrupted transaction listed", args, r)
		}
		if args[1] != "list" && r.code == 0 {
			t.Errorf("%v: %s; want a refusal", args, r)
		}
	}
}
