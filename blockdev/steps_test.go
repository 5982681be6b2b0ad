package blockdev

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

func opts(t *testing.T, extra ...atomic.Option) []atomic.Option {
	return append([]atomic.Option{atomic.WithStateDir(t.TempDir()), atomic.WithFailpoints("")}, extra...)
}

// doFail runs steps in a transaction that then fails, so everything is
// rolled back; it returns the error of the steps, if any.
func doFail(t *testing.T, steps ...atomic.Params) error {
	t.Helper()
	errBoom := errors.New("boom")
	var stepErr error
	err := atomic.Run(context.Background(), "test", func(tx *atomic.Tx) error {
		for _, s := range steps {
			if stepErr = tx.Do(context.Background(), s, nil); stepErr != nil {
				return stepErr
			}
		}
		return errBoom
	}, opts(t)...)
	if stepErr == nil && !errors.Is(err, errBoom) {
		t.Fatalf("rollback: %v", err)
	}
	return stepErr
}

func doOK(t *testing.T, steps ...atomic.Params) error {
	t.Helper()
	return atomic.Run(context.Background(), "test", func(tx *atomic.Tx) error {
		for _, s := range steps {
			if err := tx.Do(context.Background(), s, nil); err != nil {
				return err
			}
		}
		return nil
	}, opts(t)...)
}

func readEnds(t *testing.T, dev string) []byte {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size, _ := f.Seek(0, io.SeekEnd)
	head := make([]byte, 2<<20)
	f.ReadAt(head[:1<<20], 0)
	f.ReadAt(head[1<<20:], size-(1<<20))
	return head
}

func TestMkfsEveryType(t *testing.T) {
	requireRoot(t)
	requireTools(t, "mkfs.ext4", "mkfs.xfs", "mkfs.btrfs", "mkfs.vfat", "wipefs", "blkid")
	ctx := context.Background()
	tests := []Mkfs{
		{Type: "ext4", Label: "e4", UUID: "0b3c8a2e-1111-4c2a-9a53-0e7b8a8d7a11"},
		{Type: "xfs", Label: "x", UUID: "1b3c8a2e-1111-4c2a-9a53-0e7b8a8d7a11"},
		{Type: "btrfs", Label: "b", UUID: "2b3c8a2e-1111-4c2a-9a53-0e7b8a8d7a11"},
		{Type: "vfat", Label: "V", UUID: "1234-abcd"},
	}
	for _, tc := range tests {
		t.Run(tc.Type, func(t *testing.T) {
			dev := attach(t, sparseFile(t, 320<<20))
			tc.Device = dev
			var fs Filesystem
			if err := atomic.Run(ctx, "mkfs", func(tx *atomic.Tx) error { return tx.Do(ctx, tc, &fs) }, opts(t)...); err != nil {
				t.Fatal(err)
			}
			if fs.Type != tc.Type || !strings.EqualFold(fs.UUID, tc.UUID) || fs.Label != tc.Label {
				t.Fatalf("made %+v", fs)
			}
			// same shape again: a no-op
			if err := doOK(t, tc); err != nil {
				t.Fatalf("mkfs again: %v", err)
			}
			// over another filesystem without force: refused, exit 2, unchanged
			other := Mkfs{Device: dev, Type: "ext4"}
			if tc.Type == "ext4" {
				other.Type = "xfs"
			}
			err := atomic.Run(ctx, "mkfs", func(tx *atomic.Tx) error { return tx.Do(ctx, other, nil) }, opts(t)...)
			if atomic.ExitCode(err) != atomic.ExitInvalid || !strings.Contains(err.Error(), "without force") {
				t.Fatalf("mkfs over %s without force: %v (exit %d)", tc.Type, err, atomic.ExitCode(err))
			}
			if b, _ := Identify(ctx, &run.Local{}, dev); b["TYPE"] != tc.Type {
				t.Fatalf("refused mkfs changed the device: %v", b)
			}
			// forced, then rolled back: the old filesystem's signature is back
			other.Force = true
			if err := doFail(t, other); err != nil {
				t.Fatal(err)
			}
			b, _ := Identify(ctx, &run.Local{}, dev)
			if b["TYPE"] != tc.Type || !strings.EqualFold(b["UUID"], fs.UUID) {
				t.Fatalf("after rollback of a forced mkfs: %v, want %s %s", b, tc.Type, fs.UUID)
			}
			// wipe and roll back: still there; wipe and commit: gone
			if err := doFail(t, Wipe{Device: dev}); err != nil {
				t.Fatal(err)
			}
			if b, _ := Identify(ctx, &run.Local{}, dev); b["TYPE"] != tc.Type {
				t.Fatalf("after wipe rollback: %v", b)
			}
			if err := doOK(t, Wipe{Device: dev}); err != nil {
				t.Fatal(err)
			}
			if sigs, _ := Signatures(ctx, &run.Local{}, dev); len(sigs) != 0 {
				t.Fatalf("after wipe: %v", sigs)
			}
		})
	}
}

func TestPartitionUndoRestoresBytes(t *testing.T) {
	requireRoot(t)
	requireTools(t, "partx", "wipefs")
	for _, typ := range []string{"gpt", "mbr"} {
		t.Run(typ, func(t *testing.T) {
			dev := attach(t, sparseFile(t, 64<<20))
			empty := readEnds(t, dev)
			// table + two partitions, rolled back: the bytes are as before
			if err := doFail(t, PartTable{Device: dev, Type: typ}, PartCreate{Device: dev, Size: "8M"}, PartCreate{Device: dev, Size: "8M"}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(readEnds(t, dev), empty) {
				t.Fatal("rollback of table+create did not restore the bytes")
			}
			if n := kernelParts(dev); len(n) != 0 {
				t.Fatalf("kernel still has partitions %v", n)
			}
			if err := doOK(t, PartTable{Device: dev, Type: typ}, PartCreate{Device: dev, Size: "8M"}, PartCreate{Device: dev, Size: "8M"}); err != nil {
				t.Fatal(err)
			}
			tb, err := ReadTable(dev)
			if err != nil || tb.Type != typ || len(tb.Partitions) != 2 || tb.Partitions[1].Start != 9<<20 || tb.Partitions[1].Size != 8<<20 {
				t.Fatalf("table: %+v %v", tb, err)
			}
			if _, err := os.Stat(PartDevice(dev, 2)); err != nil {
				t.Fatal(err)
			}
			two := readEnds(t, dev)
			// delete rolled back: exact bytes; delete committed: gone
			if err := doFail(t, PartDelete{Device: dev, Number: 1}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(readEnds(t, dev), two) {
				t.Fatal("rollback of delete did not restore the bytes")
			}
			if err := doOK(t, PartDelete{Device: dev, Number: 1}); err != nil {
				t.Fatal(err)
			}
			tb, _ = ReadTable(dev)
			if len(tb.Partitions) != 1 || tb.Partitions[0].Number != 2 {
				t.Fatalf("after delete: %+v", tb)
			}
			// a table over a table with partitions: refused without force
			err = doOK(t, PartTable{Device: dev, Type: typ})
			if atomic.ExitCode(err) != atomic.ExitInvalid {
				t.Fatalf("table over a table: %v", err)
			}
			// bad input: does not fit, overlaps
			for _, bad := range []PartCreate{{Device: dev, Size: "1G"}, {Device: dev, Start: "9M", Size: "4M"}, {Device: dev, Size: "3K"}} {
				if err := doOK(t, bad); atomic.ExitCode(err) != atomic.ExitInvalid {
					t.Errorf("%+v: %v", bad, err)
				}
			}
		})
	}
}

func TestMountsNestedAndPool(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	r := &run.Local{}
	a := attach(t, sparseFile(t, 64<<20))
	b := attach(t, sparseFile(t, 64<<20))
	sh(t, "mkfs.ext4", "-q", a)
	sh(t, "mkfs.ext4", "-q", b)
	top := t.TempDir()
	// nested: /top/x is created on a's filesystem once it is mounted, so
	// mounting in MountOrder is what makes the second mount possible
	steps := MountOrder([]MountFS{{Source: b, Target: filepath.Join(top, "x")}, {Source: a, Target: top}})
	if steps[0].Target != top {
		t.Fatalf("MountOrder: %+v", steps)
	}
	err := atomic.Run(ctx, "nested", func(tx *atomic.Tx) error {
		if err := tx.Do(ctx, steps[0], nil); err != nil {
			return err
		}
		if err := os.Mkdir(steps[1].Target, 0o755); err != nil {
			return err
		}
		if err := tx.Do(ctx, steps[1], nil); err != nil {
			return err
		}
		// already mounted there: a no-op
		if err := tx.Do(ctx, steps[1], nil); err != nil {
			return err
		}
		return errors.New("boom")
	}, opts(t)...)
	if !errors.Is(err, atomic.ErrInvalid) && atomic.ExitCode(err) != atomic.ExitRolledBack {
		t.Fatalf("nested: %v", err)
	}
	if at, _ := MountsAt(ctx, r, top); len(at) != 0 {
		t.Fatalf("rollback left %v mounted", at)
	}
	// unmount order: deepest first
	if u := UmountOrder([]string{top, filepath.Join(top, "x")}); u[0].Target != filepath.Join(top, "x") {
		t.Fatalf("UmountOrder: %+v", u)
	}
	// a device in use: umount refused while a mount is nested below
	sh(t, "mount", a, top)
	sh(t, "mount", b, filepath.Join(top, "x"))
	if err := doOK(t, Umount{Target: top}); atomic.ExitCode(err) != atomic.ExitInvalid {
		t.Fatalf("umount with a nested mount: %v", err)
	}
	// mkfs over a mounted device: refused, exit 2
	if err := doOK(t, Mkfs{Device: a, Type: "ext4", Force: true}); atomic.ExitCode(err) != atomic.ExitInvalid || !strings.Contains(err.Error(), "mounted") {
		t.Fatalf("mkfs over a mounted device: %v", err)
	}
	// umount steps in order, rolled back: both mounted again
	if err := doFail(t, Umount{Target: filepath.Join(top, "x")}, Umount{Target: top}); err != nil {
		t.Fatal(err)
	}
	if at, _ := MountsAt(ctx, r, filepath.Join(top, "x")); len(at) != 1 {
		t.Fatalf("umount rollback: %v", at)
	}
	sh(t, "umount", filepath.Join(top, "x"))
	sh(t, "umount", top)

	// the pool: two mountpoints, the second mount takes the other, the
	// third finds the pool empty
	p1, p2 := t.TempDir(), t.TempDir()
	pool, err := NewMountPool([]string{p1, p2})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	err = atomic.Run(ctx, "pool", func(tx *atomic.Tx) error {
		for _, dev := range []string{a, b} {
			pt, err := pool.Mount(ctx, tx, r, MountFS{Source: dev})
			if err != nil {
				return err
			}
			got = append(got, pt)
		}
		if _, err := pool.Acquire(ctx, r); !errors.Is(err, ErrPoolEmpty) {
			t.Errorf("third acquire: %v", err)
		}
		if err := pool.Release(ctx, tx, got[0]); err != nil {
			return err
		}
		pt, err := pool.Acquire(ctx, r)
		if err != nil || pt != got[0] {
			t.Errorf("after release: %q %v", pt, err)
		}
		pool.Give(pt)
		return nil
	}, opts(t)...)
	if err != nil || len(got) != 2 || got[0] == got[1] {
		t.Fatalf("pool: %v %v", got, err)
	}
	if at, _ := MountsAt(ctx, r, got[1]); len(at) != 1 {
		t.Fatalf("pool mount of %s not there", got[1])
	}
	sh(t, "umount", got[1])
	empty, _ := NewMountPool(nil)
	if _, err := empty.Acquire(ctx, r); !errors.Is(err, ErrPoolEmpty) || !strings.Contains(err.Error(), "mount_pool") {
		t.Fatalf("empty pool: %v", err)
	}
}

func TestLoopAttachDetach(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	file := sparseFile(t, 16<<20)
	var l Loop
	if err := atomic.Run(ctx, "loop", func(tx *atomic.Tx) error { return tx.Do(ctx, LoopAttach{File: file}, &l) }, opts(t)...); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(l.Device, "/dev/loop") || l.File != file {
		t.Fatalf("attach: %+v", l)
	}
	// attached already: a no-op whose rollback leaves it attached
	if err := doFail(t, LoopAttach{File: file}); err != nil {
		t.Fatal(err)
	}
	if ls, _ := LoopsOf(ctx, &run.Local{}, file); len(ls) != 1 {
		t.Fatalf("after a no-op attach rolled back: %v", ls)
	}
	// detach rolled back: attached again to the same device
	if err := doFail(t, LoopDetach{Device: l.Device}); err != nil {
		t.Fatal(err)
	}
	if ls, _ := LoopsOf(ctx, &run.Local{}, file); len(ls) != 1 || ls[0].Device != l.Device {
		t.Fatalf("after detach rolled back: %v", ls)
	}
	if err := doOK(t, LoopDetach{Device: l.Device}); err != nil {
		t.Fatal(err)
	}
	if ls, _ := LoopsOf(ctx, &run.Local{}, file); len(ls) != 0 {
		t.Fatalf("after detach: %v", ls)
	}
	// bad input: missing file, relative path
	for _, bad := range []LoopAttach{{File: "/nonexistent/disk.img"}, {File: "disk.img"}} {
		if err := doOK(t, bad); atomic.ExitCode(err) != atomic.ExitInvalid {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

// TestTranscriptMkfsForced pins the exact commands of a forced mkfs and
// its undo with the fake runner.
func TestTranscriptMkfsForced(t *testing.T) {
	f := run.NewFake(t)
	// the forced mkfs saves and restores the first and last MiB itself:
	// give it an image file, never a real device, behind the fake runner
	dev := filepath.Join(t.TempDir(), "loop1")
	if err := os.WriteFile(dev, bytes.Repeat([]byte{0xAB}, 4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	lsblk := `{"blockdevices":[{"name":"loop1","kname":"loop1","path":"` + dev + `","type":"loop","size":4194304,"mountpoints":[null]}]}`
	f.Expect("lsblk", "-J", "-b", "-o", lsblkColumns, dev).Out(lsblk)
	f.Expect("wipefs", "--no-act", "-J", dev).Out(`{"signatures":[{"device":"loop1","offset":"0x0","type":"xfs","uuid":"u","label":null}]}`)
	f.Expect("blkid", "-p", "-o", "export", dev).Out("TYPE=xfs\nUUID=u\n")
	f.Expect("wipefs", "--all", "--backup", dev).Kind(run.Mutation)
	f.Expect("mkfs.ext4", "-q", "-F", "-L", "new", dev).Kind(run.Mutation)
	f.Expect("blkid", "-p", "-o", "export", dev).Out("TYPE=ext4\nUUID=n\nLABEL=new\n")
	// undo
	f.Expect("lsblk", "-J", "-b", "-o", lsblkColumns, dev).Out(lsblk)
	f.Expect("wipefs", "--no-act", "-J", dev).Out(`{"signatures":[{"device":"loop1","offset":"0x438","type":"ext4","uuid":"n","label":"new"}]}`)
	f.Expect("blkid", "-p", "-o", "export", dev).Out("TYPE=ext4\nUUID=n\nLABEL=new\n")
	f.Expect("wipefs", "--all", dev).Kind(run.Mutation)
	err := atomic.Run(context.Background(), "t", func(tx *atomic.Tx) error {
		if err := tx.Do(context.Background(), Mkfs{Device: dev, Type: "ext4", Label: "new", Force: true}, nil); err != nil {
			return err
		}
		// what mkfs would have done to the start of the device
		os.WriteFile(dev, make([]byte, 4<<20), 0o600)
		return errors.New("boom")
	}, opts(t, atomic.WithRunner(f))...)
	if atomic.ExitCode(err) != atomic.ExitRolledBack {
		t.Fatal(err)
	}
	f.Done()
	got, _ := os.ReadFile(dev)
	if !bytes.Equal(got[:1<<20], bytes.Repeat([]byte{0xAB}, 1<<20)) || !bytes.Equal(got[3<<20:], bytes.Repeat([]byte{0xAB}, 1<<20)) {
		t.Error("undo did not restore the first and last MiB")
	}
}
