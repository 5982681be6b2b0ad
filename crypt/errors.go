package crypt

import (
	"errors"
	"fmt"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

var (
	// ErrWrongPassphrase means no key slot opens with the key given.
	ErrWrongPassphrase = errors.New("no key slot opens with this passphrase")
	// ErrNotLUKS means the device holds no LUKS header.
	ErrNotLUKS = errors.New("not a LUKS device")
	// ErrBusy means the device or mapping is in use (mounted, held open).
	ErrBusy = errors.New("device in use")
	// ErrSignature means the device holds a signature (file system, RAID,
	// partition table, LUKS) and the step was not forced.
	ErrSignature = errors.New("device holds a signature")
	// ErrRedacted means a passphrase came back from a journal as
	// "<redacted>": the step needs a key file to run after a crash.
	ErrRedacted = errors.New("passphrase not available (journals never hold secrets): give a key file")
	// ErrNoMapping means the device-mapper mapping does not exist.
	ErrNoMapping = errors.New("no such mapping")
)

// invalid marks err as bad input (nothing done; the CLI exits 2).
func invalid(err error) error {
	if errors.Is(err, atomic.ErrInvalid) {
		return err
	}
	return fmt.Errorf("%w: %w", atomic.ErrInvalid, err)
}

// classify wraps a cryptsetup or dmsetup error with the package error it
// means, from the real messages of cryptsetup 2.6 (testdata/capture/crypt,
// whose table in capture_test.go says what each must be).
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case run.StderrContains(err, "No key available with this passphrase"):
		return fmt.Errorf("%w: %w", ErrWrongPassphrase, err)
	case run.StderrContains(err, "is not a valid LUKS device"):
		return fmt.Errorf("%w: %w", ErrNotLUKS, err)
	case run.StderrContains(err, "in use", "Device or resource busy", "already exists"):
		// "Device NAME already exists.": open onto a mapping name in use
		return fmt.Errorf("%w: %w", ErrBusy, err)
	case run.StderrContains(err, "Device does not exist", "doesn't exist", "is not active"):
		return fmt.Errorf("%w: %w", ErrNoMapping, err)
	}
	return err
}

// IsWrongPassphrase reports whether err says the key opens no slot.
func IsWrongPassphrase(err error) bool { return errors.Is(err, ErrWrongPassphrase) }

// IsBusy reports whether err says the device is in use.
func IsBusy(err error) bool { return errors.Is(err, ErrBusy) }
