package raid

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Member is one component device of an array.
type Member struct {
	// Device is the member's path ("/dev/loop0").
	Device string `json:"device"`
	// Role is the raw role: a slot number ("0"), "spare", "faulty" or
	// "journal".
	Role string `json:"role"`
	// Slot is the member's slot, or -1 for a spare or faulty member.
	Slot int `json:"slot"`
	// Faulty is set for a member marked failed.
	Faulty bool `json:"faulty,omitempty"`
	// Spare is set for a spare.
	Spare bool `json:"spare,omitempty"`
	// Rebuilding is set for a member holding a slot that is not in sync
	// yet (recovery onto it runs or is pending).
	Rebuilding bool `json:"rebuilding,omitempty"`
}

// Array is an md array's state, decoded from `mdadm --detail --export`
// and, for state and progress, from /proc/mdstat.
type Array struct {
	// Device is the array's device ("/dev/md0").
	Device string `json:"device"`
	// Level is "raid0", "raid1", "raid5", "raid6", "raid10", …
	Level string `json:"level"`
	// RaidDevices is the number of active slots.
	RaidDevices int `json:"raid_devices"`
	// Metadata is the superblock version ("1.2").
	Metadata string `json:"metadata,omitempty"`
	// UUID is the array's UUID as mdadm prints it.
	UUID string `json:"uuid,omitempty"`
	// Name is the array name ("host:0"), for metadata 1.x.
	Name string `json:"name,omitempty"`
	// Members are the component devices, sorted by slot then device.
	Members []Member `json:"members"`
	// State is the mdstat state ("active", "inactive", "active
	// (auto-read-only)"), empty when /proc/mdstat was not consulted.
	State string `json:"state,omitempty"`
	// Degraded is set when fewer members are in sync than slots.
	Degraded bool `json:"degraded"`
	// Sync is the running resync, recovery, reshape or check, if any.
	Sync *Progress `json:"sync,omitempty"`
}

// Member returns the member with the given device path.
func (a *Array) Member(dev string) (Member, bool) {
	for _, m := range a.Members {
		if m.Device == dev {
			return m, true
		}
	}
	return Member{}, false
}

// Active returns the devices of the members holding a slot, in slot order.
func (a *Array) Active() []string {
	var out []string
	for _, m := range a.Members {
		if m.Slot >= 0 && !m.Faulty {
			out = append(out, m.Device)
		}
	}
	return out
}

// Devices returns every member's device path.
func (a *Array) Devices() []string {
	out := make([]string, 0, len(a.Members))
	for _, m := range a.Members {
		out = append(out, m.Device)
	}
	return out
}

// parseExport reads KEY=VALUE lines (mdadm --export, blkid -o export).
// Values may be quoted with single quotes by newer mdadm versions.
func parseExport(data []byte) map[string]string {
	kv := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok || k == "" {
			continue
		}
		if len(v) >= 2 && (v[0] == '\'' && v[len(v)-1] == '\'' || v[0] == '"' && v[len(v)-1] == '"') {
			v = v[1 : len(v)-1]
		}
		kv[k] = v
	}
	return kv
}

// ParseDetail decodes the output of `mdadm --detail --export DEV`.
func ParseDetail(device string, data []byte) (*Array, error) {
	kv := parseExport(data)
	lvl, ok := kv["MD_LEVEL"]
	if !ok {
		return nil, fmt.Errorf("mdadm --detail --export %s: no MD_LEVEL in output", device)
	}
	a := &Array{Device: device, Level: lvl, Metadata: kv["MD_METADATA"], UUID: kv["MD_UUID"], Name: kv["MD_NAME"]}
	if s, ok := kv["MD_DEVICES"]; ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("mdadm --detail --export %s: MD_DEVICES=%q", device, s)
		}
		a.RaidDevices = n
	}
	// mdadm 4.x: MD_DEVICE_<id>_ROLE and MD_DEVICE_<id>_DEV, <id> being
	// the member path with '/' made '_' ("dev_loop0"); mdadm 3.x wrote
	// MD_DEV_<name>_…. MD_DEVICES and MD_DEV_UUID are not members.
	byKey := map[string]*Member{}
	for k, v := range kv {
		var rest string
		switch {
		case strings.HasPrefix(k, "MD_DEVICE_"):
			rest = strings.TrimPrefix(k, "MD_DEVICE_")
		case strings.HasPrefix(k, "MD_DEV_"):
			rest = strings.TrimPrefix(k, "MD_DEV_")
		default:
			continue
		}
		var name, field string
		switch {
		case strings.HasSuffix(rest, "_ROLE"):
			name, field = strings.TrimSuffix(rest, "_ROLE"), "role"
		case strings.HasSuffix(rest, "_DEV"):
			name, field = strings.TrimSuffix(rest, "_DEV"), "dev"
		default:
			continue
		}
		if name == "" {
			continue
		}
		m := byKey[name]
		if m == nil {
			m = &Member{Slot: -1}
			byKey[name] = m
		}
		if field == "dev" {
			m.Device = v
		} else {
			m.Role = v
		}
	}
	for name, m := range byKey {
		if m.Device == "" {
			m.Device = "/" + strings.ReplaceAll(name, "_", "/")
		}
		for _, r := range strings.Split(m.Role, ",") {
			switch r = strings.TrimSpace(r); r {
			case "spare":
				m.Spare = true
			case "faulty":
				m.Faulty = true
			default:
				if n, err := strconv.Atoi(r); err == nil && n >= 0 {
					m.Slot = n
				}
			}
		}
		if m.Faulty {
			m.Slot = -1
		}
		a.Members = append(a.Members, *m)
	}
	sortMembers(a.Members)
	a.Degraded = inSync(a) < a.RaidDevices && a.Level != "raid0" && a.Level != "linear"
	return a, nil
}

func inSync(a *Array) int {
	n := 0
	for _, m := range a.Members {
		if m.Slot >= 0 && !m.Faulty && !m.Spare {
			n++
		}
	}
	return n
}

func sortMembers(ms []Member) {
	sort.Slice(ms, func(i, j int) bool {
		si, sj := ms[i].Slot, ms[j].Slot
		if si < 0 {
			si = 1 << 30
		}
		if sj < 0 {
			sj = 1 << 30
		}
		if si != sj {
			return si < sj
		}
		return ms[i].Device < ms[j].Device
	})
}

// Superblock is what `mdadm --examine --export DEV` says about a member.
type Superblock struct {
	// Level of the array the superblock belongs to.
	Level string `json:"level"`
	// UUID of the array the superblock belongs to.
	UUID string `json:"uuid"`
	// Name of the array ("host:0").
	Name string `json:"name,omitempty"`
	// Metadata is the superblock version.
	Metadata string `json:"metadata,omitempty"`
}

// ParseExamine decodes `mdadm --examine --export DEV`; nil means the
// output holds no md superblock.
func ParseExamine(data []byte) *Superblock {
	kv := parseExport(data)
	if kv["MD_UUID"] == "" && kv["MD_LEVEL"] == "" {
		return nil
	}
	return &Superblock{Level: kv["MD_LEVEL"], UUID: kv["MD_UUID"], Name: kv["MD_NAME"], Metadata: kv["MD_METADATA"]}
}

// Progress is the state of a running resync, recovery, reshape, check or
// repair of one array.
type Progress struct {
	// Device is the array ("/dev/md0").
	Device string `json:"device"`
	// Action is "resync", "recovery", "reshape", "check" or "repair".
	Action string `json:"action"`
	// Percent done, 0–100.
	Percent float64 `json:"percent"`
	// Done and Total are the progress in KiB-sized blocks as the kernel
	// reports them (0 when it only says DELAYED or PENDING).
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
	// Speed in KiB/s.
	Speed int64 `json:"speed_kib"`
	// Finish is the kernel's estimate of the time left.
	Finish time.Duration `json:"finish"`
	// Pending is set when the action is queued (DELAYED, PENDING).
	Pending bool `json:"pending,omitempty"`
}

// MDStat is /proc/mdstat decoded.
type MDStat struct {
	// Personalities are the loaded RAID levels ("raid1").
	Personalities []string `json:"personalities"`
	// Arrays by kernel name ("md0").
	Arrays []StatArray `json:"arrays"`
}

// StatArray is one array's entry in /proc/mdstat.
type StatArray struct {
	// Name is the kernel name ("md0").
	Name string `json:"name"`
	// State is "active", "inactive", or "active (auto-read-only)",
	// "active (read-only)".
	State string `json:"state"`
	// Level is "raid1", … (empty for an inactive array).
	Level string `json:"level,omitempty"`
	// Members are the member devices with their flags.
	Members []StatMember `json:"members"`
	// Blocks is the size in 1 KiB blocks.
	Blocks int64 `json:"blocks"`
	// RaidDevices and InSync are the "[n/m]" counts (0 if not shown).
	RaidDevices int `json:"raid_devices,omitempty"`
	InSync      int `json:"in_sync,omitempty"`
	// Status is the "[UU_]" map (U in sync, _ missing or rebuilding).
	Status string `json:"status,omitempty"`
	// Sync is the running action, if any.
	Sync *Progress `json:"sync,omitempty"`
}

// Degraded reports whether some slot is not in sync.
func (s StatArray) Degraded() bool { return strings.Contains(s.Status, "_") }

// StatMember is a member as /proc/mdstat lists it: loop0[1](F).
type StatMember struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
	// Faulty (F), Spare (S), WriteMostly (W), Replacement (R), Journal (J).
	Faulty      bool `json:"faulty,omitempty"`
	Spare       bool `json:"spare,omitempty"`
	WriteMostly bool `json:"write_mostly,omitempty"`
	Replacement bool `json:"replacement,omitempty"`
	Journal     bool `json:"journal,omitempty"`
}

var (
	memberRe   = regexp.MustCompile(`^([^\[\s]+)\[(\d+)\]((?:\([A-Z]\))*)$`)
	countRe    = regexp.MustCompile(`\[(\d+)/(\d+)\]\s+\[([U_]*)\]`)
	blocksRe   = regexp.MustCompile(`^(\d+) blocks`)
	progressRe = regexp.MustCompile(`\b(resync|recovery|reshape|check|repair)\s*=\s*([0-9.]+)%\s*\((\d+)/(\d+)\)\s*finish=([0-9.]+)min\s*speed=(\d+)K/sec`)
	pendingRe  = regexp.MustCompile(`\b(resync|recovery|reshape|check|repair)\s*=\s*(DELAYED|PENDING)`)
)

// Get returns the entry for name ("md0" or "/dev/md0").
func (m *MDStat) Get(name string) (StatArray, bool) {
	name = strings.TrimPrefix(name, "/dev/")
	for _, a := range m.Arrays {
		if a.Name == name {
			return a, true
		}
	}
	return StatArray{}, false
}

// ParseMDStat decodes /proc/mdstat.
func ParseMDStat(data []byte) (*MDStat, error) {
	st := &MDStat{Personalities: []string{}, Arrays: []StatArray{}}
	lines := strings.Split(string(data), "\n")
	var cur *StatArray
	flush := func() {
		if cur != nil {
			st.Arrays = append(st.Arrays, *cur)
			cur = nil
		}
	}
	for i, line := range lines {
		t := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(t, "Personalities :"):
			for _, f := range strings.Fields(strings.TrimPrefix(t, "Personalities :")) {
				st.Personalities = append(st.Personalities, strings.Trim(f, "[]"))
			}
		case strings.HasPrefix(t, "unused devices:"), strings.HasPrefix(t, "Event:"):
			flush()
		case t == "":
			flush()
		case !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") && strings.Contains(t, " : "):
			flush()
			name, rest, _ := strings.Cut(t, " : ")
			if !strings.HasPrefix(name, "md") {
				return nil, fmt.Errorf("mdstat line %d: unexpected %q", i+1, t)
			}
			a := StatArray{Name: strings.TrimSpace(name), Members: []StatMember{}}
			f := strings.Fields(rest)
			if len(f) == 0 {
				return nil, fmt.Errorf("mdstat line %d: no state in %q", i+1, t)
			}
			a.State = f[0]
			f = f[1:]
			for len(f) > 0 && strings.HasPrefix(f[0], "(") {
				a.State += " " + f[0]
				f = f[1:]
			}
			if a.State != "inactive" && len(f) > 0 && !memberRe.MatchString(f[0]) {
				a.Level = f[0]
				f = f[1:]
			}
			for _, w := range f {
				mm := memberRe.FindStringSubmatch(w)
				if mm == nil {
					return nil, fmt.Errorf("mdstat line %d: bad member %q", i+1, w)
				}
				idx, err := strconv.Atoi(mm[2])
				if err != nil {
					return nil, fmt.Errorf("mdstat line %d: bad member %q", i+1, w)
				}
				m := StatMember{Name: mm[1], Index: idx}
				m.Faulty = strings.Contains(mm[3], "(F)")
				m.Spare = strings.Contains(mm[3], "(S)")
				m.WriteMostly = strings.Contains(mm[3], "(W)")
				m.Replacement = strings.Contains(mm[3], "(R)")
				m.Journal = strings.Contains(mm[3], "(J)")
				a.Members = append(a.Members, m)
			}
			cur = &a
		case cur != nil:
			if m := blocksRe.FindStringSubmatch(t); m != nil {
				cur.Blocks, _ = strconv.ParseInt(m[1], 10, 64)
			}
			if m := countRe.FindStringSubmatch(t); m != nil {
				cur.RaidDevices, _ = strconv.Atoi(m[1])
				cur.InSync, _ = strconv.Atoi(m[2])
				cur.Status = m[3]
			}
			if m := progressRe.FindStringSubmatch(t); m != nil {
				p := &Progress{Device: "/dev/" + cur.Name, Action: m[1]}
				p.Percent, _ = strconv.ParseFloat(m[2], 64)
				p.Done, _ = strconv.ParseInt(m[3], 10, 64)
				p.Total, _ = strconv.ParseInt(m[4], 10, 64)
				mins, _ := strconv.ParseFloat(m[5], 64)
				if mins >= 0 && mins < 1e9 {
					p.Finish = time.Duration(mins * float64(time.Minute)).Round(time.Second)
				}
				p.Speed, _ = strconv.ParseInt(m[6], 10, 64)
				cur.Sync = p
			} else if m := pendingRe.FindStringSubmatch(t); m != nil {
				cur.Sync = &Progress{Device: "/dev/" + cur.Name, Action: m[1], Pending: true}
			}
		}
	}
	flush()
	return st, nil
}
