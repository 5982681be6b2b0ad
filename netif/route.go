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
	atomic.Register(atomic.Def[AddRoute, struct{}, RouteResult]{
		Doc:     "add a route; undo removes it",
		Prepare: prepareRouteAdd,
		Do:      doRouteAdd,
		Undo:    undoRouteAdd,
		Check:   checkRouteAdd,
	})
	atomic.Register(atomic.Def[DelRoute, *savedRoute, RouteResult]{
		Doc:     "remove a route; undo puts it back as it was",
		Prepare: prepareRouteDel,
		Do:      doRouteDel,
		Undo:    undoRouteDel,
		Check:   checkRouteDel,
	})
}

// RouteSpec names a route: its destination, table and metric (the
// kernel's key), and for net.route.add where it goes.
type RouteSpec struct {
	Netns  string `json:"netns,omitempty" doc:"named network namespace; empty: the caller's"`
	Dst    string `json:"dst" doc:"destination: 10.1.0.0/16, 10.1.2.3, default (IPv4) or ::/0"`
	Via    string `json:"via,omitempty" doc:"gateway address"`
	Dev    string `json:"dev,omitempty" doc:"output interface"`
	Src    string `json:"src,omitempty" doc:"preferred source address"`
	Metric int    `json:"metric,omitempty" doc:"metric (priority); part of the route's key"`
	Table  int    `json:"table,omitempty" doc:"routing table number (default: main, 254)"`
}

// AddRoute is the net.route.add step.
type AddRoute RouteSpec

// StepKind names the kind.
func (AddRoute) StepKind() string { return "net.route.add" }

// Validate checks the parameters without touching the system.
func (a AddRoute) Validate() error {
	if _, err := RouteSpec(a).parse(); err != nil {
		return err
	}
	if a.Via == "" && a.Dev == "" {
		return errors.New("a route needs via (gateway), dev, or both")
	}
	return nil
}

// DelRoute is the net.route.del step: it removes the route with this
// destination, table and metric (and, if given, gateway and device).
type DelRoute RouteSpec

// StepKind names the kind.
func (DelRoute) StepKind() string { return "net.route.del" }

// Validate checks the parameters without touching the system.
func (d DelRoute) Validate() error {
	_, err := RouteSpec(d).parse()
	return err
}

type parsedRoute struct {
	dst      netip.Prefix
	via, src netip.Addr
	table    int
}

func (s RouteSpec) parse() (parsedRoute, error) {
	var pr parsedRoute
	if err := ValidNetns(s.Netns); err != nil {
		return pr, err
	}
	if s.Dev != "" {
		if err := ValidName(s.Dev); err != nil {
			return pr, fmt.Errorf("dev: %w", err)
		}
	}
	var err error
	v6 := false
	if s.Via != "" {
		if pr.via, err = netip.ParseAddr(s.Via); err != nil {
			return pr, fmt.Errorf("via %q: not an IP address", s.Via)
		}
		v6 = pr.via.Is6()
	}
	if pr.dst, err = ParseDst(s.Dst, v6); err != nil {
		return pr, err
	}
	if s.Src != "" {
		if pr.src, err = netip.ParseAddr(s.Src); err != nil {
			return pr, fmt.Errorf("src %q: not an IP address", s.Src)
		}
	}
	for _, a := range []netip.Addr{pr.via, pr.src} {
		if a.IsValid() && a.Is4() != pr.dst.Addr().Is4() {
			return pr, fmt.Errorf("route to %s mixes IPv4 and IPv6 addresses", pr.dst)
		}
	}
	if s.Metric < 0 || int64(s.Metric) > 0xffffffff {
		return pr, fmt.Errorf("metric %d out of range", s.Metric)
	}
	if s.Table < 0 || s.Table > 0xfffffffe {
		return pr, fmt.Errorf("table %d out of range", s.Table)
	}
	pr.table = s.Table
	if pr.table == 0 {
		pr.table = unix.RT_TABLE_MAIN
	}
	return pr, nil
}

// RouteResult is what the route steps report.
type RouteResult struct {
	Dst   string `json:"dst"`
	Via   string `json:"via,omitempty"`
	Dev   string `json:"dev,omitempty"`
	Table int    `json:"table"`
}

// savedRoute is a route as the kernel has it, to put it back.
type savedRoute struct {
	Dst      string `json:"dst"`
	Via      string `json:"via,omitempty"`
	Dev      string `json:"dev,omitempty"`
	Src      string `json:"src,omitempty"`
	Metric   int    `json:"metric"`
	Table    int    `json:"table"`
	Scope    int    `json:"scope"`
	Protocol int    `json:"protocol"`
	Type     int    `json:"type"`
	Flags    int    `json:"flags"`
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}

func routeDst(r netlink.Route, fam int) netip.Prefix {
	if r.Dst == nil {
		if fam == netlink.FAMILY_V6 {
			return netip.MustParsePrefix("::/0")
		}
		return netip.MustParsePrefix("0.0.0.0/0")
	}
	return prefixOf(r.Dst)
}

func saveRoute(h *netlink.Handle, r netlink.Route) (savedRoute, error) {
	if len(r.MultiPath) > 0 || r.Encap != nil {
		return savedRoute{}, fmt.Errorf("route to %v: multipath and encapsulated routes are not supported", r.Dst)
	}
	fam := r.Family
	if fam == 0 {
		fam = netlink.FAMILY_V4
	}
	sr := savedRoute{Dst: routeDst(r, fam).String(), Via: ipString(r.Gw), Src: ipString(r.Src), Metric: r.Priority,
		Table: r.Table, Scope: int(r.Scope), Protocol: int(r.Protocol), Type: r.Type, Flags: r.Flags & unix.RTNH_F_ONLINK}
	if r.LinkIndex != 0 {
		l, err := h.LinkByIndex(r.LinkIndex)
		if err != nil {
			return sr, fmt.Errorf("route to %s: device %d: %w", sr.Dst, r.LinkIndex, err)
		}
		sr.Dev = l.Attrs().Name
	}
	return sr, nil
}

func (sr savedRoute) route(h *netlink.Handle, ns string) (*netlink.Route, error) {
	dst, err := netip.ParsePrefix(sr.Dst)
	if err != nil {
		return nil, fmt.Errorf("saved route: %w", err)
	}
	r := &netlink.Route{Dst: ipNet(dst), Priority: sr.Metric, Table: sr.Table, Scope: netlink.Scope(sr.Scope),
		Protocol: netlink.RouteProtocol(sr.Protocol), Type: sr.Type, Flags: sr.Flags, Family: family(dst.Addr())}
	if sr.Via != "" {
		r.Gw = net.ParseIP(sr.Via)
	}
	if sr.Src != "" {
		r.Src = net.ParseIP(sr.Src)
	}
	if sr.Dev != "" {
		l, err := mustLink(h, ns, sr.Dev)
		if err != nil {
			return nil, err
		}
		r.LinkIndex = l.Attrs().Index
	}
	return r, nil
}

// restore adds the route back unless an equal one is there.
func (sr savedRoute) restore(h *netlink.Handle, ns string) error {
	dst, _ := netip.ParsePrefix(sr.Dst)
	cur, err := findRoutes(h, dst, sr.Table, sr.Metric)
	if err != nil {
		return err
	}
	for _, c := range cur {
		if c.Via == sr.Via && c.Dev == sr.Dev {
			return nil
		}
	}
	r, err := sr.route(h, ns)
	if err != nil {
		return err
	}
	if err := h.RouteAdd(r); err != nil {
		return fmt.Errorf("put route to %s back%s: %w", sr.Dst, where(ns), err)
	}
	return nil
}

// findRoutes lists the routes with this key (destination, table, metric).
func findRoutes(h *netlink.Handle, dst netip.Prefix, table, metric int) ([]savedRoute, error) {
	fam := family(dst.Addr())
	rs, err := h.RouteListFiltered(fam, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	var out []savedRoute
	for _, r := range rs {
		if routeDst(r, fam) != dst || r.Priority != metric || r.Table != table || r.Tos != 0 {
			continue
		}
		sr, err := saveRoute(h, r)
		if err != nil {
			return nil, err
		}
		out = append(out, sr)
	}
	return out, nil
}

// matches tells whether sr is a route s names: for a deletion an absent
// gateway or device matches any; for an addition (exact) the gateway must
// be the same, including none.
func (pr parsedRoute) matches(s RouteSpec, sr savedRoute, exact bool) bool {
	via := ""
	if pr.via.IsValid() {
		via = pr.via.String()
	}
	viaOK := sr.Via == via || (!exact && via == "")
	return viaOK && (s.Dev == "" || sr.Dev == s.Dev)
}

func (s RouteSpec) result(pr parsedRoute) RouteResult {
	r := RouteResult{Dst: pr.dst.String(), Dev: s.Dev, Table: pr.table}
	if pr.via.IsValid() {
		r.Via = pr.via.String()
	}
	return r
}

func prepareRouteAdd(_ context.Context, _ *atomic.Env, a AddRoute) (atomic.Plan[struct{}, RouteResult], error) {
	var plan atomic.Plan[struct{}, RouteResult]
	s := RouteSpec(a)
	pr, _ := s.parse()
	h, err := handle(a.Netns)
	if err != nil {
		return plan, err
	}
	defer h.Close()
	if a.Dev != "" {
		if _, err := mustLink(h, a.Netns, a.Dev); err != nil {
			return plan, err
		}
	}
	cur, err := findRoutes(h, pr.dst, pr.table, a.Metric)
	if err != nil {
		return plan, err
	}
	for _, c := range cur {
		if pr.matches(s, c, true) {
			plan.Noop, plan.Result = true, RouteResult{Dst: c.Dst, Via: c.Via, Dev: c.Dev, Table: c.Table}
			return plan, nil
		}
		return plan, fmt.Errorf("%w: a route to %s (table %d, metric %d) exists via %q dev %q%s; delete it first",
			atomic.ErrInvalid, pr.dst, pr.table, a.Metric, c.Via, c.Dev, where(a.Netns))
	}
	return plan, nil
}

func (s RouteSpec) route(h *netlink.Handle, pr parsedRoute) (*netlink.Route, error) {
	r := &netlink.Route{Dst: ipNet(pr.dst), Priority: s.Metric, Table: pr.table, Family: family(pr.dst.Addr())}
	if pr.via.IsValid() {
		r.Gw = net.IP(pr.via.AsSlice())
	} else {
		r.Scope = netlink.SCOPE_LINK
	}
	if pr.src.IsValid() {
		r.Src = net.IP(pr.src.AsSlice())
	}
	if s.Dev != "" {
		l, err := mustLink(h, s.Netns, s.Dev)
		if err != nil {
			return nil, err
		}
		r.LinkIndex = l.Attrs().Index
	}
	return r, nil
}

func doRouteAdd(_ context.Context, env *atomic.Env, a AddRoute, _ struct{}) (RouteResult, error) {
	s := RouteSpec(a)
	pr, _ := s.parse()
	if env.Dry("add route %s via %q dev %q table %d%s", pr.dst, a.Via, a.Dev, pr.table, where(a.Netns)) {
		return s.result(pr), nil
	}
	h, err := handle(a.Netns)
	if err != nil {
		return RouteResult{}, err
	}
	defer h.Close()
	r, err := s.route(h, pr)
	if err != nil {
		return RouteResult{}, err
	}
	if err := h.RouteAdd(r); err != nil {
		return RouteResult{}, fmt.Errorf("add route to %s%s: %w", pr.dst, where(a.Netns), err)
	}
	return s.result(pr), nil
}

// removeRoutes deletes the routes with s's key that match it.
func removeRoutes(s RouteSpec, pr parsedRoute, exact bool) error {
	h, err := handle(s.Netns)
	if err != nil {
		return err
	}
	defer h.Close()
	if s.Dev != "" {
		if l, err := linkByName(h, s.Dev); err != nil || l == nil {
			return err // the device is gone, its routes with it
		}
	}
	cur, err := findRoutes(h, pr.dst, pr.table, s.Metric)
	if err != nil {
		return err
	}
	for _, c := range cur {
		if !pr.matches(s, c, exact) {
			continue
		}
		r, err := c.route(h, s.Netns)
		if err != nil {
			return err
		}
		if err := h.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("delete route to %s%s: %w", pr.dst, where(s.Netns), err)
		}
	}
	return nil
}

func undoRouteAdd(_ context.Context, env *atomic.Env, a AddRoute, _ struct{}, _ RouteResult) error {
	s := RouteSpec(a)
	pr, _ := s.parse()
	if env.Dry("delete route %s table %d%s", pr.dst, pr.table, where(a.Netns)) {
		return nil
	}
	return removeRoutes(s, pr, true)
}

func routePresent(s RouteSpec, pr parsedRoute, exact bool) (bool, error) {
	h, err := handle(s.Netns)
	if err != nil {
		return false, err
	}
	defer h.Close()
	cur, err := findRoutes(h, pr.dst, pr.table, s.Metric)
	if err != nil {
		return false, err
	}
	for _, c := range cur {
		if pr.matches(s, c, exact) {
			return true, nil
		}
	}
	return false, nil
}

func checkRouteAdd(_ context.Context, _ *atomic.Env, a AddRoute, _ struct{}) (bool, RouteResult, error) {
	s := RouteSpec(a)
	pr, _ := s.parse()
	ok, err := routePresent(s, pr, true)
	return ok, s.result(pr), err
}

func prepareRouteDel(_ context.Context, _ *atomic.Env, d DelRoute) (atomic.Plan[*savedRoute, RouteResult], error) {
	var plan atomic.Plan[*savedRoute, RouteResult]
	s := RouteSpec(d)
	pr, _ := s.parse()
	h, err := handle(d.Netns)
	if err != nil {
		return plan, err
	}
	defer h.Close()
	cur, err := findRoutes(h, pr.dst, pr.table, d.Metric)
	if err != nil {
		return plan, err
	}
	var found []savedRoute
	for _, c := range cur {
		if pr.matches(s, c, false) {
			found = append(found, c)
		}
	}
	plan.Result = s.result(pr)
	switch len(found) {
	case 0:
		plan.Noop = true
	case 1:
		plan.Undo = &found[0]
		plan.Result = RouteResult{Dst: found[0].Dst, Via: found[0].Via, Dev: found[0].Dev, Table: found[0].Table}
	default:
		return plan, fmt.Errorf("%w: %d routes to %s match; name the gateway (via) or device (dev)", atomic.ErrInvalid, len(found), pr.dst)
	}
	return plan, nil
}

func doRouteDel(_ context.Context, env *atomic.Env, d DelRoute, u *savedRoute) (RouteResult, error) {
	s := RouteSpec(d)
	pr, _ := s.parse()
	if env.Dry("delete route %s table %d%s", pr.dst, pr.table, where(d.Netns)) {
		return s.result(pr), nil
	}
	if u != nil { // delete exactly the route found
		s.Via, s.Dev = u.Via, u.Dev
		pr, _ = s.parse()
	}
	if err := removeRoutes(s, pr, u != nil); err != nil {
		return RouteResult{}, err
	}
	return s.result(pr), nil
}

func undoRouteDel(_ context.Context, env *atomic.Env, d DelRoute, u *savedRoute, _ RouteResult) error {
	if u == nil {
		return nil
	}
	if env.Dry("add route %s back%s", u.Dst, where(d.Netns)) {
		return nil
	}
	h, err := handle(d.Netns)
	if err != nil {
		return err
	}
	defer h.Close()
	return u.restore(h, d.Netns)
}

func checkRouteDel(_ context.Context, _ *atomic.Env, d DelRoute, u *savedRoute) (bool, RouteResult, error) {
	s := RouteSpec(d)
	if u != nil {
		s.Via, s.Dev = u.Via, u.Dev
	}
	pr, _ := s.parse()
	ok, err := routePresent(s, pr, u != nil)
	return err == nil && !ok, s.result(pr), err
}
