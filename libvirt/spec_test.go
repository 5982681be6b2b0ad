package libvirt

import (
	"encoding/xml"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want uint64
		err  string
	}{
		{"512MiB", 512 * 1024, ""},
		{"512M", 512 * 1024, ""},
		{"2G", 2 << 20, ""},
		{"2GiB", 2 << 20, ""},
		{"1T", 1 << 30, ""},
		{"4096B", 4, ""},
		{"1024K", 1024, ""},
		{"1024000KB", 1000000, ""},
		{"1GB", 976562, "whole number"},
		{"1024", 0, "unit"},
		{"", 0, "unit"},
		{"M", 0, "unit"},
		{"0G", 0, "more than zero"},
		{"1X", 0, "unknown unit"},
		{"1 G", 0, "unknown unit"},
		{"-1G", 0, "unit"},
		{"100B", 0, "whole number"},
		{"99999999999999999999G", 0, "out of range"},
		{"18446744073709551615T", 0, "too large"},
	}
	for _, tc := range cases {
		got, err := ParseSize(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseSize(%q) = %d, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestDomainSpecValidate(t *testing.T) {
	ok := DomainSpec{Name: "web-1.prod", VCPUs: 2, Memory: "1G"}
	cases := []struct {
		name string
		mod  func(*DomainSpec)
		err  string
	}{
		{"ok", func(*DomainSpec) {}, ""},
		{"specials in title ok", func(s *DomainSpec) { s.Title = `<a href="x">&amp;</a>'` }, ""},
		{"empty name", func(s *DomainSpec) { s.Name = "" }, "domain name"},
		{"slash", func(s *DomainSpec) { s.Name = "a/b" }, "domain name"},
		{"xml in name", func(s *DomainSpec) { s.Name = "a&b" }, "domain name"},
		{"dot first", func(s *DomainSpec) { s.Name = ".hidden" }, "domain name"},
		{"long name", func(s *DomainSpec) { s.Name = strings.Repeat("a", 65) }, "domain name"},
		{"type", func(s *DomainSpec) { s.Type = "vmware" }, "domain type"},
		{"vcpus", func(s *DomainSpec) { s.VCPUs = 257 }, "vcpus"},
		{"memory", func(s *DomainSpec) { s.Memory = "lots" }, "memory"},
		{"title newline", func(s *DomainSpec) { s.Title = "a\nb" }, "title"},
		{"description nul", func(s *DomainSpec) { s.Description = "a\x00b" }, "description"},
		{"initrd without kernel", func(s *DomainSpec) { s.Initrd = "/boot/initrd" }, "initrd without kernel"},
		{"kernel relative", func(s *DomainSpec) { s.Kernel = "vmlinuz" }, "kernel"},
		{"disk dotdot", func(s *DomainSpec) { s.Disks = []Disk{{Source: "/dev/../etc/passwd", Target: "vda"}} }, "clean absolute"},
		{"disk target", func(s *DomainSpec) { s.Disks = []Disk{{Source: "/dev/vg0/web", Target: "vda1"}} }, "target"},
		{"disk twice", func(s *DomainSpec) {
			s.Disks = []Disk{{Source: "/dev/vg0/a", Target: "vda"}, {Source: "/dev/vg0/b", Target: "vda"}}
		}, "used twice"},
		{"disk bus", func(s *DomainSpec) { s.Disks = []Disk{{Source: "/dev/drbd1", Target: "vda", Bus: "usb"}} }, "bus"},
		{"bridge", func(s *DomainSpec) { s.NICs = []NIC{{Bridge: "br0<x>"}} }, "bridge"},
		{"mac", func(s *DomainSpec) { s.NICs = []NIC{{Bridge: "br0", MAC: "zz"}} }, "mac"},
		{"model", func(s *DomainSpec) { s.NICs = []NIC{{Bridge: "br0", Model: "ne2k"}} }, "model"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			tc.mod(&s)
			err := s.Validate()
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Validate = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestDomainXML(t *testing.T) {
	s := DomainSpec{Name: "web", Type: "kvm", VCPUs: 2, Memory: "2G", Title: `a<b & "c"`,
		Description: "</description><evil/>", Kernel: "/boot/vmlinuz", Cmdline: "console=ttyS0 root=/dev/vda",
		Disks: []Disk{{Source: "/dev/vg0/web", Target: "vda"}, {Source: "/dev/mapper/data_crypt", Target: "vdb", ReadOnly: true}},
		NICs:  []NIC{{Bridge: "br0", MAC: "52:54:00:AA:BB:CC"}}, Console: true}
	x, err := s.XML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`<domain type="kvm">`, `<name>web</name>`, `<title>a&lt;b &amp; &#34;c&#34;</title>`,
		`<description>&lt;/description&gt;&lt;evil/&gt;</description>`,
		`<memory unit="KiB">2097152</memory>`, `<vcpu>2</vcpu>`,
		`<type arch="x86_64">hvm</type>`, `<kernel>/boot/vmlinuz</kernel>`,
		`<disk type="block" device="disk">`, `<source dev="/dev/vg0/web"></source>`, `<target dev="vda" bus="virtio"></target>`,
		`<readonly></readonly>`, `<interface type="bridge">`, `<mac address="52:54:00:aa:bb:cc"></mac>`,
		`<source bridge="br0"></source>`, `<model type="virtio"></model>`, `<serial type="pty">`, `<console type="pty">`,
	} {
		if !strings.Contains(x, want) {
			t.Errorf("XML lacks %s:\n%s", want, x)
		}
	}
	if strings.Contains(x, "<evil/>") {
		t.Fatal("description was not escaped")
	}
	d, err := parseDomainXML(x)
	if err != nil {
		t.Fatal(err)
	}
	if d.Title != s.Title || d.Description != s.Description || d.Name != "web" || len(d.Devices.Disks) != 2 {
		t.Errorf("round trip: %+v", d)
	}
}

func TestOtherXML(t *testing.T) {
	cases := []struct {
		name string
		x    func() (string, error)
		want []string
		err  string
	}{
		{"dir pool", PoolSpec{Name: "images", Type: "dir", Path: "/srv/images"}.XML,
			[]string{`<pool type="dir">`, `<path>/srv/images</path>`}, ""},
		{"logical pool", PoolSpec{Name: "vg0", Type: "logical", Path: "/dev/vg0"}.XML,
			[]string{`<pool type="logical">`, `<source>`, `<name>vg0</name>`}, ""},
		{"bad pool", PoolSpec{Name: "x", Type: "zfs", Path: "/x"}.XML, nil, "pool type"},
		{"volume", VolumeSpec{Name: "a.qcow2", Capacity: "10G", Format: "qcow2"}.XML,
			[]string{`<capacity unit="KiB">10485760</capacity>`, `<format type="qcow2">`}, ""},
		{"bad volume", VolumeSpec{Name: "a", Capacity: "10"}.XML, nil, "unit"},
		{"network", NetworkSpec{Name: "lan", Bridge: "virbr9", Forward: "nat", Address: "192.168.9.1/24"}.XML,
			[]string{`<forward mode="nat">`, `<bridge name="virbr9" stp="off">`, `<ip address="192.168.9.1" prefix="24">`}, ""},
		{"isolated network", NetworkSpec{Name: "iso", Bridge: "virbr8"}.XML, []string{`<bridge name="virbr8"`}, ""},
		{"bad address", NetworkSpec{Name: "x", Bridge: "b", Address: "10.0.0.1"}.XML, nil, "address"},
		{"bridge too long", NetworkSpec{Name: "x", Bridge: "averyveryverylongbridge"}.XML, nil, "bridge"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x, err := tc.x()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(x, w) {
					t.Errorf("lacks %s:\n%s", w, x)
				}
			}
		})
	}
}

func TestConnValidate(t *testing.T) {
	for _, tc := range []struct {
		c  Conn
		ok bool
	}{
		{Conn{}, true},
		{Conn{Socket: "/run/libvirt/libvirt-sock", URI: "qemu:///system"}, true},
		{Conn{URI: "xen:///system"}, true},
		{Conn{URI: "test:///default"}, true},
		{Conn{Socket: "relative/sock"}, false},
		{Conn{URI: "qemu+ssh://host/system"}, false},
		{Conn{URI: "vbox:///session"}, false},
		{Conn{URI: "qemu"}, false},
	} {
		if err := tc.c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.c, err)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512MiB", "2G", "1GB", "4096B", "0K", "99999999999999999999T"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		kib, err := ParseSize(s)
		if err == nil && kib == 0 {
			t.Fatalf("%q: zero accepted", s)
		}
	})
}

// FuzzDomainXML: whatever free text a valid spec carries comes back
// unchanged through the XML, and never adds elements.
func FuzzDomainXML(f *testing.F) {
	f.Add("web", `a<b>&"c'`, "</description><x/>", "/dev/vg0/web")
	f.Add("x", "]]>", "<!-- -->", "/dev/a&b")
	f.Fuzz(func(t *testing.T, name, title, desc, disk string) {
		s := DomainSpec{Name: name, VCPUs: 1, Memory: "64M", Title: title, Description: desc,
			Disks: []Disk{{Source: disk, Target: "vda"}}}
		x, err := s.XML()
		if err != nil {
			return
		}
		var d domainXML
		if err := xml.Unmarshal([]byte(x), &d); err != nil {
			t.Fatalf("rendered XML does not parse: %v\n%s", err, x)
		}
		if d.Name != name || d.Title != title || d.Description != desc || len(d.Devices.Disks) != 1 || d.Devices.Disks[0].Source.Dev != disk {
			t.Fatalf("round trip changed values:\n%s", x)
		}
	})
}
