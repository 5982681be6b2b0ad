package blockdev

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
)

// helperEnv selects the child-process mode of the test binary: it applies
// the smoke recipe with BOFH_FAIL from the environment (a kill failpoint
// SIGKILLs the child mid-transaction) and prints the transaction ID.
const helperEnv = "BOFH_BLOCKDEV_HELPER"

func TestMain(m *testing.M) {
	hosttest.ApplyChild(helperEnv)
	os.Exit(m.Run())
}

const recipeSteps = 5

// TestRecipeCrashMatrix applies loop → GPT → partition → mkfs → mount
// with a failure at every step: an in-process error before and after each
// step's effect (rolled back at once), and a SIGKILL of a child process
// before and after each effect, rolled back from the journal alone, or
// resumed to the end.
func TestRecipeCrashMatrix(t *testing.T) {
	requireRoot(t)
	requireTools(t, "losetup", "wipefs", "blkid", "mkfs.ext4", "partx", "findmnt")
	ctx := context.Background()
	file := sparseFile(t, 96<<20)
	mnt := t.TempDir()
	clean := observe(t, file, mnt)
	if len(clean.loops) != 0 || clean.mounted || clean.sigs != 0 {
		t.Fatalf("start state not clean: %+v", clean)
	}
	assertClean := func(t *testing.T, what string) {
		t.Helper()
		s := observe(t, file, mnt)
		if len(s.loops) != 0 {
			t.Errorf("%s: loop devices left: %v", what, s.loops)
		}
		if s.mounted {
			t.Errorf("%s: %s still mounted", what, mnt)
		}
		if s.sigs != 0 {
			t.Errorf("%s: %d signatures left on the file", what, s.sigs)
		}
		if !bytes.Equal(s.head, clean.head) {
			t.Errorf("%s: the first MiB (table) differs from the start", what)
		}
		if t.Failed() {
			cleanupFile(t, file)
			t.FailNow()
		}
	}
	assertEnd := func(t *testing.T, what string) {
		t.Helper()
		s := observe(t, file, mnt)
		if len(s.loops) != 1 || !s.mounted {
			t.Fatalf("%s: want one loop device and a mount, got %+v", what, s)
		}
		b, err := Identify(ctx, nil2local(), s.loops[0]+"p1")
		if err != nil || b["TYPE"] != "ext4" || b["LABEL"] != "smoke" {
			t.Fatalf("%s: partition 1: %v %v", what, b, err)
		}
	}
	teardown := func(t *testing.T) {
		t.Helper()
		s := observe(t, file, mnt)
		if s.mounted {
			sh(t, "umount", mnt)
		}
		for _, l := range s.loops {
			sh(t, "losetup", "-d", l)
		}
		// the file was all zeros: make it so again
		if err := os.Truncate(file, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(file, 96<<20); err != nil {
			t.Fatal(err)
		}
		assertClean(t, "teardown")
	}

	for i := 1; i <= recipeSteps; i++ {
		for _, phase := range []string{"before", "after"} {
			t.Run(fmt.Sprintf("%d-%s-error", i, phase), func(t *testing.T) {
				_, err := atomic.Apply(ctx, recipeFor(t, file, mnt), atomic.WithStateDir(t.TempDir()),
					atomic.WithFailpoints(fmt.Sprintf("%d:%s:error", i, phase)))
				if !errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != atomic.ExitRolledBack {
					t.Fatalf("want a rolled-back failpoint error, got %v (exit %d)", err, atomic.ExitCode(err))
				}
				assertClean(t, "after rollback")
			})
			for _, then := range []string{"rollback", "resume"} {
				t.Run(fmt.Sprintf("%d-%s-kill-%s", i, phase, then), func(t *testing.T) {
					state := t.TempDir()
					cmd := exec.Command(os.Args[0], "-test.run=^$")
					cmd.Env = append(os.Environ(), helperEnv+"=apply",
						"BOFH_HELPER_RECIPE="+recipeText(file, mnt), "BOFH_HELPER_STATE="+state,
						fmt.Sprintf("%s=%d:%s:kill", atomic.FailEnv, i, phase))
					out, err := cmd.CombinedOutput()
					var ee *exec.ExitError
					if !errors.As(err, &ee) || ee.ExitCode() != -1 {
						t.Fatalf("child was not killed: %v\n%s", err, out)
					}
					list, err := atomic.List(state)
					if err != nil || len(list) != 1 {
						t.Fatalf("journals: %v %v", list, err)
					}
					id := list[0].ID
					if then == "rollback" {
						if err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(state), atomic.WithFailpoints("")); err != nil {
							t.Fatalf("rollback %s: %v", id, err)
						}
						assertClean(t, "after tx rollback")
						return
					}
					if err := atomic.ResumeID(ctx, id, atomic.WithStateDir(state), atomic.WithFailpoints("")); err != nil {
						t.Fatalf("resume %s: %v", id, err)
					}
					assertEnd(t, "after tx resume")
					teardown(t)
				})
			}
		}
	}
}
