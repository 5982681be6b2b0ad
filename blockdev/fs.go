package blockdev

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

func init() {
	atomic.Register(atomic.Def[Wipe, wipeUndo, WipeResult]{
		Doc:     "erase every signature on a device (wipefs --all --backup); undo writes the saved signatures back",
		Prepare: prepareWipe,
		Do:      doWipe,
		Undo:    undoWipe,
		Check:   checkWipe,
	})
	atomic.Register(atomic.Def[Mkfs, mkfsUndo, Filesystem]{
		Doc:     "make an ext4, xfs, btrfs or vfat filesystem, refusing a device with any signature unless forced; undo wipes it and restores the old signatures",
		Prepare: prepareMkfs,
		Do:      doMkfs,
		Undo:    undoMkfs,
		Check:   checkMkfs,
	})
}

// FSTypes are the filesystem types fs.mkfs makes.
var FSTypes = []string{"ext4", "xfs", "btrfs", "vfat"}

var (
	uuidRe   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	vfatIDRe = regexp.MustCompile(`^[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}$`)
	labelMax = map[string]int{"ext4": 16, "xfs": 12, "btrfs": 255, "vfat": 11}
	backupRe = regexp.MustCompile(`^wipefs-(.+)-(0x[0-9a-f]+)\.bak$`)
)

// Wipe is the fs.wipe step: erase every signature on Device.
type Wipe struct {
	Device string `json:"device" doc:"block device"`
}

// StepKind names the kind.
func (Wipe) StepKind() string { return "fs.wipe" }

// Validate checks the parameters.
func (w Wipe) Validate() error { return checkDevPath(w.Device) }

// WipeResult lists the signatures erased.
type WipeResult struct {
	Device     string      `json:"device"`
	Signatures []Signature `json:"signatures"`
}

type wipeUndo struct {
	Signatures []Signature `json:"signatures"`
}

func prepareWipe(ctx context.Context, env *atomic.Env, w Wipe) (atomic.Plan[wipeUndo, WipeResult], error) {
	var plan atomic.Plan[wipeUndo, WipeResult]
	d, err := ProbeOne(ctx, env.Runner, w.Device)
	if err != nil {
		return plan, err
	}
	if why := d.InUse(); why != "" {
		return plan, fmt.Errorf("%w: %s", atomic.ErrInvalid, why)
	}
	if len(d.Signatures) == 0 {
		plan.Noop, plan.Result = true, WipeResult{Device: w.Device}
		return plan, nil
	}
	plan.Undo.Signatures = d.Signatures
	return plan, nil
}

// wipeBackup erases every signature on dev, saving each to dir.
func wipeBackup(ctx context.Context, env *atomic.Env, dev, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil && !env.DryRun {
		return err
	}
	// wipefs 2.38 writes its backups to $HOME/wipefs-<dev>-<offset>.bak
	_, err := env.Runner.Run(ctx, run.Cmd{Argv: []string{"wipefs", "--all", "--backup", dev}, Kind: run.Mutation, Env: []string{"HOME=" + dir}})
	if err != nil {
		return fmt.Errorf("wipe %s: %w", dev, err)
	}
	return nil
}

type sigBackup struct {
	path   string
	offset int64
}

func listBackups(dir, dev string) ([]sigBackup, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []sigBackup
	for _, e := range ents {
		m := backupRe.FindStringSubmatch(e.Name())
		if m == nil || m[1] != filepath.Base(dev) {
			continue
		}
		off, err := strconv.ParseInt(m[2], 0, 64)
		if err != nil {
			continue
		}
		out = append(out, sigBackup{path: filepath.Join(dir, e.Name()), offset: off})
	}
	return out, nil
}

// restoreBackups writes saved signatures back at their offsets.
func restoreBackups(env *atomic.Env, dev, dir string) (int, error) {
	bks, err := listBackups(dir, dev)
	if err != nil || len(bks) == 0 {
		return 0, err
	}
	if env.Dry("write %d saved signatures back to %s", len(bks), dev) {
		return len(bks), nil
	}
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("restore signatures: %w", err)
	}
	defer f.Close()
	for _, b := range bks {
		data, err := os.ReadFile(b.path)
		if err != nil {
			return 0, fmt.Errorf("restore signatures: %w", err)
		}
		if _, err := f.WriteAt(data, b.offset); err != nil {
			return 0, fmt.Errorf("restore signature at %#x of %s: %w", b.offset, dev, err)
		}
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("restore signatures: sync %s: %w", dev, err)
	}
	return len(bks), nil
}

func stepSub(env *atomic.Env, name string) (string, error) {
	if env.DryRun {
		return filepath.Join(os.TempDir(), "bofh-dry-run", name), nil
	}
	d, err := env.StepDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, name), nil
}

func doWipe(ctx context.Context, env *atomic.Env, w Wipe, u wipeUndo) (WipeResult, error) {
	dir, err := stepSub(env, "old")
	if err != nil {
		return WipeResult{}, err
	}
	if err := wipeBackup(ctx, env, w.Device, dir); err != nil {
		return WipeResult{}, err
	}
	return WipeResult{Device: w.Device, Signatures: u.Signatures}, nil
}

func undoWipe(ctx context.Context, env *atomic.Env, w Wipe, u wipeUndo, _ WipeResult) error {
	dir, err := stepSub(env, "old")
	if err != nil {
		return err
	}
	_, err = restoreBackups(env, w.Device, dir)
	return err
}

func checkWipe(ctx context.Context, env *atomic.Env, w Wipe, u wipeUndo) (bool, WipeResult, error) {
	dir, err := stepSub(env, "old")
	if err != nil {
		return false, WipeResult{}, err
	}
	bks, err := listBackups(dir, w.Device)
	return len(bks) > 0, WipeResult{Device: w.Device, Signatures: u.Signatures}, err
}

// Mkfs is the fs.mkfs step: make a filesystem on Device.
type Mkfs struct {
	Device string `json:"device" doc:"block device"`
	Type   string `json:"type" doc:"ext4, xfs, btrfs or vfat"`
	Label  string `json:"label,omitempty" doc:"filesystem label"`
	UUID   string `json:"uuid,omitempty" doc:"filesystem UUID (vfat: a volume ID like 1234-ABCD)"`
	Force  bool   `json:"force,omitempty" doc:"make it even over existing signatures (they are backed up for the undo)"`
}

// StepKind names the kind.
func (Mkfs) StepKind() string { return "fs.mkfs" }

// Validate checks the parameters.
func (m Mkfs) Validate() error {
	if err := checkDevPath(m.Device); err != nil {
		return err
	}
	if !slices.Contains(FSTypes, m.Type) {
		return fmt.Errorf("type %q: want one of %s", m.Type, strings.Join(FSTypes, ", "))
	}
	if len(m.Label) > labelMax[m.Type] {
		return fmt.Errorf("label %q is longer than %d bytes, the %s limit", m.Label, labelMax[m.Type], m.Type)
	}
	if strings.ContainsAny(m.Label, "\x00\n/") {
		return fmt.Errorf("label %q holds a NUL, newline or '/'", m.Label)
	}
	if m.UUID != "" {
		if m.Type == "vfat" && !vfatIDRe.MatchString(m.UUID) {
			return fmt.Errorf("uuid %q: a vfat volume ID is 8 hex digits, like 1234-ABCD", m.UUID)
		}
		if m.Type != "vfat" && !uuidRe.MatchString(m.UUID) {
			return fmt.Errorf("uuid %q is not a UUID", m.UUID)
		}
	}
	return nil
}

// Filesystem is what fs.mkfs made.
type Filesystem struct {
	Device string `json:"device"`
	Type   string `json:"type"`
	UUID   string `json:"uuid"`
	Label  string `json:"label,omitempty"`
}

type mkfsUndo struct {
	// Old lists the signatures that were there (forced mkfs only).
	Old []Signature `json:"old,omitempty"`
	// DiskSize is the device size (forced mkfs only): the first and last
	// MiB, where every supported superblock and table lives, are saved.
	DiskSize int64 `json:"disk_size,omitempty"`
}

func (m Mkfs) normUUID() string {
	if m.Type == "vfat" && m.UUID != "" {
		u := strings.ToUpper(strings.ReplaceAll(m.UUID, "-", ""))
		return u[:4] + "-" + u[4:]
	}
	return strings.ToLower(m.UUID)
}

func (m Mkfs) matches(b Blkid) bool {
	if b["TYPE"] != m.Type {
		return false
	}
	if m.Label != "" && b["LABEL"] != m.Label {
		return false
	}
	if m.UUID != "" && !strings.EqualFold(b["UUID"], m.normUUID()) {
		return false
	}
	return true
}

func prepareMkfs(ctx context.Context, env *atomic.Env, m Mkfs) (atomic.Plan[mkfsUndo, Filesystem], error) {
	var plan atomic.Plan[mkfsUndo, Filesystem]
	d, err := ProbeOne(ctx, env.Runner, m.Device)
	if err != nil {
		return plan, err
	}
	if why := d.InUse(); why != "" {
		return plan, fmt.Errorf("%w: %s", atomic.ErrInvalid, why)
	}
	if len(d.Signatures) == 0 {
		return plan, nil
	}
	b, err := Identify(ctx, env.Runner, m.Device)
	if err != nil {
		return plan, err
	}
	if m.matches(b) && len(d.Partitions()) == 0 {
		plan.Noop = true
		plan.Result = Filesystem{Device: m.Device, Type: m.Type, UUID: b["UUID"], Label: b["LABEL"]}
		return plan, nil
	}
	if !m.Force {
		var what []string
		for _, s := range d.Signatures {
			if !slices.Contains(what, s.Type) {
				what = append(what, s.Type)
			}
		}
		return plan, fmt.Errorf("%w: %s holds a %s signature; refusing to make a filesystem over it without force", atomic.ErrInvalid, m.Device, strings.Join(what, ", "))
	}
	plan.Undo.Old = d.Signatures
	plan.Undo.DiskSize = d.Size
	return plan, nil
}

func (m Mkfs) argv() []string {
	var a []string
	switch m.Type {
	case "ext4":
		a = []string{"mkfs.ext4", "-q", "-F"}
		if m.Label != "" {
			a = append(a, "-L", m.Label)
		}
		if m.UUID != "" {
			a = append(a, "-U", m.normUUID())
		}
	case "xfs":
		a = []string{"mkfs.xfs", "-q", "-f"}
		if m.Label != "" {
			a = append(a, "-L", m.Label)
		}
		if m.UUID != "" {
			a = append(a, "-m", "uuid="+m.normUUID())
		}
	case "btrfs":
		a = []string{"mkfs.btrfs", "-q", "-f"}
		if m.Label != "" {
			a = append(a, "-L", m.Label)
		}
		if m.UUID != "" {
			a = append(a, "-U", m.normUUID())
		}
	case "vfat":
		a = []string{"mkfs.vfat"}
		if m.Label != "" {
			a = append(a, "-n", m.Label)
		}
		if m.UUID != "" {
			a = append(a, "-i", strings.ReplaceAll(m.normUUID(), "-", ""))
		}
	}
	return append(a, m.Device)
}

func doMkfs(ctx context.Context, env *atomic.Env, m Mkfs, u mkfsUndo) (Filesystem, error) {
	if len(u.Old) > 0 {
		dir, err := stepSub(env, "old")
		if err != nil {
			return Filesystem{}, err
		}
		if bks, err := listBackups(dir, m.Device); err != nil {
			return Filesystem{}, err
		} else if len(bks) == 0 { // a rerun after a crash keeps the first backups
			if !env.DryRun {
				if err := os.MkdirAll(dir, 0o700); err != nil {
					return Filesystem{}, err
				}
				if err := backupTable(m.Device, dir, u.DiskSize); err != nil {
					return Filesystem{}, err
				}
			}
			if err := wipeBackup(ctx, env, m.Device, dir); err != nil {
				return Filesystem{}, err
			}
		}
	}
	if err := run.Mutate(ctx, env.Runner, m.argv()...); err != nil {
		return Filesystem{}, fmt.Errorf("mkfs.%s %s: %w", m.Type, m.Device, err)
	}
	if env.DryRun {
		return Filesystem{Device: m.Device, Type: m.Type, UUID: m.normUUID(), Label: m.Label}, nil
	}
	b, err := Identify(ctx, env.Runner, m.Device)
	if err != nil {
		return Filesystem{}, err
	}
	return Filesystem{Device: m.Device, Type: m.Type, UUID: b["UUID"], Label: b["LABEL"]}, nil
}

// unmake wipes what mkfs made and writes back what was there: the saved
// signatures and the saved first and last MiB (superblocks, tables).
// What a forced mkfs overwrote elsewhere on the device is not restored.
func unmake(ctx context.Context, env *atomic.Env, m Mkfs, u mkfsUndo) error {
	if err := run.Mutate(ctx, env.Runner, "wipefs", "--all", m.Device); err != nil {
		return fmt.Errorf("wipe new %s signature on %s: %w", m.Type, m.Device, err)
	}
	dir, err := stepSub(env, "old")
	if err != nil {
		return err
	}
	if _, err = restoreBackups(env, m.Device, dir); err != nil {
		return err
	}
	if u.DiskSize > 0 {
		_, err = restoreRegions(env, m.Device, dir, u.DiskSize)
	}
	return err
}

func undoMkfs(ctx context.Context, env *atomic.Env, m Mkfs, u mkfsUndo, _ Filesystem) error {
	d, err := ProbeOne(ctx, env.Runner, m.Device)
	if err != nil {
		return err
	}
	if why := d.InUse(); why != "" {
		return fmt.Errorf("cannot undo mkfs: %s", why)
	}
	b, err := Identify(ctx, env.Runner, m.Device)
	if err != nil {
		return err
	}
	if b["TYPE"] != m.Type && len(u.Old) == 0 {
		return nil // already gone (or never made)
	}
	return unmake(ctx, env, m, u)
}

// checkMkfs reports whether the new filesystem is there. A forced mkfs
// interrupted between its wipe and mkfs is put back as it was (saved
// signatures restored) and reported absent, so neither a rollback nor a
// resume loses the old signatures.
func checkMkfs(ctx context.Context, env *atomic.Env, m Mkfs, u mkfsUndo) (bool, Filesystem, error) {
	b, err := Identify(ctx, env.Runner, m.Device)
	if err != nil {
		return false, Filesystem{}, err
	}
	if m.matches(b) {
		return true, Filesystem{Device: m.Device, Type: m.Type, UUID: b["UUID"], Label: b["LABEL"]}, nil
	}
	if len(u.Old) > 0 {
		dir, err := stepSub(env, "old")
		if err != nil {
			return false, Filesystem{}, err
		}
		if bks, _ := listBackups(dir, m.Device); len(bks) > 0 {
			if err := unmake(ctx, env, m, u); err != nil {
				return false, Filesystem{}, err
			}
			os.RemoveAll(dir) // the next attempt saves the original again
		}
	}
	return false, Filesystem{}, nil
}
