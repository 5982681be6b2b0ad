package tree

import (
	"testing"
)

func TestRules(t *testing.T) {
	rs, err := ParseRules([]byte("# c\n\n/var/lib/data\n*.log\ncache/\netc/*.conf\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		rel   string
		dir   bool
		match bool
	}{
		{"var/lib/data", true, true},
		{"x/var/lib/data", true, false},
		{"usr/app.log", false, true},
		{"app.log", false, true},
		{"cache", true, true},
		{"a/cache", true, true},
		{"a/cache", false, false},
		{"etc/a.conf", false, true},
		{"etc/sub/a.conf", false, false},
		{"etc/motd", false, false},
	}
	for _, tc := range tests {
		if got := rs.Match(tc.rel, tc.dir); got != tc.match {
			t.Errorf("Match(%q, %v) = %v", tc.rel, tc.dir, got)
		}
	}
	if !rs.MatchAny("var/lib/data/db/x", false) {
		t.Error("MatchAny below an excluded dir")
	}
}

func TestRulesBad(t *testing.T) {
	for _, in := range []string{"/var/../etc", "..", "a/./b", "/", "a//b", "[", "a\x00b"} {
		if _, err := ParseRules([]byte(in)); err == nil {
			t.Errorf("ParseRules(%q) accepted", in)
		}
	}
}

func FuzzParseRules(f *testing.F) {
	f.Add([]byte("/var/lib/data\n*.log\ncache/\n"))
	f.Add([]byte("../x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := ParseRules(b)
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.Pattern == "" || r.Pattern == ".." {
				t.Fatalf("accepted %q", r.Pattern)
			}
		}
		// round trip
		rs2, err := ParseRules(rs.Format())
		if err != nil || len(rs2) != len(rs) {
			t.Fatalf("round trip of %q: %v", b, err)
		}
	})
}
