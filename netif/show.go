package netif

import (
	"fmt"
	"net"
	"sort"

	"github.com/vishvananda/netlink"
)

// Link is a network interface as netlink reports it.
type Link struct {
	Name   string   `json:"name"`
	Index  int      `json:"index"`
	Type   string   `json:"type"`
	Up     bool     `json:"up"`
	MTU    int      `json:"mtu"`
	Master string   `json:"master,omitempty"`
	MAC    string   `json:"mac,omitempty"`
	Addrs  []string `json:"addrs"`
}

// Route is a route as netlink reports it.
type Route struct {
	Dst    string `json:"dst"`
	Via    string `json:"via,omitempty"`
	Dev    string `json:"dev,omitempty"`
	Src    string `json:"src,omitempty"`
	Metric int    `json:"metric"`
	Table  int    `json:"table"`
}

// Links lists the links of a network namespace ("" = ours), with their
// addresses, sorted by index.
func Links(ns string) ([]Link, error) {
	if err := ValidNetns(ns); err != nil {
		return nil, err
	}
	h, err := handle(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	ls, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links%s: %w", where(ns), err)
	}
	names := map[int]string{}
	for _, l := range ls {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	out := make([]Link, 0, len(ls))
	for _, l := range ls {
		a := l.Attrs()
		lk := Link{Name: a.Name, Index: a.Index, Type: l.Type(), Up: a.Flags&net.FlagUp != 0, MTU: a.MTU,
			Master: names[a.MasterIndex], Addrs: []string{}}
		if len(a.HardwareAddr) > 0 {
			lk.MAC = a.HardwareAddr.String()
		}
		addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s: %w", a.Name, err)
		}
		for _, ad := range addrs {
			lk.Addrs = append(lk.Addrs, prefixOf(ad.IPNet).String())
		}
		out = append(out, lk)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, nil
}

// Routes lists the IPv4 and IPv6 routes of the main table of a network
// namespace ("" = ours), or of every table with all set.
func Routes(ns string, all bool) ([]Route, error) {
	if err := ValidNetns(ns); err != nil {
		return nil, err
	}
	h, err := handle(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	var out []Route
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		var rs []netlink.Route
		if all {
			rs, err = h.RouteListFiltered(fam, &netlink.Route{}, netlink.RT_FILTER_TABLE)
		} else {
			rs, err = h.RouteListFiltered(fam, &netlink.Route{}, 0)
		}
		if err != nil {
			return nil, fmt.Errorf("list routes%s: %w", where(ns), err)
		}
		for _, r := range rs {
			sr, err := saveRoute(h, r)
			if err != nil {
				sr = savedRoute{Dst: routeDst(r, fam).String(), Via: ipString(r.Gw), Metric: r.Priority, Table: r.Table}
			}
			out = append(out, Route{Dst: sr.Dst, Via: sr.Via, Dev: sr.Dev, Src: sr.Src, Metric: sr.Metric, Table: sr.Table})
		}
	}
	return out, nil
}
