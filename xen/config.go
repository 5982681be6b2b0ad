package xen

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Value is one value of an xl.cfg setting: a string, a number or a list.
type Value struct {
	// Str is set for a string (Kind "string") or holds a number's literal
	// (Kind "number": 512, 0x200, 0755).
	Str  string  `json:"str,omitempty"`
	Kind string  `json:"kind"`
	List []Value `json:"list,omitempty"`
}

// Setting is one KEY = VALUE line.
type Setting struct {
	Key   string `json:"key"`
	Value Value  `json:"value"`
}

// Disk is one entry of the disk list (xl-disk-configuration(5)). The
// legacy form pybofh's DomuConfig wrote, "phy:/dev/vg0/web,xvda,w", is
// Protocol "phy", Target "/dev/vg0/web", Vdev "xvda", Access "w"; the
// positional form of xl.cfg(5)'s example, "/dev/vg/guest-volume,raw,xvda,rw",
// sets Format instead. The key=value form ("format=raw, vdev=xvda,
// access=rw, target=/dev/vg0/web") is read too; disks are written in the
// positional form.
type Disk struct {
	Protocol string `json:"protocol,omitempty" doc:"legacy prefix: phy, file, tap:aio …"`
	Target   string `json:"target" doc:"host device or file: /dev/vg0/web"`
	Format   string `json:"format,omitempty" doc:"raw, qcow, qcow2, vhd, qed"`
	Vdev     string `json:"vdev" doc:"guest device: xvda"`
	Access   string `json:"access,omitempty" doc:"r, ro, w or rw"`
}

// DomuConfig is a domU configuration file (xl.cfg(5)) as typed values.
// Settings bofh does not know are kept, in order, in Other, so a file read
// and written back loses nothing but comments and layout.
type DomuConfig struct {
	Name       string    `json:"name" doc:"domain name"`
	Type       string    `json:"type,omitempty" doc:"pv, pvh or hvm"`
	Kernel     string    `json:"kernel,omitempty" doc:"kernel path"`
	Ramdisk    string    `json:"ramdisk,omitempty" doc:"initrd path"`
	Cmdline    string    `json:"cmdline,omitempty" doc:"kernel command line (cmdline)"`
	Extra      string    `json:"extra,omitempty" doc:"extra kernel arguments (extra)"`
	Root       string    `json:"root,omitempty" doc:"root= argument (root)"`
	Bootloader string    `json:"bootloader,omitempty" doc:"bootloader, e.g. pygrub"`
	VCPUs      int       `json:"vcpus,omitempty" doc:"number of vCPUs"`
	Memory     int       `json:"memory,omitempty" doc:"memory in MiB"`
	MaxMem     int       `json:"maxmem,omitempty" doc:"maximum memory in MiB"`
	Disks      []Disk    `json:"disks,omitempty" doc:"disks"`
	VIFs       []string  `json:"vifs,omitempty" doc:"network interfaces (vif specs: 'bridge=br0,mac=…')"`
	Other      []Setting `json:"other,omitempty" doc:"settings bofh does not model, kept in order"`
}

var (
	keyRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)
	vdevRE = regexp.MustCompile(`^(xvd|hd|sd|vd)[a-z]{1,3}[0-9]{0,3}$`)
	numRE  = regexp.MustCompile(`^(0[xX][0-9a-fA-F]+|[0-9]+)$`)
)

// ValidName checks a domain name: what bofh accepts is stricter than xl (a
// name is also the config file's name and appears on command lines).
func ValidName(s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("domain name %q: want 1-64 of [A-Za-z0-9._+-], starting with a letter or digit", s)
	}
	if _, err := strconv.Atoi(s); err == nil {
		return fmt.Errorf("domain name %q: a number would be taken for a domain id", s)
	}
	return nil
}

func checkString(what, s string) error {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\uFFFD' {
			return fmt.Errorf("%s %q: control or invalid characters", what, s)
		}
	}
	return nil
}

// Validate checks the configuration without touching the system.
func (c DomuConfig) Validate() error {
	if err := ValidName(c.Name); err != nil {
		return err
	}
	switch c.Type {
	case "", "pv", "pvh", "hvm":
	default:
		return fmt.Errorf("type %q: want pv, pvh or hvm", c.Type)
	}
	for what, s := range map[string]string{"kernel": c.Kernel, "ramdisk": c.Ramdisk, "cmdline": c.Cmdline,
		"extra": c.Extra, "root": c.Root, "bootloader": c.Bootloader} {
		if err := checkString(what, s); err != nil {
			return err
		}
	}
	if c.VCPUs < 0 || c.VCPUs > 512 {
		return fmt.Errorf("vcpus %d: want 1 to 512", c.VCPUs)
	}
	if c.Memory < 0 || c.MaxMem < 0 || (c.MaxMem > 0 && c.MaxMem < c.Memory) {
		return fmt.Errorf("memory %d MiB, maxmem %d MiB: want positive, maxmem not below memory", c.Memory, c.MaxMem)
	}
	for i, d := range c.Disks {
		if err := d.validate(); err != nil {
			return fmt.Errorf("disk %d: %w", i, err)
		}
	}
	for i, v := range c.VIFs {
		if err := checkString(fmt.Sprintf("vif %d", i), v); err != nil {
			return err
		}
	}
	known := map[string]bool{}
	for _, k := range knownKeys {
		known[k] = true
	}
	for _, s := range c.Other {
		if !keyRE.MatchString(s.Key) || known[s.Key] {
			return fmt.Errorf("setting %q: not a valid key, or one DomuConfig models", s.Key)
		}
		if err := s.Value.validate(0); err != nil {
			return fmt.Errorf("setting %s: %w", s.Key, err)
		}
	}
	return nil
}

func (v Value) validate(depth int) error {
	switch v.Kind {
	case "string":
		return checkString("string", v.Str)
	case "number":
		if !numRE.MatchString(v.Str) {
			return fmt.Errorf("number %q: not a decimal or 0x number", v.Str)
		}
	case "list":
		if depth > 0 {
			return errors.New("lists cannot nest")
		}
		for _, e := range v.List {
			if err := e.validate(depth + 1); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("value kind %q: want string, number or list", v.Kind)
	}
	return nil
}

var diskFormats = map[string]bool{"raw": true, "qcow": true, "qcow2": true, "vhd": true, "qed": true}

func (d Disk) validate() error {
	for what, s := range map[string]string{"protocol": d.Protocol, "format": d.Format, "target": d.Target, "vdev": d.Vdev, "access": d.Access} {
		if strings.ContainsAny(s, ",=\"' \t") {
			return fmt.Errorf("%s %q: no commas, '=', quotes or blanks", what, s)
		}
		if err := checkString(what, s); err != nil {
			return err
		}
	}
	if d.Target == "" || strings.Contains(d.Target, ":") {
		return fmt.Errorf("target %q: want a path without ':' (the protocol goes apart)", d.Target)
	}
	if d.Protocol != "" && !protoRE.MatchString(d.Protocol) {
		return fmt.Errorf("protocol %q: want phy, file, tap:aio …", d.Protocol)
	}
	if d.Format != "" && !diskFormats[d.Format] {
		return fmt.Errorf("format %q: want raw, qcow, qcow2, vhd or qed", d.Format)
	}
	if !vdevRE.MatchString(d.Vdev) {
		return fmt.Errorf("vdev %q: want xvda, hdb, sdc1 …", d.Vdev)
	}
	switch d.Access {
	case "", "r", "w", "ro", "rw":
	default:
		return fmt.Errorf("access %q: want r, w, ro or rw", d.Access)
	}
	return nil
}

var protoRE = regexp.MustCompile(`^[a-z][a-z0-9]*(:[a-z][a-z0-9]*)?$`)

// String renders the disk as a positional xl disk spec:
// [<protocol>:]<target>[,<format>],<vdev>[,<access>].
func (d Disk) String() string {
	s := d.Target
	if d.Protocol != "" {
		s = d.Protocol + ":" + s
	}
	if d.Format != "" {
		s += "," + d.Format
	}
	s += "," + d.Vdev
	if d.Access != "" {
		s += "," + d.Access
	}
	return s
}

// ParseDisk parses an xl disk spec: positional
// "[<protocol>:]<target>[,<format>],<vdev>[,<access>]" or key=value.
func ParseDisk(s string) (Disk, error) {
	var d Disk
	if strings.Contains(s, "=") {
		for _, part := range strings.Split(s, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok {
				return d, fmt.Errorf("disk %q: %q is not key=value", s, part)
			}
			switch k {
			case "format":
				d.Format = v
			case "vdev":
				d.Vdev = v
			case "access":
				d.Access = v
			case "target":
				d.Target = v
			default:
				return d, fmt.Errorf("disk %q: key %q not supported (format, vdev, access, target)", s, k)
			}
		}
	} else {
		f := strings.Split(s, ",")
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		if len(f) < 2 || len(f) > 4 {
			return d, fmt.Errorf("disk %q: want [<protocol>:]<target>[,<format>],<vdev>[,<access>]", s)
		}
		d.Target = f[0]
		if i := strings.LastIndex(f[0], ":"); i >= 0 {
			d.Protocol, d.Target = f[0][:i], f[0][i+1:]
		}
		rest := f[1:]
		if diskFormats[rest[0]] {
			d.Format, rest = rest[0], rest[1:]
		}
		switch len(rest) {
		case 1:
			d.Vdev = rest[0]
		case 2:
			d.Vdev, d.Access = rest[0], rest[1]
		default:
			return d, fmt.Errorf("disk %q: want [<protocol>:]<target>[,<format>],<vdev>[,<access>]", s)
		}
	}
	if err := d.validate(); err != nil {
		return d, fmt.Errorf("disk %q: %w", s, err)
	}
	return d, nil
}

var knownKeys = []string{"name", "type", "kernel", "ramdisk", "cmdline", "extra", "root", "bootloader",
	"vcpus", "memory", "maxmem", "disk", "vif"}

// ParseConfig parses a domU configuration file (xl.cfg(5)): KEY = VALUE
// statements ended by a newline or ';', strings in double or single
// quotes, numbers, lists in [ ] (over several lines, trailing comma
// allowed), '#' comments.
func ParseConfig(data []byte) (DomuConfig, error) {
	settings, err := parseSettings(string(data))
	if err != nil {
		return DomuConfig{}, err
	}
	var c DomuConfig
	seen := map[string]bool{}
	for _, s := range settings {
		if seen[s.Key] {
			return c, fmt.Errorf("setting %s given twice", s.Key)
		}
		seen[s.Key] = true
		str := func(dst *string) error {
			if s.Value.Kind != "string" {
				return fmt.Errorf("%s: want a string, got a %s", s.Key, s.Value.Kind)
			}
			*dst = s.Value.Str
			return nil
		}
		num := func(dst *int) error {
			if s.Value.Kind != "number" {
				return fmt.Errorf("%s: want a number, got a %s", s.Key, s.Value.Kind)
			}
			n, err := strconv.ParseInt(s.Value.Str, 0, 32)
			if err != nil || n <= 0 {
				return fmt.Errorf("%s: %q is not a positive number", s.Key, s.Value.Str)
			}
			*dst = int(n)
			return nil
		}
		strs := func() ([]string, error) {
			if s.Value.Kind != "list" {
				return nil, fmt.Errorf("%s: want a list, got a %s", s.Key, s.Value.Kind)
			}
			out := []string{}
			for _, e := range s.Value.List {
				if e.Kind != "string" {
					return nil, fmt.Errorf("%s: list entries must be strings", s.Key)
				}
				out = append(out, e.Str)
			}
			return out, nil
		}
		var err error
		switch s.Key {
		case "name":
			err = str(&c.Name)
		case "type":
			err = str(&c.Type)
		case "kernel":
			err = str(&c.Kernel)
		case "ramdisk":
			err = str(&c.Ramdisk)
		case "cmdline":
			err = str(&c.Cmdline)
		case "extra":
			err = str(&c.Extra)
		case "root":
			err = str(&c.Root)
		case "bootloader":
			err = str(&c.Bootloader)
		case "vcpus":
			err = num(&c.VCPUs)
		case "memory":
			err = num(&c.Memory)
		case "maxmem":
			err = num(&c.MaxMem)
		case "disk":
			var l []string
			if l, err = strs(); err == nil {
				c.Disks = []Disk{}
				for _, e := range l {
					d, derr := ParseDisk(e)
					if derr != nil {
						err = derr
						break
					}
					c.Disks = append(c.Disks, d)
				}
			}
		case "vif":
			c.VIFs, err = strs()
		default:
			c.Other = append(c.Other, s)
		}
		if err != nil {
			return c, err
		}
	}
	if !seen["name"] {
		return c, errors.New("no name setting")
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

func parseSettings(src string) ([]Setting, error) {
	p := &parser{src: src, line: 1}
	var out []Setting
	for {
		p.skipBlank(true)
		if p.eof() {
			return out, nil
		}
		if p.peek() == ';' {
			p.pos++
			continue
		}
		key := p.word()
		if !keyRE.MatchString(key) {
			return nil, p.errf("want a KEY = VALUE setting")
		}
		p.skipBlank(false)
		if p.eof() || p.peek() != '=' {
			return nil, p.errf("want '=' after %s", key)
		}
		p.pos++
		p.skipBlank(false)
		v, err := p.value(true)
		if err != nil {
			return nil, err
		}
		out = append(out, Setting{Key: key, Value: v})
		p.skipBlank(false)
		if !p.eof() {
			switch p.peek() {
			case '\n', ';':
				p.pos++
				if p.src[p.pos-1] == '\n' {
					p.line++
				}
			default:
				return nil, p.errf("unexpected %q after the value of %s", p.peek(), key)
			}
		}
	}
}

type parser struct {
	src  string
	pos  int
	line int
}

func (p *parser) eof() bool  { return p.pos >= len(p.src) }
func (p *parser) peek() byte { return p.src[p.pos] }

func (p *parser) errf(format string, args ...any) error {
	return fmt.Errorf("line %d: %s", p.line, fmt.Sprintf(format, args...))
}

// skipBlank skips spaces, tabs and comments, and newlines if nl is set.
func (p *parser) skipBlank(nl bool) {
	for !p.eof() {
		switch c := p.peek(); {
		case c == ' ' || c == '\t' || c == '\r':
			p.pos++
		case c == '\n' && nl:
			p.pos++
			p.line++
		case c == '#':
			for !p.eof() && p.peek() != '\n' {
				p.pos++
			}
		default:
			return
		}
	}
}

func (p *parser) word() string {
	start := p.pos
	for !p.eof() {
		c := p.peek()
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			p.pos++
			continue
		}
		break
	}
	return p.src[start:p.pos]
}

func (p *parser) value(top bool) (Value, error) {
	if p.eof() {
		return Value{}, p.errf("missing value")
	}
	switch c := p.peek(); {
	case c == '"' || c == '\'':
		s, err := p.str(c)
		return Value{Kind: "string", Str: s}, err
	case c >= '0' && c <= '9':
		w := p.word()
		if !numRE.MatchString(w) {
			return Value{}, p.errf("bad number %q", w)
		}
		return Value{Kind: "number", Str: w}, nil
	case c == '[' && top:
		p.pos++
		v := Value{Kind: "list", List: []Value{}}
		for {
			p.skipBlank(true)
			if p.eof() {
				return Value{}, p.errf("unterminated list")
			}
			if p.peek() == ']' {
				p.pos++
				return v, nil
			}
			e, err := p.value(false)
			if err != nil {
				return Value{}, err
			}
			v.List = append(v.List, e)
			p.skipBlank(true)
			if p.eof() {
				return Value{}, p.errf("unterminated list")
			}
			switch p.peek() {
			case ',':
				p.pos++
			case ']':
			default:
				return Value{}, p.errf("want ',' or ']' in a list, got %q", p.peek())
			}
		}
	}
	return Value{}, p.errf("want a string, number or list, got %q", p.peek())
}

func (p *parser) str(q byte) (string, error) {
	p.pos++
	var b strings.Builder
	for {
		if p.eof() || p.peek() == '\n' {
			return "", p.errf("unterminated string")
		}
		c := p.peek()
		p.pos++
		switch {
		case c == q:
			if err := checkString("string", b.String()); err != nil {
				return "", p.errf("%v", err)
			}
			return b.String(), nil
		case c == '\\':
			if p.eof() {
				return "", p.errf("unterminated string")
			}
			e := p.peek()
			p.pos++
			switch e {
			case '\\', '"', '\'':
				b.WriteByte(e)
			default:
				return "", p.errf("escape \\%c not supported (only \\\\, \\\", \\')", e)
			}
		default:
			b.WriteByte(c)
		}
	}
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

func (v Value) format() string {
	switch v.Kind {
	case "string":
		return quote(v.Str)
	case "number":
		return v.Str
	}
	parts := make([]string, len(v.List))
	for i, e := range v.List {
		parts[i] = e.format()
	}
	return "[ " + strings.Join(parts, ", ") + " ]"
}

// Format renders the configuration as an xl.cfg file. It validates first.
func (c DomuConfig) Format() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString("# written by bofh\n")
	str := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s = %s\n", k, quote(v))
		}
	}
	num := func(k string, v int) {
		if v != 0 {
			fmt.Fprintf(&b, "%s = %d\n", k, v)
		}
	}
	str("name", c.Name)
	str("type", c.Type)
	str("kernel", c.Kernel)
	str("ramdisk", c.Ramdisk)
	str("cmdline", c.Cmdline)
	str("extra", c.Extra)
	str("root", c.Root)
	str("bootloader", c.Bootloader)
	num("vcpus", c.VCPUs)
	num("memory", c.Memory)
	num("maxmem", c.MaxMem)
	if c.Disks != nil {
		b.WriteString("disk = [\n")
		for _, d := range c.Disks {
			fmt.Fprintf(&b, "    %s,\n", quote(d.String()))
		}
		b.WriteString("]\n")
	}
	if c.VIFs != nil {
		b.WriteString("vif = [\n")
		for _, v := range c.VIFs {
			fmt.Fprintf(&b, "    %s,\n", quote(v))
		}
		b.WriteString("]\n")
	}
	for _, s := range c.Other {
		fmt.Fprintf(&b, "%s = %s\n", s.Key, s.Value.format())
	}
	return []byte(b.String()), nil
}
