package tree

import (
	"bytes"
	"fmt"
	"path"
	"strings"

	"github.com/bofhkit/bofh/atomic"
)

// Rule is one line of an exclude or add_only file, a subset of rsync's
// filter syntax:
//
//	/var/lib/mysql     anchored at the tree root
//	var/log/*.log      a pattern with a slash is anchored too
//	*.pyc              no slash: matches the name at any depth
//	cache/             trailing slash: directories only
//
// '*', '?' and '[…]' are path.Match globs ('*' never matches '/'). A rule
// that matches a directory covers everything under it. Blank lines and
// lines starting with '#' are ignored. "." and ".." components are
// rejected.
type Rule struct {
	Pattern  string `json:"pattern"`
	Anchored bool   `json:"anchored,omitempty"`
	DirOnly  bool   `json:"dir_only,omitempty"`
}

// Rules is an ordered list of rules; a path matches if any rule matches.
type Rules []Rule

// String returns the rule as written in a file.
func (r Rule) String() string {
	s := r.Pattern
	// an anchored pattern is written with its leading slash when it has no
	// other one, and when it starts with '#', which would read as a comment
	if r.Anchored && (!strings.Contains(s, "/") || strings.HasPrefix(s, "#")) {
		s = "/" + s
	}
	if r.DirOnly {
		s += "/"
	}
	return s
}

// ParseRule parses one rule.
func ParseRule(line string) (Rule, error) {
	var r Rule
	s := line
	if strings.ContainsRune(s, 0) {
		return r, fmt.Errorf("%w: rule %q contains NUL", atomic.ErrInvalid, line)
	}
	if strings.ContainsRune(s, '\r') {
		// a rule file is read line by line, CRLF tolerated: a rule cannot
		// carry a carriage return and be written back
		return r, fmt.Errorf("%w: rule %q contains a carriage return", atomic.ErrInvalid, line)
	}
	if strings.HasPrefix(s, "/") {
		r.Anchored = true
		s = strings.TrimLeft(s, "/")
	}
	if strings.HasSuffix(s, "/") {
		r.DirOnly = true
		s = strings.TrimRight(s, "/")
	}
	if s == "" {
		return r, fmt.Errorf("%w: rule %q names no path", atomic.ErrInvalid, line)
	}
	for _, c := range strings.Split(s, "/") {
		switch c {
		case "":
			return r, fmt.Errorf("%w: rule %q has an empty path component", atomic.ErrInvalid, line)
		case ".", "..":
			return r, fmt.Errorf("%w: rule %q: %q components are not allowed", atomic.ErrInvalid, line, c)
		}
	}
	if strings.Contains(s, "/") {
		r.Anchored = true
	}
	if _, err := path.Match(s, ""); err != nil {
		return r, fmt.Errorf("%w: rule %q: %v", atomic.ErrInvalid, line, err)
	}
	r.Pattern = s
	return r, nil
}

// ParseRules parses an exclude or add_only file.
func ParseRules(b []byte) (Rules, error) {
	var rs Rules
	for i, line := range bytes.Split(b, []byte("\n")) {
		s := strings.TrimSuffix(string(line), "\r")
		if strings.TrimSpace(s) == "" || strings.HasPrefix(s, "#") {
			continue
		}
		r, err := ParseRule(s)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// Format writes rules back in file form.
func (rs Rules) Format() []byte {
	var b bytes.Buffer
	for _, r := range rs {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// Match reports whether the tree-relative path rel (no leading slash)
// matches a rule. isDir says whether rel is a directory. It does not look
// at parents: a walk stops at a matching directory.
func (rs Rules) Match(rel string, isDir bool) bool {
	for _, r := range rs {
		if r.DirOnly && !isDir {
			continue
		}
		subject := rel
		if !r.Anchored {
			subject = path.Base(rel)
		}
		if ok, _ := path.Match(r.Pattern, subject); ok {
			return true
		}
	}
	return false
}

// MatchAny reports whether rel or one of its parent directories matches.
func (rs Rules) MatchAny(rel string, isDir bool) bool {
	if len(rs) == 0 {
		return false
	}
	if rs.Match(rel, isDir) {
		return true
	}
	for d := path.Dir(rel); d != "." && d != "/"; d = path.Dir(d) {
		if rs.Match(d, true) {
			return true
		}
	}
	return false
}
