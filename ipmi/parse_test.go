package ipmi

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func capture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "ipmi", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseCaptured(t *testing.T) {
	if on, err := ParsePower(capture(t, "power_status_on.txt")); err != nil || !on {
		t.Errorf("power on: %v %v", on, err)
	}
	if on, err := ParsePower(capture(t, "power_status_off.txt")); err != nil || on {
		t.Errorf("power off: %v %v", on, err)
	}
	boots := []struct {
		file string
		want BootFlags
	}{
		{"bootparam5_default.txt", BootFlags{Device: "disk"}},
		{"bootparam5_pxe.txt", BootFlags{Device: "pxe"}},
		{"bootparam5_none.txt", BootFlags{Device: "none"}},
	}
	for _, c := range boots {
		got, err := ParseBootFlags(capture(t, c.file))
		if err != nil || got != c.want {
			t.Errorf("%s: %+v %v, want %+v", c.file, got, err, c.want)
		}
	}
	sdr, err := ParseSDR(capture(t, "sdr_elist.txt"))
	if err != nil || len(sdr) != 2 || sdr[0].Name != "CPU Temp" || *sdr[0].Value != 45 || sdr[0].Unit != "degrees C" ||
		sdr[1].Status != "lcr" || *sdr[1].Value != 150 || sdr[1].Unit != "RPM" || sdr[0].Entity != "3.1" {
		t.Errorf("sdr: %+v %v", sdr, err)
	}
	ss, err := ParseSensors(capture(t, "sensor.txt"))
	if err != nil || len(ss) != 2 || *ss[0].Value != 45 || *ss[0].UCR != 90 || *ss[0].LNR != 0 || ss[1].Status != "cr" {
		t.Errorf("sensor: %+v %v", ss, err)
	}
	mc, err := ParseMCInfo(capture(t, "mc_info.txt"))
	if err != nil || mc.FirmwareRevision != "9.08" || mc.IPMIVersion != "2.0" || mc.ManufacturerID != "4753" {
		t.Errorf("mc info: %+v %v", mc, err)
	}
	ev, err := ParseSEL(capture(t, "sel_elist.txt"))
	if err != nil || len(ev) != 2 || ev[1].Sensor != "Fan FAN1" || ev[1].Direction != "Asserted" || ev[0].Description != "Upper Critical going high" {
		t.Errorf("sel: %+v %v", ev, err)
	}
	if ev, err := ParseSEL(capture(t, "sel_list_empty.stderr")); err != nil || len(ev) != 0 {
		t.Errorf("empty sel: %+v %v", ev, err)
	}
	us, err := ParseUsers(capture(t, "user_list.txt"))
	if err != nil || len(us) != 1 || us[0].Name != "admin" || us[0].PrivLimit != "ADMINISTRATOR" || us[0].ID != 2 || !us[0].IPMIMsg {
		t.Errorf("users: %+v %v", us, err)
	}
	st := ParseFields(capture(t, "chassis_status.txt"))
	if st["System Power"] != "on" || st["Power Restore Policy"] != "always-off" {
		t.Errorf("chassis status: %v", st)
	}
	lan := ParseFields(capture(t, "lan_print.txt"))
	if lan["IP Address"] != "0.0.0.0" || lan["802.1q VLAN ID"] != "Disabled" || lan["RMCP+ Cipher Suites"] != "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15" {
		t.Errorf("lan print: %v", lan)
	}
	l, err := ParseLAN(1, capture(t, "lan_print.txt"))
	if err != nil || l.IP != "0.0.0.0" || l.VLAN != 0 || l.MAC != "00:00:00:00:00:00" || l.IPSource != "Unspecified" ||
		len(l.CipherSuites) != 15 || l.CipherSuites[14] != 15 || l.CipherPrivMax != "aaaaaaaaaaaaaaa" ||
		strings.Join(l.AuthTypes, " ") != "NONE MD2 MD5 PASSWORD" || l.BadPasswordThreshold != "Not Available" {
		t.Errorf("lan print typed: %+v %v", l, err)
	}
	vlan := strings.Replace(capture(t, "lan_print.txt"), "802.1q VLAN ID          : Disabled", "802.1q VLAN ID          : 42", 1)
	if l, err := ParseLAN(1, vlan); err != nil || l.VLAN != 42 {
		t.Errorf("lan print with a VLAN: %+v %v", l, err)
	}
	if _, err := ParseLAN(1, "garbage\n"); err == nil {
		t.Errorf("lan print of garbage: no error")
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		file string
		want error
	}{
		{"err_auth_lanplus.stderr", ErrAuth},
		{"err_auth_lan.stderr", ErrAuth},
		{"err_user_lanplus.stderr", ErrAuth},
		{"err_user_lan.stderr", ErrAuth},
		{"err_unreachable_lanplus.stderr", ErrUnreachable},
		{"err_unreachable_lan.stderr", ErrUnreachable},
		{"err_open_nodev.stderr", ErrNoDevice},
		{"sel_list_empty.stderr", nil},
	}
	for _, c := range cases {
		if got := Classify(capture(t, c.file)); got != c.want {
			t.Errorf("%s: %v, want %v", c.file, got, c.want)
		}
	}
}

func TestParseBad(t *testing.T) {
	for _, s := range []string{"", "Chassis Power is maybe", "garbage"} {
		if _, err := ParsePower(s); err == nil {
			t.Errorf("ParsePower(%q) accepted", s)
		}
	}
	for _, s := range []string{"", "Boot parameter data: zz", "Boot parameter data: 00"} {
		if _, err := ParseBootFlags(s); err == nil {
			t.Errorf("ParseBootFlags(%q) accepted", s)
		}
	}
	if _, err := ParseSDR("a | b | c"); err == nil {
		t.Error("ParseSDR accepted 3 fields")
	}
	if _, err := ParseSensors("a | b"); err == nil {
		t.Error("ParseSensors accepted 2 fields")
	}
	if _, err := ParseUsers("x true"); err == nil {
		t.Error("ParseUsers accepted a short line")
	}
}

func FuzzParseSDR(f *testing.F) {
	f.Add(capture(f, "sdr_elist.txt"))
	f.Fuzz(func(t *testing.T, s string) { _, _ = ParseSDR(s) })
}

func FuzzParseSensors(f *testing.F) {
	f.Add(capture(f, "sensor.txt"))
	f.Fuzz(func(t *testing.T, s string) { _, _ = ParseSensors(s) })
}

func FuzzParseBootFlags(f *testing.F) {
	f.Add(capture(f, "bootparam5_pxe.txt"))
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBootFlags(s)
		if err == nil && b.Device == "" {
			t.Fatal("no device")
		}
	})
}

func FuzzParseText(f *testing.F) {
	for _, n := range []string{"mc_info.txt", "sel_elist.txt", "user_list.txt", "lan_print.txt", "power_status_on.txt"} {
		f.Add(capture(f, n))
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseMCInfo(s)
		_, _ = ParseSEL(s)
		_, _ = ParseUsers(s)
		_, _ = ParsePower(s)
		_ = ParseFields(s)
		_ = Classify(s)
	})
}
