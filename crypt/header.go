package crypt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/fsutil"
	"github.com/bofhkit/bofh/run"
)

// HeaderBackup is the crypt.header.backup step: write a LUKS header backup
// file (luksHeaderBackup). Undo removes the file.
type HeaderBackup struct {
	Device string `json:"device" doc:"LUKS device"`
	File   string `json:"file" doc:"backup file to create (must not exist)"`
}

// StepKind names the kind.
func (HeaderBackup) StepKind() string { return "crypt.header.backup" }

// Validate checks the parameters without touching the system.
func (b HeaderBackup) Validate() error {
	if err := checkDevice("device", b.Device); err != nil {
		return err
	}
	return checkDevice("file", b.File)
}

// HeaderFile is a header backup file and the header it holds.
type HeaderFile struct {
	Device string `json:"device"`
	File   string `json:"file"`
	UUID   string `json:"uuid"`
}

func prepareHeaderBackup(ctx context.Context, env *atomic.Env, b HeaderBackup) (atomic.Plan[struct{}, HeaderFile], error) {
	var plan atomic.Plan[struct{}, HeaderFile]
	h, err := ReadHeader(b.Device)
	if err != nil {
		return plan, invalid(err)
	}
	if _, err := os.Lstat(b.File); err == nil {
		if fh, err := ReadHeader(b.File); err == nil && fh.UUID == h.UUID {
			if same, _ := sameHeader(b.Device, b.File); same {
				plan.Noop, plan.Result = true, HeaderFile{Device: b.Device, File: b.File, UUID: h.UUID}
				return plan, nil
			}
		}
		return plan, invalid(fmt.Errorf("header backup file %s exists", b.File))
	}
	if _, err := os.Stat(filepath.Dir(b.File)); err != nil {
		return plan, invalid(fmt.Errorf("header backup directory: %w", err))
	}
	return plan, nil
}

// sameHeader reports whether the device starts with the backup's bytes.
func sameHeader(dev, file string) (bool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return false, err
	}
	cur, err := readAt(dev, 0, int64(len(b)))
	if err != nil {
		return false, err
	}
	return bytes.Equal(cur, b), nil
}

func doHeaderBackup(ctx context.Context, env *atomic.Env, b HeaderBackup, _ struct{}) (HeaderFile, error) {
	res := HeaderFile{Device: b.Device, File: b.File}
	if err := run.Mutate(ctx, env.Runner, "cryptsetup", "luksHeaderBackup", "--batch-mode", b.Device, "--header-backup-file", b.File); err != nil {
		return res, classify(err)
	}
	if env.DryRun {
		return res, nil
	}
	h, err := ReadHeader(b.File)
	if err != nil {
		return res, err
	}
	res.UUID = h.UUID
	return res, nil
}

func undoHeaderBackup(ctx context.Context, env *atomic.Env, b HeaderBackup, _ struct{}, _ HeaderFile) error {
	if env.Dry("remove %s", b.File) {
		return nil
	}
	if err := os.Remove(b.File); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func checkHeaderBackup(ctx context.Context, env *atomic.Env, b HeaderBackup, _ struct{}) (bool, HeaderFile, error) {
	h, err := ReadHeader(b.File)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, HeaderFile{}, nil
		}
		// a partial file: present, so that undo removes it
		return true, HeaderFile{Device: b.Device, File: b.File}, nil
	}
	return true, HeaderFile{Device: b.Device, File: b.File, UUID: h.UUID}, nil
}

// HeaderRestore is the crypt.header.restore step: write a header backup
// onto a device (luksHeaderRestore). The bytes it overwrites are saved
// first; undo puts them back.
type HeaderRestore struct {
	Device string `json:"device" doc:"device to restore the header onto"`
	File   string `json:"file" doc:"header backup file"`
	Force  bool   `json:"force,omitempty" doc:"restore over another LUKS header or another signature"`
}

// StepKind names the kind.
func (HeaderRestore) StepKind() string { return "crypt.header.restore" }

// Validate checks the parameters without touching the system.
func (r HeaderRestore) Validate() error {
	if err := checkDevice("device", r.Device); err != nil {
		return err
	}
	return checkDevice("file", r.File)
}

type restoreUndo struct {
	Len int64 `json:"len"`
}

func prepareHeaderRestore(ctx context.Context, env *atomic.Env, r HeaderRestore) (atomic.Plan[restoreUndo, HeaderFile], error) {
	var plan atomic.Plan[restoreUndo, HeaderFile]
	fh, err := ReadHeader(r.File)
	if err != nil {
		return plan, invalid(fmt.Errorf("header backup: %w", err))
	}
	res := HeaderFile{Device: r.Device, File: r.File, UUID: fh.UUID}
	fi, err := os.Stat(r.File)
	if err != nil {
		return plan, invalid(err)
	}
	size, err := deviceSize(r.Device)
	if err != nil {
		return plan, invalid(err)
	}
	if size < fi.Size() {
		return plan, invalid(fmt.Errorf("%s (%d bytes) is smaller than the header backup (%d bytes)", r.Device, size, fi.Size()))
	}
	if same, err := sameHeader(r.Device, r.File); err != nil {
		return plan, err
	} else if same {
		plan.Noop, plan.Result = true, res
		return plan, nil
	}
	if err := checkNotInUse(r.Device); err != nil && !r.Force {
		return plan, invalid(err)
	}
	if h, err := ReadHeader(r.Device); err == nil {
		if !strings.EqualFold(h.UUID, fh.UUID) && !r.Force {
			return plan, invalid(fmt.Errorf("%w: %s holds LUKS header %s, the backup is of %s; set force", ErrSignature, r.Device, h.UUID, fh.UUID))
		}
	} else {
		pr, err := ProbeDevice(ctx, env.Runner, r.Device)
		if err != nil && !r.Force {
			return plan, err
		}
		if !pr.Empty() && !r.Force {
			return plan, invalid(fmt.Errorf("%w: %s holds %s; set force", ErrSignature, r.Device, pr.Type()))
		}
	}
	plan.Undo = restoreUndo{Len: fi.Size()}
	plan.Result = res
	return plan, nil
}

func (u restoreUndo) path(env *atomic.Env) (string, error) {
	dir, err := env.StepDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "before.bin"), nil
}

func doHeaderRestore(ctx context.Context, env *atomic.Env, r HeaderRestore, u restoreUndo) (HeaderFile, error) {
	res := HeaderFile{Device: r.Device, File: r.File}
	if !env.Dry("back up the first %d bytes of %s", u.Len, r.Device) {
		p, err := u.path(env)
		if err != nil {
			return res, err
		}
		if _, err := os.Stat(p); err != nil {
			b, err := readAt(r.Device, 0, u.Len)
			if err != nil {
				return res, err
			}
			if err := fsutil.WriteFileSync(p, b, 0o600); err != nil {
				return res, err
			}
		}
	}
	if err := run.Mutate(ctx, env.Runner, "cryptsetup", "luksHeaderRestore", "--batch-mode", r.Device, "--header-backup-file", r.File); err != nil {
		return res, classify(err)
	}
	if h, err := ReadHeader(r.File); err == nil {
		res.UUID = h.UUID
	}
	return res, nil
}

func undoHeaderRestore(ctx context.Context, env *atomic.Env, r HeaderRestore, u restoreUndo, _ HeaderFile) error {
	p, err := u.path(env)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil // never restored
	}
	if err != nil {
		return err
	}
	cur, err := readAt(r.Device, 0, int64(len(b)))
	if err != nil {
		return err
	}
	if bytes.Equal(cur, b) {
		return nil
	}
	if env.Dry("put back the first %d bytes of %s", len(b), r.Device) {
		return nil
	}
	return writeAt(r.Device, 0, b)
}

func checkHeaderRestore(ctx context.Context, env *atomic.Env, r HeaderRestore, u restoreUndo) (bool, HeaderFile, error) {
	same, err := sameHeader(r.Device, r.File)
	return same, HeaderFile{Device: r.Device, File: r.File}, err
}

func init() {
	atomic.Register(atomic.Def[HeaderBackup, struct{}, HeaderFile]{
		Doc:     "write a LUKS header backup file; undo removes it",
		Prepare: prepareHeaderBackup,
		Do:      doHeaderBackup,
		Undo:    undoHeaderBackup,
		Check:   checkHeaderBackup,
	})
	atomic.Register(atomic.Def[HeaderRestore, restoreUndo, HeaderFile]{
		Doc:     "restore a LUKS header backup onto a device (refuses another header or signature unless forced); undo puts back the bytes it overwrote",
		Prepare: prepareHeaderRestore,
		Do:      doHeaderRestore,
		Undo:    undoHeaderRestore,
		Check:   checkHeaderRestore,
	})
}
