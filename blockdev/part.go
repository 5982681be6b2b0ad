package blockdev

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/fsutil"
	"github.com/bofhkit/bofh/run"
)

func init() {
	atomic.Register(atomic.Def[PartTable, tableUndo, Table]{
		Doc:     "write an empty GPT or MBR partition table, refusing a device with any signature unless forced; undo restores the previous bytes exactly",
		Prepare: preparePartTable,
		Do:      doPartTable,
		Undo:    undoTable[PartTable, Table],
		Check:   checkTable[PartTable, Table],
	})
	atomic.Register(atomic.Def[PartCreate, tableUndo, Partition]{
		Doc:     "add a partition (start and size 1 MiB aligned); undo restores the previous table bytes exactly",
		Prepare: preparePartCreate,
		Do:      doPartCreate,
		Undo:    undoTable[PartCreate, Partition],
		Check:   checkPartCreate,
	})
	atomic.Register(atomic.Def[PartDelete, tableUndo, struct{}]{
		Doc:     "delete a partition that is not in use; undo restores the previous table bytes exactly",
		Prepare: preparePartDelete,
		Do:      doPartDelete,
		Undo:    undoTable[PartDelete, struct{}],
		Check:   checkTable[PartDelete, struct{}],
	})
}

// tableRegion is how much of each end of the disk is saved before a
// partition table changes: the MBR, a GPT header and its 128 entries and
// the 1 MiB alignment gap at the start; the backup GPT at the end.
const tableRegion = 1 << 20

// align is the partition alignment: 1 MiB.
const align = 1 << 20

// Table describes a partition table.
type Table struct {
	Device     string      `json:"device"`
	Type       string      `json:"type"`
	Partitions []Partition `json:"partitions"`
}

// Partition is one partition of a table.
type Partition struct {
	Device string `json:"device"`
	Disk   string `json:"disk"`
	Number int    `json:"number"`
	Start  int64  `json:"start"`
	Size   int64  `json:"size"`
	Type   string `json:"type"`
	Name   string `json:"name,omitempty"`
}

// PartDevice returns the device node of partition n of disk:
// /dev/sda1, /dev/loop0p1, /dev/nvme0n1p1.
func PartDevice(disk string, n int) string {
	if disk != "" && disk[len(disk)-1] >= '0' && disk[len(disk)-1] <= '9' {
		return disk + "p" + strconv.Itoa(n)
	}
	return disk + strconv.Itoa(n)
}

// tableUndo names the saved table regions.
type tableUndo struct {
	DiskSize int64 `json:"disk_size"`
	// Wiped is set when a forced part.table erased other signatures first.
	Wiped bool `json:"wiped,omitempty"`
}

// ReadTable reads the partition table of device with go-diskfs. A device
// without a table gives Type "".
func ReadTable(device string) (Table, error) {
	d, err := diskfs.Open(device, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return Table{}, fmt.Errorf("%w: open %s: %w", atomic.ErrInvalid, device, err)
	}
	defer d.Close()
	t := Table{Device: device}
	pt, err := d.GetPartitionTable()
	if err != nil {
		return t, nil // no (known) table
	}
	return describe(device, pt, d.LogicalBlocksize), nil
}

func describe(device string, pt partition.Table, sector int64) Table {
	t := Table{Device: device}
	switch tt := pt.(type) {
	case *gpt.Table:
		t.Type = "gpt"
		for _, p := range tt.Partitions {
			if p.Type == gpt.Unused {
				continue
			}
			t.Partitions = append(t.Partitions, Partition{Device: PartDevice(device, p.Index), Disk: device, Number: p.Index,
				Start: int64(p.Start) * sector, Size: int64(p.End-p.Start+1) * sector, Type: strings.ToLower(string(p.Type)), Name: p.Name})
		}
	case *mbr.Table:
		t.Type = "mbr"
		for i, p := range tt.Partitions {
			if p.Type == mbr.Empty || p.Size == 0 {
				continue
			}
			t.Partitions = append(t.Partitions, Partition{Device: PartDevice(device, i+1), Disk: device, Number: i + 1,
				Start: int64(p.Start) * sector, Size: int64(p.Size) * sector, Type: fmt.Sprintf("0x%02x", int(p.Type))})
		}
	}
	return t
}

// backupTable saves the first and last tableRegion bytes of device into
// dir, unless an earlier attempt already did.
func backupTable(device, dir string, size int64) error {
	head, tail := filepath.Join(dir, "head.bin"), filepath.Join(dir, "tail.bin")
	if _, err := os.Stat(tail); err == nil {
		return nil
	}
	f, err := os.Open(device)
	if err != nil {
		return fmt.Errorf("back up table of %s: %w", device, err)
	}
	defer f.Close()
	n := min(int64(tableRegion), size)
	for _, part := range []struct {
		path string
		off  int64
	}{{head, 0}, {tail, size - n}} {
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, part.off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("back up table of %s: %w", device, err)
		}
		if err := fsutil.WriteFileSync(part.path, buf, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// tableChanged reports whether the saved regions differ from the device
// now (false when nothing was saved yet: the step never acted).
func tableChanged(device, dir string, size int64) (bool, error) {
	head, err := os.ReadFile(filepath.Join(dir, "head.bin"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	tail, err := os.ReadFile(filepath.Join(dir, "tail.bin"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	f, err := os.Open(device)
	if err != nil {
		return false, err
	}
	defer f.Close()
	cur := make([]byte, len(head))
	if _, err := f.ReadAt(cur, 0); err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	if !bytes.Equal(cur, head) {
		return true, nil
	}
	cur = make([]byte, len(tail))
	if _, err := f.ReadAt(cur, size-int64(len(tail))); err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return !bytes.Equal(cur, tail), nil
}

// restoreTable writes the saved regions back and makes the kernel re-read
// the table.
func restoreTable(ctx context.Context, env *atomic.Env, device string, u tableUndo) error {
	dir, err := stepSub(env, "table")
	if err != nil {
		return err
	}
	if u.Wiped {
		if _, err := restoreBackups(env, device, filepath.Join(dir, "sigs")); err != nil {
			return err
		}
	}
	done, err := restoreRegions(env, device, dir, u.DiskSize)
	if err != nil || !done {
		return err
	}
	return rereadTable(ctx, env.Runner, device)
}

// restoreRegions writes the saved first and last MiB back to device. It
// reports false when nothing was saved (the step never acted).
func restoreRegions(env *atomic.Env, device, dir string, size int64) (bool, error) {
	head, err := os.ReadFile(filepath.Join(dir, "head.bin"))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil // never backed up: never changed
	}
	if err != nil {
		return false, err
	}
	tail, err := os.ReadFile(filepath.Join(dir, "tail.bin"))
	if err != nil {
		return false, err
	}
	if env.Dry("write the saved first and last MiB back to %s", device) {
		return false, nil
	}
	f, err := os.OpenFile(device, os.O_WRONLY, 0)
	if err != nil {
		return false, fmt.Errorf("restore start and end of %s: %w", device, err)
	}
	_, err = f.WriteAt(head, 0)
	if err == nil {
		_, err = f.WriteAt(tail, size-int64(len(tail)))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("restore start and end of %s: %w", device, err)
	}
	return true, nil
}

// rereadTable makes the kernel's partitions match the table on disk with
// 'partx -u', which parses the table in user space and adds, resizes and
// removes partitions through BLKPG: it works while a partition is busy
// and on kernels without a built-in parser for the table type (BLKRRPART
// silently finds nothing there). When the disk has no table any more,
// each partition the kernel still knows is removed with 'partx -d --nr'.
// A regular image file needs none of this.
func rereadTable(ctx context.Context, r run.Runner, device string) error {
	if fi, err := os.Stat(device); err != nil || !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0 {
		return err
	} else if fi.Mode().IsRegular() {
		return nil
	}
	err := run.Mutate(ctx, r, "partx", "-u", device)
	if err == nil {
		return nil
	}
	// no table, or a table without partitions ("range <1:0>")
	if !run.StderrContains(err, "failed to read partition table", "does not make sense") {
		return fmt.Errorf("re-read partition table of %s: %w", device, err)
	}
	for _, n := range kernelParts(device) {
		if err := run.Mutate(ctx, r, "partx", "-d", "--nr", strconv.Itoa(n), device); err != nil {
			return fmt.Errorf("remove partition %d of %s from the kernel: %w", n, device, err)
		}
	}
	return nil
}

// kernelParts lists the partition numbers the kernel knows for a disk.
func kernelParts(device string) []int {
	base := filepath.Base(device)
	ents, _ := os.ReadDir(filepath.Join("/sys/class/block", base))
	var out []int
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/sys/class/block", base, e.Name(), "partition"))
		if err != nil {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func deviceSize(device string) (int64, error) {
	f, err := os.Open(device)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", atomic.ErrInvalid, err)
	}
	defer f.Close()
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", device, err)
	}
	return n, nil
}

func undoTable[P interface {
	atomic.Params
	disk() string
}, R any](ctx context.Context, env *atomic.Env, p P, u tableUndo, _ R) error {
	return restoreTable(ctx, env, p.disk(), u)
}

func checkTable[P interface {
	atomic.Params
	disk() string
}, R any](ctx context.Context, env *atomic.Env, p P, u tableUndo) (bool, R, error) {
	var zero R
	dir, err := stepSub(env, "table")
	if err != nil {
		return false, zero, err
	}
	changed, err := tableChanged(p.disk(), dir, u.DiskSize)
	return changed, zero, err
}

// PartTable is the part.table step: write an empty partition table.
type PartTable struct {
	Device string `json:"device" doc:"whole disk (or image file)"`
	Type   string `json:"type" doc:"gpt or mbr"`
	Force  bool   `json:"force,omitempty" doc:"overwrite existing signatures (they are saved for the undo)"`
}

// StepKind names the kind.
func (PartTable) StepKind() string { return "part.table" }
func (p PartTable) disk() string   { return p.Device }

// Validate checks the parameters.
func (p PartTable) Validate() error {
	if err := checkDevPath(p.Device); err != nil {
		return err
	}
	if p.Type != "gpt" && p.Type != "mbr" {
		return fmt.Errorf("type %q: want gpt or mbr", p.Type)
	}
	return nil
}

// probeDisk checks the disk exists, is not in use and returns its size
// and signatures. An image file is accepted as it is.
func probeDisk(ctx context.Context, env *atomic.Env, device string) (int64, []Signature, error) {
	fi, err := os.Stat(device)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: %w", atomic.ErrInvalid, err)
	}
	var sigs []Signature
	if fi.Mode()&os.ModeDevice != 0 {
		d, err := ProbeOne(ctx, env.Runner, device)
		if err != nil {
			return 0, nil, err
		}
		if why := d.InUse(); why != "" {
			return 0, nil, fmt.Errorf("%w: %s", atomic.ErrInvalid, why)
		}
		sigs = d.Signatures
	} else if !fi.Mode().IsRegular() {
		return 0, nil, fmt.Errorf("%w: %s is neither a block device nor an image file", atomic.ErrInvalid, device)
	} else if sigs, err = Signatures(ctx, env.Runner, device); err != nil {
		return 0, nil, err
	}
	size, err := deviceSize(device)
	if err != nil {
		return 0, nil, err
	}
	if size < 4*tableRegion {
		return 0, nil, fmt.Errorf("%w: %s is only %d bytes; a partitioned disk needs at least 4 MiB", atomic.ErrInvalid, device, size)
	}
	return size, sigs, nil
}

func preparePartTable(ctx context.Context, env *atomic.Env, p PartTable) (atomic.Plan[tableUndo, Table], error) {
	var plan atomic.Plan[tableUndo, Table]
	size, sigs, err := probeDisk(ctx, env, p.Device)
	if err != nil {
		return plan, err
	}
	plan.Undo.DiskSize = size
	if len(sigs) == 0 {
		return plan, nil
	}
	t, err := ReadTable(p.Device)
	if err != nil {
		return plan, err
	}
	if t.Type == p.Type && len(t.Partitions) == 0 {
		onlyTable := true
		for _, s := range sigs {
			if s.Type != "gpt" && s.Type != "PMBR" && s.Type != "dos" {
				onlyTable = false
			}
		}
		if onlyTable {
			plan.Noop, plan.Result = true, t
			return plan, nil
		}
	}
	if !p.Force {
		return plan, fmt.Errorf("%w: %s holds %s; refusing to write a partition table over it without force", atomic.ErrInvalid, p.Device, sigList(sigs))
	}
	plan.Undo.Wiped = true
	return plan, nil
}

func sigList(sigs []Signature) string {
	var out []string
	for _, s := range sigs {
		w := s.Type + " signature"
		if s.Label != "" {
			w += fmt.Sprintf(" (label %q)", s.Label)
		}
		if len(out) == 0 || out[len(out)-1] != w {
			out = append(out, w)
		}
	}
	return strings.Join(out, ", ")
}

// writeTable backs up the table regions, then writes t with go-diskfs.
func writeTable(ctx context.Context, env *atomic.Env, device string, u tableUndo, what string, build func(cur partition.Table, sector int64) (partition.Table, error)) error {
	if env.Dry("%s on %s", what, device) {
		return nil
	}
	dir, err := stepSub(env, "table")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := backupTable(device, dir, u.DiskSize); err != nil {
		return err
	}
	if u.Wiped {
		if err := wipeBackup(ctx, env, device, filepath.Join(dir, "sigs")); err != nil {
			return err
		}
	}
	d, err := diskfs.Open(device, diskfs.WithOpenMode(diskfs.ReadWrite))
	if err != nil {
		return fmt.Errorf("open %s: %w", device, err)
	}
	defer d.Close()
	cur, _ := d.GetPartitionTable()
	t, err := build(cur, d.LogicalBlocksize)
	if err != nil {
		return err
	}
	// go-diskfs writes the table, then tries BLKRRPART (and BLKPG); its
	// re-read error is not final: partx below is what makes the kernel
	// agree with the disk.
	if err := d.Partition(t); err != nil && !strings.Contains(err.Error(), "re-read") && !strings.Contains(err.Error(), "reread") {
		return fmt.Errorf("%s on %s: %w", what, device, err)
	}
	return rereadTable(ctx, env.Runner, device)
}

func doPartTable(ctx context.Context, env *atomic.Env, p PartTable, u tableUndo) (Table, error) {
	err := writeTable(ctx, env, p.Device, u, "write an empty "+p.Type+" table", func(_ partition.Table, sector int64) (partition.Table, error) {
		if p.Type == "gpt" {
			return &gpt.Table{LogicalSectorSize: int(sector), PhysicalSectorSize: int(sector), ProtectiveMBR: true}, nil
		}
		return &mbr.Table{LogicalSectorSize: int(sector), PhysicalSectorSize: int(sector)}, nil
	})
	return Table{Device: p.Device, Type: p.Type}, err
}

// PartCreate is the part.create step: add a partition.
type PartCreate struct {
	Device string `json:"device" doc:"whole disk holding a GPT or MBR table"`
	Number int    `json:"number,omitempty" doc:"partition number (default: the first free one)"`
	Start  string `json:"start,omitempty" doc:"offset from the disk start, e.g. 1M (default: after the last partition)"`
	Size   string `json:"size,omitempty" doc:"size, e.g. 100M (default: the rest of the disk)"`
	Type   string `json:"type,omitempty" doc:"linux (default), efi, swap, lvm, raid, a GPT type GUID or an MBR type like 0x83"`
	Name   string `json:"name,omitempty" doc:"GPT partition name"`
}

// StepKind names the kind.
func (PartCreate) StepKind() string { return "part.create" }
func (p PartCreate) disk() string   { return p.Device }

// Validate checks the parameters.
func (p PartCreate) Validate() error {
	if err := checkDevPath(p.Device); err != nil {
		return err
	}
	if p.Number < 0 || p.Number > 128 {
		return fmt.Errorf("number %d: want 1 to 128", p.Number)
	}
	for _, s := range []struct{ name, v string }{{"start", p.Start}, {"size", p.Size}} {
		if s.v == "" {
			continue
		}
		n, err := ParseSize(s.v)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if n%align != 0 {
			return fmt.Errorf("%s %s is not a multiple of 1 MiB", s.name, s.v)
		}
	}
	if len(p.Name) > 36 {
		return fmt.Errorf("name %q: a GPT name holds at most 36 characters", p.Name)
	}
	if _, _, err := partTypes(p.Type); err != nil {
		return err
	}
	return nil
}

func partTypes(t string) (gpt.Type, mbr.Type, error) {
	switch strings.ToLower(t) {
	case "", "linux":
		return gpt.LinuxFilesystem, mbr.Linux, nil
	case "efi":
		return gpt.EFISystemPartition, mbr.EFISystem, nil
	case "swap":
		return gpt.LinuxSwap, mbr.LinuxSwap, nil
	case "lvm":
		return gpt.LinuxLVM, mbr.LinuxLVM, nil
	case "raid":
		return gpt.LinuxRAID, mbr.Type(0xfd), nil
	}
	if uuidRe.MatchString(t) {
		return gpt.Type(strings.ToUpper(t)), 0, nil
	}
	if n, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(t), "0x"), 16, 8); err == nil && strings.HasPrefix(strings.ToLower(t), "0x") && n != 0 {
		return "", mbr.Type(n), nil
	}
	return "", 0, fmt.Errorf("type %q: want linux, efi, swap, lvm, raid, a GPT type GUID or an MBR type like 0x83", t)
}

type layout struct {
	number     int
	start, end int64 // bytes, end exclusive
}

// plan works out where the new partition goes in table t of a disk of
// size bytes.
func (p PartCreate) plan(t Table, size int64) (layout, error) {
	if t.Type == "" {
		return layout{}, fmt.Errorf("%w: %s has no partition table (add a part.table step first)", atomic.ErrInvalid, p.Device)
	}
	gt, mt, _ := partTypes(p.Type)
	if t.Type == "gpt" && gt == "" || t.Type == "mbr" && mt == 0 {
		return layout{}, fmt.Errorf("%w: type %q does not exist in an %s table", atomic.ErrInvalid, p.Type, t.Type)
	}
	if t.Type == "mbr" && p.Name != "" {
		return layout{}, fmt.Errorf("%w: an MBR partition has no name", atomic.ErrInvalid)
	}
	maxN, last := 128, size-33*512 // GPT keeps its backup array at the end
	if t.Type == "mbr" {
		maxN, last = 4, size
	}
	last = last / align * align
	used := map[int]bool{}
	var next int64 = align
	for _, q := range t.Partitions {
		used[q.Number] = true
		if e := q.Start + q.Size; e > next {
			next = (e + align - 1) / align * align
		}
	}
	l := layout{number: p.Number, start: next}
	if l.number == 0 {
		for n := 1; n <= maxN; n++ {
			if !used[n] {
				l.number = n
				break
			}
		}
		if l.number == 0 {
			return l, fmt.Errorf("%w: the %s table of %s is full", atomic.ErrInvalid, t.Type, p.Device)
		}
	}
	if l.number > maxN {
		return l, fmt.Errorf("%w: an %s table has at most %d partitions", atomic.ErrInvalid, t.Type, maxN)
	}
	if p.Start != "" {
		l.start, _ = ParseSize(p.Start)
	}
	if p.Size != "" {
		n, _ := ParseSize(p.Size)
		l.end = l.start + n
	} else {
		l.end = last
	}
	if l.start < align || l.end > last || l.end <= l.start {
		return l, fmt.Errorf("%w: partition %d at %s..%s does not fit on %s (usable %s..%s)", atomic.ErrInvalid,
			l.number, FormatSize(l.start), FormatSize(l.end), p.Device, FormatSize(align), FormatSize(last))
	}
	for _, q := range t.Partitions {
		if q.Number == l.number {
			continue
		}
		if l.start < q.Start+q.Size && q.Start < l.end {
			return l, fmt.Errorf("%w: partition %d at %s..%s overlaps partition %d", atomic.ErrInvalid, l.number, FormatSize(l.start), FormatSize(l.end), q.Number)
		}
	}
	return l, nil
}

func preparePartCreate(ctx context.Context, env *atomic.Env, p PartCreate) (atomic.Plan[tableUndo, Partition], error) {
	var plan atomic.Plan[tableUndo, Partition]
	size, err := deviceSize(p.Device)
	if err != nil {
		return plan, err
	}
	plan.Undo.DiskSize = size
	t, err := ReadTable(p.Device)
	if err != nil {
		return plan, err
	}
	l, err := p.plan(t, size)
	if err != nil {
		return plan, err
	}
	for _, q := range t.Partitions {
		if q.Number != l.number {
			continue
		}
		if q.Start == l.start && q.Start+q.Size == l.end {
			plan.Noop, plan.Result = true, q
			return plan, nil
		}
		return plan, fmt.Errorf("%w: %s already has a partition %d of another shape (%s at %s)", atomic.ErrInvalid, p.Device, q.Number, FormatSize(q.Size), FormatSize(q.Start))
	}
	return plan, nil
}

func doPartCreate(ctx context.Context, env *atomic.Env, p PartCreate, u tableUndo) (Partition, error) {
	var l layout
	gt, mt, _ := partTypes(p.Type)
	err := writeTable(ctx, env, p.Device, u, "add a partition", func(cur partition.Table, sector int64) (partition.Table, error) {
		t := describe(p.Device, cur, sector)
		var err error
		if l, err = p.plan(t, u.DiskSize); err != nil {
			return nil, err
		}
		s, e := uint64(l.start/sector), uint64(l.end/sector)
		switch ct := cur.(type) {
		case *gpt.Table:
			ct.Partitions = append(ct.Partitions, &gpt.Partition{Index: l.number, Start: s, End: e - 1, Type: gt, Name: p.Name})
			return ct, nil
		case *mbr.Table:
			for len(ct.Partitions) < 4 {
				ct.Partitions = append(ct.Partitions, &mbr.Partition{Type: mbr.Empty})
			}
			ct.Partitions[l.number-1] = &mbr.Partition{Type: mt, Start: uint32(s), Size: uint32(e - s)}
			return ct, nil
		}
		return nil, fmt.Errorf("%s has no partition table", p.Device)
	})
	if err != nil {
		return Partition{}, err
	}
	res := Partition{Device: PartDevice(p.Device, l.number), Disk: p.Device, Number: l.number, Start: l.start, Size: l.end - l.start, Type: p.Type, Name: p.Name}
	if res.Type == "" {
		res.Type = "linux"
	}
	return res, waitNode(env, res.Device)
}

// waitNode waits for the kernel to create a partition's device node.
func waitNode(env *atomic.Env, dev string) error {
	if env.DryRun || !strings.HasPrefix(dev, "/dev/") {
		return nil
	}
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(dev); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("partition device %s did not appear", dev)
}

func checkPartCreate(ctx context.Context, env *atomic.Env, p PartCreate, u tableUndo) (bool, Partition, error) {
	ok, _, err := checkTable[PartCreate, Partition](ctx, env, p, u)
	if err != nil || !ok {
		return false, Partition{}, err
	}
	t, err := ReadTable(p.Device)
	if err != nil {
		return false, Partition{}, err
	}
	dir, _ := stepSub(env, "table")
	// the partition this step added is the one the saved table lacked
	before := map[int]bool{}
	if bt, err := ReadTable(filepath.Join(dir, "head.bin")); err == nil {
		for _, q := range bt.Partitions {
			before[q.Number] = true
		}
	}
	for _, q := range t.Partitions {
		if !before[q.Number] && (p.Number == 0 || q.Number == p.Number) {
			return true, q, nil
		}
	}
	return true, Partition{}, nil
}

// PartDelete is the part.delete step: remove a partition.
type PartDelete struct {
	Device string `json:"device" doc:"whole disk"`
	Number int    `json:"number" doc:"partition number"`
}

// StepKind names the kind.
func (PartDelete) StepKind() string { return "part.delete" }
func (p PartDelete) disk() string   { return p.Device }

// Validate checks the parameters.
func (p PartDelete) Validate() error {
	if err := checkDevPath(p.Device); err != nil {
		return err
	}
	if p.Number < 1 || p.Number > 128 {
		return fmt.Errorf("number %d: want 1 to 128", p.Number)
	}
	return nil
}

func preparePartDelete(ctx context.Context, env *atomic.Env, p PartDelete) (atomic.Plan[tableUndo, struct{}], error) {
	var plan atomic.Plan[tableUndo, struct{}]
	size, err := deviceSize(p.Device)
	if err != nil {
		return plan, err
	}
	plan.Undo.DiskSize = size
	t, err := ReadTable(p.Device)
	if err != nil {
		return plan, err
	}
	found := false
	for _, q := range t.Partitions {
		found = found || q.Number == p.Number
	}
	if !found {
		plan.Noop = true
		return plan, nil
	}
	if fi, err := os.Stat(p.Device); err == nil && fi.Mode()&os.ModeDevice != 0 {
		d, err := ProbeOne(ctx, env.Runner, PartDevice(p.Device, p.Number))
		if err == nil {
			if why := d.InUse(); why != "" {
				return plan, fmt.Errorf("%w: %s", atomic.ErrInvalid, why)
			}
		}
	}
	return plan, nil
}

func doPartDelete(ctx context.Context, env *atomic.Env, p PartDelete, u tableUndo) (struct{}, error) {
	err := writeTable(ctx, env, p.Device, u, fmt.Sprintf("delete partition %d", p.Number), func(cur partition.Table, _ int64) (partition.Table, error) {
		switch ct := cur.(type) {
		case *gpt.Table:
			var keep []*gpt.Partition
			for _, q := range ct.Partitions {
				if q.Index != p.Number {
					keep = append(keep, q)
				}
			}
			ct.Partitions = keep
			return ct, nil
		case *mbr.Table:
			if p.Number <= len(ct.Partitions) {
				ct.Partitions[p.Number-1] = &mbr.Partition{Type: mbr.Empty}
			}
			return ct, nil
		}
		return nil, fmt.Errorf("%s has no partition table", p.Device)
	})
	return struct{}{}, err
}
