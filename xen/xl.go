package xen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/bofhkit/bofh/run"
)

// DefaultConfigDir is where domU configuration files live unless the site
// file's `xen:` section says otherwise.
const DefaultConfigDir = "/etc/xen"

// Config is the site file's `xen:` section.
type Config struct {
	// ConfigDir holds the domU configuration files, <name>.cfg.
	ConfigDir string `yaml:"config_dir"`
}

// Dir returns the configuration directory, DefaultConfigDir if unset.
func (c Config) Dir() string {
	if c.ConfigDir == "" {
		return DefaultConfigDir
	}
	return c.ConfigDir
}

// ConfigPath is where the configuration of domain name lives in dir.
func ConfigPath(dir, name string) string { return filepath.Join(dir, name+".cfg") }

// Domain is one running domain as `xl list -l` describes it.
type Domain struct {
	ID     int    `json:"id"`
	Name   string `json:"name"`
	UUID   string `json:"uuid,omitempty"`
	Type   string `json:"type,omitempty"`
	VCPUs  int    `json:"vcpus"`
	MemKiB int64  `json:"memory_kib"`
	Disks  []Disk `json:"disks,omitempty"`
}

// listEntry is one element of `xl list -l`: libxl's libxl_domain_config
// (tools/libs/light/libxl_types.idl) as JSON, plus the domid.
type listEntry struct {
	Domid  *int `json:"domid"`
	Config struct {
		CInfo struct {
			Type string `json:"type"`
			Name string `json:"name"`
			UUID string `json:"uuid"`
		} `json:"c_info"`
		BInfo struct {
			MaxVCPUs    int   `json:"max_vcpus"`
			TargetMemKB int64 `json:"target_memkb"`
			MaxMemKB    int64 `json:"max_memkb"`
		} `json:"b_info"`
		Disks []struct {
			PdevPath  string `json:"pdev_path"`
			Vdev      string `json:"vdev"`
			Format    string `json:"format"`
			Readwrite int    `json:"readwrite"`
		} `json:"disks"`
	} `json:"config"`
}

// ParseList decodes the output of `xl list -l`.
func ParseList(data []byte) ([]Domain, error) {
	var entries []listEntry
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("parse xl list -l: %w", err)
	}
	out := make([]Domain, 0, len(entries))
	for i, e := range entries {
		if e.Domid == nil || *e.Domid < 0 || e.Config.CInfo.Name == "" {
			return nil, fmt.Errorf("parse xl list -l: entry %d has no domid or name", i)
		}
		d := Domain{ID: *e.Domid, Name: e.Config.CInfo.Name, UUID: e.Config.CInfo.UUID,
			Type: e.Config.CInfo.Type, VCPUs: e.Config.BInfo.MaxVCPUs, MemKiB: e.Config.BInfo.TargetMemKB}
		if d.MemKiB == 0 {
			d.MemKiB = e.Config.BInfo.MaxMemKB
		}
		for _, k := range e.Config.Disks {
			acc := "r"
			if k.Readwrite != 0 {
				acc = "w"
			}
			d.Disks = append(d.Disks, Disk{Target: k.PdevPath, Vdev: k.Vdev, Format: k.Format, Access: acc})
		}
		out = append(out, d)
	}
	return out, nil
}

// State is a domain's run state from the State column of `xl list`
// ("r-----", "--p---"); "absent" when xl does not know the domain.
type State string

// Domain states (xl(1), "list": r b p s c d).
const (
	StateRunning  State = "running"
	StateBlocked  State = "blocked"
	StatePaused   State = "paused"
	StateShutdown State = "shutdown"
	StateCrashed  State = "crashed"
	StateDying    State = "dying"
	StateAbsent   State = "absent"
)

// ParseListState reads the State column of `xl list <name>` (text; the
// JSON of `xl list -l` carries no run state). The format (xl(1)):
//
//	Name                                        ID   Mem VCPUs	State	Time(s)
//	Domain-0                                     0   750     4     r-----  11794.3
func ParseListState(data []byte, name string) (State, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	header := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if !header {
			if f[0] != "Name" || len(f) < 6 || f[len(f)-2] != "State" {
				return "", fmt.Errorf("parse xl list: unexpected header %q", sc.Text())
			}
			header = true
			continue
		}
		if len(f) < 6 || f[0] != name {
			continue
		}
		st := f[len(f)-2]
		if len(st) != 6 {
			return "", fmt.Errorf("parse xl list: state %q of %s is not 6 flags", st, name)
		}
		for i, s := range []State{StateRunning, StateBlocked, StatePaused, StateShutdown, StateCrashed, StateDying} {
			if st[i] != '-' {
				if st[i] != "rbpscd"[i] {
					return "", fmt.Errorf("parse xl list: state %q of %s: flag %d is %q", st, name, i, st[i])
				}
				return s, nil
			}
		}
		return StateBlocked, nil // all dashes: neither running nor blocked on anything xl shows
	}
	if !header {
		return "", fmt.Errorf("parse xl list: no header")
	}
	return StateAbsent, nil
}

// IsNotFound reports whether an xl error says the domain does not exist.
// xl prints "<name> is an invalid domain identifier (rc=-6)"
// (tools/xl/xl_utils.c, find_domain).
func IsNotFound(err error) bool {
	return run.StderrContains(err, "is an invalid domain identifier")
}

// List returns the running domains (`xl list -l`).
func List(ctx context.Context, r run.Runner) ([]Domain, error) {
	out, err := run.Output(ctx, r, "xl", "list", "-l")
	if err != nil {
		return nil, fmt.Errorf("xl list: %w", err)
	}
	return ParseList(out)
}

// StateOf returns a domain's state, StateAbsent if xl does not know it.
func StateOf(ctx context.Context, r run.Runner, name string) (State, error) {
	out, err := run.Output(ctx, r, "xl", "list", name)
	if IsNotFound(err) {
		return StateAbsent, nil
	}
	if err != nil {
		return "", fmt.Errorf("xl list %s: %w", name, err)
	}
	return ParseListState(out, name)
}

// Create starts a domain from a configuration file.
func Create(ctx context.Context, r run.Runner, cfgPath string) error {
	if err := run.Mutate(ctx, r, "xl", "create", cfgPath); err != nil {
		return fmt.Errorf("xl create: %w", err)
	}
	return nil
}

// Destroy kills a domain at once; an absent domain is not an error.
func Destroy(ctx context.Context, r run.Runner, name string) error {
	if err := run.Mutate(ctx, r, "xl", "destroy", name); err != nil && !IsNotFound(err) {
		return fmt.Errorf("xl destroy: %w", err)
	}
	return nil
}

// Shutdown asks a domain to shut down and waits up to timeout (xl shutdown
// -w); if it is still there, it is destroyed. It reports whether it had to
// be destroyed.
func Shutdown(ctx context.Context, r run.Runner, name string, timeout time.Duration) (bool, error) {
	_, err := r.Run(ctx, run.Cmd{Argv: []string{"xl", "shutdown", "-w", name}, Kind: run.Mutation, Timeout: timeout})
	if IsNotFound(err) {
		return false, nil
	}
	if err == nil {
		return false, nil
	}
	if st, serr := StateOf(ctx, r, name); serr == nil && st == StateAbsent {
		return false, nil
	}
	return true, Destroy(ctx, r, name)
}

// Pause pauses a domain.
func Pause(ctx context.Context, r run.Runner, name string) error {
	if err := run.Mutate(ctx, r, "xl", "pause", name); err != nil {
		return fmt.Errorf("xl pause: %w", err)
	}
	return nil
}

// Unpause unpauses a domain.
func Unpause(ctx context.Context, r run.Runner, name string) error {
	if err := run.Mutate(ctx, r, "xl", "unpause", name); err != nil {
		return fmt.Errorf("xl unpause: %w", err)
	}
	return nil
}
