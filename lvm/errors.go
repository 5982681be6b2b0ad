package lvm

import (
	"errors"
	"fmt"

	"github.com/bofhkit/bofh/run"
)

// Error classes of failed LVM commands. Classify wraps a *run.Error in one
// of them, so errors.Is(err, lvm.ErrNotFound) works on what steps return.
var (
	// ErrNotFound: the VG, LV or device does not exist.
	ErrNotFound = errors.New("lvm: not found")
	// ErrExists: an object of that name already exists.
	ErrExists = errors.New("lvm: already exists")
	// ErrInUse: the object is open, mounted, or still used by another
	// (an LV by a holder, a PV by a VG, a pool by thin LVs).
	ErrInUse = errors.New("lvm: in use")
	// ErrNoSpace: not enough free extents.
	ErrNoSpace = errors.New("lvm: insufficient free space")
)

// Messages of LVM 2.03.16, captured in testdata/lvm (see errors_test.go).
var classes = []struct {
	class error
	subs  []string
}{
	{ErrNoSpace, []string{"insufficient free space", "insufficient suitable allocatable extents", "not enough free"}},
	{ErrInUse, []string{"in use", "is used by vg", "open logical volume", "is open", "has holders", "device or resource busy"}},
	{ErrExists, []string{"already exists"}},
	{ErrNotFound, []string{"not found", "no device found", "failed to find", "cannot find", "no such file or directory"}},
}

// Classify wraps err in ErrNotFound, ErrExists, ErrInUse or ErrNoSpace when
// it is a failed LVM command whose message says so; other errors are
// returned unchanged. The *run.Error stays reachable with errors.As.
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var re *run.Error
	if !errors.As(err, &re) || re.ExitCode <= 0 {
		return err
	}
	for _, c := range classes {
		if errors.Is(err, c.class) {
			return err
		}
		if run.StderrContains(err, c.subs...) {
			return fmt.Errorf("%w: %w", c.class, err)
		}
	}
	return err
}

// IsNotFound reports whether err says the object does not exist.
func IsNotFound(err error) bool { return errors.Is(Classify(err), ErrNotFound) }

// IsExists reports whether err says the object already exists.
func IsExists(err error) bool { return errors.Is(Classify(err), ErrExists) }

// IsInUse reports whether err says the object is in use.
func IsInUse(err error) bool { return errors.Is(Classify(err), ErrInUse) }

// IsNoSpace reports whether err says the VG has not enough free space.
func IsNoSpace(err error) bool { return errors.Is(Classify(err), ErrNoSpace) }
