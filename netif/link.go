package netif

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/bofhkit/bofh/atomic"
)

func init() {
	atomic.Register(atomic.Def[CreateLink, createUndo, LinkResult]{
		Doc:     "create a link (bridge, veth, vlan, bond, dummy); undo deletes it if this step created it",
		Prepare: prepareCreate,
		Do:      doCreate,
		Undo:    undoCreate,
		Check:   checkCreate,
	})
	atomic.Register(atomic.Def[DeleteLink, struct{}, struct{}]{
		Doc:          "delete a link; irreversible (its addresses, routes, ports and peer cannot be recreated exactly): runs at commit",
		Irreversible: true,
		Prepare:      prepareDelete,
		Do:           doDelete,
		Check:        checkDelete,
	})
	atomic.Register(atomic.Def[SetLink, setUndo, LinkResult]{
		Doc:     "set a link up or down, its MTU and its master; undo restores the previous values of what it changed",
		Prepare: prepareSet,
		Do:      doSet,
		Undo:    undoSet,
		Check:   checkSet,
	})
}

// Link types net.link.create knows.
var linkTypes = []string{"bridge", "veth", "vlan", "bond", "dummy"}

// CreateLink is the net.link.create step.
type CreateLink struct {
	Netns  string `json:"netns,omitempty" doc:"named network namespace (/var/run/netns); empty: the caller's"`
	Name   string `json:"name" doc:"interface name (at most 15 bytes)"`
	Type   string `json:"type" doc:"bridge, veth, vlan, bond or dummy"`
	Peer   string `json:"peer,omitempty" doc:"veth: the peer's name (required for veth)"`
	Parent string `json:"parent,omitempty" doc:"vlan: the parent link (required for vlan)"`
	VlanID int    `json:"vlan_id,omitempty" doc:"vlan: the VLAN ID, 1-4094"`
	Mode   string `json:"mode,omitempty" doc:"bond: balance-rr (default), active-backup, balance-xor, broadcast, 802.3ad, balance-tlb, balance-alb"`
	MTU    int    `json:"mtu,omitempty" doc:"MTU at creation (default: the kernel's)"`
}

// StepKind names the kind.
func (CreateLink) StepKind() string { return "net.link.create" }

// Validate checks the parameters without touching the system.
func (c CreateLink) Validate() error {
	if err := ValidNetns(c.Netns); err != nil {
		return err
	}
	if err := ValidName(c.Name); err != nil {
		return err
	}
	if !slices.Contains(linkTypes, c.Type) {
		return fmt.Errorf("link type %q: want one of %v", c.Type, linkTypes)
	}
	if err := validMTU(c.MTU, true); err != nil {
		return err
	}
	if (c.Peer != "") != (c.Type == "veth") {
		return errors.New("peer is required for veth links and only for them")
	}
	if c.Type == "veth" {
		if err := ValidName(c.Peer); err != nil {
			return fmt.Errorf("peer: %w", err)
		}
		if c.Peer == c.Name {
			return errors.New("a veth's peer needs its own name")
		}
	}
	if (c.Parent != "" || c.VlanID != 0) != (c.Type == "vlan") {
		return errors.New("parent and vlan_id are required for vlan links and only for them")
	}
	if c.Type == "vlan" {
		if err := ValidName(c.Parent); err != nil {
			return fmt.Errorf("parent: %w", err)
		}
		if c.VlanID < 1 || c.VlanID > 4094 {
			return fmt.Errorf("vlan_id %d: want 1 to 4094", c.VlanID)
		}
	}
	if (c.Mode != "") && c.Type != "bond" {
		return errors.New("mode is for bond links only")
	}
	if c.Mode != "" && netlink.StringToBondMode(c.Mode) == netlink.BOND_MODE_UNKNOWN {
		return fmt.Errorf("bond mode %q: want balance-rr, active-backup, balance-xor, broadcast, 802.3ad, balance-tlb or balance-alb", c.Mode)
	}
	return nil
}

func validMTU(mtu int, optional bool) error {
	if optional && mtu == 0 {
		return nil
	}
	if mtu < 68 || mtu > 65535 {
		return fmt.Errorf("mtu %d: want 68 to 65535", mtu)
	}
	return nil
}

// LinkResult is what the link steps report.
type LinkResult struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
	Type  string `json:"type"`
}

type createUndo struct{}

func linkResult(l netlink.Link) LinkResult {
	a := l.Attrs()
	return LinkResult{Name: a.Name, Index: a.Index, Type: l.Type()}
}

// sameShape tells whether an existing link is the one c describes.
func (c CreateLink) sameShape(h *netlink.Handle, l netlink.Link) error {
	if l.Type() != c.Type {
		return fmt.Errorf("link %s exists as a %s, not a %s", c.Name, l.Type(), c.Type)
	}
	switch v := l.(type) {
	case *netlink.Vlan:
		p, err := h.LinkByIndex(v.ParentIndex)
		if err != nil || p.Attrs().Name != c.Parent || v.VlanId != c.VlanID {
			return fmt.Errorf("vlan %s exists with another parent or VLAN ID", c.Name)
		}
	case *netlink.Veth:
		idx, err := netlink.VethPeerIndex(v)
		if err == nil {
			if p, err := h.LinkByIndex(idx); err != nil || p.Attrs().Name != c.Peer {
				return fmt.Errorf("veth %s exists with another peer", c.Name)
			}
		}
	case *netlink.Bond:
		if c.Mode != "" && v.Mode != netlink.StringToBondMode(c.Mode) {
			return fmt.Errorf("bond %s exists in mode %s, not %s", c.Name, v.Mode, c.Mode)
		}
	}
	if c.MTU != 0 && l.Attrs().MTU != c.MTU {
		return fmt.Errorf("link %s exists with MTU %d, not %d", c.Name, l.Attrs().MTU, c.MTU)
	}
	return nil
}

func prepareCreate(_ context.Context, _ *atomic.Env, c CreateLink) (atomic.Plan[createUndo, LinkResult], error) {
	var plan atomic.Plan[createUndo, LinkResult]
	h, err := handle(c.Netns)
	if err != nil {
		return plan, err
	}
	defer h.Close()
	l, err := linkByName(h, c.Name)
	if err != nil {
		return plan, err
	}
	if l != nil {
		if err := c.sameShape(h, l); err != nil {
			return plan, fmt.Errorf("%w: %w%s", atomic.ErrInvalid, err, where(c.Netns))
		}
		plan.Noop, plan.Result = true, linkResult(l)
		return plan, nil
	}
	if c.Type == "veth" {
		if p, err := linkByName(h, c.Peer); err != nil {
			return plan, err
		} else if p != nil {
			return plan, fmt.Errorf("%w: veth peer name %s is taken%s", atomic.ErrInvalid, c.Peer, where(c.Netns))
		}
	}
	if c.Type == "vlan" {
		p, err := mustLink(h, c.Netns, c.Parent)
		if err != nil {
			return plan, err
		}
		// the kernel takes one link per VLAN ID on a parent
		all, err := h.LinkList()
		if err != nil {
			return plan, fmt.Errorf("list links%s: %w", where(c.Netns), err)
		}
		for _, o := range all {
			if v, ok := o.(*netlink.Vlan); ok && v.ParentIndex == p.Attrs().Index && v.VlanId == c.VlanID {
				return plan, fmt.Errorf("%w: VLAN %d on %s exists already as %s%s", atomic.ErrInvalid, c.VlanID, c.Parent, v.Name, where(c.Netns))
			}
		}
	}
	return plan, nil
}

func doCreate(_ context.Context, env *atomic.Env, c CreateLink, _ createUndo) (LinkResult, error) {
	if env.Dry("create %s link %s%s", c.Type, c.Name, where(c.Netns)) {
		return LinkResult{Name: c.Name, Type: c.Type}, nil
	}
	h, err := handle(c.Netns)
	if err != nil {
		return LinkResult{}, err
	}
	defer h.Close()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = c.Name
	attrs.MTU = c.MTU
	var l netlink.Link
	switch c.Type {
	case "bridge":
		l = &netlink.Bridge{LinkAttrs: attrs}
	case "dummy":
		l = &netlink.Dummy{LinkAttrs: attrs}
	case "veth":
		l = &netlink.Veth{LinkAttrs: attrs, PeerName: c.Peer}
	case "vlan":
		p, err := mustLink(h, c.Netns, c.Parent)
		if err != nil {
			return LinkResult{}, err
		}
		attrs.ParentIndex = p.Attrs().Index
		l = &netlink.Vlan{LinkAttrs: attrs, VlanId: c.VlanID}
	case "bond":
		b := netlink.NewLinkBond(attrs)
		if c.Mode != "" {
			b.Mode = netlink.StringToBondMode(c.Mode)
		}
		l = b
	}
	if err := h.LinkAdd(l); err != nil {
		return LinkResult{}, fmt.Errorf("create %s link %s%s: %w", c.Type, c.Name, where(c.Netns), err)
	}
	got, err := mustLink(h, c.Netns, c.Name)
	if err != nil {
		return LinkResult{}, err
	}
	return linkResult(got), nil
}

func undoCreate(_ context.Context, env *atomic.Env, c CreateLink, _ createUndo, r LinkResult) error {
	if env.Dry("delete link %s%s", c.Name, where(c.Netns)) {
		return nil
	}
	h, err := handle(c.Netns)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := linkByName(h, c.Name)
	if err != nil || l == nil {
		return err // already gone
	}
	if l.Type() != c.Type || (r.Index != 0 && l.Attrs().Index != r.Index) {
		return fmt.Errorf("link %s%s is no longer the %s this step created (index %d, now a %s with index %d); not deleting it",
			c.Name, where(c.Netns), c.Type, r.Index, l.Type(), l.Attrs().Index)
	}
	if err := h.LinkDel(l); err != nil {
		return fmt.Errorf("delete link %s%s: %w", c.Name, where(c.Netns), err)
	}
	return nil
}

func checkCreate(_ context.Context, _ *atomic.Env, c CreateLink, _ createUndo) (bool, LinkResult, error) {
	h, err := handle(c.Netns)
	if err != nil {
		return false, LinkResult{}, err
	}
	defer h.Close()
	l, err := linkByName(h, c.Name)
	if err != nil || l == nil || l.Type() != c.Type {
		return false, LinkResult{}, err
	}
	return true, linkResult(l), nil
}

// DeleteLink is the net.link.delete step.
type DeleteLink struct {
	Netns string `json:"netns,omitempty" doc:"named network namespace; empty: the caller's"`
	Name  string `json:"name" doc:"interface name"`
}

// StepKind names the kind.
func (DeleteLink) StepKind() string { return "net.link.delete" }

// Validate checks the parameters without touching the system.
func (d DeleteLink) Validate() error {
	if err := ValidNetns(d.Netns); err != nil {
		return err
	}
	return ValidName(d.Name)
}

func prepareDelete(_ context.Context, _ *atomic.Env, d DeleteLink) (atomic.Plan[struct{}, struct{}], error) {
	var plan atomic.Plan[struct{}, struct{}]
	h, err := handle(d.Netns)
	if err != nil {
		return plan, err
	}
	defer h.Close()
	l, err := linkByName(h, d.Name)
	if err != nil {
		return plan, err
	}
	plan.Noop = l == nil // already gone
	return plan, nil
}

func doDelete(_ context.Context, env *atomic.Env, d DeleteLink, _ struct{}) (struct{}, error) {
	if env.Dry("delete link %s%s", d.Name, where(d.Netns)) {
		return struct{}{}, nil
	}
	h, err := handle(d.Netns)
	if err != nil {
		return struct{}{}, err
	}
	defer h.Close()
	l, err := linkByName(h, d.Name)
	if err != nil || l == nil {
		return struct{}{}, err
	}
	if err := h.LinkDel(l); err != nil {
		return struct{}{}, fmt.Errorf("delete link %s%s: %w", d.Name, where(d.Netns), err)
	}
	return struct{}{}, nil
}

func checkDelete(_ context.Context, _ *atomic.Env, d DeleteLink, _ struct{}) (bool, struct{}, error) {
	h, err := handle(d.Netns)
	if err != nil {
		return false, struct{}{}, err
	}
	defer h.Close()
	l, err := linkByName(h, d.Name)
	return err == nil && l == nil, struct{}{}, err
}

// SetLink is the net.link.set step. Fields left out are not touched.
type SetLink struct {
	Netns string `json:"netns,omitempty" doc:"named network namespace; empty: the caller's"`
	Name  string `json:"name" doc:"interface name"`
	Up    *bool  `json:"up,omitempty" doc:"true: up, false: down"`
	MTU   int    `json:"mtu,omitempty" doc:"new MTU (68-65535)"`
	// Master names the bridge or bond to enslave the link to; "-" (or
	// NoMaster set) releases it from its master.
	Master   string `json:"master,omitempty" doc:"bridge or bond to attach the link to"`
	NoMaster bool   `json:"nomaster,omitempty" doc:"release the link from its master"`
}

// StepKind names the kind.
func (SetLink) StepKind() string { return "net.link.set" }

// Validate checks the parameters without touching the system.
func (s SetLink) Validate() error {
	if err := ValidNetns(s.Netns); err != nil {
		return err
	}
	if err := ValidName(s.Name); err != nil {
		return err
	}
	if err := validMTU(s.MTU, true); err != nil {
		return err
	}
	if s.Master != "" {
		if s.NoMaster {
			return errors.New("set master or nomaster, not both")
		}
		if err := ValidName(s.Master); err != nil {
			return fmt.Errorf("master: %w", err)
		}
		if s.Master == s.Name {
			return errors.New("a link cannot be its own master")
		}
	}
	if s.Up == nil && s.MTU == 0 && s.Master == "" && !s.NoMaster {
		return errors.New("nothing to set: give up, mtu, master or nomaster")
	}
	return nil
}

// setUndo holds the previous values of what the step changes (nil: not
// changed).
type setUndo struct {
	Up     *bool   `json:"up,omitempty"`
	MTU    int     `json:"mtu,omitempty"`
	Master *string `json:"master,omitempty"` // "" = had none
	Index  int     `json:"index"`
	// Routes are the link's routes the kernel drops when it goes down
	// (all but its own), put back when undo sets the link up again.
	Routes []savedRoute `json:"routes,omitempty"`
	// Uppers are the VLANs (and macvlans, ipvlans) stacked on the link
	// whose MTU the kernel lowers along with the link's: undo raises them
	// back, parents first.
	Uppers []upperMTU `json:"uppers,omitempty"`
}

// upperMTU is the MTU an upper link had before the kernel clamped it.
type upperMTU struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
	MTU   int    `json:"mtu"`
}

// clampingTypes are the link types whose MTU the kernel lowers to their
// lower link's when that one's MTU drops below theirs.
var clampingTypes = []string{"vlan", "macvlan", "macvtap", "ipvlan", "ipvtap"}

// clampedUppers lists the links stacked on l (recursively, parents first)
// whose MTU is above mtu and would be lowered with l's.
func clampedUppers(h *netlink.Handle, l netlink.Link, mtu int) ([]upperMTU, error) {
	all, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []upperMTU
	queue := []int{l.Attrs().Index}
	for len(queue) > 0 {
		parent := queue[0]
		queue = queue[1:]
		for _, u := range all {
			a := u.Attrs()
			if a.ParentIndex != parent || a.Index == parent || !slices.Contains(clampingTypes, u.Type()) || a.MTU <= mtu {
				continue
			}
			out = append(out, upperMTU{Name: a.Name, Index: a.Index, MTU: a.MTU})
			queue = append(queue, a.Index)
		}
	}
	return out, nil
}

// masterIsBond tells whether the named link is a bond ("" is not).
func masterIsBond(h *netlink.Handle, name string) (bool, error) {
	if name == "" {
		return false, nil
	}
	m, err := linkByName(h, name)
	if err != nil || m == nil {
		return false, err
	}
	return m.Type() == "bond", nil
}

type linkState struct {
	up     bool
	mtu    int
	master string
}

func stateOf(h *netlink.Handle, l netlink.Link) (linkState, error) {
	a := l.Attrs()
	st := linkState{up: a.Flags&net.FlagUp != 0, mtu: a.MTU}
	if a.MasterIndex != 0 {
		m, err := h.LinkByIndex(a.MasterIndex)
		if err != nil {
			return st, fmt.Errorf("master of %s: %w", a.Name, err)
		}
		st.master = m.Attrs().Name
	}
	return st, nil
}

func prepareSet(_ context.Context, _ *atomic.Env, s SetLink) (atomic.Plan[setUndo, LinkResult], error) {
	var plan atomic.Plan[setUndo, LinkResult]
	h, err := handle(s.Netns)
	if err != nil {
		return plan, err
	}
	defer h.Close()
	l, err := mustLink(h, s.Netns, s.Name)
	if err != nil {
		return plan, err
	}
	st, err := stateOf(h, l)
	if err != nil {
		return plan, err
	}
	u := setUndo{Index: l.Attrs().Index}
	if s.Up != nil && *s.Up != st.up {
		u.Up = &st.up
		if st.up {
			if u.Routes, err = linkRoutes(h, l); err != nil {
				return plan, err
			}
		}
	}
	if s.MTU != 0 && s.MTU != st.mtu {
		u.MTU = st.mtu
		if s.MTU < st.mtu {
			if u.Uppers, err = clampedUppers(h, l, s.MTU); err != nil {
				return plan, err
			}
		}
	}
	if s.Master != "" {
		m, err := mustLink(h, s.Netns, s.Master)
		if err != nil {
			return plan, err
		}
		if t := m.Type(); t != "bridge" && t != "bond" {
			return plan, fmt.Errorf("%w: master %s is a %s, not a bridge or bond", atomic.ErrInvalid, s.Master, t)
		}
		if st.master != s.Master {
			u.Master = &st.master
		}
	}
	if s.NoMaster && st.master != "" {
		u.Master = &st.master
	}
	if u.Master != nil && st.up {
		// A bond takes only links that are down and closes the links it
		// releases: an up link goes down and comes back up on the way,
		// losing its routes. Keep what undo needs to put it all back.
		oldBond, err := masterIsBond(h, st.master)
		if err != nil {
			return plan, err
		}
		newBond, err := masterIsBond(h, s.Master)
		if err != nil {
			return plan, err
		}
		if (oldBond || newBond) && u.Up == nil {
			u.Up = &st.up
			if u.Routes, err = linkRoutes(h, l); err != nil {
				return plan, err
			}
		}
	}
	plan.Undo = u
	if u.Up == nil && u.MTU == 0 && u.Master == nil {
		plan.Noop, plan.Result = true, linkResult(l)
	}
	return plan, nil
}

func setMaster(h *netlink.Handle, ns string, l netlink.Link, master string) error {
	if master == "" {
		if err := h.LinkSetNoMaster(l); err != nil {
			return fmt.Errorf("release %s from its master%s: %w", l.Attrs().Name, where(ns), err)
		}
		return nil
	}
	m, err := mustLink(h, ns, master)
	if err != nil {
		return err
	}
	if err := h.LinkSetMaster(l, m); err != nil {
		return fmt.Errorf("attach %s to %s%s: %w", l.Attrs().Name, master, where(ns), err)
	}
	return nil
}

func setUp(h *netlink.Handle, ns string, l netlink.Link, up bool) error {
	var err error
	if up {
		err = h.LinkSetUp(l)
	} else {
		err = h.LinkSetDown(l)
	}
	if err != nil {
		return fmt.Errorf("set %s %s%s: %w", l.Attrs().Name, map[bool]string{true: "up", false: "down"}[up], where(ns), err)
	}
	return nil
}

func doSet(_ context.Context, env *atomic.Env, s SetLink, u setUndo) (LinkResult, error) {
	if env.Dry("set link %s%s: %s", s.Name, where(s.Netns), s.describe()) {
		return LinkResult{Name: s.Name, Index: u.Index}, nil
	}
	h, err := handle(s.Netns)
	if err != nil {
		return LinkResult{}, err
	}
	defer h.Close()
	l, err := mustLink(h, s.Netns, s.Name)
	if err != nil {
		return LinkResult{}, err
	}
	// master first: a bond enslaves only links that are down (and opens
	// them) and sets their MTU; an explicit MTU or up state comes after.
	if u.Master != nil {
		if bond, err := masterIsBond(h, s.Master); err != nil {
			return LinkResult{}, err
		} else if bond && l.Attrs().Flags&net.FlagUp != 0 {
			if err := setUp(h, s.Netns, l, false); err != nil {
				return LinkResult{}, err
			}
		}
		if err := setMaster(h, s.Netns, l, s.Master); err != nil {
			return LinkResult{}, err
		}
	}
	if u.MTU != 0 {
		if err := h.LinkSetMTU(l, s.MTU); err != nil {
			return LinkResult{}, fmt.Errorf("set MTU of %s to %d%s: %w", s.Name, s.MTU, where(s.Netns), err)
		}
	}
	if u.Up != nil {
		// the state asked for, or (a bond took the link down on the way)
		// the one it had; the routes the kernel dropped with it are put
		// back by undo only (a bond's port carries no routes of its own)
		want := *u.Up
		if s.Up != nil {
			want = *s.Up
		}
		if l, err = mustLink(h, s.Netns, s.Name); err != nil {
			return LinkResult{}, err
		}
		if (l.Attrs().Flags&net.FlagUp != 0) != want {
			if err := setUp(h, s.Netns, l, want); err != nil {
				return LinkResult{}, err
			}
		}
	}
	return linkResult(l), nil
}

func (s SetLink) describe() string {
	var parts []string
	if s.Master != "" {
		parts = append(parts, "master "+s.Master)
	}
	if s.NoMaster {
		parts = append(parts, "nomaster")
	}
	if s.MTU != 0 {
		parts = append(parts, fmt.Sprintf("mtu %d", s.MTU))
	}
	if s.Up != nil {
		parts = append(parts, map[bool]string{true: "up", false: "down"}[*s.Up])
	}
	return fmt.Sprint(parts)
}

func undoSet(_ context.Context, env *atomic.Env, s SetLink, u setUndo, _ LinkResult) error {
	if env.Dry("restore link %s%s", s.Name, where(s.Netns)) {
		return nil
	}
	h, err := handle(s.Netns)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := linkByName(h, s.Name)
	if err != nil {
		return err
	}
	if l == nil || l.Attrs().Index != u.Index {
		return nil // the link is gone (or was replaced): nothing of ours to restore
	}
	st, err := stateOf(h, l)
	if err != nil {
		return err
	}
	// master, MTU, then the up state (last: a bond closes the links it
	// releases); each only if it still differs.
	if u.Master != nil && st.master != *u.Master {
		// a bond takes only links that are down (and opens them)
		bond, err := masterIsBond(h, *u.Master)
		if err != nil {
			return err
		}
		if bond && st.up {
			if err := setUp(h, s.Netns, l, false); err != nil {
				return err
			}
		}
		if err := setMaster(h, s.Netns, l, *u.Master); err != nil {
			return err
		}
	}
	if u.MTU != 0 {
		if l, err = mustLink(h, s.Netns, s.Name); err != nil {
			return err
		}
		if l.Attrs().MTU != u.MTU {
			if err := h.LinkSetMTU(l, u.MTU); err != nil {
				return fmt.Errorf("restore MTU of %s to %d%s: %w", s.Name, u.MTU, where(s.Netns), err)
			}
		}
		// the kernel lowered these with the link's MTU, and does not
		// raise them back
		for _, up := range u.Uppers {
			ul, err := h.LinkByIndex(up.Index)
			if err != nil || ul.Attrs().Name != up.Name || ul.Attrs().MTU >= up.MTU {
				continue // gone, replaced, or not lowered
			}
			if err := h.LinkSetMTU(ul, up.MTU); err != nil {
				return fmt.Errorf("restore MTU of %s (on %s) to %d%s: %w", up.Name, s.Name, up.MTU, where(s.Netns), err)
			}
		}
	}
	if u.Up != nil {
		if l, err = mustLink(h, s.Netns, s.Name); err != nil {
			return err
		}
		if (l.Attrs().Flags&net.FlagUp != 0) != *u.Up {
			if err := setUp(h, s.Netns, l, *u.Up); err != nil {
				return err
			}
		}
		if *u.Up {
			for _, sr := range u.Routes {
				if err := sr.restore(h, s.Netns); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func checkSet(_ context.Context, _ *atomic.Env, s SetLink, u setUndo) (bool, LinkResult, error) {
	h, err := handle(s.Netns)
	if err != nil {
		return false, LinkResult{}, err
	}
	defer h.Close()
	l, err := linkByName(h, s.Name)
	if err != nil || l == nil {
		return false, LinkResult{}, err
	}
	st, err := stateOf(h, l)
	if err != nil {
		return false, LinkResult{}, err
	}
	ok := (s.Up == nil || st.up == *s.Up) && (s.MTU == 0 || st.mtu == s.MTU) &&
		(s.Master == "" || st.master == s.Master) && (!s.NoMaster || st.master == "")
	if ok {
		return true, linkResult(l), nil
	}
	// Partly applied (the process died inside Do): put back what changed,
	// so that "not present" is true for rollback and resume alike.
	if err := undoSet(context.Background(), &atomic.Env{}, s, u, LinkResult{}); err != nil {
		return false, LinkResult{}, fmt.Errorf("restore partly applied settings of %s: %w", s.Name, err)
	}
	return false, LinkResult{}, nil
}

// linkRoutes lists the routes through l that the kernel did not make
// itself (those come back with the link's addresses), in every table.
func linkRoutes(h *netlink.Handle, l netlink.Link) ([]savedRoute, error) {
	var out []savedRoute
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := h.RouteListFiltered(fam, &netlink.Route{LinkIndex: l.Attrs().Index}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_OIF)
		if err != nil {
			return nil, fmt.Errorf("list routes of %s: %w", l.Attrs().Name, err)
		}
		for _, r := range rs {
			if r.Protocol == unix.RTPROT_KERNEL || r.Table == unix.RT_TABLE_LOCAL || (fam == netlink.FAMILY_V6 && r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast()) {
				continue
			}
			sr, err := saveRoute(h, r)
			if err != nil {
				return nil, err
			}
			out = append(out, sr)
		}
	}
	return out, nil
}
