package drbd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/fsutil"
	"github.com/bofhkit/bofh/run"
)

func init() {
	atomic.Register(atomic.Def[WriteConfig, configUndo, ConfigResult]{
		Doc:     "write a DRBD resource file <dir>/<name>.res from a typed spec, allocating port and minor; undo removes it",
		Prepare: prepareConfig,
		Do:      doConfig,
		Undo:    undoConfig,
		Check:   checkConfig,
	})
	atomic.Register(atomic.Def[CreateMD, mdUndo, struct{}]{
		Doc:     "write DRBD metadata (drbdadm create-md); refuses a disk holding a signature unless forced; undo wipes it (wipe-md)",
		Prepare: prepareCreateMD,
		Do:      doCreateMD,
		Undo:    undoCreateMD,
		Check:   checkCreateMD,
	})
	atomic.Register(atomic.Def[Up, struct{}, struct{}]{
		Doc: "bring a DRBD resource up (drbdadm up); undo takes it down",
		Prepare: func(ctx context.Context, env *atomic.Env, p Up) (atomic.Plan[struct{}, struct{}], error) {
			var plan atomic.Plan[struct{}, struct{}]
			st, err := State(ctx, env.Runner, p.Resource)
			plan.Noop = err == nil && st.Up
			return plan, err
		},
		Do: func(ctx context.Context, env *atomic.Env, p Up, _ struct{}) (struct{}, error) {
			return struct{}{}, adm(ctx, env.Runner, "up", p.Resource)
		},
		Undo: func(ctx context.Context, env *atomic.Env, p Up, _ struct{}, _ struct{}) error {
			return down(ctx, env.Runner, p.Resource)
		},
		Check: func(ctx context.Context, env *atomic.Env, p Up, _ struct{}) (bool, struct{}, error) {
			st, err := State(ctx, env.Runner, p.Resource)
			return err == nil && st.Up, struct{}{}, err
		},
	})
	atomic.Register(atomic.Def[Down, downUndo, struct{}]{
		Doc: "take a DRBD resource down (drbdadm down); undo brings it up again, primary if it was",
		Prepare: func(ctx context.Context, env *atomic.Env, p Down) (atomic.Plan[downUndo, struct{}], error) {
			var plan atomic.Plan[downUndo, struct{}]
			st, err := State(ctx, env.Runner, p.Resource)
			if err != nil {
				return plan, err
			}
			plan.Noop = !st.Up
			plan.Undo.Primary = st.Role == "Primary"
			return plan, nil
		},
		Do: func(ctx context.Context, env *atomic.Env, p Down, _ downUndo) (struct{}, error) {
			return struct{}{}, adm(ctx, env.Runner, "down", p.Resource)
		},
		Undo: func(ctx context.Context, env *atomic.Env, p Down, u downUndo, _ struct{}) error {
			st, err := State(ctx, env.Runner, p.Resource)
			if err != nil {
				return err
			}
			if !st.Up {
				if err := adm(ctx, env.Runner, "up", p.Resource); err != nil {
					return err
				}
			}
			if u.Primary && st.Role != "Primary" {
				return adm(ctx, env.Runner, "primary", p.Resource)
			}
			return nil
		},
		// The effect is present while the resource is down, and also while
		// it is up but no longer Primary as it was: an undo interrupted
		// between its up and its primary left it so, and a second rollback
		// must still promote it.
		Check: func(ctx context.Context, env *atomic.Env, p Down, u downUndo) (bool, struct{}, error) {
			st, err := State(ctx, env.Runner, p.Resource)
			return err == nil && (!st.Up || (u.Primary && st.Role != "Primary")), struct{}{}, err
		},
	})
	atomic.Register(atomic.Def[Primary, struct{}, struct{}]{
		Doc:     "promote a DRBD resource (drbdadm primary, --force for the first promotion of new data); undo demotes it",
		Prepare: roleIs[Primary]("Primary"),
		Do: func(ctx context.Context, env *atomic.Env, p Primary, _ struct{}) (struct{}, error) {
			if p.Force {
				return struct{}{}, adm(ctx, env.Runner, "primary", "--force", p.Resource)
			}
			return struct{}{}, adm(ctx, env.Runner, "primary", p.Resource)
		},
		Undo:  setRole[Primary]("secondary", "Secondary"),
		Check: checkRole[Primary]("Primary"),
	})
	atomic.Register(atomic.Def[Secondary, struct{}, struct{}]{
		Doc:     "demote a DRBD resource (drbdadm secondary); undo promotes it again",
		Prepare: roleIs[Secondary]("Secondary"),
		Do: func(ctx context.Context, env *atomic.Env, p Secondary, _ struct{}) (struct{}, error) {
			return struct{}{}, adm(ctx, env.Runner, "secondary", p.Resource)
		},
		Undo:  setRole[Secondary]("primary", "Primary"),
		Check: checkRole[Secondary]("Secondary"),
	})
	atomic.Register(atomic.Def[Connect, struct{}, struct{}]{
		Doc: "connect a DRBD resource to its peers (drbdadm connect); undo disconnects it",
		Prepare: func(ctx context.Context, env *atomic.Env, p Connect) (atomic.Plan[struct{}, struct{}], error) {
			var plan atomic.Plan[struct{}, struct{}]
			st, err := State(ctx, env.Runner, p.Resource)
			if err != nil {
				return plan, err
			}
			if !st.Up {
				return plan, fmt.Errorf("%w: resource %s is not up", atomic.ErrInvalid, p.Resource)
			}
			plan.Noop = st.ConnState != "StandAlone"
			return plan, nil
		},
		Do: func(ctx context.Context, env *atomic.Env, p Connect, _ struct{}) (struct{}, error) {
			return struct{}{}, adm(ctx, env.Runner, "connect", p.Resource)
		},
		Undo: func(ctx context.Context, env *atomic.Env, p Connect, _ struct{}, _ struct{}) error {
			st, err := State(ctx, env.Runner, p.Resource)
			if err != nil || !st.Up || st.ConnState == "StandAlone" {
				return err
			}
			return adm(ctx, env.Runner, "disconnect", p.Resource)
		},
	})
	atomic.Register(atomic.Def[Disconnect, struct{}, struct{}]{
		Doc: "disconnect a DRBD resource from its peers (drbdadm disconnect); undo connects it again",
		Prepare: func(ctx context.Context, env *atomic.Env, p Disconnect) (atomic.Plan[struct{}, struct{}], error) {
			var plan atomic.Plan[struct{}, struct{}]
			st, err := State(ctx, env.Runner, p.Resource)
			plan.Noop = err == nil && (!st.Up || st.ConnState == "StandAlone")
			return plan, err
		},
		Do: func(ctx context.Context, env *atomic.Env, p Disconnect, _ struct{}) (struct{}, error) {
			return struct{}{}, adm(ctx, env.Runner, "disconnect", p.Resource)
		},
		Undo: func(ctx context.Context, env *atomic.Env, p Disconnect, _ struct{}, _ struct{}) error {
			st, err := State(ctx, env.Runner, p.Resource)
			if err != nil || !st.Up || st.ConnState != "StandAlone" {
				return err
			}
			return adm(ctx, env.Runner, "connect", p.Resource)
		},
	})
	atomic.Register(atomic.Def[Adjust, struct{}, struct{}]{
		Doc: "apply a DRBD resource's config file to the running resource (drbdadm adjust); undo is a no-op (the config step's undo restores the file)",
		Do: func(ctx context.Context, env *atomic.Env, p Adjust, _ struct{}) (struct{}, error) {
			return struct{}{}, adm(ctx, env.Runner, "adjust", p.Resource)
		},
		Undo: func(context.Context, *atomic.Env, Adjust, struct{}, struct{}) error { return nil },
	})
	atomic.Register(atomic.Def[Verify, struct{}, struct{}]{
		Doc: "start an online verify of a DRBD resource (drbdadm verify); changes no data, undo is a no-op",
		Do: func(ctx context.Context, env *atomic.Env, p Verify, _ struct{}) (struct{}, error) {
			return struct{}{}, adm(ctx, env.Runner, "verify", p.Resource)
		},
		Undo: func(context.Context, *atomic.Env, Verify, struct{}, struct{}) error { return nil },
	})
	atomic.Register(atomic.Def[Invalidate, struct{}, struct{}]{
		Doc:          "discard this node's copy of a DRBD resource and resync it from the peer (drbdadm invalidate); irreversible: runs at commit",
		Irreversible: true,
		Do: func(ctx context.Context, env *atomic.Env, p Invalidate, _ struct{}) (struct{}, error) {
			return struct{}{}, adm(ctx, env.Runner, "invalidate", p.Resource)
		},
	})
}

// Up is the drbd.up step.
type Up struct {
	Resource string `json:"resource" doc:"DRBD resource name"`
}

// Validate checks the resource name.
func (p Up) Validate() error { return ValidName(p.Resource) }

func (p Up) name() string { return p.Resource }

// Down is the drbd.down step.
type Down struct {
	Resource string `json:"resource" doc:"DRBD resource name"`
}

// Validate checks the resource name.
func (p Down) Validate() error { return ValidName(p.Resource) }

func (p Down) name() string { return p.Resource }

// Secondary is the drbd.secondary step.
type Secondary struct {
	Resource string `json:"resource" doc:"DRBD resource name"`
}

// Validate checks the resource name.
func (p Secondary) Validate() error { return ValidName(p.Resource) }

func (p Secondary) name() string { return p.Resource }

// Connect is the drbd.connect step.
type Connect struct {
	Resource string `json:"resource" doc:"DRBD resource name"`
}

// Validate checks the resource name.
func (p Connect) Validate() error { return ValidName(p.Resource) }

func (p Connect) name() string { return p.Resource }

// Disconnect is the drbd.disconnect step.
type Disconnect struct {
	Resource string `json:"resource" doc:"DRBD resource name"`
}

// Validate checks the resource name.
func (p Disconnect) Validate() error { return ValidName(p.Resource) }

func (p Disconnect) name() string { return p.Resource }

// Adjust is the drbd.adjust step.
type Adjust struct {
	Resource string `json:"resource" doc:"DRBD resource name"`
}

// Validate checks the resource name.
func (p Adjust) Validate() error { return ValidName(p.Resource) }

func (p Adjust) name() string { return p.Resource }

// Verify is the drbd.verify step.
type Verify struct {
	Resource string `json:"resource" doc:"DRBD resource name"`
}

// Validate checks the resource name.
func (p Verify) Validate() error { return ValidName(p.Resource) }

func (p Verify) name() string { return p.Resource }

// Invalidate is the drbd.invalidate step.
type Invalidate struct {
	Resource string `json:"resource" doc:"DRBD resource name"`
}

// Validate checks the resource name.
func (p Invalidate) Validate() error { return ValidName(p.Resource) }

func (p Invalidate) name() string { return p.Resource }

// Primary is the drbd.primary step.
type Primary struct {
	Resource string `json:"resource" doc:"DRBD resource name"`
	Force    bool   `json:"force,omitempty" doc:"promote although no node has UpToDate data (the first promotion of a new resource)"`
}

// Validate checks the resource name.
func (p Primary) Validate() error { return ValidName(p.Resource) }

func (p Primary) name() string { return p.Resource }

// StepKind names the kind.
func (Up) StepKind() string { return "drbd.up" }

// StepKind names the kind.
func (Down) StepKind() string { return "drbd.down" }

// StepKind names the kind.
func (Primary) StepKind() string { return "drbd.primary" }

// StepKind names the kind.
func (Secondary) StepKind() string { return "drbd.secondary" }

// StepKind names the kind.
func (Connect) StepKind() string { return "drbd.connect" }

// StepKind names the kind.
func (Disconnect) StepKind() string { return "drbd.disconnect" }

// StepKind names the kind.
func (Adjust) StepKind() string { return "drbd.adjust" }

// StepKind names the kind.
func (Verify) StepKind() string { return "drbd.verify" }

// StepKind names the kind.
func (Invalidate) StepKind() string { return "drbd.invalidate" }

type named interface {
	atomic.Params
	name() string
}

type downUndo struct {
	Primary bool `json:"primary"`
}

func roleIs[P named](role string) func(context.Context, *atomic.Env, P) (atomic.Plan[struct{}, struct{}], error) {
	return func(ctx context.Context, env *atomic.Env, p P) (atomic.Plan[struct{}, struct{}], error) {
		var plan atomic.Plan[struct{}, struct{}]
		st, err := State(ctx, env.Runner, p.name())
		if err != nil {
			return plan, err
		}
		if !st.Up {
			return plan, fmt.Errorf("%w: resource %s is not up", atomic.ErrInvalid, p.name())
		}
		plan.Noop = st.Role == role
		return plan, nil
	}
}

func setRole[P named](verb, role string) func(context.Context, *atomic.Env, P, struct{}, struct{}) error {
	return func(ctx context.Context, env *atomic.Env, p P, _ struct{}, _ struct{}) error {
		st, err := State(ctx, env.Runner, p.name())
		if err != nil || !st.Up || st.Role == role {
			return err
		}
		return adm(ctx, env.Runner, verb, p.name())
	}
}

func checkRole[P named](role string) func(context.Context, *atomic.Env, P, struct{}) (bool, struct{}, error) {
	return func(ctx context.Context, env *atomic.Env, p P, _ struct{}) (bool, struct{}, error) {
		st, err := State(ctx, env.Runner, p.name())
		return err == nil && st.Up && st.Role == role, struct{}{}, err
	}
}

func adm(ctx context.Context, r run.Runner, verb string, args ...string) error {
	argv := append([]string{"drbdadm", verb}, args...)
	if err := run.Mutate(ctx, r, argv...); err != nil {
		return fmt.Errorf("drbdadm %s %s: %w", verb, args[len(args)-1], err)
	}
	return nil
}

func down(ctx context.Context, r run.Runner, name string) error {
	st, err := State(ctx, r, name)
	if err != nil || !st.Up {
		return err
	}
	return adm(ctx, r, "down", name)
}

// ResState is what the portable drbdadm queries say about a resource.
type ResState struct {
	// Up is set when the resource is configured in the kernel.
	Up bool `json:"up"`
	// Role is this node's role (Primary, Secondary), "" when down.
	Role string `json:"role,omitempty"`
	// ConnState is the first connection's state (Connected,
	// StandAlone, WFConnection, Connecting, …), "" when down.
	ConnState string `json:"conn_state,omitempty"`
}

// State asks drbdadm for a resource's role and connection state. It works
// with DRBD 8.4 ("Primary/Secondary") and 9 ("Primary"). A resource that
// is not up has Up false; a resource drbdadm does not know is an error
// wrapping atomic.ErrInvalid.
func State(ctx context.Context, r run.Runner, name string) (ResState, error) {
	out, err := run.Output(ctx, r, "drbdadm", "role", name)
	if err != nil {
		switch {
		case IsNotDefined(err):
			return ResState{}, fmt.Errorf("%w: resource %s is not defined in the DRBD configuration", atomic.ErrInvalid, name)
		case IsNotUp(err):
			return ResState{}, nil
		}
		return ResState{}, fmt.Errorf("drbdadm role %s: %w", name, err)
	}
	role := firstWord(out)
	if role == "Unconfigured" || role == "" {
		return ResState{}, nil
	}
	st := ResState{Up: true, Role: role}
	out, err = run.Output(ctx, r, "drbdadm", "cstate", name)
	if err != nil {
		return st, fmt.Errorf("drbdadm cstate %s: %w", name, err)
	}
	st.ConnState = firstWord(out)
	return st, nil
}

// firstWord returns the first line's first word, cut at '/' (8.4 prints
// "Primary/Secondary"; DRBD 9 one line per peer).
func firstWord(out []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	w, _, _ := strings.Cut(strings.TrimSpace(line), "/")
	return strings.TrimSpace(w)
}

// IsNotDefined reports whether drbdadm says the resource is not in the
// configuration.
func IsNotDefined(err error) bool {
	return run.StderrContains(err, "not defined in your config", "no resources defined", "Unknown resource")
}

// IsNotUp reports whether a drbdsetup/drbdadm error says the resource or
// minor is not configured in the kernel.
func IsNotUp(err error) bool {
	// drbd-utils 9.22 on DRBD 8.4 (captured): "0: Failure: (127) Device
	// minor not allocated … unknown minor", exit 10; DRBD 9: "No such
	// resource".
	return run.StderrContains(err, "Device minor not allocated", "unknown minor", "No such resource",
		"Unknown resource", "not configured", "Unconfigured")
}

// WriteConfig is the drbd.config.write step.
type WriteConfig struct {
	// Resource is the spec; Port 0 and Minor unset are allocated.
	Resource Resource `json:"resource" doc:"resource spec: name, protocol, port, minor, nodes"`
	// Dir is the config directory (default /etc/drbd.d).
	Dir string `json:"dir,omitempty" doc:"config directory (default /etc/drbd.d, site drbd.config_dir)"`
	// BasePort is the lowest port allocated (default 7789).
	BasePort int `json:"base_port,omitempty" doc:"lowest port handed out (default 7789)"`
}

// StepKind names the kind.
func (WriteConfig) StepKind() string { return "drbd.config.write" }

// Validate checks the parameters.
func (w WriteConfig) Validate() error {
	if err := w.Resource.Validate(); err != nil {
		return err
	}
	if w.Dir != "" && (!filepath.IsAbs(w.Dir) || filepath.Clean(w.Dir) != w.Dir) {
		return fmt.Errorf("%w: dir %q: want an absolute, clean path", atomic.ErrInvalid, w.Dir)
	}
	if w.BasePort < 0 || w.BasePort > 65535 {
		return fmt.Errorf("%w: base_port %d", atomic.ErrInvalid, w.BasePort)
	}
	return nil
}

func (w WriteConfig) dir() string {
	if w.Dir == "" {
		return DefaultConfigDir
	}
	return w.Dir
}

// Path returns the file the step writes.
func (w WriteConfig) Path() string { return filepath.Join(w.dir(), w.Resource.Name+".res") }

// ConfigResult is what drbd.config.write reports.
type ConfigResult struct {
	Path   string `json:"path"`
	Name   string `json:"name"`
	Port   int    `json:"port"`
	Minor  int    `json:"minor"`
	Device string `json:"device"`
}

type configUndo struct {
	// Content is the file the step writes, rendered before acting so a
	// resumed run writes the same port and minor.
	Content string       `json:"content"`
	Result  ConfigResult `json:"result"`
}

func prepareConfig(_ context.Context, _ *atomic.Env, w WriteConfig) (atomic.Plan[configUndo, ConfigResult], error) {
	var plan atomic.Plan[configUndo, ConfigResult]
	path := w.Path()
	used, err := ScanDir(w.dir())
	if err != nil {
		return plan, err
	}
	// Our own file (a re-run) does not count against us.
	var mine *Resource
	if data, err := os.ReadFile(path); err == nil {
		rs, perr := ParseResources(data)
		if perr != nil || len(rs) != 1 {
			return plan, fmt.Errorf("%w: %s exists and is not a single resource bofh can read; not overwriting it", atomic.ErrInvalid, path)
		}
		mine = &rs[0]
		others, err := scanExcept(w.dir(), path)
		if err != nil {
			return plan, err
		}
		used = others
	} else if !errors.Is(err, os.ErrNotExist) {
		return plan, fmt.Errorf("read %s: %w", path, err)
	}
	for _, n := range used.Names {
		if n == w.Resource.Name {
			return plan, fmt.Errorf("%w: resource %s is already defined in another file of %s", atomic.ErrInvalid, n, w.dir())
		}
	}
	r := w.Resource
	if mine != nil {
		if r.Port == 0 {
			r.Port = mine.Port
		}
		if r.Minor == nil {
			r.Minor = mine.Minor
		}
	}
	r, err = used.Allocate(r, w.BasePort)
	if err != nil {
		return plan, err
	}
	content, err := Render(r)
	if err != nil {
		return plan, err
	}
	plan.Undo.Content = string(content)
	plan.Undo.Result = ConfigResult{Path: path, Name: r.Name, Port: r.Port, Minor: *r.Minor, Device: r.Device()}
	if mine != nil {
		cur, _ := os.ReadFile(path)
		if bytes.Equal(cur, content) {
			plan.Noop, plan.Result = true, plan.Undo.Result
			return plan, nil
		}
		return plan, fmt.Errorf("%w: %s exists with other content; remove it or change the spec", atomic.ErrInvalid, path)
	}
	return plan, nil
}

func scanExcept(dir, skip string) (*Used, error) {
	tmp, err := os.MkdirTemp("", "bofh-drbd-scan-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", dir, err)
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if p == skip || e.IsDir() {
			continue
		}
		if err := os.Symlink(p, filepath.Join(tmp, e.Name())); err != nil {
			return nil, err
		}
	}
	return ScanDir(tmp)
}

func doConfig(_ context.Context, env *atomic.Env, w WriteConfig, u configUndo) (ConfigResult, error) {
	path := w.Path()
	if env.Dry("write %s (port %d, minor %d)", path, u.Result.Port, u.Result.Minor) {
		return u.Result, nil
	}
	if err := os.MkdirAll(w.dir(), 0o755); err != nil {
		return ConfigResult{}, fmt.Errorf("create %s: %w", w.dir(), err)
	}
	tmp := path + ".bofh-tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return ConfigResult{}, fmt.Errorf("write %s: %w", path, err)
	}
	err = fsutil.WriteSyncClose(f, []byte(u.Content))
	if err == nil {
		// Link, not rename: never replace a file that appeared meanwhile.
		err = os.Link(tmp, path)
	}
	os.Remove(tmp)
	if err != nil {
		return ConfigResult{}, fmt.Errorf("write %s: %w", path, err)
	}
	_ = fsutil.SyncDir(w.dir())
	return u.Result, nil
}

func undoConfig(_ context.Context, _ *atomic.Env, w WriteConfig, u configUndo, _ ConfigResult) error {
	path := w.Path()
	os.Remove(path + ".bofh-tmp")
	cur, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if !bytes.Equal(cur, []byte(u.Content)) {
		return fmt.Errorf("%s was changed since bofh wrote it; not removing it", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

func checkConfig(_ context.Context, _ *atomic.Env, w WriteConfig, u configUndo) (bool, ConfigResult, error) {
	cur, err := os.ReadFile(w.Path())
	if errors.Is(err, os.ErrNotExist) {
		return false, ConfigResult{}, nil
	}
	if err != nil {
		return false, ConfigResult{}, err
	}
	return bytes.Equal(cur, []byte(u.Content)), u.Result, nil
}

// CreateMD is the drbd.create-md step.
type CreateMD struct {
	Resource string `json:"resource" doc:"DRBD resource name"`
	Force    bool   `json:"force,omitempty" doc:"write metadata over a backing disk that holds a signature (destroys data at its end)"`
}

// StepKind names the kind.
func (CreateMD) StepKind() string { return "drbd.create-md" }

// Validate checks the resource name.
func (c CreateMD) Validate() error { return ValidName(c.Resource) }

type mdUndo struct {
	Disk string `json:"disk"`
}

// HasMetadata reports whether the resource's backing disk holds DRBD
// metadata (drbdadm dump-md succeeds). The resource must be down.
func HasMetadata(ctx context.Context, r run.Runner, name string) (bool, error) {
	_, err := run.Output(ctx, r, "drbdadm", "dump-md", name)
	if err == nil {
		return true, nil
	}
	// After up/down the activity log is "unclean" (captured on 8.4.11):
	// dump-md refuses to print it, but the metadata is there.
	if run.StderrContains(err, `Found meta data is "unclean"`) {
		return true, nil
	}
	if run.StderrContains(err, "No valid meta data found", "no valid meta-data", "Found no valid") {
		return false, nil
	}
	return false, fmt.Errorf("drbdadm dump-md %s: %w", name, err)
}

// BackingDisk returns the resource's backing disk on this node.
func BackingDisk(ctx context.Context, r run.Runner, name string) (string, error) {
	out, err := run.Output(ctx, r, "drbdadm", "sh-ll-dev", name)
	if err != nil {
		if IsNotDefined(err) {
			return "", fmt.Errorf("%w: resource %s is not defined in the DRBD configuration", atomic.ErrInvalid, name)
		}
		return "", fmt.Errorf("drbdadm sh-ll-dev %s: %w", name, err)
	}
	d := strings.TrimSpace(string(out))
	if d == "" || strings.ContainsAny(d, " \n") {
		return "", fmt.Errorf("drbdadm sh-ll-dev %s: unexpected %q", name, d)
	}
	return d, nil
}

// signature returns the TYPE blkid finds on dev, or "".
func signature(ctx context.Context, r run.Runner, dev string) (string, error) {
	res, err := r.Run(ctx, run.Cmd{Argv: []string{"blkid", "-p", "-o", "export", dev}, Kind: run.Query, OkCodes: []int{2}})
	if err != nil {
		return "", fmt.Errorf("probe %s: %w", dev, err)
	}
	if res.ExitCode == 2 {
		return "", nil
	}
	for _, l := range strings.Split(string(res.Stdout), "\n") {
		if v, ok := strings.CutPrefix(l, "TYPE="); ok {
			return v, nil
		}
		if v, ok := strings.CutPrefix(l, "PTTYPE="); ok {
			return v, nil
		}
	}
	return "", nil
}

func prepareCreateMD(ctx context.Context, env *atomic.Env, c CreateMD) (atomic.Plan[mdUndo, struct{}], error) {
	var plan atomic.Plan[mdUndo, struct{}]
	disk, err := BackingDisk(ctx, env.Runner, c.Resource)
	if err != nil {
		return plan, err
	}
	plan.Undo.Disk = disk
	st, err := State(ctx, env.Runner, c.Resource)
	if err != nil {
		return plan, err
	}
	if st.Up {
		plan.Noop = true // metadata in use: it exists
		return plan, nil
	}
	has, err := HasMetadata(ctx, env.Runner, c.Resource)
	if err != nil {
		return plan, err
	}
	if has {
		plan.Noop = true
		return plan, nil
	}
	sig, err := signature(ctx, env.Runner, disk)
	if err != nil {
		return plan, err
	}
	if sig != "" && !c.Force {
		return plan, fmt.Errorf("%w: backing disk %s of %s holds a %s signature; set force to write DRBD metadata over it", atomic.ErrInvalid, disk, c.Resource, sig)
	}
	return plan, nil
}

func doCreateMD(ctx context.Context, env *atomic.Env, c CreateMD, _ mdUndo) (struct{}, error) {
	// --force answers drbdmeta's questions; the signature check above is
	// what protects data.
	return struct{}{}, adm(ctx, env.Runner, "create-md", "--force", c.Resource)
}

func undoCreateMD(ctx context.Context, env *atomic.Env, c CreateMD, _ mdUndo, _ struct{}) error {
	if err := down(ctx, env.Runner, c.Resource); err != nil {
		return err
	}
	has, err := HasMetadata(ctx, env.Runner, c.Resource)
	if err != nil || !has {
		return err
	}
	// drbdadm passes options after "--" to drbdmeta; "wipe-md --force"
	// is refused and plain wipe-md asks for confirmation (captured).
	if err := run.Mutate(ctx, env.Runner, "drbdadm", "--", "--force", "wipe-md", c.Resource); err != nil {
		return fmt.Errorf("drbdadm wipe-md %s: %w", c.Resource, err)
	}
	return nil
}

func checkCreateMD(ctx context.Context, env *atomic.Env, c CreateMD, _ mdUndo) (bool, struct{}, error) {
	st, err := State(ctx, env.Runner, c.Resource)
	if err != nil {
		return false, struct{}{}, err
	}
	if st.Up {
		return true, struct{}{}, nil
	}
	has, err := HasMetadata(ctx, env.Runner, c.Resource)
	return has, struct{}{}, err
}
