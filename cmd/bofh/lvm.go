package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/lvm"
)

func init() { addCommand(newLVMCmd) }

// lvmSplit splits "vg/lv" (bad input otherwise).
func lvmSplit(s string) (string, string, error) {
	vg, lv, ok := strings.Cut(s, "/")
	if !ok || vg == "" || lv == "" || strings.Contains(lv, "/") {
		return "", "", usageError{fmt.Errorf("%q: want VG/LV", s)}
	}
	return vg, lv, nil
}

func newLVMCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "lvm",
		Short: "LVM physical volumes, volume groups and logical volumes, journaled",
		Long: `lvm creates, changes and removes PVs, VGs and LVs (linear, thin pools, thin
LVs, snapshots) as journaled steps; a failure rolls back. Every VG and LV bofh
creates carries the tag bofh_tx_<transaction ID> ('bofh lvm orphans' lists
those whose transaction did not commit). State is read with one
'lvm fullreport' ('bofh lvm report'). Names and sizes are checked by LVM's
rules before anything runs (exit 2). lvremove and snapshot merges destroy
data: they run last, at commit.`,
		Example: `  bofh lvm report -o json
  bofh lvm vg create vg0 /dev/sdb /dev/sdc
  bofh lvm lv create vg0/web --size 10G
  bofh lvm lv create vg0/pool --type thin-pool --size 100%FREE
  bofh lvm lv create vg0/vm1 --type thin --pool pool --size 20G
  bofh lvm lv resize vg0/web +5G
  bofh --dry-run lvm lv remove vg0/web`,
	}
	do := func(cmd *cobra.Command, name string, steps ...atomic.Params) error {
		var res any
		id, err := a.doSteps(cmd.Context(), name, &res, steps...)
		if err != nil || a.dryRun {
			return a.report(id, name, err)
		}
		return a.print(map[string]any{"id": id, "name": name, "state": atomic.StateCommitted, "result": res}, func(w io.Writer) {
			fmt.Fprintf(w, "%s: %s (%s)\n", name, atomic.StateCommitted, id)
		})
	}

	report := &cobra.Command{
		Use:     "report [VG...]",
		Short:   "show PVs, VGs and LVs from one 'lvm fullreport'",
		Example: "  bofh lvm report\n  bofh lvm report vg0 -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, vg := range args {
				if err := lvm.ValidateVGName(vg); err != nil {
					return usageError{err}
				}
			}
			rep, err := lvm.Query(cmd.Context(), a.runner(), args...)
			if err != nil {
				return err
			}
			return a.print(rep, func(w io.Writer) { lvmPrintReport(w, rep) })
		},
	}
	orphans := &cobra.Command{
		Use:   "orphans",
		Short: "list VGs and LVs tagged by a transaction that neither committed nor runs",
		Long: `orphans lists the VGs and LVs whose bofh_tx_<id> tag names a transaction that
is interrupted, rolled back, failed its rollback, or has no journal in the state
directory. 'bofh tx rollback ID' removes what an interrupted transaction
created.`,
		Example: "  bofh lvm orphans\n  bofh lvm orphans -o json",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := lvm.Query(cmd.Context(), a.runner())
			if err != nil {
				return err
			}
			txs, err := atomic.List(a.stateDir)
			if err != nil {
				return err
			}
			out := lvm.Orphans(rep, txs)
			if out == nil {
				out = []lvm.Orphan{}
			}
			return a.print(out, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KIND\tNAME\tTX\tTX STATE")
				for _, o := range out {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Kind, o.Name, o.TxID, o.TxState)
				}
				tw.Flush()
			})
		},
	}
	root.AddCommand(report, orphans, newLVMPVCmd(a, do), newLVMVGCmd(a, do), newLVMLVCmd(a, do))
	return root
}

type lvmDoFunc func(cmd *cobra.Command, name string, steps ...atomic.Params) error

func newLVMPVCmd(a *app, do lvmDoFunc) *cobra.Command {
	pv := &cobra.Command{Use: "pv", Short: "physical volumes", Example: "  bofh lvm pv create /dev/sdb"}
	var force bool
	create := &cobra.Command{
		Use: "create DEVICE", Short: "pvcreate (undo: pvremove)", Args: exactArgs(1),
		Example: "  bofh lvm pv create /dev/sdb\n  bofh lvm pv create --force /dev/sdc   # wipes an existing signature",
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(cmd, "lvm pv create", lvm.CreatePV{Device: args[0], Force: force})
		},
	}
	create.Flags().BoolVar(&force, "force", false, "wipe a signature the device holds (destroys it)")
	remove := &cobra.Command{
		Use: "remove DEVICE", Short: "pvremove a PV in no VG (undo: pvcreate with the same UUID)", Args: exactArgs(1),
		Example: "  bofh lvm pv remove /dev/sdb",
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(cmd, "lvm pv remove", lvm.RemovePV{Device: args[0]})
		},
	}
	pv.AddCommand(create, remove)
	return pv
}

func lvmMinArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usageError{fmt.Errorf("%s takes %s (see --help)", cmd.CommandPath(), what)}
		}
		return nil
	}
}

func newLVMVGCmd(a *app, do lvmDoFunc) *cobra.Command {
	vg := &cobra.Command{Use: "vg", Short: "volume groups", Example: "  bofh lvm vg create vg0 /dev/sdb"}
	var c lvm.CreateVG
	create := &cobra.Command{
		Use: "create NAME DEVICE...", Short: "vgcreate, tagged (undo: vgremove, pvremove of new labels)",
		Args:    lvmMinArgs(2, "a VG name and devices"),
		Example: "  bofh lvm vg create vg0 /dev/sdb /dev/sdc\n  bofh lvm vg create vg1 --extent-size 32M --tag data /dev/sdd",
		RunE: func(cmd *cobra.Command, args []string) error {
			c.Name, c.Devices = args[0], args[1:]
			return do(cmd, "lvm vg create", c)
		},
	}
	create.Flags().StringVar(&c.ExtentSize, "extent-size", "", "physical extent size (default 4MiB)")
	create.Flags().StringSliceVar(&c.Tags, "tag", nil, "extra tag (repeatable)")
	extend := &cobra.Command{
		Use: "extend VG DEVICE...", Short: "vgextend (undo: vgreduce)", Args: lvmMinArgs(2, "a VG and devices"),
		Example: "  bofh lvm vg extend vg0 /dev/sdd",
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(cmd, "lvm vg extend", lvm.ExtendVG{VG: args[0], Devices: args[1:]})
		},
	}
	reduce := &cobra.Command{
		Use: "reduce VG DEVICE...", Short: "vgreduce of unused PVs (undo: vgextend)", Args: lvmMinArgs(2, "a VG and devices"),
		Example: "  bofh lvm vg reduce vg0 /dev/sdd",
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(cmd, "lvm vg reduce", lvm.ReduceVG{VG: args[0], Devices: args[1:]})
		},
	}
	remove := &cobra.Command{
		Use: "remove NAME", Short: "vgremove of an empty VG (undo: vgcreate on the same PVs)", Args: exactArgs(1),
		Example: "  bofh lvm vg remove vg0",
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(cmd, "lvm vg remove", lvm.RemoveVG{Name: args[0]})
		},
	}
	vg.AddCommand(create, extend, reduce, remove)
	return vg
}

func newLVMLVCmd(a *app, do lvmDoFunc) *cobra.Command {
	lv := &cobra.Command{Use: "lv", Short: "logical volumes", Example: "  bofh lvm lv create vg0/web --size 10G"}
	var c lvm.CreateLV
	create := &cobra.Command{
		Use: "create VG/NAME", Short: "lvcreate linear, thin-pool, thin or snapshot, tagged (undo: lvremove)", Args: exactArgs(1),
		Example: `  bofh lvm lv create vg0/web --size 10G
  bofh lvm lv create vg0/scratch --size 100%FREE
  bofh lvm lv create vg0/pool --type thin-pool --size 50%VG
  bofh lvm lv create vg0/vm1 --type thin --pool pool --size 20G
  bofh lvm lv create vg0/web-snap --type snapshot --origin web --size 1G`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if c.VG, c.Name, err = lvmSplit(args[0]); err != nil {
				return err
			}
			return do(cmd, "lvm lv create", c)
		},
	}
	f := create.Flags()
	f.StringVar(&c.Type, "type", "", "linear (default), thin-pool, thin or snapshot")
	f.StringVarP(&c.Size, "size", "L", "", "10G, 512MiB, 100 (extents), 100%FREE, 50%VG; virtual size for thin")
	f.StringVar(&c.Pool, "pool", "", "thin pool (type thin)")
	f.StringVar(&c.Origin, "origin", "", "origin LV (type snapshot)")
	f.StringSliceVar(&c.Tags, "tag", nil, "extra tag (repeatable)")

	ref := func(use, short, name, example string, mk func(vg, lv string) atomic.Params) *cobra.Command {
		return &cobra.Command{
			Use: use + " VG/NAME", Short: short, Args: exactArgs(1), Example: example,
			RunE: func(cmd *cobra.Command, args []string) error {
				vg, n, err := lvmSplit(args[0])
				if err != nil {
					return err
				}
				return do(cmd, name, mk(vg, n))
			},
		}
	}
	remove := ref("remove", "lvremove (irreversible: runs at commit)", "lvm lv remove", "  bofh lvm lv remove vg0/old",
		func(vg, n string) atomic.Params { return lvm.RemoveLV{VG: vg, Name: n} })
	activate := ref("activate", "lvchange -ay (undo: deactivate)", "lvm lv activate", "  bofh lvm lv activate vg0/web",
		func(vg, n string) atomic.Params { return lvm.ActivateLV{VG: vg, Name: n} })
	deactivate := ref("deactivate", "lvchange -an (undo: activate)", "lvm lv deactivate", "  bofh lvm lv deactivate vg0/web",
		func(vg, n string) atomic.Params { return lvm.DeactivateLV{VG: vg, Name: n} })
	merge := ref("merge", "merge a snapshot into its origin (irreversible: runs at commit)", "lvm lv merge", "  bofh lvm lv merge vg0/web-snap",
		func(vg, n string) atomic.Params { return lvm.MergeLV{VG: vg, Name: n} })
	rename := &cobra.Command{
		Use: "rename VG/NAME NEWNAME", Short: "lvrename (undo: rename back)", Args: exactArgs(2),
		Example: "  bofh lvm lv rename vg0/web www",
		RunE: func(cmd *cobra.Command, args []string) error {
			vg, n, err := lvmSplit(args[0])
			if err != nil {
				return err
			}
			return do(cmd, "lvm lv rename", lvm.RenameLV{VG: vg, Name: n, NewName: args[1]})
		},
	}
	var shrink bool
	resize := &cobra.Command{
		Use: "resize VG/NAME SIZE", Short: "lvresize to a size or by +/- (undo: back to the old size)", Args: exactArgs(2),
		Example: "  bofh lvm lv resize vg0/web 20G\n  bofh lvm lv resize vg0/web +100%FREE\n  bofh lvm lv resize --shrink vg0/web -- -1G   # -- before a negative size",
		RunE: func(cmd *cobra.Command, args []string) error {
			vg, n, err := lvmSplit(args[0])
			if err != nil {
				return err
			}
			return do(cmd, "lvm lv resize", lvm.ResizeLV{VG: vg, Name: n, Size: args[1], Shrink: shrink})
		},
	}
	resize.Flags().BoolVar(&shrink, "shrink", false, "allow making the LV smaller (destroys the data cut off; no file system is resized)")
	lv.AddCommand(create, remove, rename, resize, activate, deactivate, merge)
	return lv
}

func lvmPrintReport(w io.Writer, rep *lvm.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VG\tSIZE\tFREE\tPVS\tLVS\tTAGS")
	for _, v := range rep.VGs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", v.Name, v.Size, v.Free, v.PVCount, v.LVCount, strings.Join(v.Tags, ","))
	}
	fmt.Fprintln(tw, "\nPV\tVG\tSIZE\tFREE\t\t")
	for _, p := range rep.PVs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t\t\n", p.Name, p.VG, p.Size, p.Free)
	}
	fmt.Fprintln(tw, "\nLV\tTYPE\tSIZE\tACTIVE\tPOOL/ORIGIN\tTAGS")
	for _, l := range rep.LVs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%v\t%s\t%s\n", l.FullName(), l.Type, l.Size, l.Active, l.Pool+l.Origin, strings.Join(l.Tags, ","))
	}
	tw.Flush()
}
