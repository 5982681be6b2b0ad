package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/xen"
)

func init() { addCommand(newXenCmd) }

// xenDir returns the domU configuration directory from the site's xen section.
func (a *app) xenDir() (string, error) {
	var cfg xen.Config
	if err := a.site.Section("xen", &cfg); err != nil {
		return "", usageError{err}
	}
	return cfg.Dir(), nil
}

func newXenCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "xen",
		Short: "Xen domUs through xl: create, shutdown, destroy, pause, list; domU config files",
		Long: `Drive Xen domUs with xl. A domain's configuration is <dir>/<name>.cfg, where dir
comes from the site file's xen section (default /etc/xen):

  xen:
    config_dir: /etc/xen`,
		Example: `  bofh xen list
  bofh xen create web
  bofh xen config check /etc/xen/web.cfg -o json`,
	}
	list := &cobra.Command{
		Use: "list", Short: "list running domains (xl list -l)", Args: exactArgs(0),
		Example: "  bofh xen list -o json",
		RunE: func(c *cobra.Command, _ []string) error {
			ds, err := xen.List(c.Context(), a.runner())
			if err != nil {
				return err
			}
			return a.print(ds, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tID\tTYPE\tVCPUS\tMEMORY")
				for _, d := range ds {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%dMiB\n", d.Name, d.ID, d.Type, d.VCPUs, d.MemKiB/1024)
				}
				tw.Flush()
			})
		},
	}
	check := &cobra.Command{
		Use: "check FILE", Short: "parse and validate a domU configuration file and print it as typed values", Args: exactArgs(1),
		Example: "  bofh xen config check /etc/xen/web.cfg -o json",
		RunE: func(_ *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return usageError{err}
			}
			c, err := xen.ParseConfig(data)
			if err != nil {
				return usageError{fmt.Errorf("%s: %w", args[0], err)}
			}
			return a.print(c, func(w io.Writer) {
				out, _ := c.Format()
				w.Write(out)
			})
		},
	}
	config := &cobra.Command{Use: "config", Short: "domU configuration files", Example: "  bofh xen config check /etc/xen/web.cfg"}
	config.AddCommand(check)

	step := func(use, short string, mk func(dir, name string) atomic.Params) *cobra.Command {
		return &cobra.Command{
			Use: use + " NAME", Short: short, Args: exactArgs(1),
			Example: "  bofh xen " + use + " web",
			RunE: func(c *cobra.Command, args []string) error {
				dir, err := a.xenDir()
				if err != nil {
					return err
				}
				if use == "create" {
					// bad input before the first command: xl create needs the file
					if err := xen.ValidName(args[0]); err == nil && filepath.IsAbs(dir) {
						if _, err := os.Stat(xen.ConfigPath(dir, args[0])); err != nil {
							return usageError{fmt.Errorf("xen create %s: %w", args[0], err)}
						}
					}
				}
				id, err := a.doSteps(c.Context(), "xen "+use, nil, mk(dir, args[0]))
				if err != nil || a.dryRun {
					return err
				}
				return a.print(map[string]string{"tx": id}, func(w io.Writer) { fmt.Fprintf(w, "xen %s %s: done (tx %s)\n", use, args[0], id) })
			},
		}
	}
	var timeout string
	shutdown := step("shutdown", "shut a domain down, destroying it after --timeout; rollback creates it again", func(dir, name string) atomic.Params {
		return xen.ShutdownDomain{DomainRef: xen.DomainRef{Name: name, Dir: dir}, Timeout: timeout}
	})
	shutdown.Flags().StringVar(&timeout, "timeout", "60s", "how long to wait for the guest")
	cmd.AddCommand(list, config,
		step("create", "start a domain from <config_dir>/NAME.cfg", func(dir, n string) atomic.Params { return xen.CreateDomain{Name: n, Dir: dir} }),
		shutdown,
		step("destroy", "destroy a domain at once", func(dir, n string) atomic.Params { return xen.DestroyDomain{Name: n, Dir: dir} }),
		step("pause", "pause a domain", func(_, n string) atomic.Params { return xen.PauseDomain{Name: n} }),
		step("unpause", "unpause a domain", func(_, n string) atomic.Params { return xen.UnpauseDomain{Name: n} }),
	)
	return cmd
}
