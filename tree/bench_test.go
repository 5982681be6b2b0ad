package tree

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// genTree writes n files of mixed sizes (80% ≤2 KiB, 18% ≤16 KiB, 2% ≤128
// KiB) in 100-file directories.
func genTree(b testing.TB, root string, n int, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	buf := make([]byte, 128<<10)
	rng.Read(buf)
	for i := 0; i < n; i++ {
		dir := filepath.Join(root, fmt.Sprintf("d%03d/s%02d", i/1000, (i/100)%10))
		if i%100 == 0 {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		var sz int
		switch r := rng.Intn(100); {
		case r < 80:
			sz = rng.Intn(2 << 10)
		case r < 98:
			sz = rng.Intn(16 << 10)
		default:
			sz = rng.Intn(128 << 10)
		}
		off := rng.Intn(len(buf) - sz + 1)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%05d", i)), buf[off:off+sz], 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

type benchLab struct {
	mnt, store, target, state string
}

// newBenchLab makes a btrfs filesystem with a store holding v1 (n files)
// and v2 (5% changed, 1% removed, 1% added), and a target subvolume at v1.
func newBenchLab(b *testing.B, n int) *benchLab {
	mnt := newFS(b, "btrfs", 3<<30)
	l := &benchLab{mnt: mnt, store: filepath.Join(mnt, "store"), state: filepath.Join(mnt, "state")}
	v1 := filepath.Join(l.store, "install/v1/r")
	v2 := filepath.Join(l.store, "install/v2/r")
	genTree(b, v1, n, 1)
	os.MkdirAll(filepath.Dir(v2), 0o755)
	sh(b, "cp", "-a", "--reflink=never", v1, v2)
	rng := rand.New(rand.NewSource(2))
	for i := 0; i < n; i++ {
		p := filepath.Join(v2, fmt.Sprintf("d%03d/s%02d/f%05d", i/1000, (i/100)%10, i))
		switch r := rng.Intn(100); {
		case r < 5:
			os.WriteFile(p, []byte(fmt.Sprintf("changed %d", rng.Int())), 0o644)
		case r < 6:
			os.Remove(p)
		case r < 7:
			os.WriteFile(p+"-new", []byte("added"), 0o644)
		}
	}
	os.MkdirAll(filepath.Join(l.store, "metadata/v1/r/v2"), 0o755)
	os.WriteFile(filepath.Join(l.store, "metadata/v1/r/v2/exclude"), []byte("/data\n"), 0o644)
	l.target = filepath.Join(mnt, "target")
	sh(b, "btrfs", "subvolume", "create", l.target)
	if _, err := Deploy(context.Background(), Request{Store: l.store, Role: "r", Version: "v1", Target: l.target, StateDir: l.state}); err != nil {
		b.Fatal(err)
	}
	sh(b, "sync")
	return l
}

// BenchmarkVerify50k compares Verify with rsync's checksum dry run on the
// same 50,000-file trees.
func BenchmarkVerify50k(b *testing.B) {
	l := newBenchLab(b, 50000)
	src := filepath.Join(l.store, "install/v1/r")
	rsync := func(b *testing.B) {
		sh(b, "rsync", "-n", "-a", "-c", "--delete", "--exclude=/etc/bofh-tree.json", src+"/", l.target+"/")
	}
	// one untimed run of each first: both start with warm caches
	if _, err := Verify(l.store, l.target); err != nil {
		b.Fatal(err)
	}
	rsync(b)
	b.Run("bofh", func(b *testing.B) {
		for b.Loop() {
			r, err := Verify(l.store, l.target)
			if err != nil || len(r.Changes) != 0 {
				b.Fatalf("%v %d", err, len(r.Changes))
			}
		}
	})
	b.Run("rsync-n-a-c-delete", func(b *testing.B) {
		for b.Loop() {
			rsync(b)
		}
	})
}

// BenchmarkUpgrade50k compares an upgrade (cold and warm pair cache, and
// with Checksum) with rsync -a --delete (quick check only) and rsync -a
// -c --delete (content compared) of the same change, each on a fresh
// snapshot of the v1 target.
func BenchmarkUpgrade50k(b *testing.B) {
	l := newBenchLab(b, 50000)
	src := filepath.Join(l.store, "install/v2/r")
	fresh := func(b *testing.B, name string) string {
		p := filepath.Join(l.mnt, name)
		exec.Command("btrfs", "subvolume", "delete", p).Run()
		sh(b, "btrfs", "subvolume", "snapshot", l.target, p)
		sh(b, "sync")
		return p
	}
	// cold: the first upgrade of a version pair compares the store's
	// two versions byte for byte (where size and mtime match) and keeps
	// the answer in the state dir's pair cache; warm: every later
	// upgrade of that pair (another target of the fleet) reads it
	for _, c := range []struct {
		name       string
		cold, csum bool
	}{{"bofh-cold", true, false}, {"bofh-warm", false, false}, {"bofh-checksum", false, true}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				t := fresh(b, "bofh-t")
				if c.cold {
					os.RemoveAll(filepath.Join(l.state, "cache"))
				}
				b.StartTimer()
				if _, err := Upgrade(context.Background(), Request{Store: l.store, Version: "v2", Target: t, StateDir: l.state, Checksum: c.csum}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("rsync-a-delete", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			t := fresh(b, "rsync-t")
			b.StartTimer()
			sh(b, "rsync", "-a", "--delete", "--exclude=/data", "--exclude=/etc/bofh-tree.json", src+"/", t+"/")
			sh(b, "sync")
		}
	})
	// the like-for-like baseline: the upgrade compares the content of
	// files whose size and mtime match, as rsync -c does
	b.Run("rsync-a-c-delete", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			t := fresh(b, "rsync-c-t")
			b.StartTimer()
			sh(b, "rsync", "-a", "-c", "--delete", "--exclude=/data", "--exclude=/etc/bofh-tree.json", src+"/", t+"/")
			sh(b, "sync")
		}
	})
}

// BenchmarkRollback measures the rollback of a failed upgrade on btrfs
// (swap + delete) for 1,000 and 50,000 files.
func BenchmarkRollback(b *testing.B) {
	for _, n := range []int{1000, 50000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			l := newBenchLab(b, n)
			ctx := context.Background()
			for b.Loop() {
				b.StopTimer()
				// fail at the state step: everything before it ran
				rec, _, err := UpgradeRecipe(Request{Store: l.store, Version: "v2", Target: l.target, StateDir: l.state})
				if err != nil {
					b.Fatal(err)
				}
				id, err := applyKill(ctx, rec, l.state, len(rec.Steps)-1)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := rollbackID(ctx, id, l.state); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
