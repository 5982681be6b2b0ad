package netif

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/bofhkit/bofh/atomic"
)

func init() {
	atomic.Register(atomic.Def[AddAddr, struct{}, AddrResult]{
		Doc:     "add an IP address to a link; undo removes it",
		Prepare: prepareAddrAdd,
		Do:      doAddrAdd,
		Undo:    undoAddrAdd,
		Check:   checkAddrAdd,
	})
	atomic.Register(atomic.Def[DelAddr, delAddrUndo, AddrResult]{
		Doc:     "remove an IP address from a link; undo puts it back with the routes that used it as source",
		Prepare: prepareAddrDel,
		Do:      doAddrDel,
		Undo:    undoAddrDel,
		Check:   checkAddrDel,
	})
}

// AddAddr is the net.addr.add step.
type AddAddr struct {
	Netns   string `json:"netns,omitempty" doc:"named network namespace; empty: the caller's"`
	Link    string `json:"link" doc:"interface name"`
	Address string `json:"address" doc:"address with prefix length: 192.0.2.1/24, 2001:db8::1/64"`
}

// StepKind names the kind.
func (AddAddr) StepKind() string { return "net.addr.add" }

// Validate checks the parameters without touching the system.
func (a AddAddr) Validate() error { return validAddrStep(a.Netns, a.Link, a.Address) }

func validAddrStep(ns, link, addr string) error {
	if err := ValidNetns(ns); err != nil {
		return err
	}
	if err := ValidName(link); err != nil {
		return err
	}
	_, err := ParseAddr(addr)
	return err
}

// AddrResult is what the address steps report.
type AddrResult struct {
	Link    string `json:"link"`
	Address string `json:"address"`
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

// findAddr returns the link's address equal to p (address and prefix
// length), or nil.
func findAddr(h *netlink.Handle, l netlink.Link, p netip.Prefix) (*netlink.Addr, error) {
	addrs, err := h.AddrList(l, family(p.Addr()))
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
	}
	for i := range addrs {
		if prefixOf(addrs[i].IPNet) == p {
			return &addrs[i], nil
		}
	}
	return nil, nil
}

func prepareAddrAdd(_ context.Context, _ *atomic.Env, a AddAddr) (atomic.Plan[struct{}, AddrResult], error) {
	var plan atomic.Plan[struct{}, AddrResult]
	p, _ := ParseAddr(a.Address)
	h, err := handle(a.Netns)
	if err != nil {
		return plan, err
	}
	defer h.Close()
	l, err := mustLink(h, a.Netns, a.Link)
	if err != nil {
		return plan, err
	}
	got, err := findAddr(h, l, p)
	if err != nil {
		return plan, err
	}
	if got != nil {
		plan.Noop, plan.Result = true, AddrResult{Link: a.Link, Address: p.String()}
	}
	return plan, nil
}

func doAddrAdd(_ context.Context, env *atomic.Env, a AddAddr, _ struct{}) (AddrResult, error) {
	p, _ := ParseAddr(a.Address)
	res := AddrResult{Link: a.Link, Address: p.String()}
	if env.Dry("add address %s to %s%s", p, a.Link, where(a.Netns)) {
		return res, nil
	}
	h, err := handle(a.Netns)
	if err != nil {
		return AddrResult{}, err
	}
	defer h.Close()
	l, err := mustLink(h, a.Netns, a.Link)
	if err != nil {
		return AddrResult{}, err
	}
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(p)}); err != nil {
		return AddrResult{}, fmt.Errorf("add address %s to %s%s: %w", p, a.Link, where(a.Netns), err)
	}
	return res, nil
}

func undoAddrAdd(_ context.Context, env *atomic.Env, a AddAddr, _ struct{}, _ AddrResult) error {
	p, _ := ParseAddr(a.Address)
	if env.Dry("remove address %s from %s%s", p, a.Link, where(a.Netns)) {
		return nil
	}
	return removeAddr(a.Netns, a.Link, p)
}

func removeAddr(ns, link string, p netip.Prefix) error {
	h, err := handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := linkByName(h, link)
	if err != nil || l == nil {
		return err // the link is gone, and its addresses with it
	}
	got, err := findAddr(h, l, p)
	if err != nil || got == nil {
		return err
	}
	if err := h.AddrDel(l, got); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("remove address %s from %s%s: %w", p, link, where(ns), err)
	}
	return nil
}

func checkAddrAdd(_ context.Context, _ *atomic.Env, a AddAddr, _ struct{}) (bool, AddrResult, error) {
	p, _ := ParseAddr(a.Address)
	ok, err := hasAddr(a.Netns, a.Link, p)
	return ok, AddrResult{Link: a.Link, Address: p.String()}, err
}

func hasAddr(ns, link string, p netip.Prefix) (bool, error) {
	h, err := handle(ns)
	if err != nil {
		return false, err
	}
	defer h.Close()
	l, err := linkByName(h, link)
	if err != nil || l == nil {
		return false, err
	}
	got, err := findAddr(h, l, p)
	return got != nil, err
}

// DelAddr is the net.addr.del step.
type DelAddr struct {
	Netns   string `json:"netns,omitempty" doc:"named network namespace; empty: the caller's"`
	Link    string `json:"link" doc:"interface name"`
	Address string `json:"address" doc:"address with prefix length, as it is on the link"`
}

// StepKind names the kind.
func (DelAddr) StepKind() string { return "net.addr.del" }

// Validate checks the parameters without touching the system.
func (d DelAddr) Validate() error { return validAddrStep(d.Netns, d.Link, d.Address) }

// savedAddr is an address as it was, to put it back.
type savedAddr struct {
	Address   string `json:"address"`
	Label     string `json:"label,omitempty"`
	Broadcast string `json:"broadcast,omitempty"`
	Peer      string `json:"peer,omitempty"`
	Scope     int    `json:"scope"`
	Flags     int    `json:"flags"`
}

type delAddrUndo struct {
	Index  int          `json:"index"`
	Addr   *savedAddr   `json:"addr,omitempty"`
	Routes []savedRoute `json:"routes,omitempty"`
}

func prepareAddrDel(_ context.Context, _ *atomic.Env, d DelAddr) (atomic.Plan[delAddrUndo, AddrResult], error) {
	var plan atomic.Plan[delAddrUndo, AddrResult]
	p, _ := ParseAddr(d.Address)
	h, err := handle(d.Netns)
	if err != nil {
		return plan, err
	}
	defer h.Close()
	l, err := mustLink(h, d.Netns, d.Link)
	if err != nil {
		return plan, err
	}
	got, err := findAddr(h, l, p)
	if err != nil {
		return plan, err
	}
	plan.Result = AddrResult{Link: d.Link, Address: p.String()}
	if got == nil {
		plan.Noop = true
		return plan, nil
	}
	sa := &savedAddr{Address: p.String(), Label: got.Label, Scope: got.Scope, Flags: got.Flags}
	if got.Broadcast != nil {
		sa.Broadcast = got.Broadcast.String()
	}
	if got.Peer != nil && prefixOf(got.Peer) != p {
		sa.Peer = prefixOf(got.Peer).String()
	}
	// routes the kernel drops with the address: those using it as their
	// preferred source (other than the kernel's own, which come back)
	routes, err := h.RouteListFiltered(family(p.Addr()), &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return plan, fmt.Errorf("list routes%s: %w", where(d.Netns), err)
	}
	for _, r := range routes {
		if r.Src != nil && r.Src.Equal(net.IP(p.Addr().AsSlice())) && r.Protocol != unix.RTPROT_KERNEL {
			sr, err := saveRoute(h, r)
			if err != nil {
				return plan, err
			}
			plan.Undo.Routes = append(plan.Undo.Routes, sr)
		}
	}
	plan.Undo.Index, plan.Undo.Addr = l.Attrs().Index, sa
	return plan, nil
}

func doAddrDel(_ context.Context, env *atomic.Env, d DelAddr, _ delAddrUndo) (AddrResult, error) {
	p, _ := ParseAddr(d.Address)
	if env.Dry("remove address %s from %s%s", p, d.Link, where(d.Netns)) {
		return AddrResult{Link: d.Link, Address: p.String()}, nil
	}
	if err := removeAddr(d.Netns, d.Link, p); err != nil {
		return AddrResult{}, err
	}
	return AddrResult{Link: d.Link, Address: p.String()}, nil
}

func undoAddrDel(_ context.Context, env *atomic.Env, d DelAddr, u delAddrUndo, _ AddrResult) error {
	if u.Addr == nil {
		return nil
	}
	if env.Dry("add address %s back to %s%s", u.Addr.Address, d.Link, where(d.Netns)) {
		return nil
	}
	p, err := ParseAddr(u.Addr.Address)
	if err != nil {
		return err
	}
	h, err := handle(d.Netns)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := linkByName(h, d.Link)
	if err != nil {
		return err
	}
	if l == nil || l.Attrs().Index != u.Index {
		return fmt.Errorf("link %s%s is gone or was replaced; cannot put address %s back", d.Link, where(d.Netns), p)
	}
	got, err := findAddr(h, l, p)
	if err != nil {
		return err
	}
	if got == nil {
		a := &netlink.Addr{IPNet: ipNet(p), Label: u.Addr.Label, Scope: u.Addr.Scope, Flags: u.Addr.Flags}
		if u.Addr.Broadcast != "" {
			a.Broadcast = net.ParseIP(u.Addr.Broadcast)
		} else if p.Addr().Is4() {
			a.Broadcast = net.IPv4zero // had none: stop netlink from computing one
		}
		if u.Addr.Peer != "" {
			if pp, err := netip.ParsePrefix(u.Addr.Peer); err == nil {
				a.Peer = ipNet(pp)
			}
		}
		if err := h.AddrAdd(l, a); err != nil {
			return fmt.Errorf("add address %s back to %s%s: %w", p, d.Link, where(d.Netns), err)
		}
	}
	for _, sr := range u.Routes {
		if err := sr.restore(h, d.Netns); err != nil {
			return err
		}
	}
	return nil
}

func checkAddrDel(_ context.Context, _ *atomic.Env, d DelAddr, _ delAddrUndo) (bool, AddrResult, error) {
	p, _ := ParseAddr(d.Address)
	ok, err := hasAddr(d.Netns, d.Link, p)
	return err == nil && !ok, AddrResult{Link: d.Link, Address: p.String()}, err
}
