package attack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bin is the bofh binary under attack.
var bin string

func TestMain(m *testing.M) {
	if b := os.Getenv("BOFH_ATTACK_BIN"); b != "" {
		bin = b
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "bofh-attack-bin-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "bofh")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/bofh").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build bofh: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// timedOut is the exit code reported for a run that did not end in time.
const timedOut = -1000

// result is one bofh run.
type result struct {
	out, err string
	code     int // exit code, -signal when killed, timedOut
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.out, r.err)
}

// bofh runs the binary with env added and returns what it did; a run
// longer than 30 s is killed and reported as timedOut.
func bofh(t *testing.T, env []string, args ...string) result {
	t.Helper()
	return bofhTimeout(t, 30*time.Second, env, args...)
}

func bofhTimeout(t *testing.T, d time.Duration, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(append(os.Environ(), "BOFH_SITE=/dev/null", "BOFH_FAIL="), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{out: out.String(), err: errb.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		r.code = timedOut
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.code = -int(ws.Signal())
		} else {
			r.code = ee.ExitCode()
		}
	case err != nil:
		t.Fatalf("run bofh: %v", err)
	}
	return r
}

// baseDir makes a fresh directory reachable by every user (0755), removed
// at the end of the test.
func baseDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "bofh-attack-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// write writes a file with an exact mode.
func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// fileState describes a path with lstat and sha256: type, mode, owner,
// size, link count and content hash (or "absent").
func fileState(path string) string {
	fi, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "absent"
		}
		return "error " + err.Error()
	}
	st := fi.Sys().(*syscall.Stat_t)
	s := fmt.Sprintf("%s %04o %d:%d size=%d nlink=%d", fi.Mode().Type(), st.Mode&0o7777, st.Uid, st.Gid, st.Size, st.Nlink)
	switch {
	case fi.Mode().IsRegular():
		b, err := os.ReadFile(path)
		if err != nil {
			return s + " unreadable: " + err.Error()
		}
		s += fmt.Sprintf(" sha256=%x", sha256.Sum256(b))
	case fi.Mode()&fs.ModeSymlink != 0:
		l, _ := os.Readlink(path)
		s += " -> " + l
	}
	return s
}

// snapshot describes a tree: every entry's fileState and mtime.
func snapshot(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		s := fileState(p)
		if fi.IsDir() {
			st := fi.Sys().(*syscall.Stat_t)
			s = fmt.Sprintf("dir %04o %d:%d", st.Mode&0o7777, st.Uid, st.Gid)
		}
		lines = append(lines, fmt.Sprintf("%s %s m=%d", rel, s, fi.ModTime().UnixNano()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// txRow is one transaction of tx list -o json.
type txRow struct {
	ID, Name, State string
	Steps, Done     int
}

// list runs tx list -o json and fails the test unless it exits 0.
func list(t *testing.T, state string) []txRow {
	t.Helper()
	r := bofh(t, nil, "--state-dir", state, "tx", "list", "-o", "json")
	if r.code != 0 {
		t.Fatalf("tx list: %s", r)
	}
	var rows []txRow
	if err := json.Unmarshal([]byte(r.out), &rows); err != nil {
		t.Fatalf("tx list json: %v\n%s", err, r.out)
	}
	return rows
}

// fixture is a directory with two existing files a and b and a recipe
// that overwrites both with file.write.
type fixture struct {
	base, dir, recipe, state string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{base: baseDir(t)}
	f.dir = filepath.Join(f.base, "etc")
	f.state = filepath.Join(f.base, "state")
	if err := os.Mkdir(f.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(f.dir, "a.conf"), "old a\n", 0o640)
	write(t, filepath.Join(f.dir, "b.conf"), "old b\n", 0o600)
	ts := syscall.NsecToTimespec(1_600_000_000_123_456_789)
	for _, p := range []string{"a.conf", "b.conf", "."} {
		syscall.UtimesNano(filepath.Join(f.dir, p), []syscall.Timespec{ts, ts})
	}
	f.recipe = filepath.Join(f.base, "recipe.yaml")
	write(t, f.recipe, fmt.Sprintf(`name: fixture
steps:
  - kind: file.write
    with: {path: %[1]s/a.conf, content: "new a\n", mode: "0644"}
  - kind: file.write
    with: {path: %[1]s/b.conf, content: "new b\n", mode: "0644"}
  - kind: file.write
    with: {path: %[1]s/c.conf, content: "new c\n", mode: "0644"}
`, f.dir), 0o644)
	return f
}

// interrupt applies the fixture's recipe with a kill failpoint and returns
// the ID of the interrupted transaction.
func (f *fixture) interrupt(t *testing.T, failpoint string) string {
	t.Helper()
	r := bofh(t, []string{"BOFH_FAIL=" + failpoint}, "--state-dir", f.state, "apply", f.recipe)
	if r.code != -int(syscall.SIGKILL) {
		t.Fatalf("apply with %s: %s, want SIGKILL", failpoint, r)
	}
	rows := list(t, f.state)
	if len(rows) != 1 || rows[0].State != "interrupted" {
		t.Fatalf("tx list after the kill: %+v", rows)
	}
	return rows[0].ID
}

func (f *fixture) journal(id string) string {
	return filepath.Join(f.state, "journal", id+".jsonl")
}

// record is a journal record written by hand.
type record map[string]any

// frame renders r as a journal line the way bofh does: the record's JSON
// and its CRC-32C (Castagnoli) in {"crc":N,"rec":{...}}.
func frame(t *testing.T, r record) []byte {
	t.Helper()
	body, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	crc := crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli))
	return []byte(fmt.Sprintf(`{"crc":%d,"rec":%s}`+"\n", crc, body))
}

// readJournal parses a journal's lines into records (no CRC check: the
// test wrote or copied it).
func readJournal(t *testing.T, path string) []record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []record
	for _, line := range bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n")) {
		var fr struct {
			Rec record `json:"rec"`
		}
		if err := json.Unmarshal(line, &fr); err != nil {
			t.Fatalf("journal line %q: %v", line, err)
		}
		recs = append(recs, fr.Rec)
	}
	return recs
}

// writeJournal writes recs as a journal at path (0600, root's).
func writeJournal(t *testing.T, path string, recs []record) {
	t.Helper()
	var b bytes.Buffer
	for _, r := range recs {
		b.Write(frame(t, r))
	}
	write(t, path, b.String(), 0o600)
}

// attacker runs script as uid/gid 65534 (setpriv) until the test ends.
func attacker(t *testing.T, script string) {
	t.Helper()
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the attacker: %v", err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
}

// asAttacker runs argv once as uid/gid 65534 and fails the test if it
// fails.
func asAttacker(t *testing.T, argv ...string) {
	t.Helper()
	args := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups"}, argv...)
	if out, err := exec.Command("setpriv", args...).CombinedOutput(); err != nil {
		t.Fatalf("as the attacker: %v: %v\n%s", argv, err, out)
	}
}

// waitFor polls cond every few milliseconds for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return false
}
