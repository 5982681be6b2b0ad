package btrfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
	"github.com/bofhkit/bofh/run"
)

// newBtrfs makes a btrfs filesystem on a loop device over a sparse file
// and returns its mount point; it is unmounted (and the loop device freed)
// at cleanup. It mounts by itself rather than with hosttest.TempMount so
// that a filesystem left busy by a test still fails it at cleanup.
func newBtrfs(t *testing.T) string {
	t.Helper()
	dev := hosttest.LoopFile(t, 256<<20) // fails unless root
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{{"mkfs.btrfs", "-q", dev}, {"mount", dev, mnt}} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", argv, err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

func uuidOf(t *testing.T, path string) string {
	t.Helper()
	info, err := Show(context.Background(), &run.Local{}, path)
	if err != nil {
		t.Fatal(err)
	}
	return info.UUID
}

func mark(t *testing.T, dir, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "marker"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func markerOf(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "marker"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHostSubvolumes(t *testing.T) {
	mnt := newBtrfs(t)
	ctx := context.Background()
	state := t.TempDir()
	a, snap := filepath.Join(mnt, "a b"), filepath.Join(mnt, "a-snap")
	var res, sres Result
	err := atomic.Run(ctx, "t", func(tx *atomic.Tx) error {
		if err := tx.Do(ctx, CreateSubvol{Path: a}, &res); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(a, "f"), []byte("x"), 0o644); err != nil {
			return err
		}
		if err := tx.Do(ctx, Snapshot{Source: a, Dest: snap, ReadOnly: true}, &sres); err != nil {
			return err
		}
		return tx.Do(ctx, SetDefault{Path: snap}, nil)
	}, atomic.WithStateDir(state))
	if err != nil {
		t.Fatal(err)
	}
	if res.UUID == "" || !sres.ReadOnly {
		t.Fatalf("results %+v %+v", res, sres)
	}
	subs, err := List(ctx, &run.Local{}, mnt)
	if err != nil || len(subs) != 2 {
		t.Fatalf("List = %+v, %v", subs, err)
	}
	if subs[1].ParentUUID != res.UUID || subs[0].Path != "a b" {
		t.Errorf("List = %+v", subs)
	}
	if id, _ := GetDefault(ctx, &run.Local{}, mnt); id != sres.ID {
		t.Errorf("default = %d, want %d", id, sres.ID)
	}
	// creating it again is a no-op, not an error
	if err := atomic.Run(ctx, "again", func(tx *atomic.Tx) error { return tx.Do(ctx, CreateSubvol{Path: a}, nil) }, atomic.WithStateDir(state)); err != nil {
		t.Fatal(err)
	}
	// deleting a subvolume we did not create waits for commit: a failure
	// before commit leaves it in place
	boom := errors.New("boom")
	err = atomic.Run(ctx, "del", func(tx *atomic.Tx) error {
		if err := tx.Do(ctx, DeleteSubvol{Path: a}, nil); err != nil {
			return err
		}
		return boom
	}, atomic.WithStateDir(state))
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if ok, _ := IsSubvolume(a); !ok {
		t.Fatal("subvolume deleted although the transaction failed before commit")
	}
	if err := atomic.Run(ctx, "del", func(tx *atomic.Tx) error { return tx.Do(ctx, DeleteSubvol{Path: a}, nil) }, atomic.WithStateDir(state)); err != nil {
		t.Fatal(err)
	}
	if ok, _ := IsSubvolume(a); ok {
		t.Fatal("subvolume still there after commit")
	}
	// a plain directory is not a subvolume: refuse
	plain := filepath.Join(mnt, "plain")
	os.Mkdir(plain, 0o755)
	for _, p := range []atomic.Params{CreateSubvol{Path: plain}, DeleteSubvol{Path: plain}, Snapshot{Source: plain, Dest: plain + "2"}} {
		if err := atomic.Run(ctx, "bad", func(tx *atomic.Tx) error { return tx.Do(ctx, p, nil) }, atomic.WithStateDir(state)); err == nil {
			t.Errorf("%s on a plain directory succeeded", p.StepKind())
		}
	}
}

// TestHostRecipeFailEveryStep fails each step of a 4-step recipe, before
// and after its effect, and checks the filesystem is back where it began.
func TestHostRecipeFailEveryStep(t *testing.T) {
	mnt := newBtrfs(t)
	ctx := context.Background()
	state := t.TempDir()
	base := filepath.Join(mnt, "base")
	if out, err := exec.Command("btrfs", "subvolume", "create", base).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	mark(t, base, "base")
	baseUUID := uuidOf(t, base)
	steps := []atomic.Params{
		CreateSubvol{Path: filepath.Join(mnt, "new")},
		Snapshot{Source: base, Dest: filepath.Join(mnt, "snap")},
		SetDefault{Path: filepath.Join(mnt, "snap")},
		Swap{Path: base, With: filepath.Join(mnt, "snap")},
	}
	for i := 1; i <= len(steps); i++ {
		for _, phase := range []string{"before", "after"} {
			t.Run(fmt.Sprintf("%d-%s", i, phase), func(t *testing.T) {
				err := atomic.Run(ctx, "recipe", func(tx *atomic.Tx) error {
					for _, p := range steps {
						if err := tx.Do(ctx, p, nil); err != nil {
							return err
						}
					}
					return nil
				}, atomic.WithStateDir(state), atomic.WithFailpoints(fmt.Sprintf("%d:%s:error", i, phase)))
				if !errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != atomic.ExitRolledBack {
					t.Fatalf("err = %v (exit %d)", err, atomic.ExitCode(err))
				}
				subs, err := List(ctx, &run.Local{}, mnt)
				if err != nil {
					t.Fatal(err)
				}
				if len(subs) != 1 || subs[0].Path != "base" || uuidOf(t, base) != baseUUID {
					t.Errorf("after rollback: %+v", subs)
				}
				if id, _ := GetDefault(ctx, &run.Local{}, mnt); id != 5 {
					t.Errorf("default = %d, want 5", id)
				}
			})
		}
	}
}

const helperEnv = "BOFH_BTRFS_TEST_HELPER"

// TestHelperSwap is the child process of TestHostSwapCrash: it swaps two
// subvolumes in a transaction that a failpoint kills.
func TestHelperSwap(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper process for TestHostSwapCrash")
	}
	ctx := context.Background()
	err := atomic.Run(ctx, "swap", func(tx *atomic.Tx) error {
		return tx.Do(ctx, Swap{Path: os.Getenv("SWAP_A"), With: os.Getenv("SWAP_B")}, nil)
	}, atomic.WithStateDir(os.Getenv("SWAP_STATE")), atomic.WithID(os.Getenv("SWAP_ID")))
	if err != nil {
		t.Fatal(err)
	}
}

// TestHostSwapCrash kills a swap before and after its effect and checks
// that both paths always hold a complete subvolume, that rollback restores
// the original arrangement and that a replay finishes the swap.
func TestHostSwapCrash(t *testing.T) {
	mnt := newBtrfs(t)
	ctx := context.Background()
	a, b := filepath.Join(mnt, "live"), filepath.Join(mnt, "snapshot")
	for _, p := range []string{a, b} {
		if out, err := exec.Command("btrfs", "subvolume", "create", p).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		mark(t, p, filepath.Base(p))
	}
	for n, phase := range []string{"before", "after"} {
		for _, end := range []string{"rollback", "resume"} {
			t.Run(phase+"-"+end, func(t *testing.T) {
				state := t.TempDir()
				id := fmt.Sprintf("swaptest-%d-%s", n, end)
				cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSwap$")
				cmd.Env = append(os.Environ(), helperEnv+"=1", "SWAP_A="+a, "SWAP_B="+b, "SWAP_STATE="+state, "SWAP_ID="+id,
					atomic.FailEnv+"=1:"+phase+":kill")
				out, err := cmd.CombinedOutput()
				if err == nil {
					t.Fatalf("helper was not killed:\n%s", out)
				}
				// both places hold a complete subvolume, whichever way round
				got := markerOf(t, a) + "," + markerOf(t, b)
				if got != "live,snapshot" && got != "snapshot,live" {
					t.Fatalf("after kill: %s", got)
				}
				if phase == "after" && got != "snapshot,live" {
					t.Fatalf("kill after the effect but not swapped: %s", got)
				}
				switch end {
				case "rollback":
					if err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(state)); err != nil {
						t.Fatal(err)
					}
					if got := markerOf(t, a) + "," + markerOf(t, b); got != "live,snapshot" {
						t.Fatalf("after rollback: %s", got)
					}
				case "resume":
					cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSwap$")
					cmd.Env = append(os.Environ(), helperEnv+"=1", "SWAP_A="+a, "SWAP_B="+b, "SWAP_STATE="+state, "SWAP_ID="+id, atomic.FailEnv+"=")
					if out, err := cmd.CombinedOutput(); err != nil {
						t.Fatalf("resume: %v\n%s", err, out)
					}
					if got := markerOf(t, a) + "," + markerOf(t, b); got != "snapshot,live" {
						t.Fatalf("after resume: %s", got)
					}
					if err := Exchange(a, b); err != nil { // back to the start for the next case
						t.Fatal(err)
					}
				}
			})
		}
	}
}
