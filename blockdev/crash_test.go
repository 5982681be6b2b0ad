package blockdev

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
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
	if len(clean.loops) != 0 || clean.mounted || len(clean.sigs) != 0 {
		t.Fatalf("start state not clean: %+v", clean)
	}
	// assertClean checks the start state is back: no loop device, no
	// mount, no signature (wipefs, and blkid at the partition's offset),
	// and every byte of the file as it was. mkfs's undo wipes the
	// filesystem's signatures and does not promise the rest of what mkfs
	// wrote inside the partition (fs.mkfs's doc), so once mkfs has acted,
	// only the partition's MiB may differ; the table at the start and its
	// backup at the end must be byte for byte.
	partMiB := func(mib int) bool { return mib >= partOffset>>20 && mib < (partOffset+partSize)>>20 }
	assertClean := func(t *testing.T, what string, mkfsActed bool) {
		t.Helper()
		s := observe(t, file, mnt)
		if len(s.loops) != 0 {
			t.Errorf("%s: loop devices left: %v", what, s.loops)
		}
		if s.mounted {
			t.Errorf("%s: %s still mounted", what, mnt)
		}
		if len(s.sigs) != 0 {
			t.Errorf("%s: signatures left on the file: %v", what, s.sigs)
		}
		var bad []int
		for _, mib := range changedMiB(clean, s) {
			if !mkfsActed || !partMiB(mib) {
				bad = append(bad, mib)
			}
		}
		if len(bad) != 0 {
			t.Errorf("%s: the file differs from the start in MiB %v (mkfs acted: %v)", what, bad, mkfsActed)
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
		out, err := exec.Command("blkid", "--probe", "-o", "export", s.loops[0]+"p1").Output()
		if err != nil || !strings.Contains(string(out), "\nTYPE=ext4\n") || !strings.Contains(string(out), "LABEL=smoke\n") {
			t.Fatalf("%s: blkid -p of partition 1: %v\n%s", what, err, out)
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
		assertClean(t, "teardown", false)
	}

	for i := 1; i <= recipeSteps; i++ {
		for _, phase := range []string{"before", "after"} {
			// step 4 is fs.mkfs: from its effect on, the partition holds
			// what mkfs wrote
			mkfsActed := i > 4 || (i == 4 && phase == "after")
			t.Run(fmt.Sprintf("%d-%s-error", i, phase), func(t *testing.T) {
				_, err := atomic.Apply(ctx, recipeFor(t, file, mnt), atomic.WithStateDir(t.TempDir()),
					atomic.WithFailpoints(fmt.Sprintf("%d:%s:error", i, phase)))
				if !errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != atomic.ExitRolledBack {
					t.Fatalf("want a rolled-back failpoint error, got %v (exit %d)", err, atomic.ExitCode(err))
				}
				assertClean(t, "after rollback", mkfsActed)
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
						assertClean(t, "after tx rollback", mkfsActed)
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
