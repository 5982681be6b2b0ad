package tree

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/btrfs"
)

// Request names what a deploy or upgrade works on.
type Request struct {
	Store   string
	Role    string // deploy only; an upgrade reads it from the target
	Version string
	Target  string
	// StateDir is where the transaction's journal and backups live.
	StateDir string
	// HookTimeout bounds each of pre and post (default 10 minutes).
	HookTimeout time.Duration
	// Checksum makes an upgrade compare every target file alike in size
	// and mtime with the new version's byte for byte, instead of
	// trusting the quick check where the store's two versions have the
	// same content (see the package doc).
	Checksum bool
}

// Outcome is what a deploy or upgrade did.
type Outcome struct {
	TxID         string `json:"tx_id"`
	Role         string `json:"role"`
	From         string `json:"from,omitempty"`
	To           string `json:"to"`
	Restore      string `json:"restore_point,omitempty"`
	RebootNeeded bool   `json:"reboot_needed"`
	Stats        *Stats `json:"stats,omitempty"`
}

func invalid(err error) error {
	if err == nil || errors.Is(err, atomic.ErrInvalid) {
		return err
	}
	return fmt.Errorf("%w: %w", atomic.ErrInvalid, err)
}

// DeployRecipe validates a first deploy and returns it as a recipe (so a
// crashed run can be resumed with 'bofh tx resume').
func DeployRecipe(r Request) (*atomic.Recipe, error) {
	if err := CheckRoot("target", r.Target); err != nil {
		return nil, err
	}
	if err := CheckRoot("store", r.Store); err != nil {
		return nil, err
	}
	if _, err := (Store{Dir: r.Store}).TreeDir(r.Version, r.Role); err != nil {
		return nil, invalid(err)
	}
	if err := realDir(r.Target); err != nil {
		return nil, invalid(fmt.Errorf("target: %w", err))
	}
	if st, err := ReadState(r.Target); err != nil || st != nil {
		return nil, invalid(fmt.Errorf("target %s already holds a deployed tree (%v %v): use upgrade", r.Target, st, err))
	}
	if ok, err := isEmpty(r.Target); err != nil || !ok {
		return nil, invalid(fmt.Errorf("target %s is not empty (%v)", r.Target, err))
	}
	return &atomic.Recipe{Name: "tree deploy " + r.Role + " " + r.Version, Steps: []atomic.RecipeStep{
		step("sync", SyncStep{Store: r.Store, Role: r.Role, Version: r.Version, Target: r.Target, Mode: SyncDeploy}),
		step("state", StateStep{Target: r.Target, Role: r.Role, Version: r.Version}),
	}}, nil
}

func step(id string, p atomic.Params) atomic.RecipeStep {
	b, _ := json.Marshal(p)
	var with map[string]any
	_ = json.Unmarshal(b, &with)
	return atomic.RecipeStep{ID: id, Kind: p.StepKind(), With: with}
}

// UpgradeRecipe validates an upgrade of r.Target to r.Version and returns
// it as a recipe: snapshot, pre, sync, add_only, post, state, and (btrfs)
// the deletion of the snapshot at commit. It refuses (ErrInvalid) when the
// target has no recorded state, the store lacks the version or the
// metadata for (current → version).
func UpgradeRecipe(r Request) (*atomic.Recipe, *Meta, error) {
	if err := CheckRoot("target", r.Target); err != nil {
		return nil, nil, err
	}
	if err := CheckRoot("store", r.Store); err != nil {
		return nil, nil, err
	}
	if err := CheckName("version", r.Version); err != nil {
		return nil, nil, err
	}
	if err := realDir(r.Target); err != nil {
		return nil, nil, invalid(fmt.Errorf("target: %w", err))
	}
	cur, err := ReadState(r.Target)
	if err != nil {
		return nil, nil, invalid(err)
	}
	if cur == nil {
		return nil, nil, invalid(fmt.Errorf("target %s has no recorded tree (%s): deploy first", r.Target, StateFile))
	}
	st := Store{Dir: r.Store}
	if _, err := st.TreeDir(r.Version, cur.Role); err != nil {
		return nil, nil, invalid(err)
	}
	if cur.Version == r.Version {
		return nil, nil, invalid(fmt.Errorf("target %s is at version %s already", r.Target, r.Version))
	}
	m, err := st.Metadata(cur.Version, cur.Role, r.Version)
	if err != nil {
		return nil, nil, invalid(err)
	}
	mode := ModeBackup
	snap := ""
	if ok, err := btrfs.IsSubvolume(r.Target); err != nil {
		return nil, nil, err
	} else if ok && !isMountPoint(r.Target) {
		mode = ModeBtrfs
		snap = filepath.Join(filepath.Dir(r.Target), "."+filepath.Base(r.Target)+".bofh-"+cur.Version+"-"+r.Version)
		if _, err := os.Lstat(snap); err == nil {
			return nil, nil, invalid(fmt.Errorf("%s exists: an earlier upgrade left its snapshot (see 'bofh tx list')", snap))
		}
	}
	to := int(r.HookTimeout / time.Second)
	if r.HookTimeout > 0 && to == 0 {
		to = 1
	}
	rec := &atomic.Recipe{Name: "tree upgrade " + cur.Role + " " + cur.Version + " to " + r.Version}
	add := func(id string, p atomic.Params) { rec.Steps = append(rec.Steps, step(id, p)) }
	add("snapshot", SnapshotStep{Target: r.Target, Mode: mode, Snapshot: snap, Store: r.Store, Role: cur.Role, From: cur.Version, To: r.Version, Checksum: r.Checksum})
	if m.Pre != "" {
		add("pre", HookStep{Script: m.Pre, Phase: "pre", Target: r.Target, Role: cur.Role, From: cur.Version, To: r.Version, TimeoutSec: to})
	}
	add("sync", SyncStep{Store: r.Store, Role: cur.Role, Version: r.Version, Target: r.Target, Mode: SyncUpgrade, From: cur.Version, Checksum: r.Checksum})
	add("add_only", AddOnlyStep{Store: r.Store, Role: cur.Role, From: cur.Version, Version: r.Version, Target: r.Target})
	if m.Post != "" {
		add("post", HookStep{Script: m.Post, Phase: "post", Target: r.Target, Role: cur.Role, From: cur.Version, To: r.Version, TimeoutSec: to})
	}
	add("state", StateStep{Target: r.Target, Role: cur.Role, Version: r.Version})
	if mode == ModeBtrfs {
		add("drop_snapshot", btrfs.DeleteSubvol{Path: snap})
	}
	return rec, m, nil
}

func isMountPoint(p string) bool {
	a, err1 := os.Lstat(p)
	b, err2 := os.Lstat(filepath.Dir(p))
	if err1 != nil || err2 != nil {
		return false
	}
	// a subvolume has its own st_dev too; compare mount IDs instead
	return mountID(p) != mountID(filepath.Dir(p)) && a != nil && b != nil
}

// Deploy installs a version's tree for role into an empty target, as
// one transaction.
func Deploy(ctx context.Context, r Request, opts ...atomic.Option) (*Outcome, error) {
	rec, err := DeployRecipe(r)
	if err != nil {
		return nil, err
	}
	id, err := atomic.Apply(ctx, rec, append(opts, atomic.WithStateDir(r.StateDir))...)
	out := &Outcome{TxID: id, Role: r.Role, To: r.Version}
	if err == nil {
		out.Stats = stepStats(r.StateDir, id, "sync")
	}
	return out, err
}

// Upgrade upgrades a target to r.Version as one transaction (see
// UpgradeRecipe). A failure rolls the target back to its restore point;
// a crash leaves a journal for 'bofh tx rollback' or 'bofh tx resume'.
func Upgrade(ctx context.Context, r Request, opts ...atomic.Option) (*Outcome, error) {
	rec, _, err := UpgradeRecipe(r)
	if err != nil {
		return nil, err
	}
	cur, _ := ReadState(r.Target)
	id, err := atomic.Apply(ctx, rec, append(opts, atomic.WithStateDir(r.StateDir))...)
	out := &Outcome{TxID: id, Role: cur.Role, From: cur.Version, To: r.Version}
	var sp SnapshotStep
	_ = json.Unmarshal(mustJSON(rec.Steps[0].With), &sp)
	out.Restore = sp.Mode
	if err == nil {
		out.Stats = stepStats(r.StateDir, id, "sync")
		var h HookResult
		if stepResult(r.StateDir, id, "post", &h) {
			out.RebootNeeded = h.RebootNeeded
		}
	}
	return out, err
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func stepResult(stateDir, id, stepID string, out any) bool {
	if id == "" || strings.HasPrefix(id, "dry-run") {
		return false
	}
	d, err := atomic.Show(stateDir, id)
	if err != nil {
		return false
	}
	for _, s := range d.Steps {
		if s.ID == stepID && len(s.Result) > 0 {
			return json.Unmarshal(s.Result, out) == nil
		}
	}
	return false
}

func stepStats(stateDir, id, stepID string) *Stats {
	var s Stats
	if stepResult(stateDir, id, stepID, &s) {
		return &s
	}
	return nil
}

// Report is the result of verify, test-upgrade and diff.
type Report struct {
	Role    string   `json:"role"`
	Version string   `json:"version"`
	To      string   `json:"to,omitempty"`
	Changes []Change `json:"changes"`
}

// Verify compares a target with the tree of its recorded version, content
// byte for byte, honouring the exclude and add_only rules of every
// upgrade leading to that version (data, generated files and add_only
// configuration are not drift), and the hard-link structure of the
// files present in both.
func Verify(store, target string) (*Report, error) {
	if err := CheckRoot("target", target); err != nil {
		return nil, err
	}
	cur, err := ReadState(target)
	if err != nil {
		return nil, invalid(err)
	}
	if cur == nil {
		return nil, invalid(fmt.Errorf("target %s has no recorded tree (%s)", target, StateFile))
	}
	st := Store{Dir: store}
	src, err := st.TreeDir(cur.Version, cur.Role)
	if err != nil {
		return nil, invalid(err)
	}
	excl, addOnly, err := rulesInto(st, cur.Role, cur.Version)
	if err != nil {
		return nil, err
	}
	// add_only paths belong to the operator once copied: not drift
	skip := skipper(excl, addOnly, Rules{{Pattern: "lost+found", Anchored: true, DirOnly: true}})
	ch, err := diffContent(src, target, skip)
	if err != nil {
		return nil, err
	}
	out := make([]Change, 0, len(ch)) // [] in JSON, never null
	for _, c := range ch {
		if c.Kind == "added" && c.Path == parentRel(StateFile) {
			continue
		}
		out = append(out, c)
	}
	return &Report{Role: cur.Role, Version: cur.Version, Changes: out}, nil
}

// rulesInto merges the exclude and add_only rules of every upgrade whose
// "to" is version.
func rulesInto(st Store, role, version string) (Rules, Rules, error) {
	froms, err := os.ReadDir(filepath.Join(st.Dir, "metadata"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var ex, ao Rules
	for _, f := range froms {
		if CheckName("version", f.Name()) != nil {
			continue
		}
		m, err := st.Metadata(f.Name(), role, version)
		if errors.Is(err, ErrNoMetadata) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		ex = append(ex, m.Exclude...)
		ao = append(ao, m.AddOnly...)
	}
	return ex, ao, nil
}

// TestUpgrade reports what an upgrade of r.Target to r.Version would
// change, changing nothing: the sync's changes (files alike in size and
// mtime judged as the upgrade judges them, see the package doc, or byte
// for byte with r.Checksum) and the add_only paths it would copy. Kinds
// are the upgrade's, as in DiffVersions from the current version to the
// new one: "added" paths the upgrade creates, "removed" ones it deletes.
func TestUpgrade(r Request) (*Report, error) {
	store, version, target := r.Store, r.Version, r.Target
	_, m, err := UpgradeRecipe(Request{Store: store, Version: version, Target: target})
	if err != nil {
		return nil, err
	}
	st := Store{Dir: store}
	src, _ := st.TreeDir(version, m.Role)
	// the upgrade's own rule for files alike in size and mtime
	pairs := openPairs(nil, store, m.Role, m.From, version, r.Checksum)
	defer pairs.close()
	p, err := planSync(src, target, skipper(m.Exclude, m.AddOnly), pairs)
	if err != nil {
		return nil, err
	}
	// the plan's kinds are the target's against the tree ("removed": in
	// the tree only, so the upgrade creates it); turn them around
	ch := make([]Change, 0, len(p.changes))
	for _, c := range p.changes {
		switch c.Kind {
		case "removed":
			c.Kind = "added"
		case "added":
			c.Kind = "removed"
		}
		ch = append(ch, c)
	}
	adds, err := addOnlyPlan(src, target, m)
	if err != nil {
		return nil, err
	}
	for _, a := range adds {
		ch = append(ch, Change{Path: a, Kind: "added", Details: []string{"add_only"}})
	}
	return &Report{Role: m.Role, Version: m.From, To: version, Changes: ch}, nil
}

// DiffVersions compares the trees of two versions of a role (content
// byte for byte). In the report, "added" paths are in b only, "removed"
// in a only.
func DiffVersions(store, role, a, b string) (*Report, error) {
	st := Store{Dir: store}
	da, err := st.TreeDir(a, role)
	if err != nil {
		return nil, invalid(err)
	}
	db, err := st.TreeDir(b, role)
	if err != nil {
		return nil, invalid(err)
	}
	ch, err := diffContent(da, db, skipper())
	if err != nil {
		return nil, err
	}
	if ch == nil {
		ch = []Change{} // [] in JSON, never null
	}
	return &Report{Role: role, Version: a, To: b, Changes: ch}, nil
}

// Listing is what 'bofh tree list' shows.
type Listing struct {
	Role     string              `json:"role"`
	Current  string              `json:"current,omitempty"`
	Versions []string            `json:"versions"`
	Upgrades map[string][]string `json:"upgrades"`
}

// List lists the versions of role in the store and, for each, the
// versions it has upgrade metadata to. With a target, role and current
// version come from it.
func List(store, role, target string) (*Listing, error) {
	l := &Listing{Role: role, Upgrades: map[string][]string{}}
	if target != "" {
		cur, err := ReadState(target)
		if err != nil {
			return nil, invalid(err)
		}
		if cur == nil {
			return nil, invalid(fmt.Errorf("target %s has no recorded tree", target))
		}
		l.Role, l.Current = cur.Role, cur.Version
	}
	st := Store{Dir: store}
	vs, err := st.Versions(l.Role)
	if err != nil {
		return nil, invalid(err)
	}
	l.Versions = vs
	for _, v := range vs {
		ups, err := st.Upgrades(v, l.Role)
		if err != nil {
			return nil, err
		}
		l.Upgrades[v] = ups
	}
	return l, nil
}

// Seed creates metadata/<from>/<role>/<to>/ for a new pair with exclude
// and add_only files listing suggestions as comments: the paths that
// differ between the two versions (from DiffVersions), so the operator
// picks data and configuration paths. Existing files are not overwritten.
func Seed(store, role, from, to string) (string, error) {
	rep, err := DiffVersions(store, role, from, to)
	if err != nil {
		return "", err
	}
	dir := Store{Dir: store}.MetaDir(from, role, to)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var body []byte
	body = append(body, []byte("# paths never synced (data, generated files), one per line; see 'bofh tree --help'\n# changed between "+from+" and "+to+":\n")...)
	for _, c := range rep.Changes {
		body = append(body, []byte(fmt.Sprintf("# %s /%s\n", c.Kind, c.Path))...)
	}
	for _, name := range []string{"exclude", "add_only"} {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			return "", err
		}
	}
	return dir, nil
}
