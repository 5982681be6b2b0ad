package drbd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

// Status is the state of one resource on this node, decoded from
// `drbdsetup status --json` (DRBD 9) or /proc/drbd (DRBD 8.4).
type Status struct {
	// Name is the resource name ("" from /proc/drbd, which knows only
	// minors; see [StatusFromProc]).
	Name string `json:"name"`
	// Role is Primary, Secondary or Unknown.
	Role string `json:"role"`
	// Devices are the volumes with their local disk state.
	Devices []DeviceStatus `json:"devices"`
	// Connections are the peers.
	Connections []ConnStatus `json:"connections"`
}

// DeviceStatus is one volume on this node.
type DeviceStatus struct {
	Volume int `json:"volume"`
	Minor  int `json:"minor"`
	// DiskState is UpToDate, Inconsistent, Diskless, Outdated, …
	DiskState string `json:"disk_state"`
}

// ConnStatus is one peer connection.
type ConnStatus struct {
	// PeerName is the peer's host name ("" on DRBD 8.4).
	PeerName string `json:"peer_name,omitempty"`
	// State is the connection state: Connected, Connecting (DRBD 9),
	// WFConnection (8.4), StandAlone, …
	State string `json:"state"`
	// PeerRole is the peer's role.
	PeerRole string `json:"peer_role"`
	// PeerDevices are the peer's volumes.
	PeerDevices []PeerDeviceStatus `json:"peer_devices"`
}

// PeerDeviceStatus is one volume as replicated to a peer.
type PeerDeviceStatus struct {
	Volume int `json:"volume"`
	// ReplicationState is Established, SyncSource, SyncTarget,
	// VerifyS, … (on 8.4 the connection state carries it).
	ReplicationState string `json:"replication_state"`
	// PeerDiskState is the peer's disk state.
	PeerDiskState string `json:"peer_disk_state"`
	// PercentInSync is how much of the volume is in sync (0–100).
	PercentInSync float64 `json:"percent_in_sync"`
	// OutOfSyncKiB is what remains to sync.
	OutOfSyncKiB int64 `json:"out_of_sync_kib"`
	// Sync is the running resync or verify, if any.
	Sync *Progress `json:"sync,omitempty"`
}

// Progress is a running resync or online verify.
type Progress struct {
	// Percent done, 0–100.
	Percent float64 `json:"percent"`
	// Speed in KiB/s (0 when not reported).
	Speed int64 `json:"speed_kib"`
	// Finish is the estimated time left (0 when not reported).
	Finish time.Duration `json:"finish"`
}

// Connected reports whether every connection is established.
func (s *Status) Connected() bool {
	if len(s.Connections) == 0 {
		return false
	}
	for _, c := range s.Connections {
		if c.State != "Connected" {
			return false
		}
	}
	return true
}

// Syncing reports whether a resync or verify runs to some peer.
func (s *Status) Syncing() bool {
	for _, c := range s.Connections {
		for _, p := range c.PeerDevices {
			if p.Sync != nil || strings.HasPrefix(p.ReplicationState, "Sync") || strings.HasPrefix(p.ReplicationState, "Verify") {
				return true
			}
		}
	}
	return false
}

// UpToDate reports whether every local volume is UpToDate.
func (s *Status) UpToDate() bool {
	if len(s.Devices) == 0 {
		return false
	}
	for _, d := range s.Devices {
		if d.DiskState != "UpToDate" {
			return false
		}
	}
	return true
}

type jsonResource struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Devices []struct {
		Volume    int    `json:"volume"`
		Minor     int    `json:"minor"`
		DiskState string `json:"disk-state"`
	} `json:"devices"`
	Connections []struct {
		Name        string `json:"name"`
		State       string `json:"connection-state"`
		PeerRole    string `json:"peer-role"`
		PeerDevices []struct {
			Volume           int      `json:"volume"`
			ReplicationState string   `json:"replication-state"`
			PeerDiskState    string   `json:"peer-disk-state"`
			OutOfSync        int64    `json:"out-of-sync"`
			PercentInSync    *float64 `json:"percent-in-sync"`
		} `json:"peer_devices"`
	} `json:"connections"`
}

// ParseStatusJSON decodes `drbdsetup status --json` (DRBD 9).
func ParseStatusJSON(data []byte) ([]Status, error) {
	var raw []jsonResource
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("drbdsetup status --json: %w", err)
	}
	out := make([]Status, 0, len(raw))
	for _, r := range raw {
		if r.Name == "" {
			return nil, fmt.Errorf("drbdsetup status --json: resource without a name")
		}
		s := Status{Name: r.Name, Role: r.Role, Devices: []DeviceStatus{}, Connections: []ConnStatus{}}
		for _, d := range r.Devices {
			s.Devices = append(s.Devices, DeviceStatus{Volume: d.Volume, Minor: d.Minor, DiskState: d.DiskState})
		}
		for _, c := range r.Connections {
			cs := ConnStatus{PeerName: c.Name, State: c.State, PeerRole: c.PeerRole, PeerDevices: []PeerDeviceStatus{}}
			for _, p := range c.PeerDevices {
				pd := PeerDeviceStatus{Volume: p.Volume, ReplicationState: p.ReplicationState,
					PeerDiskState: p.PeerDiskState, OutOfSyncKiB: p.OutOfSync, PercentInSync: 100}
				if p.PercentInSync != nil {
					pd.PercentInSync = *p.PercentInSync
				}
				if strings.HasPrefix(p.ReplicationState, "Sync") || strings.HasPrefix(p.ReplicationState, "Verify") {
					pd.Sync = &Progress{Percent: pd.PercentInSync}
				}
				cs.PeerDevices = append(cs.PeerDevices, pd)
			}
			s.Connections = append(s.Connections, cs)
		}
		out = append(out, s)
	}
	return out, nil
}

// Proc is /proc/drbd (DRBD 8.4) decoded.
type Proc struct {
	// Version is the module version ("8.4.11").
	Version string `json:"version"`
	// Minors are the configured devices, by minor.
	Minors []ProcMinor `json:"minors"`
}

// ProcMinor is one device line of /proc/drbd.
type ProcMinor struct {
	Minor int `json:"minor"`
	// CState is the connection state (cs:), "Unconfigured" for a minor
	// that is not up.
	CState string `json:"cstate"`
	// Role and PeerRole (ro:).
	Role     string `json:"role"`
	PeerRole string `json:"peer_role"`
	// DiskState and PeerDiskState (ds:).
	DiskState     string `json:"disk_state"`
	PeerDiskState string `json:"peer_disk_state"`
	// Protocol is A, B or C.
	Protocol string `json:"protocol,omitempty"`
	// OutOfSyncKiB is oos:.
	OutOfSyncKiB int64 `json:"out_of_sync_kib"`
	// Sync is the running resync or verify, if any.
	Sync *Progress `json:"sync,omitempty"`
}

// Get returns a minor's entry.
func (p *Proc) Get(minor int) (ProcMinor, bool) {
	for _, m := range p.Minors {
		if m.Minor == minor {
			return m, true
		}
	}
	return ProcMinor{}, false
}

var (
	procVersionRe = regexp.MustCompile(`^version:\s+(\S+)`)
	procMinorRe   = regexp.MustCompile(`^\s*(\d+):\s+cs:(\S+)(.*)$`)
	procSyncRe    = regexp.MustCompile(`(?:sync'ed|verified):\s*([0-9.]+)%`)
	procFinishRe  = regexp.MustCompile(`finish:\s*(\d+):(\d+):(\d+)\s+speed:\s*([0-9,]+)`)
	procOOSRe     = regexp.MustCompile(`\boos:(\d+)`)
)

// ParseProc decodes /proc/drbd as DRBD 8.4 writes it.
func ParseProc(data []byte) (*Proc, error) {
	p := &Proc{Minors: []ProcMinor{}}
	var cur *ProcMinor
	flush := func() {
		if cur != nil {
			p.Minors = append(p.Minors, *cur)
			cur = nil
		}
	}
	for i, line := range strings.Split(string(data), "\n") {
		if m := procVersionRe.FindStringSubmatch(line); m != nil {
			p.Version = m[1]
			continue
		}
		if m := procMinorRe.FindStringSubmatch(line); m != nil {
			flush()
			n, err := strconv.Atoi(m[1])
			if err != nil {
				return nil, fmt.Errorf("/proc/drbd line %d: minor %q", i+1, m[1])
			}
			pm := ProcMinor{Minor: n, CState: m[2]}
			for _, f := range strings.Fields(m[3]) {
				switch {
				case strings.HasPrefix(f, "ro:"):
					pm.Role, pm.PeerRole, _ = strings.Cut(strings.TrimPrefix(f, "ro:"), "/")
				case strings.HasPrefix(f, "ds:"):
					pm.DiskState, pm.PeerDiskState, _ = strings.Cut(strings.TrimPrefix(f, "ds:"), "/")
				case len(f) == 1 && strings.Contains("ABC", f):
					pm.Protocol = f
				}
			}
			cur = &pm
			continue
		}
		if cur == nil {
			continue
		}
		if m := procOOSRe.FindStringSubmatch(line); m != nil {
			cur.OutOfSyncKiB, _ = strconv.ParseInt(m[1], 10, 64)
		}
		if m := procSyncRe.FindStringSubmatch(line); m != nil {
			if cur.Sync == nil {
				cur.Sync = &Progress{}
			}
			cur.Sync.Percent, _ = strconv.ParseFloat(m[1], 64)
		}
		if m := procFinishRe.FindStringSubmatch(line); m != nil {
			if cur.Sync == nil {
				cur.Sync = &Progress{}
			}
			h, _ := strconv.Atoi(m[1])
			mi, _ := strconv.Atoi(m[2])
			s, _ := strconv.Atoi(m[3])
			cur.Sync.Finish = time.Duration(h)*time.Hour + time.Duration(mi)*time.Minute + time.Duration(s)*time.Second
			cur.Sync.Speed, _ = strconv.ParseInt(strings.ReplaceAll(m[4], ",", ""), 10, 64)
		}
	}
	flush()
	return p, nil
}

// repl84 maps DRBD 8.4 connection states that describe replication to
// the DRBD 9 split of connection and replication state.
func repl84(cs string) (conn, repl string) {
	switch cs {
	case "Connected":
		return "Connected", "Established"
	case "StartingSyncS", "StartingSyncT", "WFBitMapS", "WFBitMapT", "WFSyncUUID",
		"SyncSource", "SyncTarget", "VerifyS", "VerifyT", "PausedSyncS", "PausedSyncT", "Ahead", "Behind":
		return "Connected", cs
	}
	return cs, "Off"
}

// StatusFromProc turns a /proc/drbd minor into a Status named name, with
// the 8.4 states mapped onto the DRBD 9 model: a "Connected" connection
// whose replication state says SyncSource, SyncTarget, … A minor that is
// not configured gives ok=false.
func StatusFromProc(name string, m ProcMinor) (Status, bool) {
	if m.CState == "Unconfigured" {
		return Status{}, false
	}
	s := Status{Name: name, Role: m.Role,
		Devices: []DeviceStatus{{Volume: 0, Minor: m.Minor, DiskState: m.DiskState}}}
	conn, repl := repl84(m.CState)
	pd := PeerDeviceStatus{ReplicationState: repl, PeerDiskState: m.PeerDiskState, OutOfSyncKiB: m.OutOfSyncKiB, PercentInSync: 100, Sync: m.Sync}
	if m.Sync != nil {
		pd.PercentInSync = m.Sync.Percent
	}
	s.Connections = []ConnStatus{{State: conn, PeerRole: m.PeerRole, PeerDevices: []PeerDeviceStatus{pd}}}
	return s, true
}

// ProcDRBD is the path of the DRBD 8.4 status file (read with `cat`
// through the Runner, so remote runners and transcript tests see it).
const ProcDRBD = "/proc/drbd"

// ErrNotUp is returned by [ResourceStatus] for a resource that is not up.
var ErrNotUp = errors.New("DRBD resource not up")

// ResourceStatus returns a resource's status: from `drbdsetup status
// --json NAME` on DRBD 9, and on DRBD 8.4 (where drbdsetup has no JSON and
// exits 20) from /proc/drbd at the resource's minor (`drbdadm sh-minor`).
func ResourceStatus(ctx context.Context, r run.Runner, name string) (*Status, error) {
	out, err := run.Output(ctx, r, "drbdsetup", "status", "--json", name)
	if err == nil {
		sts, err := ParseStatusJSON(out)
		if err != nil {
			return nil, err
		}
		for i := range sts {
			if sts[i].Name == name {
				return &sts[i], nil
			}
		}
		return nil, fmt.Errorf("%s: %w", name, ErrNotUp)
	}
	if IsNotUp(err) {
		return nil, fmt.Errorf("%s: %w", name, ErrNotUp)
	}
	if !run.StderrContains(err, "unrecognized option") {
		return nil, fmt.Errorf("drbdsetup status %s: %w", name, err)
	}
	mo, err := run.Output(ctx, r, "drbdadm", "sh-minor", name)
	if err != nil {
		if IsNotDefined(err) {
			return nil, fmt.Errorf("%w: resource %s is not defined in the DRBD configuration", atomic.ErrInvalid, name)
		}
		return nil, fmt.Errorf("drbdadm sh-minor %s: %w", name, err)
	}
	minor, err := strconv.Atoi(strings.TrimSpace(firstLine(mo)))
	if err != nil {
		return nil, fmt.Errorf("drbdadm sh-minor %s: %q", name, mo)
	}
	data, err := run.Output(ctx, r, "cat", ProcDRBD)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ProcDRBD, err)
	}
	p, err := ParseProc(data)
	if err != nil {
		return nil, err
	}
	m, ok := p.Get(minor)
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, ErrNotUp)
	}
	st, ok := StatusFromProc(name, m)
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, ErrNotUp)
	}
	return &st, nil
}

func firstLine(b []byte) string {
	l, _, _ := strings.Cut(string(b), "\n")
	return l
}

// WaitSync polls the resource's status every interval until no resync
// or verify runs, reporting progress to fn (if not nil).
func WaitSync(ctx context.Context, r run.Runner, name string, interval time.Duration, fn func(Progress)) error {
	if interval <= 0 {
		interval = time.Second
	}
	for {
		st, err := ResourceStatus(ctx, r, name)
		if err != nil {
			return err
		}
		var p *Progress
		for _, c := range st.Connections {
			for _, pd := range c.PeerDevices {
				if pd.Sync != nil {
					p = pd.Sync
				}
			}
		}
		if p == nil && !st.Syncing() {
			return nil
		}
		if p != nil && fn != nil {
			fn(*p)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", name, ctx.Err())
		case <-time.After(interval):
		}
	}
}
