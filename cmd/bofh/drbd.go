package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/drbd"
)

func init() { addCommand(newDRBDCmd) }

func newDRBDCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "drbd",
		Short: "DRBD resources: config files, metadata, up/down, roles, status — journaled",
		Long: `drbd writes resource files from a typed spec (allocating the next free port
and minor from the config directory, site key drbd.config_dir, default
/etc/drbd.d) and runs drbdadm as journaled steps: up is undone by down, primary
by secondary, create-md by wipe-md, a written config by removing it.`,
		Example: `  bofh drbd config write data --node alpha=10.0.0.1:/dev/vg0/data --node beta=10.0.0.2:/dev/vg0/data
  bofh drbd create-md data && bofh drbd up data && bofh drbd primary --force data
  bofh drbd status data -o json`,
	}
	cfgDir := func() (drbd.SiteConfig, error) {
		var sc drbd.SiteConfig
		if err := a.site.Section("drbd", &sc); err != nil {
			return sc, usageError{err}
		}
		return sc, nil
	}
	do := func(cmd *cobra.Command, name string, p atomic.Params) error {
		var res any
		id, err := a.doSteps(cmd.Context(), name, &res, p)
		if err == nil && res != nil && a.json() && !a.dryRun {
			return a.print(map[string]any{"id": id, "name": name, "state": atomic.StateCommitted, "result": res}, nil)
		}
		return a.report(id, name, err)
	}
	simple := func(verb, short string, mk func(string) atomic.Params) *cobra.Command {
		return &cobra.Command{Use: verb + " RESOURCE", Short: short, Args: exactArgs(1),
			Example: "  bofh drbd " + verb + " data",
			RunE: func(cmd *cobra.Command, args []string) error {
				return do(cmd, "drbd "+verb, mk(args[0]))
			}}
	}

	// config
	var spec drbd.Resource
	var nodes []string
	var port, minor int
	var specFile string
	write := &cobra.Command{
		Use:   "write NAME --node HOST=IP:DISK ... | write --spec FILE",
		Short: "write <config_dir>/NAME.res from a spec (undo: remove it)",
		Args:  rangeArgs(0, 1),
		Example: `  bofh drbd config write data --node alpha=10.0.0.1:/dev/vg0/data --node beta=10.0.0.2:/dev/vg0/data
  bofh drbd config write --spec data.json     # a drbd.Resource as JSON`,
		RunE: func(cmd *cobra.Command, args []string) error {
			sc, err := cfgDir()
			if err != nil {
				return err
			}
			r := spec
			if specFile != "" {
				data, err := os.ReadFile(specFile)
				if err != nil {
					return usageError{err}
				}
				dec := json.NewDecoder(strings.NewReader(string(data)))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&r); err != nil {
					return usageError{fmt.Errorf("spec %s: %w", specFile, err)}
				}
			}
			if len(args) == 1 {
				r.Name = args[0]
			}
			for _, n := range nodes {
				host, rest, ok1 := strings.Cut(n, "=")
				i := strings.LastIndex(rest, ":")
				if !ok1 || i < 0 {
					return usageError{fmt.Errorf("--node %q: want HOST=IP:DISK", n)}
				}
				r.Nodes = append(r.Nodes, drbd.Node{Name: host, Address: strings.Trim(rest[:i], "[]"), Disk: rest[i+1:]})
			}
			if cmd.Flags().Changed("port") {
				r.Port = port
			}
			if cmd.Flags().Changed("minor") {
				r.Minor = &minor
			}
			return do(cmd, "drbd config write", drbd.WriteConfig{Resource: r, Dir: sc.ConfigDir, BasePort: sc.BasePort})
		},
	}
	write.Flags().StringArrayVar(&nodes, "node", nil, "a node as HOST=IP:DISK (repeat)")
	write.Flags().StringVar(&spec.Protocol, "protocol", "", "replication protocol A, B or C (default C)")
	write.Flags().IntVar(&port, "port", 0, "TCP port (default: next free)")
	write.Flags().IntVar(&minor, "minor", 0, "device minor (default: next free)")
	write.Flags().StringVar(&specFile, "spec", "", "read the resource spec from a JSON file")
	config := &cobra.Command{Use: "config", Short: "resource files", Example: "  bofh drbd config write data --node alpha=10.0.0.1:/dev/sdb --node beta=10.0.0.2:/dev/sdb\n  bofh drbd config used"}
	config.AddCommand(write, &cobra.Command{
		Use: "used", Short: "ports, minors and names the config directory uses, and the next free ones", Args: exactArgs(0),
		Example: "  bofh drbd config used -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			sc, err := cfgDir()
			if err != nil {
				return err
			}
			dir := sc.ConfigDir
			if dir == "" {
				dir = drbd.DefaultConfigDir
			}
			u, err := drbd.ScanDir(dir)
			if err != nil {
				return err
			}
			base := sc.BasePort
			if base == 0 {
				base = drbd.DefaultPort
			}
			out := map[string]any{"dir": dir, "used": u, "next_port": max(base, u.HighestPort()+1), "next_minor": u.HighestMinor() + 1}
			return a.print(out, func(w io.Writer) {
				fmt.Fprintf(w, "dir:        %s\nnames:      %v\nports:      %v\nminors:     %v\nnext port:  %d\nnext minor: %d\n",
					dir, u.Names, u.Ports, u.Minors, out["next_port"], out["next_minor"])
				for _, s := range u.Skipped {
					fmt.Fprintf(w, "unparsable: %s (scanned as text)\n", s)
				}
			})
		},
	})

	var mdForce, primForce bool
	createMD := simple("create-md", "write DRBD metadata on the backing disk (undo: wipe-md)",
		func(n string) atomic.Params { return drbd.CreateMD{Resource: n, Force: mdForce} })
	createMD.Flags().BoolVar(&mdForce, "force", false, "write metadata over a disk holding a signature")
	primary := simple("primary", "promote (undo: secondary)",
		func(n string) atomic.Params { return drbd.Primary{Resource: n, Force: primForce} })
	primary.Flags().BoolVar(&primForce, "force", false, "promote without UpToDate data (first promotion of a new resource)")

	root.AddCommand(config, createMD, primary,
		simple("up", "bring a resource up (undo: down)", func(n string) atomic.Params { return drbd.Up{Resource: n} }),
		simple("down", "take a resource down (undo: up)", func(n string) atomic.Params { return drbd.Down{Resource: n} }),
		simple("secondary", "demote (undo: primary)", func(n string) atomic.Params { return drbd.Secondary{Resource: n} }),
		simple("connect", "connect to the peers (undo: disconnect)", func(n string) atomic.Params { return drbd.Connect{Resource: n} }),
		simple("disconnect", "disconnect from the peers (undo: connect)", func(n string) atomic.Params { return drbd.Disconnect{Resource: n} }),
		simple("adjust", "apply the config file to the running resource", func(n string) atomic.Params { return drbd.Adjust{Resource: n} }),
		simple("verify", "start an online verify", func(n string) atomic.Params { return drbd.Verify{Resource: n} }),
		simple("invalidate", "discard local data and resync from the peer (irreversible)", func(n string) atomic.Params { return drbd.Invalidate{Resource: n} }),
		&cobra.Command{Use: "status RESOURCE", Short: "role, disk, connection and sync state", Args: exactArgs(1),
			Example: "  bofh drbd status data\n  bofh drbd status data -o json",
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := drbd.ValidName(args[0]); err != nil {
					return usageError{err}
				}
				st, err := drbd.ResourceStatus(cmd.Context(), a.runner(), args[0])
				if err != nil {
					return err
				}
				return a.print(st, func(w io.Writer) { printDRBD(w, st) })
			}},
		&cobra.Command{Use: "wait-sync RESOURCE", Short: "wait for a resync or verify to finish, showing progress", Args: exactArgs(1),
			Example: "  bofh drbd wait-sync data",
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := drbd.ValidName(args[0]); err != nil {
					return usageError{err}
				}
				var fn func(drbd.Progress)
				if f, ok := a.err.(*os.File); ok {
					if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
						fn = func(p drbd.Progress) {
							fmt.Fprintf(f, "\r%s sync %5.1f%% %d KiB/s, %s left\033[K", args[0], p.Percent, p.Speed, p.Finish)
						}
						defer fmt.Fprintln(f)
					}
				}
				return drbd.WaitSync(cmd.Context(), a.runner(), args[0], 0, fn)
			}},
	)
	return root
}

func printDRBD(w io.Writer, st *drbd.Status) {
	fmt.Fprintf(w, "%s role:%s\n", st.Name, st.Role)
	for _, d := range st.Devices {
		fmt.Fprintf(w, "  volume:%d minor:%d disk:%s\n", d.Volume, d.Minor, d.DiskState)
	}
	for _, c := range st.Connections {
		peer := c.PeerName
		if peer == "" {
			peer = "peer"
		}
		fmt.Fprintf(w, "  %s connection:%s role:%s\n", peer, c.State, c.PeerRole)
		for _, p := range c.PeerDevices {
			fmt.Fprintf(w, "    volume:%d replication:%s peer-disk:%s", p.Volume, p.ReplicationState, p.PeerDiskState)
			if p.Sync != nil {
				fmt.Fprintf(w, " done:%.1f%%", p.Sync.Percent)
			}
			fmt.Fprintln(w)
		}
	}
}
