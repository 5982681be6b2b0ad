package xen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/fsutil"
)

func init() {
	atomic.Register(atomic.Def[WriteConfig, configUndo, ConfigResult]{
		Doc:     "write a domU configuration file <dir>/<name>.cfg; undo restores the previous file or removes it",
		Prepare: prepareWriteConfig, Do: doWriteConfig, Undo: undoWriteConfig, Check: checkWriteConfig,
	})
	atomic.Register(atomic.Def[CreateDomain, struct{}, struct{}]{
		Doc:     "start a domain from <dir>/<name>.cfg (xl create); undo destroys it",
		Prepare: prepareCreate, Do: doCreate, Undo: undoCreate, Check: checkCreate,
	})
	atomic.Register(atomic.Def[ShutdownDomain, struct{}, Stopped]{
		Doc:     "shut a domain down (xl shutdown -w), destroying it after the timeout; undo creates it again from its config",
		Prepare: prepareShutdown, Do: doShutdown, Undo: undoShutdown, Check: checkShutdown,
	})
	atomic.Register(atomic.Def[DestroyDomain, struct{}, struct{}]{
		Doc:     "destroy a domain (xl destroy); undo creates it again from its config",
		Prepare: prepareDestroy, Do: doDestroy, Undo: undoDestroy, Check: checkDestroy,
	})
	atomic.Register(atomic.Def[PauseDomain, struct{}, struct{}]{
		Doc:     "pause a domain (xl pause); undo unpauses it",
		Prepare: preparePause, Do: doPause, Undo: undoPause, Check: checkPause,
	})
	atomic.Register(atomic.Def[UnpauseDomain, struct{}, struct{}]{
		Doc:     "unpause a domain (xl unpause); undo pauses it",
		Prepare: prepareUnpause, Do: doUnpause, Undo: undoUnpause, Check: checkUnpause,
	})
}

func checkDir(dir string) error {
	if dir == "" || !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return fmt.Errorf("config dir %q: want a clean absolute path", dir)
	}
	return nil
}

// WriteConfig is the xen.config.write step.
type WriteConfig struct {
	Dir    string     `json:"dir" doc:"configuration directory (site xen.config_dir, default /etc/xen)"`
	Config DomuConfig `json:"config" doc:"the domU configuration"`
}

// StepKind names the kind.
func (WriteConfig) StepKind() string { return "xen.config.write" }

// Validate checks the parameters without touching the system.
func (p WriteConfig) Validate() error {
	if err := checkDir(p.Dir); err != nil {
		return err
	}
	return p.Config.Validate()
}

// ConfigResult is what xen.config.write reports.
type ConfigResult struct {
	Path string `json:"path"`
}

type configUndo struct {
	Existed bool   `json:"existed"`
	Mode    uint32 `json:"mode,omitempty"`
}

func prepareWriteConfig(_ context.Context, _ *atomic.Env, p WriteConfig) (atomic.Plan[configUndo, ConfigResult], error) {
	var plan atomic.Plan[configUndo, ConfigResult]
	path := ConfigPath(p.Dir, p.Config.Name)
	want, _ := p.Config.Format()
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return plan, nil
	}
	if err != nil {
		return plan, err
	}
	if !fi.Mode().IsRegular() {
		return plan, fmt.Errorf("%s exists and is not a regular file", path)
	}
	cur, err := os.ReadFile(path)
	if err != nil {
		return plan, err
	}
	if bytes.Equal(cur, want) {
		plan.Noop, plan.Result = true, ConfigResult{Path: path}
		return plan, nil
	}
	plan.Undo = configUndo{Existed: true, Mode: uint32(fi.Mode().Perm())}
	return plan, nil
}

// writeAtomic replaces path with data (mode exactly mode) atomically and
// durably.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	if err := fsutil.WriteFileSync(path, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func doWriteConfig(_ context.Context, env *atomic.Env, p WriteConfig, u configUndo) (ConfigResult, error) {
	path := ConfigPath(p.Dir, p.Config.Name)
	data, err := p.Config.Format()
	if err != nil {
		return ConfigResult{}, err
	}
	if env.Dry("write xen config %s (%d bytes)", path, len(data)) {
		return ConfigResult{Path: path}, nil
	}
	mode := os.FileMode(0o600)
	if u.Existed {
		dir, err := env.StepDir()
		if err != nil {
			return ConfigResult{}, err
		}
		bk := filepath.Join(dir, "backup.cfg")
		if _, err := os.Stat(bk); errors.Is(err, os.ErrNotExist) {
			old, err := os.ReadFile(path)
			if err != nil {
				return ConfigResult{}, fmt.Errorf("back up %s: %w", path, err)
			}
			if err := writeAtomic(bk, old, 0o600); err != nil {
				return ConfigResult{}, fmt.Errorf("back up %s: %w", path, err)
			}
		}
		mode = os.FileMode(u.Mode)
	}
	return ConfigResult{Path: path}, writeAtomic(path, data, mode)
}

func undoWriteConfig(_ context.Context, env *atomic.Env, p WriteConfig, u configUndo, _ ConfigResult) error {
	path := ConfigPath(p.Dir, p.Config.Name)
	os.Remove(path + fsutil.TempSuffix) // left by a crash inside writeAtomic
	if !u.Existed {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", path, err)
		}
		return nil
	}
	dir, err := env.StepDir()
	if err != nil {
		return err
	}
	old, err := os.ReadFile(filepath.Join(dir, "backup.cfg"))
	if errors.Is(err, os.ErrNotExist) {
		return nil // Do never got as far as replacing the file
	}
	if err != nil {
		return fmt.Errorf("read backup of %s: %w", path, err)
	}
	return writeAtomic(path, old, os.FileMode(u.Mode))
}

func checkWriteConfig(_ context.Context, _ *atomic.Env, p WriteConfig, _ configUndo) (bool, ConfigResult, error) {
	path := ConfigPath(p.Dir, p.Config.Name)
	want, _ := p.Config.Format()
	cur, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, ConfigResult{}, nil
	}
	if err != nil {
		return false, ConfigResult{}, err
	}
	return bytes.Equal(cur, want), ConfigResult{Path: path}, nil
}

// DomainRef names a domain and the directory holding its configuration
// (<dir>/<name>.cfg), from which an undo creates it again.
type DomainRef struct {
	Name string `json:"name" doc:"domain name"`
	Dir  string `json:"dir" doc:"configuration directory (site xen.config_dir, default /etc/xen)"`
}

// Validate checks the parameters without touching the system.
func (p DomainRef) Validate() error {
	if err := ValidName(p.Name); err != nil {
		return err
	}
	return checkDir(p.Dir)
}

func (p DomainRef) path() string { return ConfigPath(p.Dir, p.Name) }

// must returns the domain's state; an unknown domain is an error (except
// in a dry run, where an earlier step would have created it).
func (p DomainRef) must(ctx context.Context, env *atomic.Env) (State, error) {
	st, err := StateOf(ctx, env.Runner, p.Name)
	if err == nil && st == StateAbsent && !env.DryRun {
		return st, fmt.Errorf("domain %s: no such domain", p.Name)
	}
	return st, err
}

func recreate(ctx context.Context, env *atomic.Env, p DomainRef) error {
	st, err := StateOf(ctx, env.Runner, p.Name)
	if err != nil {
		return err
	}
	if st != StateAbsent {
		return nil
	}
	return Create(ctx, env.Runner, p.path())
}

// CreateDomain is the xen.domain.create step.
type CreateDomain DomainRef

// StepKind names the kind.
func (CreateDomain) StepKind() string { return "xen.domain.create" }

// Validate checks the parameters without touching the system.
func (p CreateDomain) Validate() error { return DomainRef(p).Validate() }

func prepareCreate(ctx context.Context, env *atomic.Env, p CreateDomain) (atomic.Plan[struct{}, struct{}], error) {
	st, err := StateOf(ctx, env.Runner, p.Name)
	return atomic.Plan[struct{}, struct{}]{Noop: err == nil && st != StateAbsent}, err
}

func doCreate(ctx context.Context, env *atomic.Env, p CreateDomain, _ struct{}) (struct{}, error) {
	return struct{}{}, Create(ctx, env.Runner, DomainRef(p).path())
}

func undoCreate(ctx context.Context, env *atomic.Env, p CreateDomain, _ struct{}, _ struct{}) error {
	return Destroy(ctx, env.Runner, p.Name)
}

func checkCreate(ctx context.Context, env *atomic.Env, p CreateDomain, _ struct{}) (bool, struct{}, error) {
	st, err := StateOf(ctx, env.Runner, p.Name)
	return err == nil && st != StateAbsent, struct{}{}, err
}

// ShutdownDomain is the xen.domain.shutdown step.
type ShutdownDomain struct {
	DomainRef
	Timeout string `json:"timeout,omitempty" doc:"how long to wait before destroying it (default 60s)"`
}

// StepKind names the kind.
func (ShutdownDomain) StepKind() string { return "xen.domain.shutdown" }

// Validate checks the parameters without touching the system.
func (p ShutdownDomain) Validate() error {
	if err := p.DomainRef.Validate(); err != nil {
		return err
	}
	_, err := p.timeout()
	return err
}

func (p ShutdownDomain) timeout() (time.Duration, error) {
	if p.Timeout == "" {
		return time.Minute, nil
	}
	d, err := time.ParseDuration(p.Timeout)
	if err != nil || d <= 0 || d > 24*time.Hour {
		return 0, fmt.Errorf("timeout %q: want a positive duration up to 24h (90s, 5m)", p.Timeout)
	}
	return d, nil
}

// Stopped is the result of xen.domain.shutdown.
type Stopped struct {
	// Destroyed says the domain did not stop in time and was destroyed.
	Destroyed bool `json:"destroyed"`
}

func prepareShutdown(ctx context.Context, env *atomic.Env, p ShutdownDomain) (atomic.Plan[struct{}, Stopped], error) {
	_, err := p.must(ctx, env)
	return atomic.Plan[struct{}, Stopped]{}, err
}

func doShutdown(ctx context.Context, env *atomic.Env, p ShutdownDomain, _ struct{}) (Stopped, error) {
	t, _ := p.timeout()
	d, err := Shutdown(ctx, env.Runner, p.Name, t)
	return Stopped{Destroyed: d}, err
}

func undoShutdown(ctx context.Context, env *atomic.Env, p ShutdownDomain, _ struct{}, _ Stopped) error {
	return recreate(ctx, env, p.DomainRef)
}

func checkShutdown(ctx context.Context, env *atomic.Env, p ShutdownDomain, _ struct{}) (bool, Stopped, error) {
	st, err := StateOf(ctx, env.Runner, p.Name)
	return err == nil && st == StateAbsent, Stopped{}, err
}

// DestroyDomain is the xen.domain.destroy step.
type DestroyDomain DomainRef

// StepKind names the kind.
func (DestroyDomain) StepKind() string { return "xen.domain.destroy" }

// Validate checks the parameters without touching the system.
func (p DestroyDomain) Validate() error { return DomainRef(p).Validate() }

func prepareDestroy(ctx context.Context, env *atomic.Env, p DestroyDomain) (atomic.Plan[struct{}, struct{}], error) {
	_, err := DomainRef(p).must(ctx, env)
	return atomic.Plan[struct{}, struct{}]{}, err
}

func doDestroy(ctx context.Context, env *atomic.Env, p DestroyDomain, _ struct{}) (struct{}, error) {
	return struct{}{}, Destroy(ctx, env.Runner, p.Name)
}

func undoDestroy(ctx context.Context, env *atomic.Env, p DestroyDomain, _ struct{}, _ struct{}) error {
	return recreate(ctx, env, DomainRef(p))
}

func checkDestroy(ctx context.Context, env *atomic.Env, p DestroyDomain, _ struct{}) (bool, struct{}, error) {
	st, err := StateOf(ctx, env.Runner, p.Name)
	return err == nil && st == StateAbsent, struct{}{}, err
}

// PauseDomain is the xen.domain.pause step.
type PauseDomain struct {
	Name string `json:"name" doc:"domain name"`
}

// StepKind names the kind.
func (PauseDomain) StepKind() string { return "xen.domain.pause" }

// Validate checks the parameters without touching the system.
func (p PauseDomain) Validate() error { return ValidName(p.Name) }

func pausedState(ctx context.Context, env *atomic.Env, name string) (bool, error) {
	st, err := StateOf(ctx, env.Runner, name)
	if err == nil && st == StateAbsent && !env.DryRun {
		return false, fmt.Errorf("domain %s: no such domain", name)
	}
	return st == StatePaused, err
}

func preparePause(ctx context.Context, env *atomic.Env, p PauseDomain) (atomic.Plan[struct{}, struct{}], error) {
	paused, err := pausedState(ctx, env, p.Name)
	return atomic.Plan[struct{}, struct{}]{Noop: paused}, err
}

func doPause(ctx context.Context, env *atomic.Env, p PauseDomain, _ struct{}) (struct{}, error) {
	return struct{}{}, Pause(ctx, env.Runner, p.Name)
}

func undoPause(ctx context.Context, env *atomic.Env, p PauseDomain, _ struct{}, _ struct{}) error {
	st, err := StateOf(ctx, env.Runner, p.Name)
	if err != nil || st != StatePaused {
		return err // gone or already running: nothing to undo
	}
	return Unpause(ctx, env.Runner, p.Name)
}

func checkPause(ctx context.Context, env *atomic.Env, p PauseDomain, _ struct{}) (bool, struct{}, error) {
	paused, err := pausedState(ctx, env, p.Name)
	return paused, struct{}{}, err
}

// UnpauseDomain is the xen.domain.unpause step.
type UnpauseDomain PauseDomain

// StepKind names the kind.
func (UnpauseDomain) StepKind() string { return "xen.domain.unpause" }

// Validate checks the parameters without touching the system.
func (p UnpauseDomain) Validate() error { return ValidName(p.Name) }

func prepareUnpause(ctx context.Context, env *atomic.Env, p UnpauseDomain) (atomic.Plan[struct{}, struct{}], error) {
	paused, err := pausedState(ctx, env, p.Name)
	return atomic.Plan[struct{}, struct{}]{Noop: err == nil && !paused && !env.DryRun}, err
}

func doUnpause(ctx context.Context, env *atomic.Env, p UnpauseDomain, _ struct{}) (struct{}, error) {
	return struct{}{}, Unpause(ctx, env.Runner, p.Name)
}

func undoUnpause(ctx context.Context, env *atomic.Env, p UnpauseDomain, _ struct{}, _ struct{}) error {
	st, err := StateOf(ctx, env.Runner, p.Name)
	if err != nil || st == StateAbsent || st == StatePaused {
		return err
	}
	return Pause(ctx, env.Runner, p.Name)
}

func checkUnpause(ctx context.Context, env *atomic.Env, p UnpauseDomain, _ struct{}) (bool, struct{}, error) {
	paused, err := pausedState(ctx, env, p.Name)
	return err == nil && !paused, struct{}{}, err
}
