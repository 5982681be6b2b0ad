package libvirt

import (
	"encoding/xml"
	"errors"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// nameRE is what bofh accepts as a domain, pool, volume or network name:
// stricter than libvirt (which takes almost anything but '/'), so a name is
// always safe as a file name, in a log line and on a command line.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$`)

// ValidName checks a domain, pool, volume or network name.
func ValidName(what, s string) error {
	if !nameRE.MatchString(s) {
		return fmt.Errorf("%s name %q: want 1-64 of [A-Za-z0-9._+-], starting with a letter or digit", what, s)
	}
	return nil
}

// ParseSize parses a size with a unit ("512MiB", "2G", "1048576KiB", "4096B")
// and returns it in KiB, libvirt's unit for memory. K, M, G, T are binary
// (as in libvirt and LVM); KB, MB, GB, TB are decimal. A bare number is
// refused: memory in the wrong unit is a classic outage.
func ParseSize(s string) (uint64, error) {
	i := strings.IndexFunc(s, func(r rune) bool { return !(r >= '0' && r <= '9') })
	if i <= 0 {
		return 0, fmt.Errorf("size %q: want a number followed by a unit (512MiB, 2G)", s)
	}
	n, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	var mult, div uint64 = 1, 1
	switch s[i:] {
	case "B":
		div = 1024
	case "K", "KiB", "k":
		mult = 1
	case "M", "MiB":
		mult = 1 << 10
	case "G", "GiB":
		mult = 1 << 20
	case "T", "TiB":
		mult = 1 << 30
	case "KB":
		mult, div = 1000, 1024
	case "MB":
		mult, div = 1000*1000, 1024
	case "GB":
		mult, div = 1000*1000*1000, 1024
	case "TB":
		mult, div = 1000*1000*1000*1000, 1024
	default:
		return 0, fmt.Errorf("size %q: unknown unit %q (B, K/KiB, M/MiB, G/GiB, T/TiB, KB, MB, GB, TB)", s, s[i:])
	}
	if n > math.MaxUint64/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	kib := n * mult / div
	if n*mult%div != 0 {
		return 0, fmt.Errorf("size %q: not a whole number of KiB", s)
	}
	if kib == 0 {
		return 0, fmt.Errorf("size %q: must be more than zero", s)
	}
	return kib, nil
}

// checkText refuses control characters (other than none at all) in free
// text; XML-special characters are fine, the encoder escapes them.
func checkText(what, s string) error {
	if len(s) > 4096 {
		return fmt.Errorf("%s: longer than 4096 bytes", what)
	}
	for _, r := range s {
		if unicode.IsControl(r) || r == unicode.ReplacementChar || !xmlChar(r) {
			return fmt.Errorf("%s %q: control or invalid characters", what, s)
		}
	}
	return nil
}

// xmlChar reports whether XML 1.0 can carry r (the encoder would replace
// it, and the value would not come back as given).
func xmlChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D || r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}

func checkAbs(what, p string) error {
	if p == "" || !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("%s %q: want a clean absolute path", what, p)
	}
	return checkText(what, p)
}

// DomainSpec is a domain (virtual machine) as bofh defines it. It renders
// to libvirt domain XML with encoding/xml: values are escaped by the
// encoder, never pasted into a template.
type DomainSpec struct {
	Name        string `json:"name" yaml:"name" doc:"domain name"`
	Type        string `json:"type,omitempty" yaml:"type,omitempty" doc:"hypervisor type: kvm (default), qemu (TCG), xen, test"`
	Title       string `json:"title,omitempty" yaml:"title,omitempty" doc:"one-line title (free text)"`
	Description string `json:"description,omitempty" yaml:"description,omitempty" doc:"description (free text)"`
	VCPUs       int    `json:"vcpus" yaml:"vcpus" doc:"number of virtual CPUs (1-256)"`
	Memory      string `json:"memory" yaml:"memory" doc:"memory with a unit: 512MiB, 2G"`
	Arch        string `json:"arch,omitempty" yaml:"arch,omitempty" doc:"guest architecture (default x86_64)"`
	Machine     string `json:"machine,omitempty" yaml:"machine,omitempty" doc:"machine type (default: the hypervisor's)"`
	Kernel      string `json:"kernel,omitempty" yaml:"kernel,omitempty" doc:"direct kernel boot: absolute path of the kernel"`
	Initrd      string `json:"initrd,omitempty" yaml:"initrd,omitempty" doc:"initrd for direct kernel boot"`
	Cmdline     string `json:"cmdline,omitempty" yaml:"cmdline,omitempty" doc:"kernel command line for direct kernel boot"`
	Disks       []Disk `json:"disks,omitempty" yaml:"disks,omitempty" doc:"block devices given to the guest"`
	NICs        []NIC  `json:"nics,omitempty" yaml:"nics,omitempty" doc:"network interfaces on host bridges"`
	Console     bool   `json:"console,omitempty" yaml:"console,omitempty" doc:"add a serial console (pty)"`
}

// Disk is a host block device (an LV, a DRBD device, a LUKS mapping)
// given to the guest.
type Disk struct {
	Source   string `json:"source" yaml:"source" doc:"host block device: /dev/vg0/web, /dev/drbd1, /dev/mapper/web_crypt"`
	Target   string `json:"target" yaml:"target" doc:"guest device name: vda, sdb, xvda"`
	Bus      string `json:"bus,omitempty" yaml:"bus,omitempty" doc:"virtio (default), scsi, sata, ide, xen"`
	ReadOnly bool   `json:"readonly,omitempty" yaml:"readonly,omitempty" doc:"read-only disk"`
}

// NIC is a network interface attached to a host bridge.
type NIC struct {
	Bridge string `json:"bridge" yaml:"bridge" doc:"host bridge: br0"`
	MAC    string `json:"mac,omitempty" yaml:"mac,omitempty" doc:"MAC address (default: libvirt picks one)"`
	Model  string `json:"model,omitempty" yaml:"model,omitempty" doc:"virtio (default), e1000, rtl8139"`
}

var (
	targetRE = regexp.MustCompile(`^(vd|sd|hd|xvd)[a-z]{1,3}$`)
	bridgeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$`)
	wordRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// Validate checks the spec without touching the system.
func (s DomainSpec) Validate() error {
	if err := ValidName("domain", s.Name); err != nil {
		return err
	}
	switch s.Type {
	case "", "kvm", "qemu", "xen", "test":
	default:
		return fmt.Errorf("domain type %q: want kvm, qemu, xen or test", s.Type)
	}
	if err := checkText("title", s.Title); err != nil {
		return err
	}
	if strings.ContainsAny(s.Title, "\n") {
		return errors.New("title: must be one line")
	}
	if err := checkText("description", s.Description); err != nil {
		return err
	}
	if s.VCPUs < 1 || s.VCPUs > 256 {
		return fmt.Errorf("vcpus %d: want 1 to 256", s.VCPUs)
	}
	if _, err := ParseSize(s.Memory); err != nil {
		return fmt.Errorf("memory: %w", err)
	}
	for what, v := range map[string]string{"arch": s.Arch, "machine": s.Machine} {
		if v != "" && !wordRE.MatchString(v) {
			return fmt.Errorf("%s %q: not a valid word", what, v)
		}
	}
	if s.Kernel != "" {
		if err := checkAbs("kernel", s.Kernel); err != nil {
			return err
		}
	}
	if s.Initrd != "" {
		if s.Kernel == "" {
			return errors.New("initrd without kernel")
		}
		if err := checkAbs("initrd", s.Initrd); err != nil {
			return err
		}
	}
	if s.Cmdline != "" && s.Kernel == "" {
		return errors.New("cmdline without kernel")
	}
	if err := checkText("cmdline", s.Cmdline); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, d := range s.Disks {
		if err := checkAbs(fmt.Sprintf("disk %d source", i), d.Source); err != nil {
			return err
		}
		if !targetRE.MatchString(d.Target) {
			return fmt.Errorf("disk %d target %q: want vdX, sdX, hdX or xvdX", i, d.Target)
		}
		if seen[d.Target] {
			return fmt.Errorf("disk %d target %q: used twice", i, d.Target)
		}
		seen[d.Target] = true
		switch d.Bus {
		case "", "virtio", "scsi", "sata", "ide", "xen":
		default:
			return fmt.Errorf("disk %d bus %q: want virtio, scsi, sata, ide or xen", i, d.Bus)
		}
	}
	for i, n := range s.NICs {
		if !bridgeRE.MatchString(n.Bridge) {
			return fmt.Errorf("nic %d bridge %q: not a valid interface name", i, n.Bridge)
		}
		if n.MAC != "" {
			hw, err := net.ParseMAC(n.MAC)
			if err != nil || len(hw) != 6 {
				return fmt.Errorf("nic %d mac %q: want aa:bb:cc:dd:ee:ff", i, n.MAC)
			}
		}
		switch n.Model {
		case "", "virtio", "e1000", "e1000e", "rtl8139", "netfront":
		default:
			return fmt.Errorf("nic %d model %q: want virtio, e1000, e1000e, rtl8139 or netfront", i, n.Model)
		}
	}
	return nil
}

// The XML document types: only what bofh writes.

type domainXML struct {
	XMLName     xml.Name    `xml:"domain"`
	Type        string      `xml:"type,attr"`
	Name        string      `xml:"name"`
	UUID        string      `xml:"uuid,omitempty"`
	Title       string      `xml:"title,omitempty"`
	Description string      `xml:"description,omitempty"`
	Memory      memXML      `xml:"memory"`
	VCPU        int         `xml:"vcpu"`
	OS          osXML       `xml:"os"`
	OnPoweroff  string      `xml:"on_poweroff,omitempty"`
	OnReboot    string      `xml:"on_reboot,omitempty"`
	OnCrash     string      `xml:"on_crash,omitempty"`
	Devices     devicesXML  `xml:"devices"`
	Features    *featureXML `xml:"features,omitempty"`
}

type featureXML struct {
	ACPI *struct{} `xml:"acpi"`
}

type memXML struct {
	Unit  string `xml:"unit,attr"`
	Value uint64 `xml:",chardata"`
}

type osXML struct {
	Type    osTypeXML `xml:"type"`
	Kernel  string    `xml:"kernel,omitempty"`
	Initrd  string    `xml:"initrd,omitempty"`
	Cmdline string    `xml:"cmdline,omitempty"`
}

type osTypeXML struct {
	Arch    string `xml:"arch,attr,omitempty"`
	Machine string `xml:"machine,attr,omitempty"`
	Value   string `xml:",chardata"`
}

type devicesXML struct {
	Disks      []diskXML  `xml:"disk"`
	Interfaces []ifaceXML `xml:"interface"`
	Serials    []charXML  `xml:"serial"`
	Consoles   []charXML  `xml:"console"`
}

type diskXML struct {
	Type     string    `xml:"type,attr"`
	Device   string    `xml:"device,attr"`
	Driver   *driver   `xml:"driver,omitempty"`
	Source   srcXML    `xml:"source"`
	Target   targetXML `xml:"target"`
	ReadOnly *struct{} `xml:"readonly,omitempty"`
}

type driver struct {
	Name  string `xml:"name,attr"`
	Type  string `xml:"type,attr"`
	Cache string `xml:"cache,attr,omitempty"`
}

type srcXML struct {
	Dev    string `xml:"dev,attr,omitempty"`
	Bridge string `xml:"bridge,attr,omitempty"`
}

type targetXML struct {
	Dev  string `xml:"dev,attr,omitempty"`
	Bus  string `xml:"bus,attr,omitempty"`
	Type string `xml:"type,attr,omitempty"`
	Port string `xml:"port,attr,omitempty"`
}

type ifaceXML struct {
	Type   string    `xml:"type,attr"`
	MAC    *macXML   `xml:"mac,omitempty"`
	Source srcXML    `xml:"source"`
	Model  *modelXML `xml:"model,omitempty"`
}

type macXML struct {
	Address string `xml:"address,attr"`
}

type modelXML struct {
	Type string `xml:"type,attr"`
}

type charXML struct {
	Type   string     `xml:"type,attr"`
	Target *targetXML `xml:"target,omitempty"`
}

// XML renders the spec as libvirt domain XML. It validates first.
func (s DomainSpec) XML() (string, error) {
	if err := s.Validate(); err != nil {
		return "", err
	}
	kib, _ := ParseSize(s.Memory)
	typ := s.Type
	if typ == "" {
		typ = "kvm"
	}
	d := domainXML{
		Type: typ, Name: s.Name, Title: s.Title, Description: s.Description,
		Memory: memXML{Unit: "KiB", Value: kib}, VCPU: s.VCPUs,
		OnPoweroff: "destroy", OnReboot: "restart", OnCrash: "destroy",
	}
	ostype := "hvm"
	if typ == "xen" && s.Kernel != "" {
		ostype = "linux" // paravirtualised
	}
	arch := s.Arch
	if arch == "" && typ != "xen" {
		arch = "x86_64"
	}
	d.OS = osXML{Type: osTypeXML{Arch: arch, Machine: s.Machine, Value: ostype},
		Kernel: s.Kernel, Initrd: s.Initrd, Cmdline: s.Cmdline}
	if typ == "kvm" || typ == "qemu" {
		d.Features = &featureXML{ACPI: &struct{}{}}
	}
	for _, disk := range s.Disks {
		bus := disk.Bus
		if bus == "" {
			bus = "virtio"
		}
		x := diskXML{Type: "block", Device: "disk", Source: srcXML{Dev: disk.Source},
			Target: targetXML{Dev: disk.Target, Bus: bus}}
		if typ == "kvm" || typ == "qemu" {
			x.Driver = &driver{Name: "qemu", Type: "raw", Cache: "none"}
		}
		if disk.ReadOnly {
			x.ReadOnly = &struct{}{}
		}
		d.Devices.Disks = append(d.Devices.Disks, x)
	}
	for _, n := range s.NICs {
		x := ifaceXML{Type: "bridge", Source: srcXML{Bridge: n.Bridge}}
		if n.MAC != "" {
			hw, _ := net.ParseMAC(n.MAC)
			x.MAC = &macXML{Address: hw.String()}
		}
		model := n.Model
		if model == "" && typ != "xen" {
			model = "virtio"
		}
		if model != "" {
			x.Model = &modelXML{Type: model}
		}
		d.Devices.Interfaces = append(d.Devices.Interfaces, x)
	}
	if s.Console {
		d.Devices.Serials = []charXML{{Type: "pty", Target: &targetXML{Port: "0"}}}
		d.Devices.Consoles = []charXML{{Type: "pty", Target: &targetXML{Type: "serial", Port: "0"}}}
	}
	out, err := xml.MarshalIndent(d, "", "  ")
	if err != nil {
		return "", fmt.Errorf("render domain XML: %w", err)
	}
	return string(out), nil
}

// parseDomainXML decodes the parts of a domain XML that bofh reads back.
func parseDomainXML(s string) (domainXML, error) {
	var d domainXML
	if err := xml.Unmarshal([]byte(s), &d); err != nil {
		return d, fmt.Errorf("parse domain XML: %w", err)
	}
	return d, nil
}

// PoolSpec is a storage pool: a directory ("dir") or an LVM volume group
// ("logical").
type PoolSpec struct {
	Name string `json:"name" yaml:"name" doc:"pool name"`
	Type string `json:"type" yaml:"type" doc:"dir or logical"`
	Path string `json:"path" yaml:"path" doc:"dir: the directory; logical: /dev/<vg>"`
}

// Validate checks the spec without touching the system.
func (p PoolSpec) Validate() error {
	if err := ValidName("pool", p.Name); err != nil {
		return err
	}
	if p.Type != "dir" && p.Type != "logical" {
		return fmt.Errorf("pool type %q: want dir or logical", p.Type)
	}
	return checkAbs("pool path", p.Path)
}

type poolXML struct {
	XMLName xml.Name `xml:"pool"`
	Type    string   `xml:"type,attr"`
	Name    string   `xml:"name"`
	Source  *struct {
		Name string `xml:"name"`
	} `xml:"source,omitempty"`
	Target struct {
		Path string `xml:"path"`
	} `xml:"target"`
}

// XML renders the pool XML.
func (p PoolSpec) XML() (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	x := poolXML{Type: p.Type, Name: p.Name}
	x.Target.Path = p.Path
	if p.Type == "logical" {
		x.Source = &struct {
			Name string `xml:"name"`
		}{Name: filepath.Base(p.Path)}
	}
	out, err := xml.MarshalIndent(x, "", "  ")
	if err != nil {
		return "", fmt.Errorf("render pool XML: %w", err)
	}
	return string(out), nil
}

// VolumeSpec is a volume in a storage pool.
type VolumeSpec struct {
	Name     string `json:"name" yaml:"name" doc:"volume name"`
	Capacity string `json:"capacity" yaml:"capacity" doc:"size with a unit: 10G"`
	Format   string `json:"format,omitempty" yaml:"format,omitempty" doc:"raw (default) or qcow2 (dir pools)"`
}

// Validate checks the spec without touching the system.
func (v VolumeSpec) Validate() error {
	if err := ValidName("volume", v.Name); err != nil {
		return err
	}
	if _, err := ParseSize(v.Capacity); err != nil {
		return fmt.Errorf("capacity: %w", err)
	}
	if v.Format != "" && v.Format != "raw" && v.Format != "qcow2" {
		return fmt.Errorf("volume format %q: want raw or qcow2", v.Format)
	}
	return nil
}

type volXML struct {
	XMLName  xml.Name `xml:"volume"`
	Name     string   `xml:"name"`
	Capacity memXML   `xml:"capacity"`
	Target   *struct {
		Format struct {
			Type string `xml:"type,attr"`
		} `xml:"format"`
	} `xml:"target,omitempty"`
}

// XML renders the volume XML.
func (v VolumeSpec) XML() (string, error) {
	if err := v.Validate(); err != nil {
		return "", err
	}
	kib, _ := ParseSize(v.Capacity)
	x := volXML{Name: v.Name, Capacity: memXML{Unit: "KiB", Value: kib}}
	if v.Format != "" {
		x.Target = &struct {
			Format struct {
				Type string `xml:"type,attr"`
			} `xml:"format"`
		}{}
		x.Target.Format.Type = v.Format
	}
	out, err := xml.MarshalIndent(x, "", "  ")
	if err != nil {
		return "", fmt.Errorf("render volume XML: %w", err)
	}
	return string(out), nil
}

// NetworkSpec is a libvirt virtual network on a bridge. Without Address it
// is an isolated bridge with no DHCP and no firewall rules.
type NetworkSpec struct {
	Name    string `json:"name" yaml:"name" doc:"network name"`
	Bridge  string `json:"bridge" yaml:"bridge" doc:"bridge libvirt creates: virbr10"`
	Forward string `json:"forward,omitempty" yaml:"forward,omitempty" doc:"none (default: isolated), nat or route"`
	Address string `json:"address,omitempty" yaml:"address,omitempty" doc:"host address on the bridge with prefix: 192.168.100.1/24"`
}

// Validate checks the spec without touching the system.
func (n NetworkSpec) Validate() error {
	if err := ValidName("network", n.Name); err != nil {
		return err
	}
	if !bridgeRE.MatchString(n.Bridge) {
		return fmt.Errorf("bridge %q: not a valid interface name", n.Bridge)
	}
	switch n.Forward {
	case "", "none", "nat", "route":
	default:
		return fmt.Errorf("forward %q: want none, nat or route", n.Forward)
	}
	if n.Address != "" {
		ip, _, err := net.ParseCIDR(n.Address)
		if err != nil || ip.To4() == nil {
			return fmt.Errorf("address %q: want an IPv4 address with prefix", n.Address)
		}
	}
	return nil
}

type netXML struct {
	XMLName xml.Name `xml:"network"`
	Name    string   `xml:"name"`
	Forward *struct {
		Mode string `xml:"mode,attr"`
	} `xml:"forward,omitempty"`
	Bridge struct {
		Name string `xml:"name,attr"`
		STP  string `xml:"stp,attr"`
	} `xml:"bridge"`
	IP *struct {
		Address string `xml:"address,attr"`
		Prefix  int    `xml:"prefix,attr"`
	} `xml:"ip,omitempty"`
}

// XML renders the network XML.
func (n NetworkSpec) XML() (string, error) {
	if err := n.Validate(); err != nil {
		return "", err
	}
	x := netXML{Name: n.Name}
	x.Bridge.Name, x.Bridge.STP = n.Bridge, "off"
	if n.Forward == "nat" || n.Forward == "route" {
		x.Forward = &struct {
			Mode string `xml:"mode,attr"`
		}{Mode: n.Forward}
	}
	if n.Address != "" {
		ip, ipn, _ := net.ParseCIDR(n.Address)
		ones, _ := ipn.Mask.Size()
		x.IP = &struct {
			Address string `xml:"address,attr"`
			Prefix  int    `xml:"prefix,attr"`
		}{Address: ip.String(), Prefix: ones}
	}
	out, err := xml.MarshalIndent(x, "", "  ")
	if err != nil {
		return "", fmt.Errorf("render network XML: %w", err)
	}
	return string(out), nil
}
