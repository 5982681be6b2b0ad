package netif

import "testing"

func TestValidName(t *testing.T) {
	for _, c := range []struct {
		name string
		ok   bool
	}{
		{"eth0", true}, {"br-lan.100", true}, {"abcdefghijklmno", true},
		{"", false}, {"abcdefghijklmnop", false}, {".", false}, {"..", false}, {"a/b", false}, {"a:b", false}, {"a b", false}, {"a\tb", false},
	} {
		if err := ValidName(c.name); (err == nil) != c.ok {
			t.Errorf("ValidName(%q) = %v, want ok %v", c.name, err, c.ok)
		}
	}
}

func TestParseDst(t *testing.T) {
	for _, c := range []struct {
		in, want string
		v6       bool
	}{
		{"default", "0.0.0.0/0", false}, {"default", "::/0", true}, {"10.1.2.3", "10.1.2.3/32", false},
		{"10.1.0.0/16", "10.1.0.0/16", false}, {"2001:db8::/32", "2001:db8::/32", true},
		{"10.1.2.3/16", "", false}, {"10.300.0.0/16", "", false}, {"nonsense", "", false},
	} {
		got, err := ParseDst(c.in, c.v6)
		if (c.want == "") != (err != nil) || (err == nil && got.String() != c.want) {
			t.Errorf("ParseDst(%q) = %v, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func FuzzValidate(f *testing.F) {
	f.Add("eth0", "10.0.0.1/24", "default", "10.0.0.254")
	f.Add("a/b", "::1/128", "2001:db8::/32", "fe80::1")
	f.Fuzz(func(t *testing.T, name, addr, dst, via string) {
		if ValidName(name) == nil && (len(name) == 0 || len(name) > 15) {
			t.Fatalf("accepted %q", name)
		}
		_, _ = ParseAddr(addr)
		_ = AddRoute{Dst: dst, Via: via, Dev: name}.Validate()
		_ = CreateLink{Name: name, Type: "veth", Peer: addr}.Validate()
	})
}
