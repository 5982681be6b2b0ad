package blockdev

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

// Environment of the child process of TestResizeKill.
const (
	resizeKillEnv    = "BOFH_RESIZE_KILL_HELPER" // the recipe (JSON)
	resizeKillState  = "BOFH_RESIZE_KILL_STATE"  // the state dir
	resizeKillBefore = "BOFH_RESIZE_KILL_BEFORE" // SIGKILL before the first mutation running this program
)

// killRunner runs commands locally, and SIGKILLs its own process right
// before the first mutation whose program is before: a crash in the
// middle of a resize, some layers resized and some not.
type killRunner struct {
	run.Local
	before string
}

func (k *killRunner) Run(ctx context.Context, c run.Cmd) (run.Result, error) {
	if k.before != "" && c.Kind == run.Mutation && len(c.Argv) > 0 && c.Argv[0] == k.before {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
	return k.Local.Run(ctx, c)
}

// TestHelperResizeKill is the child process of TestResizeKill: it applies
// the recipe in $BOFH_RESIZE_KILL_HELPER (BOFH_FAIL from the environment),
// and dies by SIGKILL at the failpoint or before the program named in
// $BOFH_RESIZE_KILL_BEFORE.
func TestHelperResizeKill(t *testing.T) {
	text := os.Getenv(resizeKillEnv)
	if text == "" {
		t.Skip("child process of TestResizeKill")
	}
	r, err := atomic.ParseRecipe([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	_, err = atomic.Apply(context.Background(), r, atomic.WithStateDir(os.Getenv(resizeKillState)),
		atomic.WithRunner(&killRunner{before: os.Getenv(resizeKillBefore)}))
	t.Fatalf("not killed: %v", err)
}

// TestResizeKill kills a child process running a one-step fs.resize
// recipe before the resize, after it (before its done record), and in
// the middle of it (some layers resized, some not: what Check must put
// back), for an offline ext4 grow and shrink and a mounted btrfs grow.
// 'tx rollback' brings the file, the loop device and the filesystem back
// to their old size; 'tx resume' brings them to the new one; either way
// the filesystem checks clean and a file's content is unchanged.
// Subtests run one at a time: a command forked by a parallel subtest
// holds copies of this process's open files for an instant (a journal's
// lock, a file on a mount that is being unmounted).
func TestResizeKill(t *testing.T) {
	type kill struct{ name, failpoint, before string }
	tests := []struct {
		name, fs, size string
		start, end     int64
		mounted        bool
		kills          []kill
	}{
		{"ext4-grow", "ext4", "+32M", 64 * mib, 96 * mib, false, []kill{
			{"before", "1:before:kill", ""}, {"after", "1:after:kill", ""},
			{"file-grown", "", "losetup"}, {"device-grown", "", "resize2fs"}}},
		{"ext4-shrink", "ext4", "-16M", 64 * mib, 48 * mib, false, []kill{
			{"before", "1:before:kill", ""}, {"after", "1:after:kill", ""},
			{"fs-shrunk", "", "truncate"}, {"file-shrunk", "", "losetup"}}},
		{"btrfs-grow", "btrfs", "+32M", 256 * mib, 288 * mib, true, []kill{
			{"before", "1:before:kill", ""}, {"after", "1:after:kill", ""},
			{"file-grown", "", "losetup"}, {"device-grown", "", "btrfs"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range tc.kills {
				for _, then := range []string{"rollback", "resume"} {
					t.Run(k.name+"-"+then, func(t *testing.T) {
						ctx := context.Background()
						l := newResizeLab(t, tc.start, tc.fs)
						data := killLabData(t, l, tc.mounted)
						state := t.TempDir()
						rec := atomic.Recipe{Name: "resize " + tc.name, Steps: []atomic.RecipeStep{{
							ID: "resize", Kind: "fs.resize", With: map[string]any{"file": l.file, "type": tc.fs, "size": tc.size}}}}
						text, err := json.Marshal(rec)
						if err != nil {
							t.Fatal(err)
						}
						cmd := exec.Command(os.Args[0], "-test.run=^TestHelperResizeKill$", "-test.count=1")
						cmd.Env = append(os.Environ(), resizeKillEnv+"="+string(text), resizeKillState+"="+state,
							resizeKillBefore+"="+k.before, atomic.FailEnv+"="+k.failpoint)
						out, err := cmd.CombinedOutput()
						var ee *exec.ExitError
						if !errors.As(err, &ee) || ee.ExitCode() != -1 {
							t.Fatalf("child was not killed: %v\n%s", err, out)
						}
						list, err := atomic.List(state)
						if err != nil || len(list) != 1 || list[0].State != atomic.StateInterrupted {
							t.Fatalf("journals: %+v %v", list, err)
						}
						id := list[0].ID
						want := tc.start
						if then == "rollback" {
							err = atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(state), atomic.WithFailpoints(""))
						} else {
							want = tc.end
							err = atomic.ResumeID(ctx, id, atomic.WithStateDir(state), atomic.WithFailpoints(""))
						}
						if err != nil {
							t.Fatalf("%s %s: %v", then, id, err)
						}
						wantState := atomic.StateRolledBack
						if then == "resume" {
							wantState = atomic.StateCommitted
						}
						// "running" is read from the journal's lock, which a
						// process forked at that moment by another goroutine
						// may hold for an instant: look again
						var d *atomic.Detail
						for try := 0; try < 40; try++ {
							if d, err = atomic.Show(state, id); err != nil || d.State != atomic.StateRunning {
								break
							}
							time.Sleep(25 * time.Millisecond)
						}
						if err != nil || d.State != wantState {
							t.Fatalf("after %s: state %v, want %s (%v)", then, d.Summary, wantState, err)
						}
						killLabCheck(t, l, then, want, tc.fs, tc.mounted, data)
					})
				}
			}
		})
	}
}

// killLabData writes a file of random content on the lab's filesystem
// and returns it; the filesystem is left mounted or not as asked.
func killLabData(t *testing.T, l *resizeLab, mounted bool) []byte {
	t.Helper()
	data := make([]byte, 3*mib+17)
	rand.Read(data)
	l.mount(t)
	if err := os.WriteFile(filepath.Join(l.mnt, "data"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	sh(t, "sync", "-f", l.mnt)
	if !mounted {
		l.umount(t)
	}
	return data
}

// killLabCheck checks that the file, the loop device's capacity and the
// filesystem are all size bytes, that the filesystem checks clean
// (unmounted), and that the data file is unchanged; it leaves the
// filesystem mounted or not as it found it.
func killLabCheck(t *testing.T, l *resizeLab, what string, size int64, fs string, mounted bool, data []byte) {
	t.Helper()
	l.want(t, what, size, size)
	if got := strings.TrimSpace(sh(t, "blockdev", "--getsize64", l.dev)); got != fmt.Sprint(size) {
		t.Fatalf("%s: loop device capacity %s, want %d", what, got, size)
	}
	if mounted {
		l.umount(t)
	}
	switch fs {
	case "ext4":
		sh(t, "e2fsck", "-f", "-n", l.dev)
	case "btrfs":
		sh(t, "btrfs", "check", "--readonly", l.dev)
	}
	l.mount(t)
	got, err := os.ReadFile(filepath.Join(l.mnt, "data"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("%s: data: %v (equal %v)", what, err, bytes.Equal(got, data))
	}
	if !mounted {
		l.umount(t)
	}
}
