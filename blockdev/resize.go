package blockdev

// Resize stacks (pybofh's BlockDeviceStack): a device at the bottom, layers
// above it, a filesystem on top. Growing resizes bottom-up, shrinking
// top-down, every size a multiple of the granularity all layers accept,
// and a shrink below what a layer needs to keep its data is refused
// before anything runs.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

func init() {
	atomic.Register(atomic.Def[Resize, resizeUndo, Resized]{
		Doc:     "resize a loop file, its device and the ext4/btrfs filesystem on it (grow bottom-up, shrink top-down, refusing to cut data); undo resizes every layer back; a grow that cannot be shrunk back (xfs, mounted ext4) is refused: use fs.grow",
		Prepare: prepareResize,
		Do:      doResize,
		Undo:    undoResize,
		Check:   checkResize,
	})
	atomic.Register(atomic.Def[Grow, resizeUndo, Resized]{
		Doc:          "grow a loop file, its device and the ext4/xfs/btrfs filesystem on it, online when mounted; irreversible (runs at commit): xfs and mounted ext4 cannot shrink back",
		Irreversible: true,
		Prepare:      prepareGrow,
		Do:           doGrow,
		Check:        checkGrow,
	})
}

// Layer is one resizable layer of a Stack: a device (loop file, partition,
// LV), a mapping (LUKS, md) or a filesystem. Sizes are in bytes and are
// the size the layer offers to the layer above it (for a filesystem: its
// own size).
type Layer interface {
	// Name describes the layer for messages ("ext4 on /dev/loop3").
	Name() string
	// Size returns the layer's current size.
	Size(ctx context.Context, r run.Runner) (int64, error)
	// Granularity is the unit every size of the layer is a multiple of.
	Granularity() int64
	// MinSize returns the smallest size that keeps the layer's data.
	MinSize(ctx context.Context, r run.Runner) (int64, error)
	// Resize resizes the layer alone. It does not check what lies above
	// or below: use a Stack, which orders the layers and checks MinSize.
	Resize(ctx context.Context, r run.Runner, newSize int64) error
}

// Overheader is implemented by a layer that takes room from the layer below
// it (a LUKS header, md metadata): its size is the size of the layer below
// minus Overhead. Layers without it offer all of the layer below.
type Overheader interface {
	Overhead() int64
}

// ResizeChecker is implemented by a layer that can resize only in some
// states: a mounted ext4 cannot shrink, xfs never shrinks, xfs and btrfs
// resize only while mounted. CanResize returns why resizing from one size
// to another is impossible now, or nil.
type ResizeChecker interface {
	CanResize(ctx context.Context, r run.Runner, from, to int64) error
}

// Stack is a device (Layers[0]), the layers on it, and a filesystem
// (the last layer).
type Stack struct {
	Layers []Layer
}

// Granularity returns the least common multiple of every layer's
// granularity: the unit the stack's sizes are rounded to.
func (s *Stack) Granularity() int64 {
	g := int64(1)
	for _, l := range s.Layers {
		if lg := l.Granularity(); lg > 0 {
			g = lcm(g, lg)
		}
	}
	return g
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func lcm(a, b int64) int64 { return a / gcd(a, b) * b }

// Sizes returns every layer's current size, bottom first.
func (s *Stack) Sizes(ctx context.Context, r run.Runner) ([]int64, error) {
	out := make([]int64, len(s.Layers))
	for i, l := range s.Layers {
		n, err := l.Size(ctx, r)
		if err != nil {
			return nil, fmt.Errorf("size of %s: %w", l.Name(), err)
		}
		out[i] = n
	}
	return out, nil
}

func overhead(l Layer) int64 {
	if o, ok := l.(Overheader); ok {
		return o.Overhead()
	}
	return 0
}

// Plan works out the size of every layer (bottom first) for a device of
// at most target bytes: the top layer's size is rounded down to the
// stack's granularity, so the device never ends larger than asked. It does
// not check whether the sizes can be reached (see Check).
func (s *Stack) Plan(target int64) ([]int64, error) {
	if len(s.Layers) == 0 {
		return nil, errors.New("empty stack")
	}
	top := target
	for _, l := range s.Layers[1:] {
		top -= overhead(l)
	}
	g := s.Granularity()
	top -= top % g
	if top <= 0 {
		return nil, fmt.Errorf("%w: size %d is too small for %s (granularity %s)", atomic.ErrInvalid, target, s.Layers[len(s.Layers)-1].Name(), FormatSize(g))
	}
	sizes := make([]int64, len(s.Layers))
	sizes[len(sizes)-1] = top
	for i := len(s.Layers) - 1; i > 0; i-- {
		sizes[i-1] = sizes[i] + overhead(s.Layers[i])
	}
	return sizes, nil
}

// Check reports why the stack cannot go from the sizes cur to the sizes
// want (bottom first) without losing data, or nil. Its errors wrap
// atomic.ErrInvalid. It runs queries only.
func (s *Stack) Check(ctx context.Context, r run.Runner, cur, want []int64) error {
	if len(cur) != len(s.Layers) || len(want) != len(s.Layers) {
		return fmt.Errorf("stack of %d layers: got %d current and %d wanted sizes", len(s.Layers), len(cur), len(want))
	}
	for i, l := range s.Layers {
		if want[i] == cur[i] {
			continue
		}
		if g := l.Granularity(); g > 0 && want[i]%g != 0 {
			return fmt.Errorf("%w: %d bytes is not a multiple of %d, the granularity of %s", atomic.ErrInvalid, want[i], g, l.Name())
		}
		if c, ok := l.(ResizeChecker); ok {
			if err := c.CanResize(ctx, r, cur[i], want[i]); err != nil {
				return fmt.Errorf("%w: %w", atomic.ErrInvalid, err)
			}
		}
		if want[i] < cur[i] {
			min, err := l.MinSize(ctx, r)
			if err != nil {
				return fmt.Errorf("minimum size of %s: %w", l.Name(), err)
			}
			if want[i] < min {
				return fmt.Errorf("%w: shrinking %s to %s would cut data: it needs at least %s (now %s)",
					atomic.ErrInvalid, l.Name(), FormatSize(want[i]), FormatSize(min), FormatSize(cur[i]))
			}
		}
	}
	return nil
}

// Apply brings every layer to the sizes want (bottom first): first the
// layers that shrink, top-down, then the layers that grow, bottom-up, so
// no layer is ever larger than the layer under it. It checks first (see
// Check) and changes nothing when the check fails. Applying sizes already
// in place does nothing, so Apply can finish or reverse an interrupted
// resize.
func (s *Stack) Apply(ctx context.Context, r run.Runner, want []int64) error {
	cur, err := s.Sizes(ctx, r)
	if err != nil {
		return err
	}
	if err := s.Check(ctx, r, cur, want); err != nil {
		return err
	}
	for i := len(s.Layers) - 1; i >= 0; i-- {
		if want[i] < cur[i] {
			if err := s.Layers[i].Resize(ctx, r, want[i]); err != nil {
				return fmt.Errorf("shrink %s to %s: %w", s.Layers[i].Name(), FormatSize(want[i]), err)
			}
		}
	}
	for i, l := range s.Layers {
		if want[i] > cur[i] {
			if err := l.Resize(ctx, r, want[i]); err != nil {
				return fmt.Errorf("grow %s to %s: %w", l.Name(), FormatSize(want[i]), err)
			}
		}
	}
	if _, dry := r.(*run.DryRun); dry {
		return nil
	}
	got, err := s.Sizes(ctx, r)
	if err != nil {
		return err
	}
	for i, l := range s.Layers {
		if got[i] != want[i] {
			return fmt.Errorf("%s is %d bytes after resizing it to %d", l.Name(), got[i], want[i])
		}
	}
	return nil
}

// Resize resizes the stack so that its device is at most target bytes
// (see Plan), checking first that no layer loses data (see Check).
func (s *Stack) Resize(ctx context.Context, r run.Runner, target int64) error {
	want, err := s.Plan(target)
	if err != nil {
		return err
	}
	return s.Apply(ctx, r, want)
}

// Target is a parsed resize size: an absolute size, or a change of the
// current size ("+1G", "-512M").
type Target struct {
	// Sign is 0 for an absolute size, +1 to grow by Bytes, -1 to shrink.
	Sign  int
	Bytes int64
}

// ParseTarget parses "10G", "512MiB", "+1G" or "-512M" (units as in
// ParseSize). Errors wrap atomic.ErrInvalid.
func ParseTarget(s string) (Target, error) {
	t := strings.TrimSpace(s)
	var sign int
	switch {
	case strings.HasPrefix(t, "+"):
		sign, t = 1, t[1:]
	case strings.HasPrefix(t, "-"):
		sign, t = -1, t[1:]
	}
	if t == "" || strings.HasPrefix(t, "+") || strings.HasPrefix(t, "-") {
		return Target{}, fmt.Errorf("%w: size %q: want 10G, 512MiB, +1G or -512M", atomic.ErrInvalid, s)
	}
	n, err := ParseSize(t)
	if err != nil {
		return Target{}, err
	}
	return Target{Sign: sign, Bytes: n}, nil
}

// Resolve returns the absolute size the target asks for, given the
// current size.
func (t Target) Resolve(cur int64) (int64, error) {
	switch t.Sign {
	case 1:
		if cur > 1<<62-t.Bytes {
			return 0, fmt.Errorf("%w: %s + %s is too large", atomic.ErrInvalid, FormatSize(cur), FormatSize(t.Bytes))
		}
		return cur + t.Bytes, nil
	case -1:
		if t.Bytes >= cur {
			return 0, fmt.Errorf("%w: cannot shrink %s by %s", atomic.ErrInvalid, FormatSize(cur), FormatSize(t.Bytes))
		}
		return cur - t.Bytes, nil
	}
	return t.Bytes, nil
}

// String renders the target as it was given (canonical units).
func (t Target) String() string {
	return map[int]string{1: "+", -1: "-"}[t.Sign] + FormatSize(t.Bytes)
}

// ---- layers ----

// LoopFile is the device layer of a loop device backed by a whole file:
// resizing truncates or extends the file (sparse), then refreshes the
// loop device's capacity (losetup --set-capacity).
type LoopFile struct {
	Device string // the loop device, e.g. /dev/loop3
	File   string // its backing file
}

// Name describes the layer.
func (l LoopFile) Name() string { return fmt.Sprintf("loop device %s (%s)", l.Device, l.File) }

// Granularity is the 512-byte sector.
func (LoopFile) Granularity() int64 { return 512 }

// MinSize is one sector: the loop device keeps no data of its own, the
// layers above it set the floor.
func (LoopFile) MinSize(context.Context, run.Runner) (int64, error) { return 512, nil }

// Size returns the smaller of the file's size (in whole sectors) and the
// device's capacity: after an interrupted resize they differ, and the
// smaller is what holds data safely.
func (l LoopFile) Size(ctx context.Context, r run.Runner) (int64, error) {
	fs, err := queryInt(ctx, r, "stat", "-L", "--format=%s", l.File)
	if err != nil {
		return 0, err
	}
	ds, err := queryInt(ctx, r, "blockdev", "--getsize64", l.Device)
	if err != nil {
		return 0, err
	}
	return min(fs-fs%512, ds), nil
}

// Resize sets the file's size and refreshes the device's capacity. A
// shrink cuts the end of the file: call it through a Stack.
func (l LoopFile) Resize(ctx context.Context, r run.Runner, n int64) error {
	if err := run.Mutate(ctx, r, "truncate", "--no-create", "--size="+strconv.FormatInt(n, 10), l.File); err != nil {
		return fmt.Errorf("resize %s: %w", l.File, err)
	}
	if err := run.Mutate(ctx, r, "losetup", "--set-capacity", l.Device); err != nil {
		return fmt.Errorf("refresh capacity of %s: %w", l.Device, err)
	}
	return nil
}

// syncLoopCapacity makes a loop device's capacity match its backing file
// (losetup --set-capacity) when they differ.
func syncLoopCapacity(ctx context.Context, r run.Runner, l LoopFile) error {
	fs, err := queryInt(ctx, r, "stat", "-L", "--format=%s", l.File)
	if err != nil {
		return err
	}
	ds, err := queryInt(ctx, r, "blockdev", "--getsize64", l.Device)
	if err != nil {
		return err
	}
	if fs-fs%512 == ds {
		return nil
	}
	if err := run.Mutate(ctx, r, "losetup", "--set-capacity", l.Device); err != nil {
		return fmt.Errorf("refresh capacity of %s after an interrupted resize: %w", l.Device, err)
	}
	return nil
}

func queryInt(ctx context.Context, r run.Runner, argv ...string) (int64, error) {
	out, err := run.Output(ctx, r, argv...)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", argv[0], err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: unexpected output %q", strings.Join(argv, " "), bytes.TrimSpace(out))
	}
	return n, nil
}

// mountpointsOf lists where dev is mounted (findmnt --source).
func mountpointsOf(ctx context.Context, r run.Runner, dev string) ([]string, error) {
	res, err := r.Run(ctx, run.Cmd{Argv: []string{"findmnt", "-J", "-o", "TARGET,SOURCE,FSTYPE,OPTIONS,MAJ:MIN", "--source", dev}, Kind: run.Query, OkCodes: []int{1}})
	if err != nil {
		return nil, fmt.Errorf("findmnt: %w", err)
	}
	if res.ExitCode == 1 {
		return nil, nil
	}
	ms, err := ParseFindmnt(res.Stdout)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Target)
	}
	return out, nil
}

// Ext4 is an ext4 filesystem layer: resize2fs grows it online or offline
// and shrinks it offline only, after e2fsck -f.
type Ext4 struct {
	Device    string
	BlockSize int64
}

// Dumpe2fs is what 'dumpe2fs -h' says about an ext4 filesystem.
type Dumpe2fs struct {
	BlockCount int64
	BlockSize  int64
}

// ParseDumpe2fs reads the block count and size from 'dumpe2fs -h' output.
func ParseDumpe2fs(out []byte) (Dumpe2fs, error) {
	var d Dumpe2fs
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch strings.TrimSpace(k) {
		case "Block count":
			dst = &d.BlockCount
		case "Block size":
			dst = &d.BlockSize
		default:
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n <= 0 {
			return d, fmt.Errorf("parse dumpe2fs output: %s %q", strings.TrimSpace(k), strings.TrimSpace(v))
		}
		*dst = n
	}
	if d.BlockCount == 0 || d.BlockSize == 0 {
		return d, errors.New("parse dumpe2fs output: no block count or block size")
	}
	return d, nil
}

func dumpe2fs(ctx context.Context, r run.Runner, dev string) (Dumpe2fs, error) {
	out, err := run.Output(ctx, r, "dumpe2fs", "-h", dev)
	if err != nil {
		return Dumpe2fs{}, fmt.Errorf("dumpe2fs: %w", err)
	}
	return ParseDumpe2fs(out)
}

// OpenExt4 reads the block size of the ext4 filesystem on dev.
func OpenExt4(ctx context.Context, r run.Runner, dev string) (*Ext4, error) {
	d, err := dumpe2fs(ctx, r, dev)
	if err != nil {
		return nil, err
	}
	return &Ext4{Device: dev, BlockSize: d.BlockSize}, nil
}

// Name describes the layer.
func (e *Ext4) Name() string { return "ext4 on " + e.Device }

// Granularity is the block size.
func (e *Ext4) Granularity() int64 { return e.BlockSize }

// Size is the block count times the block size.
func (e *Ext4) Size(ctx context.Context, r run.Runner) (int64, error) {
	d, err := dumpe2fs(ctx, r, e.Device)
	if err != nil {
		return 0, err
	}
	return d.BlockCount * d.BlockSize, nil
}

var resize2fsMinRe = regexp.MustCompile(`(?m)^Estimated minimum size of the filesystem: (\d+)\s*$`)

// ParseResize2fsMin reads the estimate (in blocks) of 'resize2fs -P'.
func ParseResize2fsMin(out []byte) (int64, error) {
	m := resize2fsMinRe.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("parse resize2fs -P output: no estimate in %q", bytes.TrimSpace(out))
	}
	return strconv.ParseInt(string(m[1]), 10, 64)
}

// MinSize is resize2fs's estimate of the minimum size (resize2fs -P).
func (e *Ext4) MinSize(ctx context.Context, r run.Runner) (int64, error) {
	out, err := run.Output(ctx, r, "resize2fs", "-P", e.Device)
	if err != nil {
		return 0, fmt.Errorf("resize2fs -P: %w", err)
	}
	n, err := ParseResize2fsMin(out)
	if err != nil {
		return 0, err
	}
	return n * e.BlockSize, nil
}

// CanResize refuses to shrink a mounted ext4.
func (e *Ext4) CanResize(ctx context.Context, r run.Runner, from, to int64) error {
	if to >= from {
		return nil
	}
	mps, err := mountpointsOf(ctx, r, e.Device)
	if err != nil {
		return err
	}
	if len(mps) > 0 {
		return fmt.Errorf("%s is mounted on %s: ext4 shrinks only unmounted", e.Name(), strings.Join(mps, ", "))
	}
	return nil
}

// Resize runs resize2fs: online when mounted (grow only), after
// e2fsck -f -y when not (resize2fs demands a fresh check).
func (e *Ext4) Resize(ctx context.Context, r run.Runner, n int64) error {
	if n%1024 != 0 {
		return fmt.Errorf("size %d is not a whole number of KiB", n)
	}
	mps, err := mountpointsOf(ctx, r, e.Device)
	if err != nil {
		return err
	}
	if len(mps) == 0 {
		// exit 1: errors corrected; 2: corrected, reboot (not for an
		// unmounted fs); 4 and up: left uncorrected, refuse to resize
		if _, err := r.Run(ctx, run.Cmd{Argv: []string{"e2fsck", "-f", "-y", e.Device}, Kind: run.Mutation, OkCodes: []int{1}}); err != nil {
			return fmt.Errorf("e2fsck before resize: %w", err)
		}
	}
	if err := run.Mutate(ctx, r, "resize2fs", e.Device, strconv.FormatInt(n/1024, 10)+"K"); err != nil {
		return fmt.Errorf("resize2fs: %w", err)
	}
	return nil
}

// XFS is an xfs filesystem layer: xfs_growfs grows it while mounted; xfs
// cannot shrink.
type XFS struct {
	Device    string
	BlockSize int64
}

// XFSInfo is the data section of 'xfs_info' output.
type XFSInfo struct {
	BlockSize int64
	Blocks    int64
}

var xfsDataRe = regexp.MustCompile(`(?m)^data\s*=\s*bsize=(\d+)\s+blocks=(\d+)`)

// ParseXFSInfo reads the data block size and count from 'xfs_info' output.
func ParseXFSInfo(out []byte) (XFSInfo, error) {
	m := xfsDataRe.FindSubmatch(out)
	if m == nil {
		return XFSInfo{}, errors.New("parse xfs_info output: no data section")
	}
	bs, err1 := strconv.ParseInt(string(m[1]), 10, 64)
	n, err2 := strconv.ParseInt(string(m[2]), 10, 64)
	if err1 != nil || err2 != nil || bs <= 0 || n <= 0 {
		return XFSInfo{}, fmt.Errorf("parse xfs_info output: bad data section %q", m[0])
	}
	return XFSInfo{BlockSize: bs, Blocks: n}, nil
}

func xfsInfo(ctx context.Context, r run.Runner, dev string) (XFSInfo, error) {
	out, err := run.Output(ctx, r, "xfs_info", dev)
	if err != nil {
		return XFSInfo{}, fmt.Errorf("xfs_info: %w", err)
	}
	return ParseXFSInfo(out)
}

// OpenXFS reads the block size of the xfs filesystem on dev.
func OpenXFS(ctx context.Context, r run.Runner, dev string) (*XFS, error) {
	i, err := xfsInfo(ctx, r, dev)
	if err != nil {
		return nil, err
	}
	return &XFS{Device: dev, BlockSize: i.BlockSize}, nil
}

// Name describes the layer.
func (x *XFS) Name() string { return "xfs on " + x.Device }

// Granularity is the block size.
func (x *XFS) Granularity() int64 { return x.BlockSize }

// Size is the data block count times the block size.
func (x *XFS) Size(ctx context.Context, r run.Runner) (int64, error) {
	i, err := xfsInfo(ctx, r, x.Device)
	if err != nil {
		return 0, err
	}
	return i.Blocks * i.BlockSize, nil
}

// MinSize is the current size: xfs cannot shrink.
func (x *XFS) MinSize(ctx context.Context, r run.Runner) (int64, error) { return x.Size(ctx, r) }

// CanResize refuses any shrink, and a grow while unmounted.
func (x *XFS) CanResize(ctx context.Context, r run.Runner, from, to int64) error {
	if to < from {
		return fmt.Errorf("%s cannot shrink (xfs only grows)", x.Name())
	}
	_, err := x.mountpoint(ctx, r)
	return err
}

func (x *XFS) mountpoint(ctx context.Context, r run.Runner) (string, error) {
	mps, err := mountpointsOf(ctx, r, x.Device)
	if err != nil {
		return "", err
	}
	if len(mps) == 0 {
		return "", fmt.Errorf("%s is not mounted: xfs_growfs grows a mounted filesystem only; mount it first", x.Name())
	}
	return mps[0], nil
}

// Resize grows the mounted filesystem (xfs_growfs -D).
func (x *XFS) Resize(ctx context.Context, r run.Runner, n int64) error {
	cur, err := x.Size(ctx, r)
	if err != nil {
		return err
	}
	if n < cur {
		return fmt.Errorf("%s cannot shrink (xfs only grows)", x.Name())
	}
	mp, err := x.mountpoint(ctx, r)
	if err != nil {
		return err
	}
	if err := run.Mutate(ctx, r, "xfs_growfs", "-D", strconv.FormatInt(n/x.BlockSize, 10), mp); err != nil {
		return fmt.Errorf("xfs_growfs: %w", err)
	}
	return nil
}

// Btrfs is a single-device btrfs filesystem layer: 'btrfs filesystem
// resize' grows and shrinks it while mounted.
type Btrfs struct {
	Device     string
	DevID      int64
	SectorSize int64
}

// BtrfsSuper is what 'btrfs inspect-internal dump-super' says about one
// device of a btrfs filesystem.
type BtrfsSuper struct {
	SectorSize int64
	NumDevices int64
	DevID      int64
	TotalBytes int64 // dev_item.total_bytes: this device's size
}

// ParseBtrfsSuper reads 'btrfs inspect-internal dump-super' output.
func ParseBtrfsSuper(out []byte) (BtrfsSuper, error) {
	var s BtrfsSuper
	fields := map[string]*int64{"sectorsize": &s.SectorSize, "num_devices": &s.NumDevices, "dev_item.devid": &s.DevID, "dev_item.total_bytes": &s.TotalBytes}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		if dst, ok := fields[f[0]]; ok {
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil || n < 0 {
				return s, fmt.Errorf("parse dump-super output: %s %q", f[0], f[1])
			}
			*dst = n
		}
	}
	if s.SectorSize == 0 || s.NumDevices == 0 || s.DevID == 0 {
		return s, errors.New("parse dump-super output: no sectorsize, num_devices or dev_item.devid")
	}
	return s, nil
}

var (
	btrfsDevRe = regexp.MustCompile(`(?m)^\s*devid\s+(\d+)\s+size\s+(\d+)\s+used\s+\d+\s+path\s+(\S+)`)
	minDevRe   = regexp.MustCompile(`^(\d+) bytes`)
)

// ParseBtrfsShowSize reads the size of device devid from
// 'btrfs filesystem show --raw' output.
func ParseBtrfsShowSize(out []byte, devid int64) (int64, error) {
	for _, m := range btrfsDevRe.FindAllSubmatch(out, -1) {
		if string(m[1]) == strconv.FormatInt(devid, 10) {
			return strconv.ParseInt(string(m[2]), 10, 64)
		}
	}
	return 0, fmt.Errorf("parse btrfs filesystem show output: no devid %d", devid)
}

// ParseMinDevSize reads 'btrfs inspect-internal min-dev-size' output.
func ParseMinDevSize(out []byte) (int64, error) {
	m := minDevRe.FindSubmatch(bytes.TrimSpace(out))
	if m == nil {
		return 0, fmt.Errorf("parse min-dev-size output: %q", bytes.TrimSpace(out))
	}
	return strconv.ParseInt(string(m[1]), 10, 64)
}

// OpenBtrfs reads the sector size and device ID of the btrfs filesystem
// on dev. A filesystem spanning several devices is refused.
func OpenBtrfs(ctx context.Context, r run.Runner, dev string) (*Btrfs, error) {
	out, err := run.Output(ctx, r, "btrfs", "inspect-internal", "dump-super", dev)
	if err != nil {
		return nil, fmt.Errorf("btrfs dump-super: %w", err)
	}
	s, err := ParseBtrfsSuper(out)
	if err != nil {
		return nil, err
	}
	if s.NumDevices != 1 {
		return nil, fmt.Errorf("%w: btrfs on %s spans %d devices; resizing one device of a multi-device btrfs is not supported", atomic.ErrInvalid, dev, s.NumDevices)
	}
	return &Btrfs{Device: dev, DevID: s.DevID, SectorSize: s.SectorSize}, nil
}

// Name describes the layer.
func (b *Btrfs) Name() string { return "btrfs on " + b.Device }

// Granularity is the sector size.
func (b *Btrfs) Granularity() int64 { return b.SectorSize }

func (b *Btrfs) mountpoint(ctx context.Context, r run.Runner) (string, error) {
	mps, err := mountpointsOf(ctx, r, b.Device)
	if err != nil {
		return "", err
	}
	if len(mps) == 0 {
		return "", fmt.Errorf("%s is not mounted: btrfs resizes a mounted filesystem only; mount it first", b.Name())
	}
	return mps[0], nil
}

// BtrfsMinDevice is the smallest size the kernel resizes a btrfs device
// to (btrfs_ioctl_resize returns EINVAL below it).
const BtrfsMinDevice = 256 << 20

// CanResize refuses a resize while unmounted, and below BtrfsMinDevice.
func (b *Btrfs) CanResize(ctx context.Context, r run.Runner, from, to int64) error {
	if to < BtrfsMinDevice {
		return fmt.Errorf("%s: the kernel resizes a btrfs device to no less than %s, not %s", b.Name(), FormatSize(BtrfsMinDevice), FormatSize(to))
	}
	_, err := b.mountpoint(ctx, r)
	return err
}

// Size is the device's size in the filesystem: from the kernel when
// mounted, from the superblock when not.
func (b *Btrfs) Size(ctx context.Context, r run.Runner) (int64, error) {
	mps, err := mountpointsOf(ctx, r, b.Device)
	if err != nil {
		return 0, err
	}
	if len(mps) == 0 {
		out, err := run.Output(ctx, r, "btrfs", "inspect-internal", "dump-super", b.Device)
		if err != nil {
			return 0, fmt.Errorf("btrfs dump-super: %w", err)
		}
		s, err := ParseBtrfsSuper(out)
		return s.TotalBytes, err
	}
	out, err := run.Output(ctx, r, "btrfs", "filesystem", "show", "--raw", mps[0])
	if err != nil {
		return 0, fmt.Errorf("btrfs filesystem show: %w", err)
	}
	return ParseBtrfsShowSize(out, b.DevID)
}

// MinSize is 'btrfs inspect-internal min-dev-size' (mounted only).
func (b *Btrfs) MinSize(ctx context.Context, r run.Runner) (int64, error) {
	mp, err := b.mountpoint(ctx, r)
	if err != nil {
		return 0, err
	}
	out, err := run.Output(ctx, r, "btrfs", "inspect-internal", "min-dev-size", "--id", strconv.FormatInt(b.DevID, 10), mp)
	if err != nil {
		return 0, fmt.Errorf("btrfs min-dev-size: %w", err)
	}
	return ParseMinDevSize(out)
}

// Resize runs 'btrfs filesystem resize DEVID:SIZE MOUNTPOINT'.
func (b *Btrfs) Resize(ctx context.Context, r run.Runner, n int64) error {
	mp, err := b.mountpoint(ctx, r)
	if err != nil {
		return err
	}
	if err := run.Mutate(ctx, r, "btrfs", "filesystem", "resize", fmt.Sprintf("%d:%d", b.DevID, n), mp); err != nil {
		return fmt.Errorf("btrfs filesystem resize: %w", err)
	}
	return nil
}

// ResizeFSTypes are the filesystem types a Stack can resize.
var ResizeFSTypes = []string{"ext4", "xfs", "btrfs"}

// OpenFS returns the filesystem layer for the filesystem on dev, checking
// it is of type want when want is not "".
func OpenFS(ctx context.Context, r run.Runner, dev, want string) (Layer, error) {
	b, err := Identify(ctx, r, dev)
	if err != nil {
		return nil, err
	}
	got := b["TYPE"]
	if want != "" && got != want {
		return nil, fmt.Errorf("%w: %s holds %q, not %s", atomic.ErrInvalid, dev, got, want)
	}
	switch got {
	case "ext4":
		return OpenExt4(ctx, r, dev)
	case "xfs":
		return OpenXFS(ctx, r, dev)
	case "btrfs":
		return OpenBtrfs(ctx, r, dev)
	case "":
		return nil, fmt.Errorf("%w: %s holds no filesystem", atomic.ErrInvalid, dev)
	}
	return nil, fmt.Errorf("%w: %s holds %s; resizable: %s", atomic.ErrInvalid, dev, got, strings.Join(ResizeFSTypes, ", "))
}

// OpenLoopFile finds the loop device of a backing file, or the backing
// file of a loop device (give one of the two). The loop device must map
// the whole file (no offset, no size limit), and be the only one that
// maps it.
func OpenLoopFile(ctx context.Context, r run.Runner, device, file string) (LoopFile, error) {
	var l Loop
	switch {
	case file != "":
		f, err := canonicalFile(file)
		if err != nil {
			return LoopFile{}, err
		}
		loops, err := LoopsOf(ctx, r, f)
		if err != nil {
			return LoopFile{}, err
		}
		if len(loops) != 1 {
			return LoopFile{}, fmt.Errorf("%w: %s is attached to %d loop devices; want exactly one", atomic.ErrInvalid, f, len(loops))
		}
		l = loops[0]
	case device != "":
		if !strings.HasPrefix(filepath.Base(device), "loop") {
			return LoopFile{}, fmt.Errorf("%w: %s is not a loop device; only loop files can be resized (partitions, LVs and LUKS layers not yet)", atomic.ErrInvalid, device)
		}
		info, ok, err := loopInfo(ctx, r, device)
		if err != nil {
			return LoopFile{}, err
		}
		if !ok {
			return LoopFile{}, fmt.Errorf("%w: %s is not a loop device backed by a file; only loop files can be resized (partitions, LVs and LUKS layers not yet)", atomic.ErrInvalid, device)
		}
		l = info
		others, err := LoopsOf(ctx, r, l.File)
		if err != nil {
			return LoopFile{}, err
		}
		if len(others) != 1 {
			return LoopFile{}, fmt.Errorf("%w: %s is attached to %d loop devices; want exactly one", atomic.ErrInvalid, l.File, len(others))
		}
	default:
		return LoopFile{}, fmt.Errorf("%w: give a loop device or its backing file", atomic.ErrInvalid)
	}
	if l.Offset != 0 || l.SizeLimit != 0 {
		return LoopFile{}, fmt.Errorf("%w: %s maps part of %s (offset %d, sizelimit %d); only whole-file loop devices can be resized", atomic.ErrInvalid, l.Device, l.File, l.Offset, l.SizeLimit)
	}
	if l.ReadOnly {
		return LoopFile{}, fmt.Errorf("%w: %s is read-only", atomic.ErrInvalid, l.Device)
	}
	return LoopFile{Device: l.Device, File: l.File}, nil
}

// OpenLoopStack builds the stack loop file → filesystem for a loop device
// or its backing file (give one), checking the filesystem's type when
// fsType is not "".
func OpenLoopStack(ctx context.Context, r run.Runner, device, file, fsType string) (*Stack, error) {
	lf, err := OpenLoopFile(ctx, r, device, file)
	if err != nil {
		return nil, err
	}
	fs, err := OpenFS(ctx, r, lf.Device, fsType)
	if err != nil {
		return nil, err
	}
	return &Stack{Layers: []Layer{lf, fs}}, nil
}

// ---- step kinds ----

func fsTypeOf(l Layer) string {
	switch l.(type) {
	case *Ext4:
		return "ext4"
	case *XFS:
		return "xfs"
	case *Btrfs:
		return "btrfs"
	}
	return ""
}

// Resize is the fs.resize step: resize a loop device's backing file, the
// device and the filesystem on it to Size. Growing a filesystem that
// cannot shrink back (xfs; ext4 while mounted) is refused: that is the
// irreversible fs.grow step.
type Resize struct {
	Device string `json:"device,omitempty" doc:"loop device holding the filesystem (or give file)"`
	File   string `json:"file,omitempty" doc:"backing file of the loop device (or give device)"`
	Type   string `json:"type,omitempty" doc:"ext4, xfs or btrfs: checked against the filesystem found (default: any)"`
	Size   string `json:"size" doc:"new device size: 10G, 512MiB, +1G, -512M (rounded down to the granularity of every layer)"`
}

// StepKind names the kind.
func (Resize) StepKind() string { return "fs.resize" }

// Validate checks the parameters.
func (p Resize) Validate() error {
	if (p.Device == "") == (p.File == "") {
		return fmt.Errorf("%w: give exactly one of device and file", atomic.ErrInvalid)
	}
	if p.Device != "" {
		if err := checkDevPath(p.Device); err != nil {
			return err
		}
	} else if err := checkFilePath(p.File); err != nil {
		return fmt.Errorf("%w: %w", atomic.ErrInvalid, err)
	}
	if p.Type != "" && !slices.Contains(ResizeFSTypes, p.Type) {
		return fmt.Errorf("%w: type %q: want one of %s", atomic.ErrInvalid, p.Type, strings.Join(ResizeFSTypes, ", "))
	}
	_, err := ParseTarget(p.Size)
	return err
}

// Grow is the fs.grow step: like fs.resize, for a grow only, and
// irreversible (it runs at commit), so it can grow xfs and a mounted
// ext4, which cannot shrink back.
type Grow Resize

// StepKind names the kind.
func (Grow) StepKind() string { return "fs.grow" }

// Validate checks the parameters.
func (g Grow) Validate() error {
	if strings.HasPrefix(strings.TrimSpace(g.Size), "-") {
		return fmt.Errorf("%w: fs.grow only grows; size %q shrinks", atomic.ErrInvalid, g.Size)
	}
	return Resize(g).Validate()
}

// Resized is the result of fs.resize and fs.grow.
type Resized struct {
	Device string  `json:"device"`
	File   string  `json:"file"`
	Type   string  `json:"type"`
	Size   int64   `json:"size"`    // device size now
	FSSize int64   `json:"fs_size"` // filesystem size now
	Before int64   `json:"before"`  // device size before
	Layers []int64 `json:"layers"`  // every layer's size now, bottom first
}

type resizeUndo struct {
	Device string   `json:"device"`
	File   string   `json:"file"`
	Type   string   `json:"type"`
	Layers []string `json:"layers"`
	Before []int64  `json:"before"` // every layer's size before, bottom first
	After  []int64  `json:"after"`  // every layer's planned size
}

// stack reopens the stack a journaled resize worked on. A resize killed
// between truncating the backing file and refreshing the loop device's
// capacity leaves the two different: the device then reads as its old
// size (a grow looks undone and its undo would leak the grown file) or,
// larger than its file, cannot even be probed (a shrink). So the
// capacity is brought back in line with the file first.
func (u resizeUndo) stack(ctx context.Context, r run.Runner) (*Stack, error) {
	lf, err := OpenLoopFile(ctx, r, u.Device, "")
	if err != nil {
		return nil, err
	}
	if lf.File != u.File {
		return nil, fmt.Errorf("%s is now backed by %s, not %s", u.Device, lf.File, u.File)
	}
	if err := syncLoopCapacity(ctx, r, lf); err != nil {
		return nil, err
	}
	fs, err := OpenFS(ctx, r, lf.Device, u.Type)
	if err != nil {
		return nil, err
	}
	s := &Stack{Layers: []Layer{lf, fs}}
	if len(s.Layers) != len(u.Before) || len(u.After) != len(u.Before) {
		return nil, fmt.Errorf("the stack on %s now has %d layers, the journal %d", u.Device, len(s.Layers), len(u.Before))
	}
	return s, nil
}

func (u resizeUndo) result(sizes []int64) Resized {
	return Resized{Device: u.Device, File: u.File, Type: u.Type, Size: sizes[0], FSSize: sizes[len(sizes)-1], Before: u.Before[0], Layers: sizes}
}

// planResize probes the stack and works out every layer's new size.
// grow is "refuse a shrink"; reversible is "refuse a grow that cannot
// be shrunk back".
func planResize(ctx context.Context, env *atomic.Env, p Resize, kind string, reversible bool) (atomic.Plan[resizeUndo, Resized], error) {
	var plan atomic.Plan[resizeUndo, Resized]
	t, err := ParseTarget(p.Size)
	if err != nil {
		return plan, err
	}
	s, err := OpenLoopStack(ctx, env.Runner, p.Device, p.File, p.Type)
	if err != nil {
		return plan, err
	}
	lf := s.Layers[0].(LoopFile)
	cur, err := s.Sizes(ctx, env.Runner)
	if err != nil {
		return plan, err
	}
	target, err := t.Resolve(cur[0])
	if err != nil {
		return plan, err
	}
	want, err := s.Plan(target)
	if err != nil {
		return plan, err
	}
	u := resizeUndo{Device: lf.Device, File: lf.File, Before: cur, After: want}
	for _, l := range s.Layers {
		u.Layers = append(u.Layers, l.Name())
	}
	u.Type = fsTypeOf(s.Layers[len(s.Layers)-1])
	plan.Undo = u
	if slices.Equal(cur, want) {
		plan.Noop, plan.Result = true, u.result(cur)
		return plan, nil
	}
	if err := s.Check(ctx, env.Runner, cur, want); err != nil {
		return plan, err
	}
	for i, l := range s.Layers {
		switch {
		case want[i] < cur[i] && !reversible:
			return plan, fmt.Errorf("%w: %s only grows; %s would shrink %s from %s to %s", atomic.ErrInvalid, kind, p.Size, l.Name(), FormatSize(cur[i]), FormatSize(want[i]))
		case want[i] > cur[i] && reversible:
			c, ok := l.(ResizeChecker)
			if !ok {
				continue
			}
			if err := c.CanResize(ctx, env.Runner, want[i], cur[i]); err != nil {
				return plan, fmt.Errorf("%w: growing %s could not be undone: %w; use fs.grow (irreversible, runs at commit; 'bofh resize --irreversible')", atomic.ErrInvalid, l.Name(), err)
			}
		}
	}
	return plan, nil
}

func prepareResize(ctx context.Context, env *atomic.Env, p Resize) (atomic.Plan[resizeUndo, Resized], error) {
	return planResize(ctx, env, p, "fs.resize", true)
}

func prepareGrow(ctx context.Context, env *atomic.Env, g Grow) (atomic.Plan[resizeUndo, Resized], error) {
	return planResize(ctx, env, Resize(g), "fs.grow", false)
}

func applySizes(ctx context.Context, env *atomic.Env, u resizeUndo, sizes []int64) (Resized, error) {
	s, err := u.stack(ctx, env.Runner)
	if err != nil {
		return Resized{}, err
	}
	if err := s.Apply(ctx, env.Runner, sizes); err != nil {
		return Resized{}, err
	}
	return u.result(sizes), nil
}

func doResize(ctx context.Context, env *atomic.Env, _ Resize, u resizeUndo) (Resized, error) {
	return applySizes(ctx, env, u, u.After)
}

// doGrow grows the stack. If it fails before the filesystem grew, it puts
// the layers below back (an irreversible step gets no undo), so the
// failure leaves the stack as it was.
func doGrow(ctx context.Context, env *atomic.Env, _ Grow, u resizeUndo) (Resized, error) {
	res, err := applySizes(ctx, env, u, u.After)
	if err == nil || env.DryRun {
		return res, err
	}
	s, serr := u.stack(ctx, env.Runner)
	if serr != nil {
		return res, err
	}
	cur, serr := s.Sizes(ctx, env.Runner)
	top := len(u.Before) - 1
	if serr != nil || cur[top] != u.Before[top] {
		return res, err
	}
	if perr := s.Apply(ctx, env.Runner, u.Before); perr != nil {
		return res, fmt.Errorf("%w (putting the layers below back failed too: %w)", err, perr)
	}
	return res, fmt.Errorf("%w (the filesystem did not grow; the layers below were put back to their sizes before)", err)
}

func undoResize(ctx context.Context, env *atomic.Env, _ Resize, u resizeUndo, _ Resized) error {
	_, err := applySizes(ctx, env, u, u.Before)
	return err
}

// checkResize reports whether every layer has its planned size. A resize
// interrupted half-way (some layers resized, some not) is put back to the
// sizes before and reported absent, so a rollback has nothing left to
// undo and a resume resizes again from a known state.
func checkResize(ctx context.Context, env *atomic.Env, _ Resize, u resizeUndo) (bool, Resized, error) {
	s, err := u.stack(ctx, env.Runner)
	if err != nil {
		return false, Resized{}, err
	}
	cur, err := s.Sizes(ctx, env.Runner)
	if err != nil {
		return false, Resized{}, err
	}
	switch {
	case slices.Equal(cur, u.After):
		return true, u.result(cur), nil
	case slices.Equal(cur, u.Before):
		return false, Resized{}, nil
	}
	if err := s.Apply(ctx, env.Runner, u.Before); err != nil {
		return false, Resized{}, fmt.Errorf("put back a half-done resize: %w", err)
	}
	return false, Resized{}, nil
}

// checkGrow reports whether every layer has its planned size; a grow
// interrupted half-way is reported absent and finished by a resume.
func checkGrow(ctx context.Context, env *atomic.Env, _ Grow, u resizeUndo) (bool, Resized, error) {
	s, err := u.stack(ctx, env.Runner)
	if err != nil {
		return false, Resized{}, err
	}
	cur, err := s.Sizes(ctx, env.Runner)
	if err != nil {
		return false, Resized{}, err
	}
	return slices.Equal(cur, u.After), u.result(cur), nil
}
