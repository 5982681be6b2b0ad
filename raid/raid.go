package raid

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

// ErrNotActive is returned by [Detail] for an array that is not running.
var ErrNotActive = errors.New("md array not active")

// ProcMDStat is the path /proc/mdstat is read from. It is read with
// `cat` through the Runner, like every other query, so a remote runner and
// a transcript test see it too.
const ProcMDStat = "/proc/mdstat"

// Levels and the minimum number of devices each needs.
var minDevices = map[string]int{
	"raid0":  2,
	"raid1":  2,
	"raid5":  3,
	"raid6":  4,
	"raid10": 2,
}

// NormalizeLevel turns "1", "raid1" or "mirror" into "raid1"; it returns
// an error wrapping atomic.ErrInvalid for a level bofh does not create.
func NormalizeLevel(l string) (string, error) {
	s := strings.ToLower(strings.TrimSpace(l))
	switch s {
	case "mirror":
		s = "raid1"
	case "stripe":
		s = "raid0"
	}
	if !strings.HasPrefix(s, "raid") {
		s = "raid" + s
	}
	if _, ok := minDevices[s]; !ok {
		return "", fmt.Errorf("%w: RAID level %q: want 0, 1, 5, 6 or 10", atomic.ErrInvalid, l)
	}
	return s, nil
}

// MinDevices returns the minimum number of active devices level needs.
func MinDevices(level string) (int, error) {
	l, err := NormalizeLevel(level)
	if err != nil {
		return 0, err
	}
	return minDevices[l], nil
}

var (
	mdDevRe  = regexp.MustCompile(`^/dev/md(?:[0-9]{1,4}|/[A-Za-z0-9_.:-]{1,32})$`)
	chunkRe  = regexp.MustCompile(`^[0-9]{1,7}[KkMm]?$`)
	nameRe   = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,32}$`)
	metaVers = map[string]bool{"0.90": true, "1.0": true, "1.1": true, "1.2": true, "default": true}
)

// ValidArrayDevice checks an array device path: /dev/mdN or /dev/md/name.
func ValidArrayDevice(dev string) error {
	if !mdDevRe.MatchString(dev) {
		return fmt.Errorf("%w: array device %q: want /dev/mdN or /dev/md/NAME", atomic.ErrInvalid, dev)
	}
	return nil
}

// ValidMember checks a member device path: absolute, clean, under /dev,
// not an md array of its own naming… (nesting is allowed: /dev/md1 may be
// a member of a raid10 built by hand).
func ValidMember(dev string) error {
	if dev == "" || !filepath.IsAbs(dev) || filepath.Clean(dev) != dev || !strings.HasPrefix(dev, "/dev/") ||
		strings.ContainsAny(dev, " \t\n,=") {
		return fmt.Errorf("%w: member device %q: want an absolute /dev path", atomic.ErrInvalid, dev)
	}
	return nil
}

func validMembers(devs []string) error {
	seen := map[string]bool{}
	for _, d := range devs {
		if err := ValidMember(d); err != nil {
			return err
		}
		if seen[d] {
			return fmt.Errorf("%w: member %s listed twice", atomic.ErrInvalid, d)
		}
		seen[d] = true
	}
	return nil
}

// chunkKiB parses a chunk size ("64", "64K", "1M") into KiB.
func chunkKiB(s string) (int, error) {
	if !chunkRe.MatchString(s) {
		return 0, fmt.Errorf("%w: chunk %q: want KiB like 64, 512K or 1M", atomic.ErrInvalid, s)
	}
	mult := 1
	switch s[len(s)-1] {
	case 'K', 'k':
		s = s[:len(s)-1]
	case 'M', 'm':
		s, mult = s[:len(s)-1], 1024
	}
	n, _ := strconv.Atoi(s)
	n *= mult
	if n < 4 || n&(n-1) != 0 {
		return 0, fmt.Errorf("%w: chunk %s KiB: want a power of two of at least 4 KiB", atomic.ErrInvalid, strconv.Itoa(n))
	}
	return n, nil
}

// Detail returns the array's state from `mdadm --detail --export` and,
// when /proc/mdstat is readable, its state and running sync. An array
// that is not running returns an error wrapping ErrNotActive.
func Detail(ctx context.Context, r run.Runner, dev string) (*Array, error) {
	out, err := run.Output(ctx, r, "mdadm", "--detail", "--export", dev)
	if err != nil {
		if IsNotActive(err) {
			return nil, fmt.Errorf("%s: %w", dev, ErrNotActive)
		}
		return nil, fmt.Errorf("mdadm --detail %s: %w", dev, err)
	}
	a, err := ParseDetail(dev, out)
	if err != nil {
		return nil, err
	}
	st, err := ReadMDStat(ctx, r)
	if err != nil {
		return nil, err
	}
	mergeStat(a, st)
	return a, nil
}

func mergeStat(a *Array, st *MDStat) {
	name := a.Device
	if strings.HasPrefix(name, "/dev/md/") {
		if real, err := filepath.EvalSymlinks(name); err == nil {
			name = real
		}
	}
	s, ok := st.Get(name)
	if !ok {
		return
	}
	a.State = s.State
	a.Sync = s.Sync
	if a.Sync != nil {
		a.Sync.Device = a.Device
	}
	if s.Status != "" {
		a.Degraded = s.Degraded()
	}
	// mdadm --detail --export calls a failed member a spare; mdstat
	// flags it (F). A member being rebuilt holds a slot in the export
	// but is not in sync: mdstat's [U_] map says which slot.
	flags := map[string]StatMember{}
	for _, m := range s.Members {
		flags[m.Name] = m
	}
	for i := range a.Members {
		m := &a.Members[i]
		k := filepath.Base(m.Device)
		if real, err := filepath.EvalSymlinks(m.Device); err == nil {
			k = filepath.Base(real)
		}
		f, ok := flags[k]
		if !ok {
			continue
		}
		if f.Faulty {
			m.Faulty, m.Spare, m.Slot = true, false, -1
		}
		if m.Slot >= 0 && m.Slot < len(s.Status) && s.Status[m.Slot] == '_' {
			m.Rebuilding = true
		}
	}
	sortMembers(a.Members)
}

// ReadMDStat reads and decodes /proc/mdstat.
func ReadMDStat(ctx context.Context, r run.Runner) (*MDStat, error) {
	data, err := run.Output(ctx, r, "cat", ProcMDStat)
	if err != nil {
		return nil, fmt.Errorf("read mdstat: %w", err)
	}
	return ParseMDStat(data)
}

// Examine returns the md superblock on dev, or nil if it has none.
func Examine(ctx context.Context, r run.Runner, dev string) (*Superblock, error) {
	out, err := run.Output(ctx, r, "mdadm", "--examine", "--export", dev)
	if err != nil {
		if IsNoSuperblock(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("mdadm --examine %s: %w", dev, err)
	}
	return ParseExamine(out), nil
}

// IsNotActive reports whether a mdadm error says the array is not running
// (or its device node does not exist). A device mdadm cannot open for
// another reason ("cannot open /dev/loop6: Device or resource busy") is
// not a stopped array.
func IsNotActive(err error) bool {
	// mdadm 4.2 (testdata/capture/raid/err-*): "cannot open /dev/md1: No
	// such file or directory" or "error opening /dev/md/x: No such file
	// or directory" for a missing node, "Array associated with md device
	// /dev/md127 does not exist." for a stopped array.
	return run.StderrContains(err, "does not appear to be active", "No such file or directory",
		"Array associated with md device", "is not an md array")
}

// IsNoSuperblock reports whether `mdadm --examine` found no superblock.
func IsNoSuperblock(err error) bool {
	return run.StderrContains(err, "No md superblock detected", "No superblock", "Unrecognised md component device")
}

// IsBusy reports whether a mdadm error says a device is in use.
func IsBusy(err error) bool {
	return run.StderrContains(err, "Device or resource busy", "is busy", "Cannot get exclusive access")
}

// Signature returns the type of the signature blkid finds on dev (TYPE or
// PTTYPE, e.g. "ext4", "linux_raid_member", "gpt"), or "" if none.
func Signature(ctx context.Context, r run.Runner, dev string) (string, error) {
	res, err := r.Run(ctx, run.Cmd{Argv: []string{"blkid", "-p", "-o", "export", dev}, Kind: run.Query, OkCodes: []int{2}})
	if err != nil {
		return "", fmt.Errorf("probe %s: %w", dev, err)
	}
	if res.ExitCode == 2 {
		return "", nil
	}
	kv := parseExport(res.Stdout)
	for _, k := range []string{"TYPE", "PTTYPE"} {
		if v := kv[k]; v != "" {
			return v, nil
		}
	}
	return "", nil
}

// CheckDevice says whether path can be used as a new member: it must be
// a block device that nothing holds (not mounted, not an LVM PV in use,
// not a member of a running array). The check opens it with O_EXCL. It is
// a variable so transcript tests can replace it.
var CheckDevice = func(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%w: member %s: %w", atomic.ErrInvalid, path, err)
	}
	if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return fmt.Errorf("%w: member %s is not a block device", atomic.ErrInvalid, path)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_EXCL, 0)
	if err != nil {
		return fmt.Errorf("%w: member %s is in use (mounted, held by another device or array): %w", atomic.ErrInvalid, path, err)
	}
	return f.Close()
}
