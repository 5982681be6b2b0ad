// Package netif manages network interfaces through netlink
// (github.com/vishvananda/netlink): links (bridge, veth, VLAN, bond, dummy),
// their up/down state, MTU and master, IP addresses and routes. Every step
// works inside a named network namespace (/var/run/netns/<name>, parameter
// "netns") or, when none is given, in the caller's namespace.
//
// Netlink calls do not go through run.Runner: in a dry run the steps probe
// (read) as usual and print what they would change through atomic.Env.Dry.
//
// Step kinds:
//
//   - net.link.create: create a link; undo deletes it (only if we created it).
//   - net.link.delete: delete a link; irreversible (a link's full state —
//     addresses, routes, ports, peer — cannot be recreated exactly), so it
//     runs only at commit.
//   - net.link.set: set up/down, MTU and master; undo restores the previous
//     values of what it changed.
//   - net.addr.add: add an address; undo removes it.
//   - net.addr.del: remove an address; undo puts it back, with the routes the
//     kernel dropped along with it (those using it as preferred source).
//   - net.route.add: add a route; undo removes it.
//   - net.route.del: remove a route; undo puts it back.
package netif

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/bofhkit/bofh/atomic"
)

// NetnsDir is where named network namespaces live (as ip-netns(8) keeps them).
const NetnsDir = "/var/run/netns"

// ErrNotFound is wrapped by errors about a link, address or route that
// does not exist.
var ErrNotFound = errors.New("not found")

// ValidName checks an interface name as the kernel does (dev_valid_name):
// 1 to 15 bytes, not "." or "..", no '/', ':' or whitespace.
func ValidName(name string) error {
	switch {
	case name == "":
		return errors.New("interface name is empty")
	case len(name) > 15:
		return fmt.Errorf("interface name %q is %d bytes long; the kernel allows at most 15", name, len(name))
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is not allowed", name)
	}
	for _, r := range name {
		if r == '/' || r == ':' || r <= ' ' || r == 0x7f {
			return fmt.Errorf("interface name %q contains %q, which the kernel refuses", name, r)
		}
	}
	return nil
}

// ValidNetns checks a network namespace name: a plain file name under
// /var/run/netns ("" means the caller's namespace).
func ValidNetns(name string) error {
	if name == "" {
		return nil
	}
	if len(name) > 255 || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || strings.TrimSpace(name) != name {
		return fmt.Errorf("network namespace name %q is not a plain file name", name)
	}
	return nil
}

// ParseAddr parses an interface address with its prefix length
// ("192.0.2.1/24", "2001:db8::1/64"); the host part is kept.
func ParseAddr(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("address %q: want address/prefix-length (192.0.2.1/24): %w", s, err)
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("address %q: zones are not allowed", s)
	}
	return p, nil
}

// ParseDst parses a route destination: a network in CIDR form
// ("10.1.0.0/16"), a host address ("10.1.2.3" = /32) or "default".
// A network with host bits set is refused (the kernel would too).
func ParseDst(s string, v6 bool) (netip.Prefix, error) {
	if s == "default" {
		if v6 {
			return netip.MustParsePrefix("::/0"), nil
		}
		return netip.MustParsePrefix("0.0.0.0/0"), nil
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("destination %q: want CIDR, address or default: %w", s, err)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("destination %q: want CIDR, address or default: %w", s, err)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("destination %q has host bits set (did you mean %s?)", s, p.Masked())
	}
	return p, nil
}

// handle opens a netlink handle in the named namespace ("" = ours).
func handle(ns string) (*netlink.Handle, error) {
	if ns == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("netlink: %w", err)
		}
		return h, nil
	}
	if _, err := os.Stat(filepath.Join(NetnsDir, ns)); err != nil {
		return nil, fmt.Errorf("%w: network namespace %q: %w", atomic.ErrInvalid, ns, err)
	}
	nh, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("network namespace %q: %w", ns, err)
	}
	defer nh.Close()
	h, err := netlink.NewHandleAt(nh)
	if err != nil {
		return nil, fmt.Errorf("netlink in namespace %q: %w", ns, err)
	}
	return h, nil
}

func where(ns string) string {
	if ns == "" {
		return ""
	}
	return " in netns " + ns
}

// linkByName finds a link; a missing one is (nil, nil).
func linkByName(h *netlink.Handle, name string) (netlink.Link, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, nil
		}
		return nil, fmt.Errorf("look up link %s: %w", name, err)
	}
	return l, nil
}

// mustLink finds a link that must exist; a missing one is bad input.
func mustLink(h *netlink.Handle, ns, name string) (netlink.Link, error) {
	l, err := linkByName(h, name)
	if err != nil {
		return nil, err
	}
	if l == nil {
		return nil, fmt.Errorf("%w: link %s%s: %w", atomic.ErrInvalid, name, where(ns), ErrNotFound)
	}
	return l, nil
}
