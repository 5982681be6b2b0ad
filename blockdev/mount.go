package blockdev

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

func init() {
	atomic.Register(atomic.Def[MountFS, mountUndo, Mount]{
		Doc:     "mount a device or bind-mount a directory (options, read-only); already mounted there is a no-op; undo unmounts only what this step mounted",
		Prepare: prepareMount,
		Do:      doMount,
		Undo:    undoMount,
		Check:   checkMount,
	})
	atomic.Register(atomic.Def[Umount, Mount, struct{}]{
		Doc:     "unmount a mountpoint; undo mounts the same source there again with the same type and options",
		Prepare: prepareUmount,
		Do:      doUmount,
		Undo:    undoUmount,
		Check:   checkUmount,
	})
}

// MountFS is the mount step.
type MountFS struct {
	Source   string   `json:"source" doc:"device, or directory for a bind mount"`
	Target   string   `json:"target" doc:"mountpoint (an existing directory)"`
	FSType   string   `json:"fstype,omitempty" doc:"filesystem type (default: detected)"`
	Options  []string `json:"options,omitempty" doc:"mount options, e.g. [noatime, discard]"`
	Bind     bool     `json:"bind,omitempty" doc:"bind-mount source (a directory or file)"`
	ReadOnly bool     `json:"ro,omitempty" doc:"mount read-only"`
}

// StepKind names the kind.
func (MountFS) StepKind() string { return "mount" }

// Validate checks the parameters.
func (m MountFS) Validate() error {
	if err := checkDevPath(m.Source); err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if err := checkDevPath(m.Target); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if m.Target == "/" {
		return errors.New("target / is the root filesystem")
	}
	for _, o := range m.Options {
		if o == "" || strings.ContainsAny(o, ", \t\n") {
			return fmt.Errorf("option %q: one option per list entry, no commas or spaces", o)
		}
	}
	if m.Bind && m.FSType != "" {
		return errors.New("a bind mount has no fstype")
	}
	if strings.ContainsAny(m.FSType, ", \t\n/") {
		return fmt.Errorf("fstype %q is not a filesystem type", m.FSType)
	}
	return nil
}

type mountUndo struct {
	// Below is how many mounts were stacked on the target before.
	Below int `json:"below"`
}

func (m MountFS) argv() []string {
	a := []string{"mount"}
	if m.Bind {
		a = append(a, "--bind")
	}
	if m.FSType != "" {
		a = append(a, "-t", m.FSType)
	}
	opts := slices.Clone(m.Options)
	if m.ReadOnly {
		opts = append(opts, "ro")
	}
	if len(opts) > 0 {
		a = append(a, "-o", strings.Join(opts, ","))
	}
	return append(a, m.Source, m.Target)
}

// sameSource reports whether a findmnt SOURCE is the device src.
func sameSource(found, src string) bool {
	if found == src {
		return true
	}
	a, err1 := filepath.EvalSymlinks(found)
	b, err2 := filepath.EvalSymlinks(src)
	return err1 == nil && err2 == nil && a == b
}

func prepareMount(ctx context.Context, env *atomic.Env, m MountFS) (atomic.Plan[mountUndo, Mount], error) {
	var plan atomic.Plan[mountUndo, Mount]
	fi, err := os.Stat(m.Source)
	if err != nil {
		return plan, fmt.Errorf("%w: source: %w", atomic.ErrInvalid, err)
	}
	if !m.Bind && fi.Mode()&os.ModeDevice == 0 && !fi.Mode().IsRegular() {
		return plan, fmt.Errorf("%w: source %s is not a device (use bind for a directory)", atomic.ErrInvalid, m.Source)
	}
	ti, err := os.Stat(m.Target)
	if err != nil {
		return plan, fmt.Errorf("%w: target: %w", atomic.ErrInvalid, err)
	}
	if !ti.IsDir() && !(m.Bind && !fi.IsDir()) {
		return plan, fmt.Errorf("%w: target %s is not a directory", atomic.ErrInvalid, m.Target)
	}
	at, err := MountsAt(ctx, env.Runner, m.Target)
	if err != nil {
		return plan, err
	}
	plan.Undo.Below = len(at)
	if len(at) > 0 {
		top := at[len(at)-1]
		if !m.Bind && sameSource(top.Source, m.Source) {
			plan.Noop, plan.Result = true, top
			return plan, nil
		}
		return plan, fmt.Errorf("%w: %s is already mounted on %s; not mounting %s over it", atomic.ErrInvalid, top.Source, m.Target, m.Source)
	}
	return plan, nil
}

func doMount(ctx context.Context, env *atomic.Env, m MountFS, u mountUndo) (Mount, error) {
	if err := run.Mutate(ctx, env.Runner, m.argv()...); err != nil {
		return Mount{}, fmt.Errorf("mount %s on %s: %w", m.Source, m.Target, err)
	}
	if env.DryRun {
		return Mount{Target: m.Target, Source: m.Source, FSType: m.FSType}, nil
	}
	ok, r, err := checkMount(ctx, env, m, u)
	if err == nil && !ok {
		err = fmt.Errorf("mount %s on %s succeeded but findmnt does not show it", m.Source, m.Target)
	}
	return r, err
}

func checkMount(ctx context.Context, env *atomic.Env, m MountFS, u mountUndo) (bool, Mount, error) {
	at, err := MountsAt(ctx, env.Runner, m.Target)
	if err != nil || len(at) <= u.Below {
		return false, Mount{}, err
	}
	return true, at[len(at)-1], nil
}

func undoMount(ctx context.Context, env *atomic.Env, m MountFS, u mountUndo, _ Mount) error {
	at, err := MountsAt(ctx, env.Runner, m.Target)
	if err != nil {
		return err
	}
	if len(at) <= u.Below {
		return nil // not mounted (any more): nothing of ours to undo
	}
	top := at[len(at)-1]
	if !m.Bind && !sameSource(top.Source, m.Source) {
		return fmt.Errorf("%s is now mounted on %s, not %s; not unmounting it", top.Source, m.Target, m.Source)
	}
	return umount(ctx, env.Runner, m.Target)
}

// isNotMounted reports whether umount failed because nothing is mounted
// there (not because the mount is busy: testdata/capture/blockdev).
func isNotMounted(err error) bool { return run.StderrContains(err, "not mounted") }

func umount(ctx context.Context, r run.Runner, target string) error {
	if err := run.Mutate(ctx, r, "umount", target); err != nil {
		if isNotMounted(err) {
			return nil
		}
		return fmt.Errorf("umount %s: %w", target, err)
	}
	return nil
}

// Umount is the umount step.
type Umount struct {
	Target string `json:"target" doc:"mountpoint"`
}

// StepKind names the kind.
func (Umount) StepKind() string { return "umount" }

// Validate checks the parameters.
func (u Umount) Validate() error {
	if err := checkDevPath(u.Target); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if u.Target == "/" {
		return errors.New("target / is the root filesystem")
	}
	return nil
}

func prepareUmount(ctx context.Context, env *atomic.Env, u Umount) (atomic.Plan[Mount, struct{}], error) {
	var plan atomic.Plan[Mount, struct{}]
	at, err := MountsAt(ctx, env.Runner, u.Target)
	if err != nil {
		return plan, err
	}
	if len(at) == 0 {
		plan.Noop = true
		return plan, nil
	}
	top := at[len(at)-1]
	if strings.Contains(top.Source, "[") {
		return plan, fmt.Errorf("%w: %s is a bind mount (%s); umount cannot be undone for bind mounts", atomic.ErrInvalid, u.Target, top.Source)
	}
	all, err := Mounts(ctx, env.Runner)
	if err != nil {
		return plan, err
	}
	for _, m := range all {
		if strings.HasPrefix(m.Target, strings.TrimSuffix(u.Target, "/")+"/") {
			return plan, fmt.Errorf("%w: %s has %s mounted below it; unmount that first", atomic.ErrInvalid, u.Target, m.Target)
		}
	}
	plan.Undo = top
	return plan, nil
}

func doUmount(ctx context.Context, env *atomic.Env, u Umount, m Mount) (struct{}, error) {
	return struct{}{}, umount(ctx, env.Runner, u.Target)
}

func undoUmount(ctx context.Context, env *atomic.Env, u Umount, m Mount, _ struct{}) error {
	at, err := MountsAt(ctx, env.Runner, u.Target)
	if err != nil {
		return err
	}
	if len(at) > 0 && sameSource(at[len(at)-1].Source, m.Source) {
		return nil // never unmounted, or already back
	}
	argv := []string{"mount", "-t", m.FSType}
	if m.Options != "" {
		argv = append(argv, "-o", m.Options)
	}
	argv = append(argv, m.Source, u.Target)
	if err := run.Mutate(ctx, env.Runner, argv...); err != nil {
		return fmt.Errorf("mount %s on %s again: %w", m.Source, u.Target, err)
	}
	return nil
}

func checkUmount(ctx context.Context, env *atomic.Env, u Umount, m Mount) (bool, struct{}, error) {
	at, err := MountsAt(ctx, env.Runner, u.Target)
	if err != nil {
		return false, struct{}{}, err
	}
	return len(at) == 0 || !sameSource(at[len(at)-1].Source, m.Source), struct{}{}, nil
}

func depth(p string) int { return strings.Count(filepath.Clean(p), "/") }

// MountOrder sorts mounts so that a mountpoint comes before every
// mountpoint nested below it (shortest path first): running the steps in
// this order in one transaction mounts /srv before /srv/data, and the
// rollback (or UmountOrder) unmounts in reverse.
func MountOrder(ms []MountFS) []MountFS {
	out := slices.Clone(ms)
	sort.SliceStable(out, func(i, j int) bool { return depth(out[i].Target) < depth(out[j].Target) })
	return out
}

// UmountOrder returns umount steps for targets, deepest first.
func UmountOrder(targets []string) []Umount {
	out := make([]Umount, len(targets))
	for i, t := range targets {
		out[i] = Umount{Target: t}
	}
	sort.SliceStable(out, func(i, j int) bool { return depth(out[i].Target) > depth(out[j].Target) })
	return out
}

// ErrPoolEmpty is returned when every mountpoint of a MountPool is taken.
var ErrPoolEmpty = errors.New("mount pool exhausted: every mountpoint is in use")

// MountPool hands out free mountpoints from a site-configured list
// (site.Config.MountPool), as pybofh's MountPool did: Mount picks a
// mountpoint that is neither mounted nor handed out, and mounts there as a
// journaled mount step; Release unmounts it (an umount step) and takes the
// mountpoint back. It is safe for concurrent use.
type MountPool struct {
	points []string

	mu    sync.Mutex
	taken map[string]bool
}

// NewMountPool returns a pool of the given mountpoints (absolute paths).
func NewMountPool(points []string) (*MountPool, error) {
	for _, p := range points {
		if err := checkDevPath(p); err != nil {
			return nil, fmt.Errorf("mount pool: %w", err)
		}
	}
	return &MountPool{points: slices.Clone(points), taken: map[string]bool{}}, nil
}

// Acquire reserves a free mountpoint: configured, not mounted, not handed
// out. It fails with ErrPoolEmpty when there is none.
func (p *MountPool) Acquire(ctx context.Context, r run.Runner) (string, error) {
	if len(p.points) == 0 {
		return "", fmt.Errorf("%w (the site configuration lists no mount_pool)", ErrPoolEmpty)
	}
	all, err := Mounts(ctx, r)
	if err != nil {
		return "", err
	}
	mounted := map[string]bool{}
	for _, m := range all {
		mounted[m.Target] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pt := range p.points {
		if !p.taken[pt] && !mounted[pt] {
			p.taken[pt] = true
			return pt, nil
		}
	}
	return "", fmt.Errorf("%w (%s)", ErrPoolEmpty, strings.Join(p.points, ", "))
}

// Give returns a mountpoint to the pool without unmounting anything.
func (p *MountPool) Give(point string) {
	p.mu.Lock()
	delete(p.taken, point)
	p.mu.Unlock()
}

// Mount mounts m.Source on a free mountpoint of the pool (m.Target is
// ignored) in tx and returns the mountpoint.
func (p *MountPool) Mount(ctx context.Context, tx *atomic.Tx, r run.Runner, m MountFS) (string, error) {
	pt, err := p.Acquire(ctx, r)
	if err != nil {
		return "", err
	}
	m.Target = pt
	if err := tx.Do(ctx, m, nil); err != nil {
		p.Give(pt)
		return "", err
	}
	return pt, nil
}

// Release unmounts a mountpoint handed out by Mount (an umount step in
// tx) and takes it back.
func (p *MountPool) Release(ctx context.Context, tx *atomic.Tx, point string) error {
	if err := tx.Do(ctx, Umount{Target: point}, nil); err != nil {
		return err
	}
	p.Give(point)
	return nil
}
