package crypt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

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

// cmdWithNew fills in how cryptsetup reads the current key and a new one
// (luksAddKey, luksChangeKey), then appends the device and the new key's
// file argument. Passphrases go on stdin and never into a file: the
// current one first, cut off by --keyfile-size when a new passphrase
// follows it, and the new one read to the end as the key file "-". Key
// files are passed by path.
func cmdWithNew(c *run.Cmd, cur, nk Key, device string) error {
	for _, k := range []Key{cur, nk} {
		switch {
		case k.Passphrase == run.Redacted:
			return ErrRedacted
		case !k.set():
			return errors.New("no key given")
		}
	}
	var stdin []byte
	if cur.Passphrase != "" {
		b := []byte(cur.Passphrase.Reveal())
		c.Argv = append(c.Argv, "--key-file=-")
		if nk.Passphrase != "" {
			c.Argv = append(c.Argv, "--keyfile-size", strconv.Itoa(len(b)))
		}
		stdin = append(stdin, b...)
	} else {
		c.Argv = append(c.Argv, "--key-file", cur.File)
	}
	c.Argv = append(c.Argv, device)
	if nk.Passphrase != "" {
		c.Argv = append(c.Argv, "-")
		stdin = append(stdin, nk.Passphrase.Reveal()...)
	} else {
		c.Argv = append(c.Argv, nk.File)
	}
	if stdin != nil {
		c.Stdin = stdin
	}
	c.Secrets = append(c.Secrets, secrets(cur, nk)...)
	return nil
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
