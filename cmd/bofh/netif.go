package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/netif"
)

func init() { addCommand(newNetifCmd) }

func newNetifCmd(a *app) *cobra.Command {
	var ns string
	cmd := &cobra.Command{
		Use:     "net",
		Aliases: []string{"netif"},
		Short:   "links, addresses and routes through netlink (optionally inside a named netns)",
		Example: "  bofh net link add br0 --type bridge --netns lab\n  bofh net link set eth1 --master br0 --up\n  bofh net addr add br0 10.1.0.1/24\n  bofh net route add default --via 10.1.0.254",
	}
	cmd.PersistentFlags().StringVar(&ns, "netns", "", "named network namespace (/var/run/netns); default: the current one")
	do := func(cmd *cobra.Command, name string, p atomic.Params) error {
		if v, ok := p.(atomic.Validator); ok {
			if err := v.Validate(); err != nil {
				return usageError{err}
			}
		}
		var out any
		id, err := a.doSteps(cmd.Context(), name, &out, p)
		if err != nil {
			return err
		}
		if a.dryRun {
			return a.report(id, name, nil) // not "done": nothing was
		}
		return a.print(out, func(w io.Writer) { fmt.Fprintf(w, "%s: done\n", name) })
	}

	// checkNS makes a bad --netns bad input (exit 2) for the show commands
	// too, as the steps' Validate does for the others.
	checkNS := func() error {
		if err := netif.ValidNetns(ns); err != nil {
			return usageError{err}
		}
		return nil
	}
	link := &cobra.Command{Use: "link", Short: "create, delete, set and show links",
		Example: "  bofh net link add br0 --type bridge\n  bofh net link show -o json"}
	var c netif.CreateLink
	add := &cobra.Command{
		Use: "add NAME --type bridge|veth|vlan|bond|dummy", Short: "create a link (undone on failure)", Args: exactArgs(1),
		Example: "  bofh net link add br0 --type bridge\n  bofh net link add v0 --type veth --peer v1\n  bofh net link add eth0.100 --type vlan --parent eth0 --vlan-id 100",
		RunE: func(cmd *cobra.Command, args []string) error {
			c.Netns, c.Name = ns, args[0]
			return do(cmd, "net link add "+args[0], c)
		},
	}
	add.Flags().StringVar(&c.Type, "type", "", "bridge, veth, vlan, bond or dummy")
	add.Flags().StringVar(&c.Peer, "peer", "", "veth peer name")
	add.Flags().StringVar(&c.Parent, "parent", "", "vlan parent link")
	add.Flags().IntVar(&c.VlanID, "vlan-id", 0, "vlan ID")
	add.Flags().StringVar(&c.Mode, "mode", "", "bond mode")
	add.Flags().IntVar(&c.MTU, "mtu", 0, "MTU")
	del := &cobra.Command{
		Use: "del NAME", Short: "delete a link (irreversible)", Args: exactArgs(1), Example: "  bofh net link del br0",
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(cmd, "net link del "+args[0], netif.DeleteLink{Netns: ns, Name: args[0]})
		},
	}
	var s netif.SetLink
	var up, down bool
	set := &cobra.Command{
		Use: "set NAME [--up|--down] [--mtu N] [--master M|--nomaster]", Short: "set a link (previous values restored on failure)", Args: exactArgs(1),
		Example: "  bofh net link set eth1 --master br0 --up\n  bofh net link set br0 --mtu 9000",
		RunE: func(cmd *cobra.Command, args []string) error {
			if up && down {
				return usageError{fmt.Errorf("--up and --down exclude each other")}
			}
			s.Netns, s.Name = ns, args[0]
			if up || down {
				s.Up = &up
			}
			return do(cmd, "net link set "+args[0], s)
		},
	}
	set.Flags().BoolVar(&up, "up", false, "set the link up")
	set.Flags().BoolVar(&down, "down", false, "set the link down")
	set.Flags().IntVar(&s.MTU, "mtu", 0, "MTU")
	set.Flags().StringVar(&s.Master, "master", "", "bridge or bond to attach to")
	set.Flags().BoolVar(&s.NoMaster, "nomaster", false, "release from the master")
	show := &cobra.Command{
		Use: "show", Short: "list links with their addresses", Args: exactArgs(0), Example: "  bofh net link show --netns lab -o json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkNS(); err != nil {
				return err
			}
			ls, err := netif.Links(ns)
			if err != nil {
				return err
			}
			return a.print(ls, func(w io.Writer) {
				for _, l := range ls {
					state := "down"
					if l.Up {
						state = "up"
					}
					fmt.Fprintf(w, "%-3d %-15s %-7s %-4s mtu %-5d master %-10s %s\n", l.Index, l.Name, l.Type, state, l.MTU, dash(l.Master), strings.Join(l.Addrs, " "))
				}
			})
		},
	}
	link.AddCommand(add, del, set, show)

	addr := &cobra.Command{Use: "addr", Short: "add and remove addresses", Example: "  bofh net addr add br0 10.1.0.1/24"}
	addr.AddCommand(&cobra.Command{
		Use: "add LINK ADDRESS/PREFIX", Short: "add an address (removed on failure)", Args: exactArgs(2), Example: "  bofh net addr add br0 10.1.0.1/24",
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(cmd, "net addr add", netif.AddAddr{Netns: ns, Link: args[0], Address: args[1]})
		},
	}, &cobra.Command{
		Use: "del LINK ADDRESS/PREFIX", Short: "remove an address (put back on failure)", Args: exactArgs(2), Example: "  bofh net addr del br0 10.1.0.1/24",
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(cmd, "net addr del", netif.DelAddr{Netns: ns, Link: args[0], Address: args[1]})
		},
	})

	route := &cobra.Command{Use: "route", Short: "add, remove and show routes", Example: "  bofh net route add default --via 10.1.0.254\n  bofh net route show -o json"}
	var rs netif.RouteSpec
	routeFlags := func(c *cobra.Command) *cobra.Command {
		c.Flags().StringVar(&rs.Via, "via", "", "gateway")
		c.Flags().StringVar(&rs.Dev, "dev", "", "output interface")
		c.Flags().StringVar(&rs.Src, "src", "", "preferred source address")
		c.Flags().IntVar(&rs.Metric, "metric", 0, "metric")
		c.Flags().IntVar(&rs.Table, "table", 0, "table (default main)")
		return c
	}
	var all bool
	rshow := &cobra.Command{
		Use: "show", Short: "list routes (main table, or --all)", Args: exactArgs(0), Example: "  bofh net route show --all -o json",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkNS(); err != nil {
				return err
			}
			routes, err := netif.Routes(ns, all)
			if err != nil {
				return err
			}
			if routes == nil {
				routes = []netif.Route{} // -o json: [] rather than null
			}
			return a.print(routes, func(w io.Writer) {
				for _, r := range routes {
					fmt.Fprintf(w, "%-20s via %-15s dev %-10s metric %d table %d\n", r.Dst, dash(r.Via), dash(r.Dev), r.Metric, r.Table)
				}
			})
		},
	}
	rshow.Flags().BoolVar(&all, "all", false, "every table")
	route.AddCommand(routeFlags(&cobra.Command{
		Use: "add DST", Short: "add a route (removed on failure)", Args: exactArgs(1), Example: "  bofh net route add 10.2.0.0/16 --via 10.1.0.254",
		RunE: func(cmd *cobra.Command, args []string) error {
			rs.Netns, rs.Dst = ns, args[0]
			return do(cmd, "net route add "+args[0], netif.AddRoute(rs))
		},
	}), routeFlags(&cobra.Command{
		Use: "del DST", Short: "remove a route (put back on failure)", Args: exactArgs(1), Example: "  bofh net route del 10.2.0.0/16",
		RunE: func(cmd *cobra.Command, args []string) error {
			rs.Netns, rs.Dst = ns, args[0]
			return do(cmd, "net route del "+args[0], netif.DelRoute(rs))
		},
	}), rshow)
	cmd.AddCommand(link, addr, route)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
