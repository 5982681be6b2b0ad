package attack

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bofhkit/bofh/internal/hosttest"
)

// TestCase04DirectoryFsyncs is issue 12 case 4: data/, data/<id> and
// data/<id>/<n> (and a new journal/) were never fsync'ed into their
// parents, while the target's rename was. strace shows an fsync of every
// directory bofh creates a name in: the state dir (journal/, data/), data/
// (data/<id>), data/<id> (<n>) and data/<id>/<n> (the backup).
func TestCase04DirectoryFsyncs(t *testing.T) {
	hosttest.RequireRoot(t)
	f := newFixture(t)
	trace := filepath.Join(f.base, "strace.out")
	cmd := exec.Command("strace", "-f", "-y", "-qq", "-e", "trace=fsync,fdatasync", "-o", trace, bin, "--state-dir", f.state, "apply", f.recipe)
	cmd.Env = append(os.Environ(), "BOFH_SITE=/dev/null", "BOFH_FAIL=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("strace bofh apply: %v\n%s", err, out)
	}
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	synced := map[string]bool{}
	for _, m := range regexp.MustCompile(`f(?:data)?sync\(\d+<([^>]*)>\) = 0`).FindAllStringSubmatch(string(b), -1) {
		synced[m[1]] = true
	}
	rows := list(t, f.state)
	if len(rows) != 1 || rows[0].State != "committed" {
		t.Fatalf("tx list: %+v", rows)
	}
	data := filepath.Join(f.state, "data")
	for _, dir := range []string{f.state, filepath.Join(f.state, "journal"), data, filepath.Join(data, rows[0].ID), filepath.Join(data, rows[0].ID, "1"), f.dir} {
		if !synced[dir] {
			t.Errorf("%s was never fsync'ed", dir)
		}
	}
	if t.Failed() {
		t.Logf("fsync'ed: %v", synced)
	}
}

// TestCase05MissingBackup is issue 12 case 5: after a done record, a
// missing backup was read as "Do never got that far" and tx rollback said
// "rolled back" (exit 0) leaving the new content. It is an error now
// (exit 3) naming the file.
func TestCase05MissingBackup(t *testing.T) {
	hosttest.RequireRoot(t)
	f := newFixture(t)
	id := f.interrupt(t, "3:before:kill")
	if err := os.Remove(filepath.Join(f.state, "data", id, "1", "backup")); err != nil {
		t.Fatalf("the backup of step 1 is not where the case needs it: %v", err)
	}
	r := bofh(t, nil, "--state-dir", f.state, "tx", "rollback", id)
	if r.code != 3 || !strings.Contains(r.err, filepath.Join(f.dir, "a.conf")) {
		t.Errorf("tx rollback: %s; want exit 3 naming %s", r, filepath.Join(f.dir, "a.conf"))
	}
	if rows := list(t, f.state); len(rows) != 1 || rows[0].State == "rolled-back" {
		t.Errorf("tx list: %+v; the transaction must not be rolled-back", rows)
	}
}

// TestCase06CorruptLastLine is issue 12 case 6: a complete last journal
// line with a bad CRC was taken for a torn write and dropped, so its step
// (here: step 3, whose file exists) was never undone and tx rollback
// exited 0. It is corruption: exit 3, and the step's effect is not
// silently forgotten.
func TestCase06CorruptLastLine(t *testing.T) {
	hosttest.RequireRoot(t)
	f := newFixture(t)
	id := f.interrupt(t, "3:after:kill")
	j := f.journal(id)
	b, err := os.ReadFile(j)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	last := lines[len(lines)-1]
	m := regexp.MustCompile(`^\{"crc":(\d+),`).FindSubmatch(last)
	if m == nil || !bytes.Contains(last, []byte(`"intent"`)) {
		t.Fatalf("last line is not step 3's intent: %s", last)
	}
	crc, _ := strconv.ParseUint(string(m[1]), 10, 32)
	lines[len(lines)-1] = append([]byte(fmt.Sprintf(`{"crc":%d,`, crc^1)), last[len(m[0]):]...)
	if err := os.WriteFile(j, append(bytes.Join(lines, nil), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	c := filepath.Join(f.dir, "c.conf")
	want := fileState(c)
	r := bofh(t, nil, "--state-dir", f.state, "tx", "rollback", id)
	if r.code != 3 || !strings.Contains(r.err, "corrupt") {
		t.Errorf("tx rollback: %s; want exit 3, journal corrupt", r)
	}
	if got := fileState(c); got != want && r.code == 0 {
		t.Errorf("c.conf: %s", got)
	}
}

// TestCase07DiskFull is issue 12 case 7: with the state dir on a full
// disk nothing was rolled back (the rollback record could not be written;
// 44 files stayed changed), and each later attempt left an empty
// "interrupted" journal. Now the run rolls back completely (exit 1) and a
// later attempt on the full disk leaves no interrupted journal.
func TestCase07DiskFull(t *testing.T) {
	hosttest.RequireRoot(t)
	f := newFixture(t)
	mnt := hosttest.TempMount(t, "tmpfs", "tmpfs", "size=1m,mode=0700")
	state := filepath.Join(mnt, "state")
	many := filepath.Join(f.base, "many")
	os.Mkdir(many, 0o755)
	var y strings.Builder
	y.WriteString("name: fill\nsteps:\n")
	big := strings.Repeat("original line\n", 32<<10/14)
	for i := range 44 {
		p := filepath.Join(many, fmt.Sprintf("f%02d", i))
		write(t, p, big, 0o644)
		fmt.Fprintf(&y, "  - kind: file.write\n    with: {path: %s, content: \"changed\\n\"}\n", p)
	}
	recipe := filepath.Join(f.base, "fill.yaml")
	write(t, recipe, y.String(), 0o644)
	want := snapshot(t, many)
	r := bofh(t, nil, "--state-dir", state, "apply", recipe)
	if r.code != 1 {
		t.Errorf("apply on a state dir that fills up: %s; want 1 (failed and rolled back)", r)
	}
	if got := snapshot(t, many); got != want {
		t.Errorf("the files are not back after the rollback:\n got %s\nwant %s", got, want)
	}
	// The disk is full to the last byte: later attempts are refused and
	// leave nothing "interrupted".
	fill(filepath.Join(mnt, "filler"))
	for range 3 {
		if r := bofh(t, nil, "--state-dir", state, "apply", f.recipe); r.code == 0 {
			t.Fatalf("an apply on a full disk committed: %s", r)
		}
	}
	r = bofh(t, nil, "--state-dir", state, "tx", "list", "--all")
	if r.code != 0 || strings.Contains(r.out, "interrupted") {
		t.Errorf("tx list --all after attempts on a full disk: %s; want no interrupted transaction", r)
	}
	if got := snapshot(t, many); got != want {
		t.Errorf("the files changed:\n got %s\nwant %s", got, want)
	}
}

// fill writes to path until the file system is full.
func fill(path string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	for {
		if _, err := f.Write(buf[:1]); err != nil {
			return
		}
	}
}

// TestCase08KilledWriteLeavesNoTemporary is issue 12 case 8: a file.write
// SIGKILLed while writing its 2 MiB temporary left it beside the target,
// also after a successful rollback. The rollback removes it.
func TestCase08KilledWriteLeavesNoTemporary(t *testing.T) {
	hosttest.RequireRoot(t)
	caught := false
	for try := 0; try < 20 && !caught; try++ {
		// A fresh fixture each try: a try that missed the temporary let
		// the write commit, and there is nothing to roll back then.
		f := newFixture(t)
		recipe := filepath.Join(f.base, "big.yaml")
		write(t, recipe, fmt.Sprintf("name: big\nsteps:\n  - kind: file.write\n    with: {path: %s/a.conf, content: \"%s\"}\n", f.dir, strings.Repeat("x", 2<<20)), 0o644)
		want := snapshot(t, f.dir)
		cmd := exec.Command(bin, "--state-dir", f.state, "apply", recipe)
		cmd.Env = append(os.Environ(), "BOFH_SITE=/dev/null", "BOFH_FAIL=")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		caught = waitFor(10*time.Second, func() bool {
			ents, _ := os.ReadDir(f.dir)
			return len(ents) > 2
		})
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if !caught {
			continue
		}
		rows := list(t, f.state)
		for _, row := range rows {
			if row.State == "interrupted" {
				if r := bofh(t, nil, "--state-dir", f.state, "tx", "rollback", row.ID); r.code != 0 {
					t.Fatalf("tx rollback: %s", r)
				}
			}
		}
		if got := snapshot(t, f.dir); got != want {
			t.Fatalf("after the kill (temporary seen: %v) and the rollback the directory differs:\n got %s\nwant %s", caught, got, want)
		}
	}
	if !caught {
		t.Fatal("never caught the write with its temporary on disk")
	}
}

// TestCase10KillBeforeCleanup is issue 12 case 10 (and the crash matrix's
// "kill between the terminal record and cleanup"): a process killed after
// its committed or rolled-back record, before removing data/<id>, leaked
// the backups forever. There is no failpoint between the two, so the case
// is made by hand: data/<id> recreated after the end. tx list sweeps it.
func TestCase10KillBeforeCleanup(t *testing.T) {
	hosttest.RequireRoot(t)
	for _, tc := range []struct{ fail, state string }{{"", "committed"}, {"2:after:error", "rolled-back"}} {
		t.Run(tc.state, func(t *testing.T) {
			f := newFixture(t)
			r := bofh(t, []string{"BOFH_FAIL=" + tc.fail}, "--state-dir", f.state, "apply", f.recipe)
			if rows := list(t, f.state); len(rows) != 1 || rows[0].State != tc.state {
				t.Fatalf("apply: %s; tx list %+v, want %s", r, rows, tc.state)
			}
			id := list(t, f.state)[0].ID
			leak := filepath.Join(f.state, "data", id, "1")
			os.MkdirAll(leak, 0o700)
			write(t, filepath.Join(leak, "backup"), "left by a kill\n", 0o600)
			if r := bofh(t, nil, "--state-dir", f.state, "tx", "list"); r.code != 0 {
				t.Fatalf("tx list: %s", r)
			}
			if _, err := os.Lstat(filepath.Join(f.state, "data", id)); !os.IsNotExist(err) {
				t.Errorf("data/%s survived tx list (%v)", id, err)
			}
		})
	}
}

// TestCase11MetadataRestored is issue 12 case 11: file.write and
// file.remove lost ACLs, xattrs and hard links, and a setuid 4750 file
// with an ACL came back 4770 after a rollback. getfacl, getfattr and stat
// must show the same after the rollback as before.
func TestCase11MetadataRestored(t *testing.T) {
	hosttest.RequireRoot(t)
	for _, kind := range []string{"file.write", "file.remove"} {
		t.Run(kind, func(t *testing.T) {
			f := newFixture(t)
			a := filepath.Join(f.dir, "a.conf")
			link := filepath.Join(f.base, "a.link")
			os.Chown(a, 1234, 1234)
			for _, argv := range [][]string{
				{"setfacl", "-m", "u:4321:r-x", a},
				{"setfattr", "-n", "user.note", "-v", "keep me", a},
				{"setfattr", "-n", "trusted.bofh", "-v", "0x0102", a},
				{"ln", a, link},
				{"chmod", "4750", a}, // last: setting an ACL clears setuid
			} {
				hosttest.Cmd(t, argv...)
			}
			ts := syscall.NsecToTimespec(1_600_000_000_123_456_789)
			syscall.UtimesNano(f.dir, []syscall.Timespec{ts, ts})
			meta := func() string {
				return strings.Join([]string{
					hosttest.Cmd(t, "getfacl", "-n", "-p", a),
					hosttest.Cmd(t, "getfattr", "-d", "-m", "-", "--absolute-names", a),
					hosttest.Cmd(t, "stat", "-c", "%A %a %u %g %i %h %Y", a, link),
					fileState(link),
				}, "\n")
			}
			want, wantDir := meta(), snapshot(t, f.dir)
			if !strings.Contains(want, "4750") {
				t.Fatalf("the fixture is not 4750 with an ACL:\n%s", want)
			}
			recipe := filepath.Join(f.base, "r.yaml")
			with := `{path: ` + a + `, content: "new\n"}`
			if kind == "file.remove" {
				with = `{path: ` + a + `}`
			}
			write(t, recipe, fmt.Sprintf("name: meta\nsteps:\n  - kind: %s\n    with: %s\n  - kind: file.write\n    with: {path: %s/c.conf, content: \"c\"}\n", kind, with, f.dir), 0o644)
			r := bofh(t, []string{"BOFH_FAIL=2:after:error"}, "--state-dir", f.state, "apply", recipe)
			if r.code != 1 {
				t.Fatalf("apply: %s; want 1", r)
			}
			if got := meta(); got != want {
				t.Errorf("after the rollback:\n got %s\nwant %s", got, want)
			}
			if got := snapshot(t, f.dir); got != wantDir {
				t.Errorf("after the rollback the directory differs:\n got %s\nwant %s", got, wantDir)
			}
		})
	}
}
