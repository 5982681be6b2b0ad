package blockdev

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

func init() {
	atomic.Register(atomic.Def[LoopAttach, loopAttachUndo, Loop]{
		Doc:     "attach a file to a free loop device (result: the device); undo detaches only a device this step attached",
		Prepare: prepareLoopAttach,
		Do:      doLoopAttach,
		Undo:    undoLoopAttach,
		Check:   checkLoopAttach,
	})
	atomic.Register(atomic.Def[LoopDetach, Loop, struct{}]{
		Doc:     "detach a loop device; undo attaches the same file to the same device again",
		Prepare: prepareLoopDetach,
		Do:      doLoopDetach,
		Undo:    undoLoopDetach,
		Check:   checkLoopDetach,
	})
}

// Loop is an attached loop device.
type Loop struct {
	Device    string `json:"device"`
	File      string `json:"file"`
	Offset    int64  `json:"offset,omitempty"`
	SizeLimit int64  `json:"sizelimit,omitempty"`
	ReadOnly  bool   `json:"ro,omitempty"`
}

// ParseLosetup decodes 'losetup --json --list' output.
func ParseLosetup(out []byte) ([]Loop, error) {
	var doc struct {
		Loops []struct {
			Name      string  `json:"name"`
			BackFile  *string `json:"back-file"`
			Offset    int64   `json:"offset"`
			SizeLimit int64   `json:"sizelimit"`
			RO        roBool  `json:"ro"`
		} `json:"loopdevices"`
	}
	if len(strings.TrimSpace(string(out))) == 0 {
		return nil, nil // losetup prints nothing when no device matches
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("parse losetup output: %w", err)
	}
	loops := make([]Loop, 0, len(doc.Loops))
	for _, l := range doc.Loops {
		if l.Offset < 0 || l.SizeLimit < 0 {
			return nil, fmt.Errorf("parse losetup output: negative offset or sizelimit on %s", l.Name)
		}
		f := strings.TrimSuffix(str(l.BackFile), " (deleted)")
		loops = append(loops, Loop{Device: l.Name, File: f, Offset: l.Offset, SizeLimit: l.SizeLimit, ReadOnly: bool(l.RO)})
	}
	return loops, nil
}

// Loops lists attached loop devices (one losetup call).
func Loops(ctx context.Context, r run.Runner) ([]Loop, error) {
	out, err := run.Output(ctx, r, "losetup", "--json", "--list")
	if err != nil {
		return nil, fmt.Errorf("losetup: %w", err)
	}
	return ParseLosetup(out)
}

// LoopsOf lists the loop devices backed by file.
func LoopsOf(ctx context.Context, r run.Runner, file string) ([]Loop, error) {
	out, err := run.Output(ctx, r, "losetup", "--json", "--list", "--associated", file)
	if err != nil {
		return nil, fmt.Errorf("losetup: %w", err)
	}
	loops, err := ParseLosetup(out)
	if err != nil {
		return nil, err
	}
	var mine []Loop
	for _, l := range loops {
		if l.File == file {
			mine = append(mine, l)
		}
	}
	return mine, nil
}

// LoopAttach is the loop.attach step: attach File to a free loop device.
type LoopAttach struct {
	File       string `json:"file" doc:"absolute path of the backing file"`
	ReadOnly   bool   `json:"ro,omitempty" doc:"attach read-only"`
	NoPartscan bool   `json:"no_partscan,omitempty" doc:"do not scan the device for partitions (default: scan, -P)"`
}

// StepKind names the kind.
func (LoopAttach) StepKind() string { return "loop.attach" }

// Validate checks the parameters without touching the system.
func (l LoopAttach) Validate() error { return checkFilePath(l.File) }

func checkFilePath(p string) error {
	if p == "" {
		return errors.New("file is required")
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("file %q must be a clean absolute path", p)
	}
	return nil
}

type loopAttachUndo struct {
	// File is the canonical path losetup reports for the backing file.
	File string `json:"file"`
	// Before lists devices already backed by File before this step.
	Before []string `json:"before,omitempty"`
}

func canonicalFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("%w: backing file: %w", atomic.ErrInvalid, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%w: backing file %s is not a regular file", atomic.ErrInvalid, path)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("%w: backing file: %w", atomic.ErrInvalid, err)
	}
	return real, nil
}

func prepareLoopAttach(ctx context.Context, env *atomic.Env, p LoopAttach) (atomic.Plan[loopAttachUndo, Loop], error) {
	var plan atomic.Plan[loopAttachUndo, Loop]
	f, err := canonicalFile(p.File)
	if err != nil {
		return plan, err
	}
	plan.Undo.File = f
	loops, err := LoopsOf(ctx, env.Runner, f)
	if err != nil {
		return plan, err
	}
	for _, l := range loops {
		plan.Undo.Before = append(plan.Undo.Before, l.Device)
		if l.Offset == 0 && l.SizeLimit == 0 && l.ReadOnly == p.ReadOnly && !plan.Noop {
			plan.Noop, plan.Result = true, l // already attached: reuse it, never detach it
		}
	}
	return plan, nil
}

func doLoopAttach(ctx context.Context, env *atomic.Env, p LoopAttach, u loopAttachUndo) (Loop, error) {
	argv := []string{"losetup", "--find", "--show"}
	if !p.NoPartscan {
		argv = append(argv, "--partscan")
	}
	if p.ReadOnly {
		argv = append(argv, "--read-only")
	}
	argv = append(argv, u.File)
	res, err := env.Runner.Run(ctx, run.M(argv...))
	if err != nil {
		return Loop{}, fmt.Errorf("attach %s: %w", u.File, err)
	}
	dev := strings.TrimSpace(string(res.Stdout))
	if env.DryRun {
		dev = "/dev/loopN"
	}
	return Loop{Device: dev, File: u.File, ReadOnly: p.ReadOnly}, nil
}

// ours returns the loop devices backed by the file that were not there
// before the step.
func (u loopAttachUndo) ours(ctx context.Context, r run.Runner) ([]Loop, error) {
	loops, err := LoopsOf(ctx, r, u.File)
	if err != nil {
		return nil, err
	}
	var out []Loop
	for _, l := range loops {
		if !slices.Contains(u.Before, l.Device) {
			out = append(out, l)
		}
	}
	return out, nil
}

func undoLoopAttach(ctx context.Context, env *atomic.Env, p LoopAttach, u loopAttachUndo, r Loop) error {
	// Found by backing file, not by r.Device: after a crash between the
	// intent and done records the device number was never journaled.
	mine, err := u.ours(ctx, env.Runner)
	if err != nil {
		return err
	}
	for _, l := range mine {
		if err := detach(ctx, env.Runner, l.Device); err != nil {
			return err
		}
	}
	return nil
}

// isLoopGone reports whether losetup failed because the loop device is
// not attached or does not exist: "No such device or address" (ENXIO), "No
// such file or directory", and "failed to use device: No such device"
// (util-linux 2.38 for a device node that is not there, captured in
// testdata/capture/blockdev/err-losetup-detach-missing.txt).
func isLoopGone(err error) bool {
	return run.StderrContains(err, "no such device", "no such file")
}

func detach(ctx context.Context, r run.Runner, dev string) error {
	if err := run.Mutate(ctx, r, "losetup", "--detach", dev); err != nil {
		if isLoopGone(err) {
			return nil // already gone
		}
		return fmt.Errorf("detach %s: %w", dev, err)
	}
	waitDetached(ctx, r, dev)
	return nil
}

// waitDetached waits (up to 5 s) until the kernel has let go of a loop
// device just detached. A device still open somewhere (a probe, udev) is
// detached lazily, when its last user closes it; until then it still
// shows its backing file, and a rollback that reported "undone" would
// leave it visible to whatever runs next. Only for commands run for real.
func waitDetached(ctx context.Context, r run.Runner, dev string) {
	if _, ok := r.(*run.Local); !ok {
		return
	}
	sys := filepath.Join("/sys/block", filepath.Base(dev), "loop", "backing_file")
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && ctx.Err() == nil; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(sys); errors.Is(err, os.ErrNotExist) {
			return
		}
	}
}

func checkLoopAttach(ctx context.Context, env *atomic.Env, p LoopAttach, u loopAttachUndo) (bool, Loop, error) {
	mine, err := u.ours(ctx, env.Runner)
	if err != nil || len(mine) == 0 {
		return false, Loop{}, err
	}
	return true, mine[0], nil
}

// LoopDetach is the loop.detach step.
type LoopDetach struct {
	Device string `json:"device" doc:"loop device, e.g. /dev/loop3"`
}

// StepKind names the kind.
func (LoopDetach) StepKind() string { return "loop.detach" }

// Validate checks the parameters.
func (l LoopDetach) Validate() error {
	if err := checkDevPath(l.Device); err != nil {
		return err
	}
	if !strings.HasPrefix(filepath.Base(l.Device), "loop") {
		return fmt.Errorf("%s is not a loop device", l.Device)
	}
	return nil
}

func loopInfo(ctx context.Context, r run.Runner, dev string) (Loop, bool, error) {
	res, err := r.Run(ctx, run.Cmd{Argv: []string{"losetup", "--json", "--list", dev}, Kind: run.Query})
	if err != nil {
		if isLoopGone(err) {
			return Loop{}, false, nil
		}
		return Loop{}, false, fmt.Errorf("losetup: %w", err)
	}
	loops, err := ParseLosetup(res.Stdout)
	if err != nil || len(loops) == 0 || loops[0].File == "" {
		return Loop{}, false, err // a free device lists with back-file null
	}
	return loops[0], true, nil
}

func prepareLoopDetach(ctx context.Context, env *atomic.Env, p LoopDetach) (atomic.Plan[Loop, struct{}], error) {
	var plan atomic.Plan[Loop, struct{}]
	l, ok, err := loopInfo(ctx, env.Runner, p.Device)
	if err != nil {
		return plan, err
	}
	if !ok {
		plan.Noop = true
		return plan, nil
	}
	dev, err := ProbeOne(ctx, env.Runner, p.Device)
	if err != nil {
		return plan, err
	}
	if why := dev.InUse(); why != "" {
		return plan, fmt.Errorf("%w: %s", atomic.ErrInvalid, why)
	}
	plan.Undo = l
	return plan, nil
}

func doLoopDetach(ctx context.Context, env *atomic.Env, p LoopDetach, u Loop) (struct{}, error) {
	return struct{}{}, detach(ctx, env.Runner, p.Device)
}

func undoLoopDetach(ctx context.Context, env *atomic.Env, p LoopDetach, u Loop, _ struct{}) error {
	l, ok, err := loopInfo(ctx, env.Runner, p.Device)
	if err != nil {
		return err
	}
	if ok {
		if l.File == u.File {
			return nil // never detached, or already back
		}
		return fmt.Errorf("%s is now attached to %s; not re-attaching %s", p.Device, l.File, u.File)
	}
	argv := []string{"losetup", "--partscan"}
	if u.ReadOnly {
		argv = append(argv, "--read-only")
	}
	if u.Offset > 0 {
		argv = append(argv, "--offset", fmt.Sprint(u.Offset))
	}
	if u.SizeLimit > 0 {
		argv = append(argv, "--sizelimit", fmt.Sprint(u.SizeLimit))
	}
	argv = append(argv, p.Device, u.File)
	if err := run.Mutate(ctx, env.Runner, argv...); err != nil {
		return fmt.Errorf("re-attach %s: %w", u.File, err)
	}
	return nil
}

func checkLoopDetach(ctx context.Context, env *atomic.Env, p LoopDetach, u Loop) (bool, struct{}, error) {
	l, ok, err := loopInfo(ctx, env.Runner, p.Device)
	return !ok || l.File != u.File, struct{}{}, err
}
