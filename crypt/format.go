package crypt

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/fsutil"
	"github.com/bofhkit/bofh/run"
)

// Format is the crypt.format step: luksFormat a device.
type Format struct {
	Device          string     `json:"device" doc:"block device (or image file) to format"`
	Type            string     `json:"type,omitempty" doc:"luks2 (default) or luks1"`
	Cipher          string     `json:"cipher,omitempty" doc:"cipher-mode-iv, e.g. aes-xts-plain64 (cryptsetup's default if empty)"`
	KeySize         int        `json:"key_size,omitempty" doc:"volume key size in bits (e.g. 256, 512)"`
	Hash            string     `json:"hash,omitempty" doc:"hash for pbkdf2 and the AF splitter (sha256, sha512, …)"`
	PBKDF           string     `json:"pbkdf,omitempty" doc:"argon2id, argon2i or pbkdf2 (LUKS1: pbkdf2 only)"`
	PBKDFMemory     int        `json:"pbkdf_memory,omitempty" doc:"argon2 memory cost in KiB"`
	PBKDFParallel   int        `json:"pbkdf_parallel,omitempty" doc:"argon2 threads"`
	PBKDFIterations int        `json:"pbkdf_iterations,omitempty" doc:"forced iterations (pbkdf2) or time cost (argon2); skips benchmarking"`
	IterTime        int        `json:"iter_time,omitempty" doc:"ms of unlock time to aim for (benchmark)"`
	Label           string     `json:"label,omitempty" doc:"LUKS2 label"`
	UUID            string     `json:"uuid,omitempty" doc:"header UUID (generated if empty); an existing header with this UUID makes the step a no-op"`
	Force           bool       `json:"force,omitempty" doc:"format even if the device holds a signature (the undo still restores it)"`
	KeyFile         string     `json:"key_file,omitempty" doc:"key file for the first key slot (used byte for byte)"`
	Passphrase      run.Secret `json:"passphrase,omitempty" doc:"passphrase for the first key slot (Go API; never journaled)"`
}

// StepKind names the kind.
func (Format) StepKind() string { return "crypt.format" }

func (f Format) key() Key { return Key{File: f.KeyFile, Passphrase: f.Passphrase} }

var (
	cipherRe = regexp.MustCompile(`^([a-z0-9]+)-([a-z0-9]+)-([a-z0-9]+)(:[a-z0-9]+)?$`)
	uuidRe   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	ciphers  = set("aes", "serpent", "twofish", "camellia", "cast5", "cast6", "sm4", "aria", "blowfish", "des3_ede", "xchacha12", "xchacha20", "adiantum")
	modes    = set("xts", "cbc", "ecb", "ctr", "lrw", "pcbc", "cfb", "ofb", "hctr2", "aes", "chacha12", "chacha20")
	ivs      = set("plain", "plain64", "plain64be", "essiv", "benbi", "null", "lmk", "tcw", "random", "eboiv", "elephant", "aes", "poly1305")
	hashes   = set("sha1", "sha224", "sha256", "sha384", "sha512", "sha3-256", "sha3-512", "ripemd160", "whirlpool", "stribog256", "stribog512", "sm3", "blake2b-512", "blake2s-256")
	pbkdfs   = set("pbkdf2", "argon2i", "argon2id")
)

func set(xs ...string) map[string]bool {
	m := map[string]bool{}
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// ValidCipher checks a cryptsetup cipher specification such as
// aes-xts-plain64 or aes-cbc-essiv:sha256 against known names.
func ValidCipher(s string) error {
	m := cipherRe.FindStringSubmatch(s)
	if m == nil {
		return fmt.Errorf("cipher %q: want cipher-mode-iv, e.g. aes-xts-plain64", s)
	}
	switch {
	case !ciphers[m[1]]:
		return fmt.Errorf("cipher %q: unknown cipher %q", s, m[1])
	case !modes[m[2]]:
		return fmt.Errorf("cipher %q: unknown mode %q", s, m[2])
	case !ivs[m[3]]:
		return fmt.Errorf("cipher %q: unknown IV generator %q", s, m[3])
	case m[4] != "" && !hashes[m[4][1:]]:
		return fmt.Errorf("cipher %q: unknown IV hash %q", s, m[4][1:])
	}
	return nil
}

// checkDevice checks a device path without I/O.
func checkDevice(what, p string) error {
	if p == "" {
		return fmt.Errorf("%s is required", what)
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("%s %q must be a clean absolute path", what, p)
	}
	return nil
}

// Validate checks the parameters without touching the system.
func (f Format) Validate() error {
	if err := checkDevice("device", f.Device); err != nil {
		return err
	}
	if f.Type != "" && f.Type != "luks1" && f.Type != "luks2" {
		return fmt.Errorf("type %q: want luks1 or luks2", f.Type)
	}
	if f.Cipher != "" {
		if err := ValidCipher(f.Cipher); err != nil {
			return err
		}
	}
	if f.KeySize != 0 && (f.KeySize < 128 || f.KeySize > 1024 || f.KeySize%8 != 0) {
		return fmt.Errorf("key_size %d: want a multiple of 8 from 128 to 1024 bits", f.KeySize)
	}
	if f.Hash != "" && !hashes[f.Hash] {
		return fmt.Errorf("hash %q: unknown", f.Hash)
	}
	if f.PBKDF != "" && !pbkdfs[f.PBKDF] {
		return fmt.Errorf("pbkdf %q: want argon2id, argon2i or pbkdf2", f.PBKDF)
	}
	if f.Type == "luks1" {
		if f.PBKDF != "" && f.PBKDF != "pbkdf2" {
			return fmt.Errorf("pbkdf %q: LUKS1 supports pbkdf2 only", f.PBKDF)
		}
		if f.Label != "" {
			return errors.New("label: LUKS1 has no label")
		}
	}
	if f.PBKDFMemory < 0 || f.PBKDFMemory > 4<<20 || f.PBKDFParallel < 0 || f.PBKDFParallel > 32 ||
		f.PBKDFIterations < 0 || f.IterTime < 0 {
		return errors.New("pbkdf costs out of range")
	}
	if f.PBKDF == "pbkdf2" && f.PBKDFIterations != 0 && f.PBKDFIterations < 1000 {
		return fmt.Errorf("pbkdf_iterations %d: pbkdf2 needs at least 1000", f.PBKDFIterations)
	}
	if f.PBKDFMemory != 0 && f.PBKDFMemory < 32 {
		return fmt.Errorf("pbkdf_memory %d: at least 32 KiB", f.PBKDFMemory)
	}
	if f.PBKDFIterations != 0 && f.IterTime != 0 {
		return errors.New("set pbkdf_iterations or iter_time, not both")
	}
	if len(f.Label) > 47 || strings.ContainsAny(f.Label, "\x00\n") {
		return fmt.Errorf("label %q: at most 47 characters", f.Label)
	}
	if f.UUID != "" && !uuidRe.MatchString(f.UUID) {
		return fmt.Errorf("uuid %q: not a UUID", f.UUID)
	}
	return f.key().validate("format", true)
}

// FormatResult is what crypt.format reports.
type FormatResult struct {
	Device string `json:"device"`
	UUID   string `json:"uuid"`
	Type   string `json:"type"`
}

// formatUndo is the state before luksFormat. The bytes themselves are in
// the step's data dir (head.bin, tail.bin), written before formatting.
type formatUndo struct {
	UUID     string `json:"uuid"`
	Size     int64  `json:"size"`
	HeadLen  int64  `json:"head_len"`
	TailOff  int64  `json:"tail_off"`
	PrevType string `json:"prev_type,omitempty"`
	PrevUUID string `json:"prev_uuid,omitempty"`
}

const (
	headBackup = 16 << 20 // covers a default LUKS2 header (data offset 16 MiB) and LUKS1
	tailBackup = 1 << 20  // GPT backup header, md 0.90/1.0 superblocks
)

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func (f Format) luksType() string {
	if f.Type == "" {
		return "luks2"
	}
	return f.Type
}

func prepareFormat(ctx context.Context, env *atomic.Env, f Format) (atomic.Plan[formatUndo, FormatResult], error) {
	var plan atomic.Plan[formatUndo, FormatResult]
	if err := f.key().usable(); err != nil {
		return plan, err
	}
	size, err := deviceSize(f.Device)
	if err != nil {
		return plan, invalid(fmt.Errorf("device %s: %w", f.Device, err))
	}
	if size < 4<<20 {
		return plan, invalid(fmt.Errorf("device %s: %d bytes is too small for LUKS", f.Device, size))
	}
	if f.UUID != "" {
		if h, err := ReadHeader(f.Device); err == nil && strings.EqualFold(h.UUID, f.UUID) {
			plan.Noop = true
			plan.Result = FormatResult{Device: f.Device, UUID: h.UUID, Type: "luks" + strconv.Itoa(h.Version)}
			return plan, nil
		}
	}
	if err := checkNotInUse(f.Device); err != nil {
		return plan, invalid(err)
	}
	pr, err := ProbeDevice(ctx, env.Runner, f.Device)
	if err != nil {
		if errors.Is(err, ErrSignature) && !f.Force {
			return plan, invalid(err)
		}
		if !errors.Is(err, ErrSignature) {
			return plan, err
		}
	}
	if !pr.Empty() && !f.Force {
		return plan, invalid(fmt.Errorf("%w: %s holds %s (uuid %q); set force to format it anyway",
			ErrSignature, f.Device, pr.Type(), pr.Values["UUID"]))
	}
	u := formatUndo{UUID: f.UUID, Size: size, PrevType: pr.Type(), PrevUUID: pr.Values["UUID"]}
	if u.UUID == "" {
		u.UUID = newUUID()
	}
	u.HeadLen = min(size, headBackup)
	u.TailOff = max(u.HeadLen, size-tailBackup)
	plan.Undo = u
	return plan, nil
}

func (u formatUndo) paths(env *atomic.Env) (head, tail string, err error) {
	dir, err := env.StepDir()
	if err != nil {
		return "", "", err
	}
	return filepath.Join(dir, "head.bin"), filepath.Join(dir, "tail.bin"), nil
}

// backup saves the head and tail of the device, unless an earlier attempt
// of this step already did (it then holds the original bytes).
func (u formatUndo) backup(env *atomic.Env, dev string) error {
	head, tail, err := u.paths(env)
	if err != nil {
		return err
	}
	if _, err := os.Stat(head); err == nil {
		return nil
	}
	if u.TailOff < u.Size {
		b, err := readAt(dev, u.TailOff, u.Size-u.TailOff)
		if err != nil {
			return err
		}
		if err := fsutil.WriteFileSync(tail, b, 0o600); err != nil {
			return fmt.Errorf("back up tail of %s: %w", dev, err)
		}
	}
	b, err := readAt(dev, 0, u.HeadLen)
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileSync(head, b, 0o600); err != nil {
		return fmt.Errorf("back up head of %s: %w", dev, err)
	}
	return nil
}

// changed reports whether the device differs from the backup; ok is false
// when there is no backup (the format never started).
func (u formatUndo) changed(env *atomic.Env, dev string) (changed, ok bool, err error) {
	head, tail, err := u.paths(env)
	if err != nil {
		return false, false, err
	}
	hb, err := os.ReadFile(head)
	if errors.Is(err, os.ErrNotExist) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	cur, err := readAt(dev, 0, int64(len(hb)))
	if err != nil {
		return false, true, err
	}
	if !bytes.Equal(cur, hb) {
		return true, true, nil
	}
	if tb, err := os.ReadFile(tail); err == nil {
		cur, err := readAt(dev, u.TailOff, int64(len(tb)))
		if err != nil {
			return false, true, err
		}
		return !bytes.Equal(cur, tb), true, nil
	}
	return false, true, nil
}

// restore writes the backed-up bytes back.
func (u formatUndo) restore(env *atomic.Env, dev string) error {
	head, tail, err := u.paths(env)
	if err != nil {
		return err
	}
	if tb, err := os.ReadFile(tail); err == nil {
		if err := writeAt(dev, u.TailOff, tb); err != nil {
			return err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	hb, err := os.ReadFile(head)
	if err != nil {
		return err
	}
	return writeAt(dev, 0, hb)
}

func (f Format) argv(uuid string) []string {
	a := []string{"cryptsetup", "luksFormat", "--batch-mode", "--type", f.luksType()}
	add := func(flag, v string) {
		if v != "" && v != "0" {
			a = append(a, flag, v)
		}
	}
	add("--cipher", f.Cipher)
	add("--key-size", strconv.Itoa(f.KeySize))
	add("--hash", f.Hash)
	if f.luksType() == "luks2" || f.PBKDF != "" {
		add("--pbkdf", f.PBKDF)
	}
	add("--pbkdf-memory", strconv.Itoa(f.PBKDFMemory))
	add("--pbkdf-parallel", strconv.Itoa(f.PBKDFParallel))
	add("--pbkdf-force-iterations", strconv.Itoa(f.PBKDFIterations))
	add("--iter-time", strconv.Itoa(f.IterTime))
	add("--label", f.Label)
	a = append(a, "--uuid", uuid)
	return a
}

func doFormat(ctx context.Context, env *atomic.Env, f Format, u formatUndo) (FormatResult, error) {
	res := FormatResult{Device: f.Device, UUID: u.UUID, Type: f.luksType()}
	if !env.Dry("back up the first %d and last %d bytes of %s", u.HeadLen, u.Size-u.TailOff, f.Device) {
		if err := u.backup(env, f.Device); err != nil {
			return res, err
		}
	}
	c := run.Cmd{Argv: f.argv(u.UUID), Kind: run.Mutation}
	if err := f.key().cmd(&c); err != nil {
		return res, err
	}
	c.Argv = append(c.Argv, f.Device)
	if _, err := env.Runner.Run(ctx, c); err != nil {
		err = classify(err)
		if env.DryRun {
			return res, err
		}
		// leave the device as it was: nothing changed on a failed format
		if ch, ok, cerr := u.changed(env, f.Device); cerr == nil && ok && ch {
			if rerr := u.restore(env, f.Device); rerr != nil {
				return res, fmt.Errorf("%w (and restoring %s failed: %v)", err, f.Device, rerr)
			}
		}
		if run.StderrContains(err, "not available", "not supported", "Invalid", "Cannot use") {
			return res, fmt.Errorf("%w: %w", atomic.ErrInvalid, err)
		}
		return res, err
	}
	return res, nil
}

func undoFormat(ctx context.Context, env *atomic.Env, f Format, u formatUndo, _ FormatResult) error {
	ch, ok, err := u.changed(env, f.Device)
	if err != nil {
		return err
	}
	if !ok || !ch {
		return nil // never formatted, or already restored
	}
	if h, err := ReadHeader(f.Device); err == nil && !strings.EqualFold(h.UUID, u.UUID) {
		return fmt.Errorf("%s holds LUKS header %s, not the one this step wrote (%s): not touching it", f.Device, h.UUID, u.UUID)
	}
	if err := checkNotInUse(f.Device); err != nil {
		return fmt.Errorf("cannot restore %s: %w", f.Device, err)
	}
	if env.Dry("restore the first %d bytes of %s", u.HeadLen, f.Device) {
		return nil
	}
	return u.restore(env, f.Device)
}

// checkFormat: the effect is present when the device no longer matches
// the backup taken right before luksFormat (a complete header, or a
// partial write the undo must restore).
func checkFormat(ctx context.Context, env *atomic.Env, f Format, u formatUndo) (bool, FormatResult, error) {
	res := FormatResult{Device: f.Device, UUID: u.UUID, Type: f.luksType()}
	ch, ok, err := u.changed(env, f.Device)
	if err != nil || !ok || !ch {
		return false, res, err
	}
	return true, res, nil
}

func init() {
	atomic.Register(atomic.Def[Format, formatUndo, FormatResult]{
		Doc:     "LUKS-format a device (refuses any signature unless forced); undo restores the bytes that were at its head and tail",
		Prepare: prepareFormat,
		Do:      doFormat,
		Undo:    undoFormat,
		Check:   checkFormat,
	})
}
