package drbd

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/bofhkit/bofh/atomic"
)

// DefaultConfigDir is where resource files live unless the site says.
const DefaultConfigDir = "/etc/drbd.d"

// DefaultPort is the first port handed out when no config uses one.
const DefaultPort = 7789

// SiteConfig is the site file's `drbd:` section.
type SiteConfig struct {
	// ConfigDir holds the .res files (default /etc/drbd.d).
	ConfigDir string `yaml:"config_dir"`
	// BasePort is the lowest port allocated (default 7789).
	BasePort int `yaml:"base_port"`
}

// Node is one host of a resource.
type Node struct {
	// Name is the host name as `uname -n` prints it on that host.
	Name string `json:"name" doc:"host name (uname -n)"`
	// Address is the node's replication IP address (v4 or v6).
	Address string `json:"address" doc:"replication IP address"`
	// Disk is the backing block device on that node.
	Disk string `json:"disk" doc:"backing block device"`
	// MetaDisk is "internal" (default) or a device.
	MetaDisk string `json:"meta_disk,omitempty" doc:"internal (default) or a device"`
	// NodeID is the DRBD 9 node-id (omit for DRBD 8.4).
	NodeID *int `json:"node_id,omitempty" doc:"DRBD 9 node-id; leave unset for DRBD 8.4"`
}

// Resource is a typed DRBD resource: what a .res file says.
type Resource struct {
	// Name is the resource name.
	Name string `json:"name" doc:"resource name"`
	// Protocol is A, B or C (default C).
	Protocol string `json:"protocol,omitempty" doc:"replication protocol A, B or C (default C)"`
	// Port is the TCP port; 0 allocates the next free one.
	Port int `json:"port,omitempty" doc:"TCP port; 0 allocates the next free one"`
	// Minor is the device minor (/dev/drbdN); nil allocates the next free one.
	Minor *int `json:"minor,omitempty" doc:"device minor; unset allocates the next free one"`
	// VerifyAlg is the digest online verify uses (e.g. "sha256",
	// "crc32c"); drbd.verify needs one.
	VerifyAlg string `json:"verify_alg,omitempty" doc:"digest for online verify (sha256, crc32c, …); needed by drbd.verify"`
	// ResyncRate caps the bandwidth a resync may use, in KiB/s or with a
	// K, M or G suffix ("10M"); rendered as resync-rate (the fixed
	// controller) and c-max-rate (the dynamic one). Empty: DRBD's default.
	ResyncRate string `json:"resync_rate,omitempty" doc:"cap on resync bandwidth: KiB/s, or with a K, M or G suffix (10M); unset: DRBD's default"`
	// Nodes are the hosts, usually two.
	Nodes []Node `json:"nodes" doc:"hosts: name, address, disk"`
}

// Device returns the resource's device path (/dev/drbdN); "" if the minor
// is not set.
func (r Resource) Device() string {
	if r.Minor == nil {
		return ""
	}
	return "/dev/drbd" + strconv.Itoa(*r.Minor)
}

var (
	nameRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,62}$`)
	algRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9()_-]{0,63}$`)
	rateRe = regexp.MustCompile(`^[1-9][0-9]{0,9}[KMG]?$`)
	hostRe = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$`)
	// drbdadm keywords that cannot name a resource.
	reserved = map[string]bool{"all": true, "common": true, "global": true, "resource": true,
		"on": true, "floating": true, "stacked-on-top-of": true, "include": true, "skip": true,
		"template-file": true, "connection": true, "volume": true}
)

// ValidName checks a resource name against DRBD's rules (as bofh
// enforces them: see the package doc). The error wraps atomic.ErrInvalid.
func ValidName(name string) error {
	if !nameRe.MatchString(name) || reserved[strings.ToLower(name)] {
		return fmt.Errorf("%w: DRBD resource name %q: want 1-63 letters, digits, '_', '-', '.' or '+', not starting with '-' or '.', and not a drbdadm keyword", atomic.ErrInvalid, name)
	}
	return nil
}

func validDisk(d string) error {
	bad := strings.ContainsFunc(d, func(c rune) bool { return c <= ' ' || c == 0x7f || unicode.IsSpace(c) || !unicode.IsPrint(c) })
	if d == "" || !filepath.IsAbs(d) || filepath.Clean(d) != d || !strings.HasPrefix(d, "/dev/") || bad || strings.ContainsAny(d, ";{}\"'#\\") {
		return fmt.Errorf("%w: disk %q: want an absolute /dev path", atomic.ErrInvalid, d)
	}
	return nil
}

// Validate checks the spec without touching the system.
func (r Resource) Validate() error {
	if err := ValidName(r.Name); err != nil {
		return err
	}
	switch r.Protocol {
	case "", "A", "B", "C":
	default:
		return fmt.Errorf("%w: protocol %q: want A, B or C", atomic.ErrInvalid, r.Protocol)
	}
	if r.VerifyAlg != "" && !algRe.MatchString(r.VerifyAlg) {
		return fmt.Errorf("%w: verify_alg %q: want a kernel digest name like sha256 or crc32c", atomic.ErrInvalid, r.VerifyAlg)
	}
	if r.ResyncRate != "" && !rateRe.MatchString(r.ResyncRate) {
		return fmt.Errorf("%w: resync_rate %q: want a positive number of KiB/s, optionally with a K, M or G suffix", atomic.ErrInvalid, r.ResyncRate)
	}
	if r.Port != 0 && (r.Port < 1 || r.Port > 65535) {
		return fmt.Errorf("%w: port %d: want 1-65535", atomic.ErrInvalid, r.Port)
	}
	if r.Minor != nil && (*r.Minor < 0 || *r.Minor > 1048575) {
		return fmt.Errorf("%w: minor %d: want 0-1048575", atomic.ErrInvalid, *r.Minor)
	}
	if len(r.Nodes) < 1 || len(r.Nodes) > 32 {
		return fmt.Errorf("%w: resource %s: want 1 to 32 nodes, got %d", atomic.ErrInvalid, r.Name, len(r.Nodes))
	}
	names, addrs, ids := map[string]bool{}, map[string]bool{}, map[int]bool{}
	withID := 0
	for _, n := range r.Nodes {
		if !hostRe.MatchString(n.Name) || len(n.Name) > 253 {
			return fmt.Errorf("%w: node name %q: want a host name", atomic.ErrInvalid, n.Name)
		}
		if names[n.Name] {
			return fmt.Errorf("%w: node %s listed twice", atomic.ErrInvalid, n.Name)
		}
		names[n.Name] = true
		ip, err := netip.ParseAddr(n.Address)
		if err != nil || ip.Zone() != "" {
			return fmt.Errorf("%w: node %s: address %q: want an IP address", atomic.ErrInvalid, n.Name, n.Address)
		}
		if addrs[ip.String()] {
			return fmt.Errorf("%w: address %s used by two nodes", atomic.ErrInvalid, n.Address)
		}
		addrs[ip.String()] = true
		if err := validDisk(n.Disk); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		if n.MetaDisk != "" && n.MetaDisk != "internal" {
			if err := validDisk(n.MetaDisk); err != nil {
				return fmt.Errorf("node %s: meta_disk: %w", n.Name, err)
			}
		}
		if n.NodeID != nil {
			withID++
			if *n.NodeID < 0 || *n.NodeID > 31 || ids[*n.NodeID] {
				return fmt.Errorf("%w: node %s: node_id %d: want a unique 0-31", atomic.ErrInvalid, n.Name, *n.NodeID)
			}
			ids[*n.NodeID] = true
		}
	}
	if withID != 0 && withID != len(r.Nodes) {
		return fmt.Errorf("%w: resource %s: set node_id on every node (DRBD 9) or on none (DRBD 8.4)", atomic.ErrInvalid, r.Name)
	}
	return nil
}

func addrPort(ip string, port int) string {
	a, err := netip.ParseAddr(ip)
	if err == nil && a.Is6() {
		return "ipv6 [" + a.String() + "]:" + strconv.Itoa(port)
	}
	return ip + ":" + strconv.Itoa(port)
}

// Render returns the .res file for r. Port and Minor must be set (see
// [Allocate]).
func Render(r Resource) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if r.Port == 0 || r.Minor == nil {
		return nil, fmt.Errorf("%w: resource %s: port and minor must be allocated before rendering", atomic.ErrInvalid, r.Name)
	}
	proto := r.Protocol
	if proto == "" {
		proto = "C"
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# written by bofh; changes are overwritten by the next bofh run\n")
	fmt.Fprintf(&b, "resource %s {\n", r.Name)
	fmt.Fprintf(&b, "\tnet {\n\t\tprotocol %s;\n", proto)
	if r.VerifyAlg != "" {
		fmt.Fprintf(&b, "\t\tverify-alg %s;\n", r.VerifyAlg)
	}
	fmt.Fprintf(&b, "\t}\n")
	if r.ResyncRate != "" {
		fmt.Fprintf(&b, "\tdisk {\n\t\tresync-rate %s;\n\t\tc-max-rate %s;\n\t}\n", r.ResyncRate, r.ResyncRate)
	}
	for _, n := range r.Nodes {
		meta := n.MetaDisk
		if meta == "" {
			meta = "internal"
		}
		fmt.Fprintf(&b, "\ton %s {\n", n.Name)
		if n.NodeID != nil {
			fmt.Fprintf(&b, "\t\tnode-id %d;\n", *n.NodeID)
		}
		fmt.Fprintf(&b, "\t\tdevice /dev/drbd%d minor %d;\n", *r.Minor, *r.Minor)
		fmt.Fprintf(&b, "\t\tdisk %s;\n", n.Disk)
		fmt.Fprintf(&b, "\t\taddress %s;\n", addrPort(n.Address, r.Port))
		fmt.Fprintf(&b, "\t\tmeta-disk %s;\n", meta)
		fmt.Fprintf(&b, "\t}\n")
	}
	if len(r.Nodes) > 2 && r.Nodes[0].NodeID != nil {
		fmt.Fprintf(&b, "\tconnection-mesh {\n\t\thosts")
		for _, n := range r.Nodes {
			fmt.Fprintf(&b, " %s", n.Name)
		}
		fmt.Fprintf(&b, ";\n\t}\n")
	}
	fmt.Fprintf(&b, "}\n")
	return b.Bytes(), nil
}

// Section is one parsed block of DRBD configuration syntax: a keyword,
// its arguments, its statements and nested sections.
type Section struct {
	Keyword    string     `json:"keyword"`
	Args       []string   `json:"args,omitempty"`
	Statements [][]string `json:"statements,omitempty"`
	Sections   []*Section `json:"sections,omitempty"`
}

// Parse decodes DRBD configuration syntax (drbd.conf(5)): sections
// `keyword args { … }` and statements `keyword args;`, # comments,
// double-quoted strings. The top level is returned as a Section with an
// empty keyword.
func Parse(data []byte) (*Section, error) {
	toks, err := tokenize(data)
	if err != nil {
		return nil, err
	}
	root := &Section{}
	stack := []*Section{root}
	var cur []string
	for _, t := range toks {
		top := stack[len(stack)-1]
		switch {
		case t.punct && t.s == "{":
			if len(cur) == 0 {
				return nil, fmt.Errorf("line %d: '{' without a keyword", t.line)
			}
			s := &Section{Keyword: cur[0], Args: cur[1:]}
			top.Sections = append(top.Sections, s)
			stack = append(stack, s)
			cur = nil
		case t.punct && t.s == "}":
			if len(cur) != 0 {
				return nil, fmt.Errorf("line %d: statement %q not ended with ';'", t.line, strings.Join(cur, " "))
			}
			if len(stack) == 1 {
				return nil, fmt.Errorf("line %d: unbalanced '}'", t.line)
			}
			stack = stack[:len(stack)-1]
		case t.punct && t.s == ";":
			if len(cur) == 0 {
				continue // a stray ';' after '}' is accepted by drbdadm
			}
			top.Statements = append(top.Statements, cur)
			cur = nil
		default:
			cur = append(cur, t.s)
		}
	}
	if len(cur) != 0 {
		return nil, fmt.Errorf("statement %q not ended with ';'", strings.Join(cur, " "))
	}
	if len(stack) != 1 {
		return nil, errors.New("unexpected end of file: missing '}'")
	}
	return root, nil
}

type token struct {
	s     string
	punct bool
	line  int
}

func tokenize(data []byte) ([]token, error) {
	var toks []token
	line := 1
	for i := 0; i < len(data); {
		c := data[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			for i < len(data) && data[i] != '\n' {
				i++
			}
		case c == '{' || c == '}' || c == ';':
			toks = append(toks, token{s: string(c), punct: true, line: line})
			i++
		case c == '"':
			j := i + 1
			var s strings.Builder
			for ; j < len(data) && data[j] != '"'; j++ {
				if data[j] == '\\' && j+1 < len(data) {
					j++
				}
				if data[j] == '\n' {
					return nil, fmt.Errorf("line %d: newline in quoted string", line)
				}
				s.WriteByte(data[j])
			}
			if j >= len(data) {
				return nil, fmt.Errorf("line %d: unterminated string", line)
			}
			toks = append(toks, token{s: s.String(), line: line})
			i = j + 1
		default:
			j := i
			for j < len(data) && !strings.ContainsRune(" \t\r\n{};#\"", rune(data[j])) {
				j++
			}
			toks = append(toks, token{s: string(data[i:j]), line: line})
			i = j
		}
	}
	return toks, nil
}

// ParseResources decodes the resources of a configuration file back into
// specs (the inverse of [Render] for the subset it writes). Sections it
// does not model (options, disk, handlers, volumes) are ignored.
func ParseResources(data []byte) ([]Resource, error) {
	root, err := Parse(data)
	if err != nil {
		return nil, err
	}
	var out []Resource
	for _, s := range root.Sections {
		if s.Keyword != "resource" || len(s.Args) != 1 {
			continue
		}
		r := Resource{Name: s.Args[0]}
		for _, st := range s.Statements {
			if st[0] == "protocol" && len(st) == 2 {
				r.Protocol = st[1]
			}
		}
		for _, sub := range s.Sections {
			switch sub.Keyword {
			case "net":
				for _, st := range sub.Statements {
					if st[0] == "protocol" && len(st) == 2 {
						r.Protocol = st[1]
					}
					if st[0] == "verify-alg" && len(st) == 2 {
						r.VerifyAlg = st[1]
					}
				}
			case "disk":
				for _, st := range sub.Statements {
					if st[0] == "resync-rate" && len(st) == 2 {
						r.ResyncRate = st[1]
					}
				}
			case "on":
				if len(sub.Args) != 1 {
					return nil, fmt.Errorf("resource %s: 'on' wants one host name", r.Name)
				}
				n := Node{Name: sub.Args[0]}
				for _, st := range sub.Statements {
					if err := applyNode(&r, &n, st); err != nil {
						return nil, fmt.Errorf("resource %s on %s: %w", r.Name, n.Name, err)
					}
				}
				r.Nodes = append(r.Nodes, n)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

func applyNode(r *Resource, n *Node, st []string) error {
	arg := func(i int) string {
		if i < len(st) {
			return st[i]
		}
		return ""
	}
	switch st[0] {
	case "node-id":
		id, err := strconv.Atoi(arg(1))
		if err != nil {
			return fmt.Errorf("node-id %q", arg(1))
		}
		n.NodeID = &id
	case "disk":
		n.Disk = arg(1)
	case "meta-disk":
		n.MetaDisk = arg(1)
	case "address":
		ip, port, err := parseAddress(st[1:])
		if err != nil {
			return err
		}
		n.Address = ip
		r.Port = port
	case "device":
		m, ok := minorOf(st[1:])
		if !ok {
			return fmt.Errorf("device %q", strings.Join(st[1:], " "))
		}
		r.Minor = &m
	}
	return nil
}

// parseAddress decodes "[ipv4|ipv6|ssocks|sdp] ADDR:PORT" / "ipv6 [ADDR]:PORT".
func parseAddress(args []string) (string, int, error) {
	if len(args) == 2 {
		args = args[1:]
	}
	if len(args) != 1 {
		return "", 0, fmt.Errorf("address %q", strings.Join(args, " "))
	}
	ap, err := netip.ParseAddrPort(args[0])
	if err != nil {
		return "", 0, fmt.Errorf("address %q: %w", args[0], err)
	}
	return ap.Addr().String(), int(ap.Port()), nil
}

var drbdDevRe = regexp.MustCompile(`^/dev/drbd([0-9]+)$`)

// minorOf reads a device statement: "/dev/drbdN", "minor N",
// "/dev/drbdN minor N" or "/dev/name minor N".
func minorOf(args []string) (int, bool) {
	for i, a := range args {
		if a == "minor" && i+1 < len(args) {
			n, err := strconv.Atoi(args[i+1])
			return n, err == nil && n >= 0
		}
	}
	if len(args) >= 1 {
		if m := drbdDevRe.FindStringSubmatch(args[0]); m != nil {
			n, err := strconv.Atoi(m[1])
			return n, err == nil
		}
	}
	return 0, false
}

// Used is what the existing configs in a directory occupy.
type Used struct {
	Ports   []int    `json:"ports"`
	Minors  []int    `json:"minors"`
	Names   []string `json:"names"`
	Files   []string `json:"files"`
	Skipped []string `json:"skipped,omitempty"` // files that did not parse
}

// ScanDir reads every *.res and *.conf file in dir (not recursively) and
// collects the ports, minors and resource names they use, like pybofh's
// highest_port/highest_minor. A missing dir is empty. A file that does not
// parse is reported in Skipped, and its ports and minors are still found
// by a plain scan so they are never handed out twice.
func ScanDir(dir string) (*Used, error) {
	u := &Used{}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return u, nil
	}
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", dir, err)
	}
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || !(strings.HasSuffix(n, ".res") || strings.HasSuffix(n, ".conf")) {
			continue
		}
		p := filepath.Join(dir, n)
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("scan %s: %w", p, err)
		}
		u.Files = append(u.Files, p)
		root, err := Parse(data)
		if err != nil {
			u.Skipped = append(u.Skipped, p)
			scanText(u, data)
			continue
		}
		walk(u, root, 0)
	}
	slices.Sort(u.Ports)
	u.Ports = slices.Compact(u.Ports)
	slices.Sort(u.Minors)
	u.Minors = slices.Compact(u.Minors)
	slices.Sort(u.Names)
	return u, nil
}

func walk(u *Used, s *Section, depth int) {
	if s.Keyword == "resource" && len(s.Args) == 1 && depth == 1 {
		u.Names = append(u.Names, s.Args[0])
	}
	for _, st := range s.Statements {
		switch st[0] {
		case "address":
			if _, port, err := parseAddress(st[1:]); err == nil {
				u.Ports = append(u.Ports, port)
			}
		case "device":
			if m, ok := minorOf(st[1:]); ok {
				u.Minors = append(u.Minors, m)
			}
		}
	}
	for _, sub := range s.Sections {
		walk(u, sub, depth+1)
	}
}

var (
	textPortRe  = regexp.MustCompile(`address\s+(?:ipv[46]\s+)?\[?[0-9A-Fa-f.:]+\]?:([0-9]{1,5})`)
	textMinorRe = regexp.MustCompile(`(?:/dev/drbd|minor\s+)([0-9]{1,7})`)
)

func scanText(u *Used, data []byte) {
	for _, m := range textPortRe.FindAllSubmatch(data, -1) {
		if n, err := strconv.Atoi(string(m[1])); err == nil && n <= 65535 {
			u.Ports = append(u.Ports, n)
		}
	}
	for _, m := range textMinorRe.FindAllSubmatch(data, -1) {
		if n, err := strconv.Atoi(string(m[1])); err == nil {
			u.Minors = append(u.Minors, n)
		}
	}
}

// HighestPort returns the highest port in use, or 0.
func (u *Used) HighestPort() int {
	if len(u.Ports) == 0 {
		return 0
	}
	return u.Ports[len(u.Ports)-1]
}

// HighestMinor returns the highest minor in use, or -1.
func (u *Used) HighestMinor() int {
	if len(u.Minors) == 0 {
		return -1
	}
	return u.Minors[len(u.Minors)-1]
}

// Allocate fills in r's Port and Minor when unset: one above the highest
// in use (ports start at base, default 7789). Set values are checked not
// to collide with another resource's.
func (u *Used) Allocate(r Resource, base int) (Resource, error) {
	if base <= 0 {
		base = DefaultPort
	}
	if r.Port == 0 {
		r.Port = max(base, u.HighestPort()+1)
		if r.Port > 65535 {
			return r, fmt.Errorf("no free DRBD port above %d", u.HighestPort())
		}
	} else if slices.Contains(u.Ports, r.Port) {
		return r, fmt.Errorf("%w: port %d is used by another DRBD resource", atomic.ErrInvalid, r.Port)
	}
	if r.Minor == nil {
		m := u.HighestMinor() + 1
		r.Minor = &m
	} else if slices.Contains(u.Minors, *r.Minor) {
		return r, fmt.Errorf("%w: minor %d is used by another DRBD resource", atomic.ErrInvalid, *r.Minor)
	}
	return r, nil
}
