package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/libvirt"
)

func init() { addCommand(newVirtCmd) }

// virtConn returns the connection the site's libvirt section names.
func (a *app) virtConn() (libvirt.Conn, error) {
	var cfg libvirt.Config
	if err := a.site.Section("libvirt", &cfg); err != nil {
		return libvirt.Conn{}, usageError{err}
	}
	c := libvirt.ConnFrom(cfg)
	if err := c.Validate(); err != nil {
		return c, usageError{fmt.Errorf("site libvirt section: %w", err)}
	}
	return c, nil
}

func newVirtCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "libvirt",
		Short: "libvirt domains, storage pools, volumes and networks (through libvirtd's socket)",
		Long: `Manage libvirt through libvirtd's unix socket. The socket and driver URI come
from the site file's libvirt section:

  libvirt:
    socket: /var/run/libvirt/libvirt-sock
    uri: qemu:///system`,
		Example: `  bofh libvirt domain list
  bofh libvirt domain define web.yaml
  bofh libvirt domain shutdown web --timeout 2m`,
	}
	cmd.AddCommand(newVirtDomainCmd(a), newVirtPoolCmd(a), newVirtVolumeCmd(a), newVirtNetworkCmd(a))
	return cmd
}

func (a *app) virtStep(ctx context.Context, name string, p atomic.Params) error {
	var out any
	id, err := a.doSteps(ctx, name, &out, p)
	if err != nil {
		return err
	}
	if a.dryRun {
		return nil
	}
	return a.print(map[string]any{"tx": id, "result": out}, func(w io.Writer) { fmt.Fprintf(w, "%s: done (tx %s)\n", name, id) })
}

func newVirtDomainCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "domain", Short: "define, start, stop and undefine domains",
		Example: "  bofh libvirt domain list -o json\n  bofh libvirt domain start web"}
	list := &cobra.Command{
		Use: "list", Short: "list domains and their state", Args: exactArgs(0),
		Example: "  bofh libvirt domain list",
		RunE: func(c *cobra.Command, _ []string) error {
			conn, err := a.virtConn()
			if err != nil {
				return err
			}
			cl, err := libvirt.Dial(c.Context(), conn)
			if err != nil {
				return err
			}
			defer cl.Close()
			ds, err := cl.Domains()
			if err != nil {
				return err
			}
			return a.print(ds, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tID\tSTATE\tVCPUS\tMEMORY\tTITLE")
				for _, d := range ds {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%dMiB\t%s\n", d.Name, d.ID, d.State, d.VCPUs, d.MemKiB/1024, d.Title)
				}
				tw.Flush()
			})
		},
	}
	define := &cobra.Command{
		Use: "define SPEC-FILE", Short: "define a domain from a YAML or JSON spec (name, vcpus, memory, disks, nics, console)",
		Args: exactArgs(1),
		Example: `  cat > web.yaml <<EOF
  name: web
  vcpus: 2
  memory: 2G
  disks: [{source: /dev/vg0/web, target: vda}]
  nics: [{bridge: br0}]
  console: true
  EOF
  bofh libvirt domain define web.yaml`,
		RunE: func(c *cobra.Command, args []string) error {
			conn, err := a.virtConn()
			if err != nil {
				return err
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return usageError{err}
			}
			var spec libvirt.DomainSpec
			dec := yaml.NewDecoder(bytes.NewReader(data))
			dec.KnownFields(true)
			if err := dec.Decode(&spec); err != nil {
				return usageError{fmt.Errorf("%s: %w", args[0], err)}
			}
			return a.virtStep(c.Context(), "libvirt domain define", libvirt.DefineDomain{Conn: conn, Spec: spec})
		},
	}
	simple := func(use, short string, mk func(conn libvirt.Conn, name string) atomic.Params) *cobra.Command {
		return &cobra.Command{
			Use: use + " NAME", Short: short, Args: exactArgs(1),
			Example: "  bofh libvirt domain " + use + " web",
			RunE: func(c *cobra.Command, args []string) error {
				conn, err := a.virtConn()
				if err != nil {
					return err
				}
				return a.virtStep(c.Context(), "libvirt domain "+use, mk(conn, args[0]))
			},
		}
	}
	var timeout string
	shutdown := simple("shutdown", "shut a domain down, destroying it after --timeout", func(conn libvirt.Conn, name string) atomic.Params {
		return libvirt.ShutdownDomain{DomainRef: libvirt.DomainRef{Conn: conn, Name: name}, Timeout: timeout}
	})
	shutdown.Flags().StringVar(&timeout, "timeout", "60s", "how long to wait for the guest")
	state := &cobra.Command{
		Use: "state NAME", Short: "print a domain's state", Args: exactArgs(1),
		Example: "  bofh libvirt domain state web",
		RunE: func(c *cobra.Command, args []string) error {
			conn, err := a.virtConn()
			if err != nil {
				return err
			}
			if err := libvirt.ValidName("domain", args[0]); err != nil {
				return usageError{err}
			}
			cl, err := libvirt.Dial(c.Context(), conn)
			if err != nil {
				return err
			}
			defer cl.Close()
			st, err := cl.DomainState(args[0])
			if err != nil {
				return err
			}
			return a.print(map[string]any{"name": args[0], "state": st}, func(w io.Writer) { fmt.Fprintln(w, st) })
		},
	}
	cmd.AddCommand(list, state, define,
		simple("start", "start a domain", func(c libvirt.Conn, n string) atomic.Params { return libvirt.StartDomain{Conn: c, Name: n} }),
		shutdown,
		simple("destroy", "power a domain off at once", func(c libvirt.Conn, n string) atomic.Params { return libvirt.DestroyDomain{Conn: c, Name: n} }),
		simple("undefine", "undefine a shut-off domain (irreversible)", func(c libvirt.Conn, n string) atomic.Params {
			return libvirt.UndefineDomain{Conn: c, Name: n}
		}),
	)
	return cmd
}

func newVirtPoolCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "pool", Short: "storage pools", Example: "  bofh libvirt pool define images --type dir --path /srv/images"}
	var typ, path string
	define := &cobra.Command{
		Use: "define NAME", Short: "define a dir or logical storage pool", Args: exactArgs(1),
		Example: "  bofh libvirt pool define images --type dir --path /srv/images\n  bofh libvirt pool define vg0 --type logical --path /dev/vg0",
		RunE: func(c *cobra.Command, args []string) error {
			conn, err := a.virtConn()
			if err != nil {
				return err
			}
			return a.virtStep(c.Context(), "libvirt pool define", libvirt.DefinePool{Conn: conn, Spec: libvirt.PoolSpec{Name: args[0], Type: typ, Path: path}})
		},
	}
	define.Flags().StringVar(&typ, "type", "dir", "dir or logical")
	define.Flags().StringVar(&path, "path", "", "directory, or /dev/<vg> for a logical pool")
	start := &cobra.Command{
		Use: "start NAME", Short: "start a storage pool", Args: exactArgs(1), Example: "  bofh libvirt pool start images",
		RunE: func(c *cobra.Command, args []string) error {
			conn, err := a.virtConn()
			if err != nil {
				return err
			}
			return a.virtStep(c.Context(), "libvirt pool start", libvirt.StartPool{Conn: conn, Name: args[0]})
		},
	}
	cmd.AddCommand(define, start)
	return cmd
}

func newVirtVolumeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "volume", Short: "storage volumes", Example: "  bofh libvirt volume create images web.img --capacity 10G"}
	var capacity, format string
	create := &cobra.Command{
		Use: "create POOL NAME", Short: "create a volume in a pool", Args: exactArgs(2),
		Example: "  bofh libvirt volume create images web.qcow2 --capacity 10G --format qcow2",
		RunE: func(c *cobra.Command, args []string) error {
			conn, err := a.virtConn()
			if err != nil {
				return err
			}
			return a.virtStep(c.Context(), "libvirt volume create", libvirt.CreateVolume{Conn: conn, Pool: args[0],
				Spec: libvirt.VolumeSpec{Name: args[1], Capacity: capacity, Format: format}})
		},
	}
	create.Flags().StringVar(&capacity, "capacity", "", "size with a unit: 10G")
	create.Flags().StringVar(&format, "format", "", "raw (default) or qcow2")
	cmd.AddCommand(create)
	return cmd
}

func newVirtNetworkCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "network", Short: "virtual networks", Example: "  bofh libvirt network define lan --bridge virbr10"}
	var bridge, forward, address string
	define := &cobra.Command{
		Use: "define NAME", Short: "define a network on a bridge", Args: exactArgs(1),
		Example: "  bofh libvirt network define lan --bridge virbr10 --forward nat --address 192.168.100.1/24",
		RunE: func(c *cobra.Command, args []string) error {
			conn, err := a.virtConn()
			if err != nil {
				return err
			}
			return a.virtStep(c.Context(), "libvirt network define", libvirt.DefineNetwork{Conn: conn,
				Spec: libvirt.NetworkSpec{Name: args[0], Bridge: bridge, Forward: forward, Address: address}})
		},
	}
	define.Flags().StringVar(&bridge, "bridge", "", "bridge libvirt creates")
	define.Flags().StringVar(&forward, "forward", "", "none (isolated), nat or route")
	define.Flags().StringVar(&address, "address", "", "host address with prefix: 192.168.100.1/24")
	start := &cobra.Command{
		Use: "start NAME", Short: "start a network", Args: exactArgs(1), Example: "  bofh libvirt network start lan",
		RunE: func(c *cobra.Command, args []string) error {
			conn, err := a.virtConn()
			if err != nil {
				return err
			}
			return a.virtStep(c.Context(), "libvirt network start", libvirt.StartNetwork{Conn: conn, Name: args[0]})
		},
	}
	cmd.AddCommand(define, start)
	return cmd
}
