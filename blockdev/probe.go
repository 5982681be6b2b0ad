package blockdev

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

// lsblkColumns are the columns Probe asks lsblk for.
const lsblkColumns = "NAME,KNAME,PATH,MAJ:MIN,TYPE,SIZE,LOG-SEC,RO,FSTYPE,FSVER,LABEL,UUID,PTTYPE,PTUUID,PARTUUID,PARTLABEL,PKNAME,MOUNTPOINTS"

// Device is one block device as lsblk reports it, with its signatures
// (from wipefs) and its children (partitions and holders).
type Device struct {
	Name       string      `json:"name"`
	KName      string      `json:"kname"`
	Path       string      `json:"path"`
	MajMin     string      `json:"maj:min"`
	Type       string      `json:"type"`
	Size       int64       `json:"size"`
	LogSec     int64       `json:"log-sec"`
	RO         bool        `json:"ro"`
	FSType     string      `json:"fstype,omitempty"`
	FSVer      string      `json:"fsver,omitempty"`
	Label      string      `json:"label,omitempty"`
	UUID       string      `json:"uuid,omitempty"`
	PTType     string      `json:"pttype,omitempty"`
	PTUUID     string      `json:"ptuuid,omitempty"`
	PartUUID   string      `json:"partuuid,omitempty"`
	PartLabel  string      `json:"partlabel,omitempty"`
	PKName     string      `json:"pkname,omitempty"`
	Mounts     []string    `json:"mountpoints,omitempty"`
	Children   []Device    `json:"children,omitempty"`
	Signatures []Signature `json:"signatures,omitempty"`
}

// Holders returns the children that are not partitions: device-mapper
// targets, md arrays and the like that hold this device open.
func (d Device) Holders() []Device {
	var out []Device
	for _, c := range d.Children {
		if c.Type != "part" {
			out = append(out, c)
		}
	}
	return out
}

// Partitions returns the children that are partitions.
func (d Device) Partitions() []Device {
	var out []Device
	for _, c := range d.Children {
		if c.Type == "part" {
			out = append(out, c)
		}
	}
	return out
}

// InUse describes why the device or one of its children is busy (mounted
// or held by another device), or returns "" when it is free.
func (d Device) InUse() string {
	if len(d.Mounts) > 0 {
		return fmt.Sprintf("%s is mounted on %s", d.Path, strings.Join(d.Mounts, ", "))
	}
	for _, c := range d.Children {
		if c.Type != "part" {
			return fmt.Sprintf("%s is held by %s", d.Path, c.Path)
		}
		if why := c.InUse(); why != "" {
			return why
		}
	}
	return ""
}

// lsblkDev mirrors lsblk's JSON, where absent values are null.
type lsblkDev struct {
	Name      string     `json:"name"`
	KName     string     `json:"kname"`
	Path      string     `json:"path"`
	MajMin    string     `json:"maj:min"`
	Type      string     `json:"type"`
	Size      *int64     `json:"size"`
	LogSec    *int64     `json:"log-sec"`
	RO        roBool     `json:"ro"`
	FSType    *string    `json:"fstype"`
	FSVer     *string    `json:"fsver"`
	Label     *string    `json:"label"`
	UUID      *string    `json:"uuid"`
	PTType    *string    `json:"pttype"`
	PTUUID    *string    `json:"ptuuid"`
	PartUUID  *string    `json:"partuuid"`
	PartLabel *string    `json:"partlabel"`
	PKName    *string    `json:"pkname"`
	Mounts    []*string  `json:"mountpoints"`
	Children  []lsblkDev `json:"children"`
}

// roBool accepts lsblk's ro as a JSON bool (2.37+) or "0"/"1" (older).
type roBool bool

func (b *roBool) UnmarshalJSON(raw []byte) error {
	switch strings.Trim(string(raw), `"`) {
	case "true", "1":
		*b = true
	case "false", "0", "null", "":
		*b = false
	default:
		return fmt.Errorf("ro: unexpected %s", raw)
	}
	return nil
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func (l lsblkDev) device(depth int) (Device, error) {
	if depth > 16 {
		return Device{}, errors.New("lsblk: device tree nested too deep")
	}
	d := Device{
		Name: l.Name, KName: l.KName, Path: l.Path, MajMin: l.MajMin, Type: l.Type, RO: bool(l.RO),
		FSType: str(l.FSType), FSVer: str(l.FSVer), Label: str(l.Label), UUID: str(l.UUID),
		PTType: str(l.PTType), PTUUID: str(l.PTUUID), PartUUID: str(l.PartUUID),
		PartLabel: str(l.PartLabel), PKName: str(l.PKName),
	}
	if l.Size != nil {
		d.Size = *l.Size
	}
	if l.LogSec != nil {
		d.LogSec = *l.LogSec
	}
	if d.Path == "" && d.Name != "" {
		d.Path = "/dev/" + d.Name
	}
	for _, m := range l.Mounts {
		if m != nil && *m != "" {
			d.Mounts = append(d.Mounts, *m)
		}
	}
	for _, c := range l.Children {
		cd, err := c.device(depth + 1)
		if err != nil {
			return Device{}, err
		}
		d.Children = append(d.Children, cd)
	}
	return d, nil
}

// ParseLsblk decodes the output of 'lsblk -J -b'.
func ParseLsblk(out []byte) ([]Device, error) {
	var doc struct {
		BlockDevices []lsblkDev `json:"blockdevices"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("parse lsblk output: %w", err)
	}
	devs := make([]Device, 0, len(doc.BlockDevices))
	for _, l := range doc.BlockDevices {
		d, err := l.device(0)
		if err != nil {
			return nil, err
		}
		devs = append(devs, d)
	}
	return devs, nil
}

// Signature is one signature wipefs found on a device.
type Signature struct {
	Device string `json:"device"`
	Offset int64  `json:"offset"`
	Type   string `json:"type"`
	UUID   string `json:"uuid,omitempty"`
	Label  string `json:"label,omitempty"`
}

// ParseWipefs decodes the output of 'wipefs -J' (listing mode).
func ParseWipefs(out []byte) ([]Signature, error) {
	var doc struct {
		Signatures []struct {
			Device string  `json:"device"`
			Offset string  `json:"offset"`
			Type   *string `json:"type"`
			UUID   *string `json:"uuid"`
			Label  *string `json:"label"`
		} `json:"signatures"`
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, nil // wipefs prints nothing at all for some empty devices
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("parse wipefs output: %w", err)
	}
	sigs := make([]Signature, 0, len(doc.Signatures))
	for _, s := range doc.Signatures {
		off, err := strconv.ParseInt(s.Offset, 0, 64)
		if err != nil || off < 0 {
			return nil, fmt.Errorf("parse wipefs output: offset %q of %s", s.Offset, s.Device)
		}
		sigs = append(sigs, Signature{Device: s.Device, Offset: off, Type: str(s.Type), UUID: str(s.UUID), Label: str(s.Label)})
	}
	return sigs, nil
}

// Blkid is what 'blkid -p -o export' says about one device.
type Blkid map[string]string

// Type returns TYPE (ext4, xfs, gpt's PTTYPE when no filesystem).
func (b Blkid) Type() string {
	if t := b["TYPE"]; t != "" {
		return t
	}
	return b["PTTYPE"]
}

// ParseBlkid decodes 'blkid -p -o export DEV' output: KEY=VALUE lines.
// Empty output (blkid exit 2: nothing found) gives an empty map.
func ParseBlkid(out []byte) (Blkid, error) {
	b := Blkid{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("parse blkid output: bad line %q", line)
		}
		b[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse blkid output: %w", err)
	}
	return b, nil
}

// Mount is one mounted filesystem as findmnt reports it.
type Mount struct {
	Target  string `json:"target"`
	Source  string `json:"source"`
	FSType  string `json:"fstype"`
	Options string `json:"options"`
	MajMin  string `json:"maj:min,omitempty"`
}

// ParseFindmnt decodes 'findmnt -J' output, flattening its tree in
// mount order (a parent before its children).
func ParseFindmnt(out []byte) ([]Mount, error) {
	type node struct {
		Mount
		Children []json.RawMessage `json:"children"`
	}
	var doc struct {
		Filesystems []json.RawMessage `json:"filesystems"`
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil, nil // findmnt prints nothing (exit 1) when nothing matches
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("parse findmnt output: %w", err)
	}
	var mounts []Mount
	var walk func(raw []json.RawMessage, depth int) error
	walk = func(raw []json.RawMessage, depth int) error {
		if depth > 64 {
			return errors.New("parse findmnt output: tree nested too deep")
		}
		for _, r := range raw {
			var n node
			if err := json.Unmarshal(r, &n); err != nil {
				return fmt.Errorf("parse findmnt output: %w", err)
			}
			mounts = append(mounts, n.Mount)
			if err := walk(n.Children, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(doc.Filesystems, 0); err != nil {
		return nil, err
	}
	return mounts, nil
}

// Probe describes the given devices with one lsblk call and one wipefs
// call, whatever their number. A device that does not exist is an error
// wrapping atomic.ErrInvalid.
func Probe(ctx context.Context, r run.Runner, devices ...string) ([]Device, error) {
	if len(devices) == 0 {
		return nil, fmt.Errorf("%w: probe: no device given", atomic.ErrInvalid)
	}
	for _, d := range devices {
		if err := checkDevPath(d); err != nil {
			return nil, err
		}
	}
	out, err := run.Output(ctx, r, append([]string{"lsblk", "-J", "-b", "-o", lsblkColumns}, devices...)...)
	if err != nil {
		if isNoDevice(err) {
			return nil, fmt.Errorf("%w: %w", atomic.ErrInvalid, err)
		}
		return nil, fmt.Errorf("lsblk: %w", err)
	}
	devs, err := ParseLsblk(out)
	if err != nil {
		return nil, err
	}
	var all []string
	var collect func(ds []Device)
	collect = func(ds []Device) {
		for _, d := range ds {
			if d.Path != "" {
				all = append(all, d.Path)
			}
			collect(d.Children)
		}
	}
	collect(devs)
	if len(all) == 0 {
		return devs, nil
	}
	wout, err := run.Output(ctx, r, append([]string{"wipefs", "--no-act", "-J"}, all...)...)
	if err != nil {
		return nil, fmt.Errorf("wipefs: %w", err)
	}
	sigs, err := ParseWipefs(wout)
	if err != nil {
		return nil, err
	}
	attachSigs(devs, sigs)
	return devs, nil
}

func attachSigs(devs []Device, sigs []Signature) {
	for i := range devs {
		d := &devs[i]
		for _, s := range sigs {
			if s.Device == d.KName || s.Device == d.Name || s.Device == d.Path || "/dev/"+s.Device == d.Path {
				d.Signatures = append(d.Signatures, s)
			}
		}
		attachSigs(d.Children, sigs)
	}
}

// isNoDevice reports whether lsblk failed because a device given is not
// a block device or does not exist.
func isNoDevice(err error) bool { return run.StderrContains(err, "not a block device", "no such file") }

// ProbeOne probes a single device.
func ProbeOne(ctx context.Context, r run.Runner, device string) (Device, error) {
	devs, err := Probe(ctx, r, device)
	if err != nil {
		return Device{}, err
	}
	if len(devs) != 1 {
		return Device{}, fmt.Errorf("lsblk returned %d devices for %s", len(devs), device)
	}
	return devs[0], nil
}

// Signatures lists the signatures on one device (one wipefs call).
func Signatures(ctx context.Context, r run.Runner, device string) ([]Signature, error) {
	out, err := run.Output(ctx, r, "wipefs", "--no-act", "-J", device)
	if err != nil {
		if run.StderrContains(err, "no such file", "probing initialization failed") {
			return nil, fmt.Errorf("%w: %w", atomic.ErrInvalid, err)
		}
		return nil, fmt.Errorf("wipefs: %w", err)
	}
	return ParseWipefs(out)
}

// Identify runs 'blkid -p -o export' on one device. A device with no
// signature gives an empty Blkid and no error.
func Identify(ctx context.Context, r run.Runner, device string) (Blkid, error) {
	res, err := r.Run(ctx, run.Cmd{Argv: []string{"blkid", "-p", "-o", "export", device}, Kind: run.Query, OkCodes: []int{2}})
	if err != nil {
		return nil, fmt.Errorf("blkid: %w", err)
	}
	return ParseBlkid(res.Stdout)
}

// Mounts lists every mount (one findmnt call).
func Mounts(ctx context.Context, r run.Runner) ([]Mount, error) {
	out, err := run.Output(ctx, r, "findmnt", "-J", "-o", "TARGET,SOURCE,FSTYPE,OPTIONS,MAJ:MIN")
	if err != nil {
		return nil, fmt.Errorf("findmnt: %w", err)
	}
	return ParseFindmnt(out)
}

// MountsAt lists the mounts stacked on target, lowest first (exit 1 of
// findmnt, nothing mounted there, is an empty list).
func MountsAt(ctx context.Context, r run.Runner, target string) ([]Mount, error) {
	res, err := r.Run(ctx, run.Cmd{Argv: []string{"findmnt", "-J", "-o", "TARGET,SOURCE,FSTYPE,OPTIONS,MAJ:MIN", "--mountpoint", target}, Kind: run.Query, OkCodes: []int{1}})
	if err != nil {
		return nil, fmt.Errorf("findmnt: %w", err)
	}
	if res.ExitCode == 1 {
		return nil, nil
	}
	return ParseFindmnt(res.Stdout)
}

func checkDevPath(p string) error {
	if p == "" {
		return fmt.Errorf("%w: device path is empty", atomic.ErrInvalid)
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("%w: device %q must be a clean absolute path", atomic.ErrInvalid, p)
	}
	return nil
}
