package ipmi

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// ParsePower reads `chassis power status`: "Chassis Power is on|off".
func ParsePower(out string) (on bool, err error) {
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Chassis Power is "); ok {
			switch strings.TrimSpace(v) {
			case "on":
				return true, nil
			case "off":
				return false, nil
			}
		}
	}
	return false, fmt.Errorf("chassis power status: unexpected output %q", trunc(out))
}

// BootFlags are the boot flags (boot parameter 5).
type BootFlags struct {
	// Valid says the BMC honours the flags; when false no override is set.
	Valid      bool `json:"valid"`
	Persistent bool `json:"persistent"`
	EFI        bool `json:"efi"`
	// Device is none, pxe, disk, safe, diag, cdrom, bios, remote-floppy,
	// remote-cdrom, remote-disk, floppy, or "0xNN" for others.
	Device string `json:"device"`
}

// Effective is the flags with what the BMC ignores removed: with no
// override (device none) the other flags do not matter.
func (f BootFlags) Effective() BootFlags {
	if f.Device == "none" {
		return BootFlags{Device: "none"}
	}
	return f
}

var bootDevices = map[byte]string{
	0x0: "none", 0x1: "pxe", 0x2: "disk", 0x3: "safe", 0x4: "diag", 0x5: "cdrom",
	0x6: "bios", 0x7: "remote-floppy", 0x8: "remote-cdrom", 0x9: "remote-disk", 0xb: "remote-disk", 0xf: "floppy",
}

// ParseBootFlags reads `chassis bootparam get 5` from its raw data line
// ("Boot parameter data: 0004000000"), decoding the bits as IPMI 2.0
// table 28-14 says, not the text ipmitool derives from them.
func ParseBootFlags(out string) (BootFlags, error) {
	for _, line := range strings.Split(out, "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "Boot parameter data:")
		if !ok {
			continue
		}
		b, err := hex.DecodeString(strings.TrimSpace(v))
		if err != nil || len(b) < 2 {
			return BootFlags{}, fmt.Errorf("boot parameter 5: bad data %q", strings.TrimSpace(v))
		}
		f := BootFlags{Valid: b[0]&0x80 != 0, Persistent: b[0]&0x40 != 0, EFI: b[0]&0x20 != 0}
		sel := (b[1] >> 2) & 0xf
		if d, ok := bootDevices[sel]; ok {
			f.Device = d
		} else {
			f.Device = fmt.Sprintf("0x%x", sel)
		}
		return f, nil
	}
	return BootFlags{}, fmt.Errorf("boot parameter 5: no data line in %q", trunc(out))
}

// Reading is one sensor from `sdr elist`.
type Reading struct {
	Name   string `json:"name"`
	ID     string `json:"id"`     // sensor number, "01h"
	Status string `json:"status"` // ok, ns, lnc, lcr, lnr, unc, ucr, unr, …
	Entity string `json:"entity"` // "3.1"
	// Value and Unit for analog sensors; Text for discrete ones (and
	// "No Reading").
	Value *float64 `json:"value,omitempty"`
	Unit  string   `json:"unit,omitempty"`
	Text  string   `json:"text,omitempty"`
}

// ParseSDR reads `sdr elist`: "Name | 01h | ok | 3.1 | 45 degrees C".
func ParseSDR(out string) ([]Reading, error) {
	var rs []Reading
	for i, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) != 5 {
			return nil, fmt.Errorf("sdr elist line %d: want 5 fields: %q", i+1, trunc(line))
		}
		r := Reading{Name: strings.TrimSpace(f[0]), ID: strings.TrimSpace(f[1]), Status: strings.TrimSpace(f[2]), Entity: strings.TrimSpace(f[3])}
		val := strings.TrimSpace(f[4])
		num, unit, _ := strings.Cut(val, " ")
		if x, err := strconv.ParseFloat(num, 64); err == nil && unit != "" && !strings.ContainsAny(num, "xX") {
			r.Value, r.Unit = &x, unit
		} else {
			r.Text = val
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// Sensor is one line of `ipmitool sensor`: reading and thresholds.
type Sensor struct {
	Name   string   `json:"name"`
	Value  *float64 `json:"value,omitempty"`
	Unit   string   `json:"unit"`
	Status string   `json:"status"`
	LNR    *float64 `json:"lnr,omitempty"`
	LCR    *float64 `json:"lcr,omitempty"`
	LNC    *float64 `json:"lnc,omitempty"`
	UNC    *float64 `json:"unc,omitempty"`
	UCR    *float64 `json:"ucr,omitempty"`
	UNR    *float64 `json:"unr,omitempty"`
	// Raw is the reading field as printed, for discrete sensors ("0x0180").
	Raw string `json:"raw,omitempty"`
}

// ParseSensors reads `ipmitool sensor` (10 '|'-separated fields; "na"
// for absent values).
func ParseSensors(out string) ([]Sensor, error) {
	var ss []Sensor
	for i, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) != 10 {
			return nil, fmt.Errorf("sensor line %d: want 10 fields: %q", i+1, trunc(line))
		}
		for j := range f {
			f[j] = strings.TrimSpace(f[j])
		}
		s := Sensor{Name: f[0], Unit: f[2], Status: f[3]}
		if s.Value = num(f[1]); s.Value == nil && f[1] != "na" {
			s.Raw = f[1]
		}
		s.LNR, s.LCR, s.LNC, s.UNC, s.UCR, s.UNR = num(f[4]), num(f[5]), num(f[6]), num(f[7]), num(f[8]), num(f[9])
		ss = append(ss, s)
	}
	return ss, nil
}

func num(s string) *float64 {
	if s == "" || s == "na" || strings.HasPrefix(s, "0x") {
		return nil
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil
	}
	return &x
}

// ParseFields reads the "Key : value" lines of `mc info`, `chassis
// status` and `lan print`. Continuation lines (": value" or indented
// lines without a key) are appended to the previous key's value, one per
// line.
func ParseFields(out string) map[string]string {
	m := map[string]string{}
	last := ""
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok {
			if last != "" {
				m[last] = strings.TrimPrefix(m[last]+"\n"+strings.TrimSpace(line), "\n")
			}
			continue
		}
		if k == "" || line[0] == ' ' && last != "" && !strings.HasPrefix(strings.TrimSpace(line), k) {
			if last != "" {
				m[last] = strings.TrimPrefix(m[last]+"\n"+strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), ":")), "\n")
			}
			continue
		}
		m[k], last = v, k
	}
	return m
}

// MCInfo is what `mc info` says about the BMC.
type MCInfo struct {
	DeviceID         string `json:"device_id"`
	DeviceRevision   string `json:"device_revision"`
	FirmwareRevision string `json:"firmware_revision"`
	IPMIVersion      string `json:"ipmi_version"`
	ManufacturerID   string `json:"manufacturer_id"`
	ManufacturerName string `json:"manufacturer_name"`
	ProductID        string `json:"product_id"`
	ProductName      string `json:"product_name"`
}

// ParseMCInfo reads `mc info`.
func ParseMCInfo(out string) (MCInfo, error) {
	m := ParseFields(out)
	if _, ok := m["Firmware Revision"]; !ok {
		return MCInfo{}, fmt.Errorf("mc info: no Firmware Revision in %q", trunc(out))
	}
	return MCInfo{DeviceID: m["Device ID"], DeviceRevision: m["Device Revision"], FirmwareRevision: m["Firmware Revision"],
		IPMIVersion: m["IPMI Version"], ManufacturerID: m["Manufacturer ID"], ManufacturerName: m["Manufacturer Name"],
		ProductID: m["Product ID"], ProductName: m["Product Name"]}, nil
}

// Event is one SEL entry from `sel elist`.
type Event struct {
	ID          string `json:"id"`
	Date        string `json:"date"`
	Time        string `json:"time"`
	Sensor      string `json:"sensor"`
	Description string `json:"description"`
	Direction   string `json:"direction"`
	Detail      string `json:"detail,omitempty"`
}

// ParseSEL reads `sel elist` (or `sel list`): "id | date | time | sensor |
// event | Asserted[ | detail]". "SEL has no entries" is an empty list.
func ParseSEL(out string) ([]Event, error) {
	var es []Event
	for i, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" || strings.Contains(line, "SEL has no entries") {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) < 6 {
			return nil, fmt.Errorf("sel line %d: want at least 6 fields: %q", i+1, trunc(line))
		}
		for j := range f {
			f[j] = strings.TrimSpace(f[j])
		}
		e := Event{ID: f[0], Date: f[1], Time: f[2], Sensor: f[3], Description: f[4], Direction: f[5]}
		if len(f) > 6 {
			e.Detail = strings.Join(f[6:], " | ")
		}
		es = append(es, e)
	}
	return es, nil
}

// User is one line of `user list`.
type User struct {
	ID        int    `json:"id"`
	Name      string `json:"name"`
	Callin    bool   `json:"callin"`
	LinkAuth  bool   `json:"link_auth"`
	IPMIMsg   bool   `json:"ipmi_msg"`
	PrivLimit string `json:"priv_limit"`
}

// ParseUsers reads `user list <channel>`: fixed columns, the name may be
// empty. Unnamed users without a privilege ("Unknown (0x00)") are left out.
func ParseUsers(out string) ([]User, error) {
	var us []User
	for i, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "ID") {
			continue
		}
		fs := strings.Fields(line)
		if len(fs) < 5 {
			return nil, fmt.Errorf("user list line %d: %q", i+1, trunc(line))
		}
		id, err := strconv.Atoi(fs[0])
		if err != nil {
			return nil, fmt.Errorf("user list line %d: id %q", i+1, fs[0])
		}
		u := User{ID: id}
		rest := fs[1:]
		if len(rest) > 0 && rest[0] != "true" && rest[0] != "false" {
			u.Name, rest = rest[0], rest[1:]
		}
		if len(rest) < 4 {
			return nil, fmt.Errorf("user list line %d: %q", i+1, trunc(line))
		}
		u.Callin, u.LinkAuth, u.IPMIMsg = rest[0] == "true", rest[1] == "true", rest[2] == "true"
		u.PrivLimit = strings.Join(rest[3:], " ")
		if u.Name == "" && strings.HasPrefix(u.PrivLimit, "Unknown") {
			continue
		}
		us = append(us, u)
	}
	return us, nil
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// LANConfig is what `lan print <channel>` says about a LAN channel. The
// SNMP community string is left out: it is a credential.
type LANConfig struct {
	Channel    int    `json:"channel"`
	IPSource   string `json:"ip_source"` // "Static Address", "DHCP Address", …
	IP         string `json:"ip"`
	Netmask    string `json:"netmask"`
	MAC        string `json:"mac"`
	Gateway    string `json:"gateway"`
	GatewayMAC string `json:"gateway_mac"`
	BackupGW   string `json:"backup_gateway,omitempty"`
	// VLAN is the 802.1q VLAN ID, 0 when disabled.
	VLAN         int      `json:"vlan"`
	VLANPriority int      `json:"vlan_priority"`
	AuthTypes    []string `json:"auth_types,omitempty"`
	// CipherSuites are the RMCP+ cipher suite IDs the BMC offers.
	CipherSuites []int `json:"cipher_suites,omitempty"`
	// CipherPrivMax is the maximum privilege per cipher suite, one letter
	// each as ipmitool prints it (a admin, o operator, u user, X unused).
	CipherPrivMax        string `json:"cipher_priv_max,omitempty"`
	BadPasswordThreshold string `json:"bad_password_threshold,omitempty"`
}

// ParseLAN reads `lan print <channel>`.
func ParseLAN(channel int, out string) (LANConfig, error) {
	m := ParseFields(out)
	if _, ok := m["IP Address"]; !ok {
		return LANConfig{}, fmt.Errorf("lan print: no IP Address in %q", trunc(out))
	}
	l := LANConfig{Channel: channel, IPSource: m["IP Address Source"], IP: m["IP Address"], Netmask: m["Subnet Mask"],
		MAC: m["MAC Address"], Gateway: m["Default Gateway IP"], GatewayMAC: m["Default Gateway MAC"],
		BackupGW: m["Backup Gateway IP"], BadPasswordThreshold: m["Bad Password Threshold"]}
	if v := m["802.1q VLAN ID"]; v != "" && v != "Disabled" {
		id, err := strconv.Atoi(v)
		if err != nil {
			return LANConfig{}, fmt.Errorf("lan print: 802.1q VLAN ID %q", v)
		}
		l.VLAN = id
	}
	if v := m["802.1q VLAN Priority"]; v != "" {
		if p, err := strconv.Atoi(v); err == nil {
			l.VLANPriority = p
		}
	}
	l.AuthTypes = strings.Fields(m["Auth Type Support"])
	if v := m["RMCP+ Cipher Suites"]; v != "" && v != "None" {
		for _, f := range strings.Split(v, ",") {
			id, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				return LANConfig{}, fmt.Errorf("lan print: RMCP+ Cipher Suites %q", v)
			}
			l.CipherSuites = append(l.CipherSuites, id)
		}
	}
	if v, _, _ := strings.Cut(m["Cipher Suite Priv Max"], "\n"); v != "Not Available" {
		l.CipherPrivMax = v
	}
	return l, nil
}
