package crypt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/anatol/luks.go"
	"golang.org/x/sys/unix"

	"github.com/bofhkit/bofh/run"
)

// Probe is what `blkid -p -o export` found on a device.
type Probe struct {
	// Values holds every KEY=VALUE pair (TYPE, UUID, LABEL, PTTYPE, …).
	Values map[string]string
}

// Type returns the signature type: TYPE, or PTTYPE for a partition table.
func (p Probe) Type() string {
	if t := p.Values["TYPE"]; t != "" {
		return t
	}
	return p.Values["PTTYPE"]
}

// Empty reports whether no signature was found.
func (p Probe) Empty() bool { return p.Type() == "" }

// ParseBlkid decodes `blkid -p -o export` output (KEY=VALUE lines; values
// may be escaped with backslashes).
func ParseBlkid(b []byte) (Probe, error) {
	p := Probe{Values: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return Probe{}, fmt.Errorf("blkid: bad line %q", line)
		}
		p.Values[k] = unescapeBlkid(v)
	}
	if err := sc.Err(); err != nil {
		return Probe{}, fmt.Errorf("blkid: %w", err)
	}
	return p, nil
}

func unescapeBlkid(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ProbeDevice runs `blkid -p -o export` on a device (low-level probe, no
// cache). Exit status 2 (nothing found) is an empty Probe.
func ProbeDevice(ctx context.Context, r run.Runner, device string) (Probe, error) {
	c := run.Q("blkid", "-p", "-o", "export", device)
	c.OkCodes = []int{2}
	res, err := r.Run(ctx, c)
	if err != nil {
		if run.ExitCode(err) == 8 {
			return Probe{}, fmt.Errorf("%w: %s: blkid found ambivalent signatures: %w", ErrSignature, device, err)
		}
		return Probe{}, err
	}
	if res.ExitCode == 2 {
		return Probe{Values: map[string]string{}}, nil
	}
	return ParseBlkid(res.Stdout)
}

// Header is what the LUKS header of a device says.
type Header struct {
	Version int    `json:"version"`
	UUID    string `json:"uuid"`
	Slots   []int  `json:"slots"`
}

// ReadHeader reads a device's LUKS header in Go (luks.go): version, UUID
// and active key slots. A device (or header backup file) without one
// returns ErrNotLUKS.
func ReadHeader(device string) (*Header, error) {
	if _, err := os.Stat(device); err != nil {
		return nil, err
	}
	d, err := luks.Open(device)
	if err != nil {
		if errors.Is(err, io.EOF) || strings.Contains(err.Error(), "invalid LUKS") {
			return nil, fmt.Errorf("%s: %w", device, ErrNotLUKS)
		}
		return nil, fmt.Errorf("read LUKS header of %s: %w", device, err)
	}
	defer d.Close()
	slots := append([]int(nil), d.Slots()...)
	sort.Ints(slots)
	return &Header{Version: d.Version(), UUID: d.UUID(), Slots: slots}, nil
}

// IsLUKS reports whether device holds a LUKS header.
func IsLUKS(device string) (bool, error) {
	_, err := ReadHeader(device)
	if errors.Is(err, ErrNotLUKS) {
		return false, nil
	}
	return err == nil, err
}

// slotOf finds the key slot that key opens, in Go.
func slotOf(device string, key []byte) (int, error) {
	d, err := luks.Open(device)
	if err != nil {
		return -1, fmt.Errorf("read LUKS header of %s: %w", device, err)
	}
	defer d.Close()
	for _, s := range d.Slots() {
		if _, err := d.UnsealVolume(s, key); err == nil {
			return s, nil
		} else if !errors.Is(err, luks.ErrPassphraseDoesNotMatch) {
			return -1, fmt.Errorf("try key slot %d: %w", s, scrub(err, key))
		}
	}
	return -1, fmt.Errorf("%s: %w", device, ErrWrongPassphrase)
}

// scrub keeps a secret out of an error from a library.
func scrub(err error, secret []byte) error {
	if err == nil || len(secret) == 0 || !strings.Contains(err.Error(), string(secret)) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), string(secret), run.Redacted))
}

// MapInfo is a device-mapper mapping as dmsetup reports it.
type MapInfo struct {
	Name string `json:"name"`
	// UUID is the DM UUID; for a LUKS mapping "CRYPT-LUKS2-<uuid>-<name>".
	UUID string `json:"uuid"`
	// Devices are the block devices it uses ("loop0").
	Devices []string `json:"devices"`
	// Open is the number of openers (a mounted file system counts).
	Open int `json:"open"`
}

// LUKS returns the LUKS version and header UUID (without dashes) of a
// LUKS mapping made by cryptsetup or luks.go.
func (m MapInfo) LUKS() (version int, uuid string, ok bool) {
	rest, found := strings.CutPrefix(m.UUID, "CRYPT-LUKS")
	if !found || len(rest) < 3 {
		return 0, "", false
	}
	v, err := strconv.Atoi(rest[:1])
	if err != nil || rest[1] != '-' {
		return 0, "", false
	}
	u, _, _ := strings.Cut(rest[2:], "-")
	return v, u, u != ""
}

// Of reports whether the mapping is the LUKS mapping of header h.
func (m MapInfo) Of(h *Header) bool {
	_, u, ok := m.LUKS()
	return ok && h != nil && strings.EqualFold(u, strings.ReplaceAll(h.UUID, "-", ""))
}

// mapFields are the dmsetup info columns ParseMapInfo reads, in order.
var mapFields = []string{"name", "uuid", "blkdevs_used", "open"}

// ParseMapInfo decodes `dmsetup info -c --noheadings --separator ';' -o
// name,uuid,blkdevs_used,open` output (one line per mapping).
func ParseMapInfo(b []byte) ([]MapInfo, error) {
	var out []MapInfo
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line == "No devices found" {
			continue
		}
		f := strings.Split(line, ";")
		if len(f) != len(mapFields) {
			return nil, fmt.Errorf("dmsetup info: want %d fields, got %q", len(mapFields), line)
		}
		m := MapInfo{Name: f[0], UUID: f[1]}
		for _, d := range strings.Split(f[2], ",") {
			if d = strings.TrimSpace(d); d != "" {
				m.Devices = append(m.Devices, d)
			}
		}
		n, err := strconv.Atoi(strings.TrimSpace(f[3]))
		if err != nil {
			return nil, fmt.Errorf("dmsetup info: open count %q: %w", f[3], err)
		}
		m.Open = n
		out = append(out, m)
	}
	return out, nil
}

// Mapping looks up a device-mapper mapping by name; ErrNoMapping if absent.
func Mapping(ctx context.Context, r run.Runner, name string) (*MapInfo, error) {
	out, err := run.Output(ctx, r, "dmsetup", "info", "-c", "--noheadings", "--separator", ";",
		"-o", strings.Join(mapFields, ","), name)
	if err != nil {
		err = classify(err)
		if errors.Is(err, ErrNoMapping) {
			return nil, fmt.Errorf("%s: %w", name, ErrNoMapping)
		}
		return nil, err
	}
	ms, err := ParseMapInfo(out)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.Name == name {
			return &m, nil
		}
	}
	return nil, fmt.Errorf("%s: %w", name, ErrNoMapping)
}

// mapperPath is where a mapping's device node is.
func mapperPath(name string) string { return filepath.Join("/dev/mapper", name) }

// deviceSize returns the size in bytes of a block device or file.
func deviceSize(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", path, err)
	}
	return n, nil
}

// checkNotInUse fails with ErrBusy when a block device is held
// (mounted, opened exclusively, a mapping on it). Regular files pass.
func checkNotInUse(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeDevice == 0 {
		return nil
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("%s: %w (mounted, open, or used by a mapping)", path, ErrBusy)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	unix.Close(fd)
	return nil
}

// readAt reads n bytes at off from path.
func readAt(path string, off, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("read %s at %d: %w", path, off, err)
	}
	return b, nil
}

// writeAt writes b at off in path and syncs it.
func writeAt(path string, off int64, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, off); err != nil {
		f.Close()
		return fmt.Errorf("write %s at %d: %w", path, off, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return f.Close()
}
