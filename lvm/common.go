package lvm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

// LV types accepted by lvm.lv.create and reported in LV.Type.
const (
	TypeLinear   = "linear"
	TypeThinPool = "thin-pool"
	TypeThin     = "thin"
	TypeSnapshot = "snapshot"
)

// invalid wraps err as bad input (exit 2 when nothing ran yet).
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %w", atomic.ErrInvalid, fmt.Errorf(format, args...))
}

func mutate(ctx context.Context, env *atomic.Env, argv ...string) error {
	return Classify(run.Mutate(ctx, env.Runner, argv...))
}

// queryVG reports one VG; a missing VG gives a nil VG, not an error.
func queryVG(ctx context.Context, env *atomic.Env, vg string) (*Report, *VG, error) {
	rep, err := Query(ctx, env.Runner, vg)
	if errors.Is(err, ErrNotFound) {
		return &Report{}, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return rep, rep.VG(vg), nil
}

func txTagArgs(env *atomic.Env, extra []string) []string {
	a := []string{"--addtag", TxTag(env.TxID)}
	for _, t := range extra {
		a = append(a, "--addtag", t)
	}
	return a
}

func validateTags(tags []string) error {
	for _, t := range tags {
		if err := ValidateTag(t); err != nil {
			return err
		}
		if strings.HasPrefix(t, TxTagPrefix) {
			return fmt.Errorf("%w: tag %q: the prefix %s is bofh's own", ErrBadName, t, TxTagPrefix)
		}
	}
	return nil
}

func validateDevice(dev string) error {
	if dev == "" {
		return errors.New("device path is empty")
	}
	if !filepath.IsAbs(dev) || filepath.Clean(dev) != dev || strings.ContainsAny(dev, "\x00\n") {
		return fmt.Errorf("device %q: want a clean absolute path such as /dev/sdb", dev)
	}
	return nil
}

func validateDevices(devs []string) error {
	if len(devs) == 0 {
		return errors.New("no devices given")
	}
	seen := map[string]bool{}
	for _, d := range devs {
		if err := validateDevice(d); err != nil {
			return err
		}
		if seen[d] {
			return fmt.Errorf("device %s given twice", d)
		}
		seen[d] = true
	}
	return nil
}

// checkBlockDevice makes sure dev exists and is a block device (bad input
// otherwise). In a dry run a missing device is reported the same way.
var checkBlockDevice = isBlockDevice

func isBlockDevice(dev string) error {
	fi, err := os.Stat(dev)
	if err != nil {
		return invalid("device %s: %w", dev, err)
	}
	if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return invalid("%s is not a block device", dev)
	}
	return nil
}

// findPV finds the PV on dev, comparing resolved paths (dev may be a
// symlink such as /dev/disk/by-id/…).
func findPV(rep *Report, dev string) *PV {
	if pv := rep.PV(dev); pv != nil {
		return pv
	}
	want, err := filepath.EvalSymlinks(dev)
	if err != nil {
		return nil
	}
	for i := range rep.PVs {
		if got, err := filepath.EvalSymlinks(rep.PVs[i].Name); err == nil && got == want {
			return &rep.PVs[i]
		}
	}
	return nil
}

func hasTag(tags []string, t string) bool { return slices.Contains(tags, t) }
