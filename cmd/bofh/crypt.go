package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/crypt"
	"github.com/bofhkit/bofh/run"
)

func init() { addCommand(newCryptCmd) }

// cryptKeys resolves --key-file flags: a path (absolute, used byte for
// byte) or "-" (stdin, one trailing newline trimmed). Only one flag of a
// command may read stdin.
type cryptKeys struct {
	stdin     io.Reader
	usedStdin bool
}

func (k *cryptKeys) key(flag, v string, required bool) (crypt.Key, error) {
	switch {
	case v == "" && required:
		return crypt.Key{}, usageError{fmt.Errorf("--%s FILE (or - for stdin) is required; passphrases are never taken as flag values", flag)}
	case v == "":
		return crypt.Key{}, nil
	case v == "-":
		if k.usedStdin {
			return crypt.Key{}, usageError{fmt.Errorf("--%s -: only one key can come from stdin", flag)}
		}
		k.usedStdin = true
		b, err := io.ReadAll(io.LimitReader(k.stdin, 8<<20))
		if err != nil {
			return crypt.Key{}, fmt.Errorf("read key from stdin: %w", err)
		}
		s := strings.TrimSuffix(string(b), "\n")
		if s == "" {
			return crypt.Key{}, usageError{errors.New("empty key on stdin")}
		}
		return crypt.Key{Passphrase: run.Secret(s)}, nil
	}
	p, err := filepath.Abs(v)
	if err != nil {
		return crypt.Key{}, usageError{err}
	}
	return crypt.Key{File: p}, nil
}

func absDev(v string) (string, error) {
	p, err := filepath.Abs(v)
	if err != nil {
		return "", usageError{err}
	}
	return p, nil
}

func newCryptCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "crypt",
		Short: "LUKS encryption: format, open, close, key slots, header backups, resize",
		Long: `crypt wraps cryptsetup and luks.go as journaled steps: a failed format puts
back the bytes that were on the device, a failed open closes the mapping, key
changes restore the header backed up before them.

Keys come from --key-file FILE (used byte for byte, as cryptsetup does) or
--key-file - (stdin, one trailing newline trimmed); never from a flag value.
Defaults (cipher, key size, pbkdf and its cost) come from the site file's
crypt: section.`,
		Example: `  bofh crypt format /dev/sdb1 --key-file /root/sdb1.key
  echo -n 's3cret' | bofh crypt open /dev/sdb1 data --key-file -
  bofh crypt key add /dev/sdb1 --key-file /root/sdb1.key --new-key-file /root/backup.key
  bofh crypt dump /dev/sdb1 -o json`,
	}
	keys := func(cmd *cobra.Command) *cryptKeys { return &cryptKeys{stdin: cmd.InOrStdin()} }
	cfg := func() (crypt.Config, error) {
		var c crypt.Config
		if err := a.site.Section("crypt", &c); err != nil {
			return c, usageError{err}
		}
		if err := c.Validate(); err != nil {
			return c, usageError{fmt.Errorf("site section crypt: %w", err)}
		}
		return c, nil
	}
	do := func(cmd *cobra.Command, name string, p atomic.Params, text func(w io.Writer, res map[string]any)) error {
		var res map[string]any
		id, err := a.doSteps(cmd.Context(), name, &res, p)
		if err != nil || a.dryRun {
			return a.report(id, name, err)
		}
		return a.print(map[string]any{"id": id, "name": name, "state": atomic.StateCommitted, "result": res}, func(w io.Writer) {
			fmt.Fprintf(w, "%s: committed (%s)\n", name, id)
			if text != nil {
				text(w, res)
			}
		})
	}

	// format
	var f crypt.Format
	var fKey string
	var fast bool
	format := &cobra.Command{
		Use:   "format DEVICE",
		Short: "luksFormat a device (undo: put back what was there)",
		Long: `format writes a LUKS header (LUKS2 unless --type luks1). A device holding any
signature (file system, partition table, RAID, LUKS) is refused unless --force;
the first 16 MiB and last 1 MiB are backed up first, so the undo restores them.`,
		Example: `  bofh crypt format /dev/sdb1 --key-file /root/sdb1.key
  bofh crypt format /dev/loop0 --key-file - --type luks1 --fast --force`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cfg()
			if err != nil {
				return err
			}
			if fast {
				c.Fast = true
			}
			p := f
			if p.Device, err = absDev(args[0]); err != nil {
				return err
			}
			k, err := keys(cmd).key("key-file", fKey, true)
			if err != nil {
				return err
			}
			p.KeyFile, p.Passphrase = k.File, k.Passphrase
			c.ApplyFormat(&p)
			return do(cmd, "crypt format", p, func(w io.Writer, r map[string]any) {
				fmt.Fprintf(w, "%s: %v header %v\n", p.Device, r["type"], r["uuid"])
			})
		},
	}
	ff := format.Flags()
	ff.StringVar(&fKey, "key-file", "", "key file for slot 0, or - for stdin")
	ff.StringVar(&f.Type, "type", "", "luks2 or luks1")
	ff.StringVar(&f.Cipher, "cipher", "", "cipher, e.g. aes-xts-plain64")
	ff.IntVar(&f.KeySize, "key-size", 0, "volume key size in bits")
	ff.StringVar(&f.Hash, "hash", "", "hash (pbkdf2, AF splitter)")
	ff.StringVar(&f.PBKDF, "pbkdf", "", "argon2id, argon2i or pbkdf2")
	ff.IntVar(&f.PBKDFMemory, "pbkdf-memory", 0, "argon2 memory cost (KiB)")
	ff.IntVar(&f.PBKDFParallel, "pbkdf-parallel", 0, "argon2 threads")
	ff.IntVar(&f.PBKDFIterations, "pbkdf-force-iterations", 0, "forced iterations / argon2 time cost")
	ff.IntVar(&f.IterTime, "iter-time", 0, "ms of unlock time to aim for")
	ff.StringVar(&f.Label, "label", "", "LUKS2 label")
	ff.StringVar(&f.UUID, "uuid", "", "header UUID")
	ff.BoolVar(&f.Force, "force", false, "format over an existing signature")
	ff.BoolVar(&fast, "fast", false, "cheap pbkdf for tests (never for real data)")

	// open
	var oKey, oBackend string
	var oRO bool
	open := &cobra.Command{
		Use:   "open DEVICE NAME",
		Short: "unlock DEVICE as /dev/mapper/NAME (undo: close it)",
		Example: `  bofh crypt open /dev/sdb1 data --key-file /root/sdb1.key
  echo -n 's3cret' | bofh crypt open /dev/sdb1 data --key-file - --backend cryptsetup`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cfg()
			if err != nil {
				return err
			}
			dev, err := absDev(args[0])
			if err != nil {
				return err
			}
			k, err := keys(cmd).key("key-file", oKey, true)
			if err != nil {
				return err
			}
			p := crypt.Open{Device: dev, Name: args[1], KeyFile: k.File, Passphrase: k.Passphrase, Backend: oBackend, ReadOnly: oRO}
			c.ApplyOpen(&p)
			return do(cmd, "crypt open", p, func(w io.Writer, r map[string]any) { fmt.Fprintln(w, r["path"]) })
		},
	}
	open.Flags().StringVar(&oKey, "key-file", "", "key file, or - for stdin")
	open.Flags().StringVar(&oBackend, "backend", "", "luksgo (default) or cryptsetup")
	open.Flags().BoolVar(&oRO, "readonly", false, "read-only mapping (cryptsetup backend)")

	// close
	var cKey string
	closeCmd := &cobra.Command{
		Use:     "close NAME",
		Short:   "close a mapping (undo: reopen it, so a key is needed)",
		Example: "  bofh crypt close data --key-file /root/sdb1.key",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := keys(cmd).key("key-file", cKey, true)
			if err != nil {
				return err
			}
			return do(cmd, "crypt close", crypt.Close{Name: args[0], KeyFile: k.File, Passphrase: k.Passphrase}, nil)
		},
	}
	closeCmd.Flags().StringVar(&cKey, "key-file", "", "key to reopen it on undo, or - for stdin")

	root.AddCommand(format, open, closeCmd, newCryptKeyCmd(a, keys, cfg, do), newCryptHeaderCmd(do))
	root.AddCommand(newCryptQueryCmds(a)...)

	// resize
	var rKey, rSize string
	resize := &cobra.Command{
		Use:     "resize NAME",
		Short:   "resize an open mapping (undo: resize it back)",
		Example: "  bofh crypt resize data            # fill the grown device\n  bofh crypt resize data --size 10G",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := keys(cmd).key("key-file", rKey, false)
			if err != nil {
				return err
			}
			return do(cmd, "crypt resize", crypt.Resize{Name: args[0], Size: rSize, KeyFile: k.File, Passphrase: k.Passphrase},
				func(w io.Writer, r map[string]any) { fmt.Fprintf(w, "%v sectors\n", r["sectors"]) })
		},
	}
	resize.Flags().StringVar(&rKey, "key-file", "", "key, if cryptsetup asks for one")
	resize.Flags().StringVar(&rSize, "size", "", "new size (512MiB, 10G, 2048s); default: the whole device")
	root.AddCommand(resize)
	return root
}

type doFunc func(cmd *cobra.Command, name string, p atomic.Params, text func(w io.Writer, res map[string]any)) error

func newCryptKeyCmd(a *app, keys func(*cobra.Command) *cryptKeys, cfg func() (crypt.Config, error), do doFunc) *cobra.Command {
	key := &cobra.Command{Use: "key", Short: "add, remove and change key slots",
		Example: "  bofh crypt key add /dev/sdb1 --key-file /root/a.key --new-key-file /root/b.key"}
	var kOld, kNew string
	var slot int
	slotText := func(w io.Writer, r map[string]any) { fmt.Fprintf(w, "key slot %v\n", r["slot"]) }
	kdf := func() (crypt.KDFCost, error) {
		c, err := cfg()
		return crypt.KDFFromConfig(c), err
	}
	// devKeys reads what key add and key change both take: the device,
	// its current key, the new key and the KDF cost.
	devKeys := func(cmd *cobra.Command, args []string) (dev string, old, nk crypt.Key, cost crypt.KDFCost, err error) {
		if dev, err = absDev(args[0]); err != nil {
			return
		}
		ks := keys(cmd)
		if old, err = ks.key("key-file", kOld, true); err != nil {
			return
		}
		if nk, err = ks.key("new-key-file", kNew, true); err != nil {
			return
		}
		cost, err = kdf()
		return
	}
	add := &cobra.Command{
		Use: "add DEVICE", Short: "add a key slot (undo: kill it)", Args: exactArgs(1),
		Example: "  bofh crypt key add /dev/sdb1 --key-file /root/a.key --new-key-file -",
		RunE: func(cmd *cobra.Command, args []string) error {
			dev, old, nk, cost, err := devKeys(cmd, args)
			if err != nil {
				return err
			}
			p := crypt.AddKey{Device: dev, KeyFile: old.File, Passphrase: old.Passphrase, NewKeyFile: nk.File, NewPassphrase: nk.Passphrase, KDFCost: cost}
			if cmd.Flags().Changed("slot") {
				p.Slot = &slot
			}
			return do(cmd, "crypt key add", p, slotText)
		},
	}
	change := &cobra.Command{
		Use: "change DEVICE", Short: "change a key (undo: restore the header)", Args: exactArgs(1),
		Example: "  bofh crypt key change /dev/sdb1 --key-file /root/old.key --new-key-file /root/new.key",
		RunE: func(cmd *cobra.Command, args []string) error {
			dev, old, nk, cost, err := devKeys(cmd, args)
			if err != nil {
				return err
			}
			return do(cmd, "crypt key change", crypt.ChangeKey{Device: dev, KeyFile: old.File, Passphrase: old.Passphrase,
				NewKeyFile: nk.File, NewPassphrase: nk.Passphrase, KDFCost: cost}, slotText)
		},
	}
	remove := &cobra.Command{
		Use: "remove DEVICE", Short: "kill the slot a key opens, or --slot N (undo: restore the header)", Args: exactArgs(1),
		Example: "  bofh crypt key remove /dev/sdb1 --key-file /root/old.key\n  bofh crypt key remove /dev/sdb1 --slot 3",
		RunE: func(cmd *cobra.Command, args []string) error {
			dev, err := absDev(args[0])
			if err != nil {
				return err
			}
			p := crypt.RemoveKey{Device: dev}
			if cmd.Flags().Changed("slot") {
				p.Slot = &slot
			} else {
				k, err := keys(cmd).key("key-file", kOld, true)
				if err != nil {
					return err
				}
				p.KeyFile, p.Passphrase = k.File, k.Passphrase
			}
			return do(cmd, "crypt key remove", p, slotText)
		},
	}
	for _, c := range []*cobra.Command{add, change, remove} {
		c.Flags().StringVar(&kOld, "key-file", "", "existing key file, or - for stdin")
	}
	for _, c := range []*cobra.Command{add, change} {
		c.Flags().StringVar(&kNew, "new-key-file", "", "new key file, or - for stdin")
	}
	add.Flags().IntVar(&slot, "slot", 0, "key slot number")
	remove.Flags().IntVar(&slot, "slot", 0, "key slot to kill")
	key.AddCommand(add, change, remove)
	return key
}

func newCryptHeaderCmd(do doFunc) *cobra.Command {
	h := &cobra.Command{Use: "header", Short: "back up and restore LUKS headers",
		Example: "  bofh crypt header backup /dev/sdb1 /root/sdb1.hdr"}
	var force bool
	restore := &cobra.Command{
		Use: "restore DEVICE FILE", Short: "restore a header backup (undo: put back what was there)", Args: exactArgs(2),
		Example: "  bofh crypt header restore /dev/sdb1 /root/sdb1.hdr",
		RunE: func(cmd *cobra.Command, args []string) error {
			dev, err := absDev(args[0])
			if err != nil {
				return err
			}
			file, err := absDev(args[1])
			if err != nil {
				return err
			}
			return do(cmd, "crypt header restore", crypt.HeaderRestore{Device: dev, File: file, Force: force}, nil)
		},
	}
	restore.Flags().BoolVar(&force, "force", false, "restore over another header or signature")
	h.AddCommand(&cobra.Command{
		Use: "backup DEVICE FILE", Short: "write a header backup file (undo: remove it)", Args: exactArgs(2),
		Example: "  bofh crypt header backup /dev/sdb1 /root/sdb1.hdr",
		RunE: func(cmd *cobra.Command, args []string) error {
			dev, err := absDev(args[0])
			if err != nil {
				return err
			}
			file, err := absDev(args[1])
			if err != nil {
				return err
			}
			return do(cmd, "crypt header backup", crypt.HeaderBackup{Device: dev, File: file}, nil)
		},
	}, restore)
	return h
}

func newCryptQueryCmds(a *app) []*cobra.Command {
	dump := &cobra.Command{
		Use: "dump DEVICE", Short: "show a LUKS header (LUKS2: the JSON metadata, typed)", Args: exactArgs(1),
		Example: "  bofh crypt dump /dev/sdb1 -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := crypt.ReadHeader(args[0])
			if err != nil {
				return err
			}
			out := struct {
				*crypt.Header
				Metadata *crypt.Metadata `json:"metadata,omitempty"`
			}{Header: h}
			if h.Version == 2 {
				if out.Metadata, err = crypt.Dump(cmd.Context(), a.runner(), args[0]); err != nil {
					return err
				}
			}
			return a.print(out, func(w io.Writer) {
				fmt.Fprintf(w, "LUKS%d %s\nkey slots: %v\n", h.Version, h.UUID, h.Slots)
				if m := out.Metadata; m != nil {
					for id, s := range m.Segments {
						fmt.Fprintf(w, "segment %d: %s, offset %d, sector size %d\n", id, s.Encryption, s.Offset, s.SectorSize)
					}
					for _, id := range m.ActiveSlots() {
						k := m.Keyslots[id]
						fmt.Fprintf(w, "key slot %d: %s (%d bits)\n", id, k.KDF.Type, k.KeySize*8)
					}
					for id, t := range m.Tokens {
						fmt.Fprintf(w, "token %d: %s, slots %v\n", id, t.Type, []int(t.Keyslots))
					}
				}
			})
		},
	}
	isLuks := &cobra.Command{
		Use: "is-luks DEVICE", Short: "exit 0 if DEVICE holds a LUKS header, 1 if not", Args: exactArgs(1),
		Example: "  bofh crypt is-luks /dev/sdb1 && echo encrypted",
		RunE: func(cmd *cobra.Command, args []string) error {
			ok, err := crypt.IsLUKS(args[0])
			if err != nil {
				return err
			}
			if perr := a.print(map[string]bool{"luks": ok}, func(w io.Writer) {
				if ok {
					fmt.Fprintln(w, "LUKS")
				} else {
					fmt.Fprintln(w, "not LUKS")
				}
			}); perr != nil {
				return perr
			}
			if !ok {
				return fmt.Errorf("%s: %w", args[0], crypt.ErrNotLUKS)
			}
			return nil
		},
	}
	status := &cobra.Command{
		Use: "status NAME", Short: "show a mapping: its device-mapper UUID, devices and openers", Args: exactArgs(1),
		Example: "  bofh crypt status data -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := crypt.Mapping(cmd.Context(), a.runner(), args[0])
			if err != nil {
				return err
			}
			return a.print(m, func(w io.Writer) {
				fmt.Fprintf(w, "%s: %s on %s, open %d\n", m.Name, m.UUID, strings.Join(m.Devices, ","), m.Open)
			})
		},
	}
	return []*cobra.Command{dump, isLuks, status}
}
