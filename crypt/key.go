package crypt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bofhkit/bofh/run"
)

// Key is a passphrase or a key file. A key file is used byte for byte, as
// cryptsetup's --key-file does (a trailing newline is part of the key); a
// passphrase is a run.Secret that never reaches a journal.
type Key struct {
	// File is the path of a key file.
	File string
	// Passphrase is an in-memory passphrase.
	Passphrase run.Secret
}

func (k Key) set() bool { return k.File != "" || k.Passphrase != "" }

// validate checks the key without I/O; what names the key in errors.
func (k Key) validate(what string, required bool) error {
	switch {
	case k.File != "" && k.Passphrase != "":
		return fmt.Errorf("%s: give a key file or a passphrase, not both", what)
	case !k.set() && required:
		return fmt.Errorf("%s: a key file or passphrase is required", what)
	case k.File != "" && !filepath.IsAbs(k.File):
		return fmt.Errorf("%s: key file %q must be an absolute path", what, k.File)
	}
	return nil
}

// bytes returns the key material. A passphrase decoded from a journal is
// refused (ErrRedacted); a missing key file is named in the error, never
// its content.
func (k Key) bytes() ([]byte, error) {
	if k.Passphrase != "" {
		if k.Passphrase == run.Redacted {
			return nil, ErrRedacted
		}
		return []byte(k.Passphrase.Reveal()), nil
	}
	if k.File == "" {
		return nil, errors.New("no key given")
	}
	b, err := os.ReadFile(k.File)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("key file %s: %w", k.File, pe.Err)
		}
		return nil, fmt.Errorf("key file %s: %w", k.File, err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("key file %s is empty", k.File)
	}
	return b, nil
}

// usable checks, before anything runs, that the key can be read.
func (k Key) usable() error {
	b, err := k.bytes()
	clear(b)
	if err != nil {
		return invalid(err)
	}
	return nil
}

// cmd fills in how cryptsetup reads the key: --key-file PATH, or
// --key-file=- with the passphrase on stdin (listed as a secret).
func (k Key) cmd(c *run.Cmd) error {
	if k.Passphrase != "" {
		if k.Passphrase == run.Redacted {
			return ErrRedacted
		}
		c.Argv = append(c.Argv, "--key-file=-")
		c.Stdin = []byte(k.Passphrase.Reveal())
		c.Secrets = append(c.Secrets, k.Passphrase)
		return nil
	}
	if k.File == "" {
		return errors.New("no key given")
	}
	c.Argv = append(c.Argv, "--key-file", k.File)
	return nil
}

// asFile returns a path cryptsetup can read the key from: the key file
// itself, or a 0600 file in dir holding the passphrase. Call cleanup as
// soon as the command has run.
func (k Key) asFile(dir, name string) (path string, cleanup func(), err error) {
	if k.Passphrase == "" {
		if k.File == "" {
			return "", nil, errors.New("no key given")
		}
		return k.File, func() {}, nil
	}
	if k.Passphrase == run.Redacted {
		return "", nil, ErrRedacted
	}
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		os.Remove(p)
		f, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_EXCL, 0o600)
	}
	if err != nil {
		return "", nil, fmt.Errorf("key temp file: %w", err)
	}
	_, err = f.WriteString(k.Passphrase.Reveal())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	cleanup = func() { os.Remove(p) }
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("key temp file: %w", err)
	}
	return p, cleanup, nil
}

// secrets lists the passphrases of keys, for run.Cmd.Secrets.
func secrets(keys ...Key) []run.Secret {
	var out []run.Secret
	for _, k := range keys {
		if k.Passphrase != "" {
			out = append(out, k.Passphrase)
		}
	}
	return out
}
