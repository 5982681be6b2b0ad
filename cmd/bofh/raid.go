package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/raid"
)

func init() { addCommand(newRaidCmd) }

func newRaidCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "raid",
		Short: "md software RAID arrays (mdadm), journaled",
		Long: `raid creates, assembles, stops and changes md arrays as journaled steps. A
failed create rolls back: the array is stopped and the superblocks it wrote are
zeroed (only those). mdadm --create never runs over a device holding a
signature unless --force is given.`,
		Example: `  bofh raid create /dev/md0 --level 1 /dev/sdb /dev/sdc
  bofh raid wait /dev/md0
  bofh raid show /dev/md0 -o json
  bofh raid fail /dev/md0 /dev/sdc && bofh raid remove /dev/md0 /dev/sdc`,
	}
	do := func(cmd *cobra.Command, name string, p atomic.Params) error {
		var res any
		id, err := a.doSteps(cmd.Context(), name, &res, p)
		return a.report(id, name, err)
	}
	var c raid.Create
	var spares string
	create := &cobra.Command{
		Use:   "create ARRAY DEVICE...",
		Short: "create an array (undo: stop it, zero the superblocks it wrote)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usageError{fmt.Errorf("%s takes an array device and its members (see --help)", cmd.CommandPath())}
			}
			return nil
		},
		Example: `  bofh raid create /dev/md0 --level 1 /dev/sdb /dev/sdc
  bofh raid create /dev/md/data --level 5 --chunk 512K --spares /dev/sde /dev/sdb /dev/sdc /dev/sdd
  bofh raid create /dev/md1 --level 1 --assume-clean /dev/nvme0n1p3 /dev/nvme1n1p3`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("level") {
				return usageError{fmt.Errorf("%s: --level is required (0, 1, 5, 6 or 10)", cmd.CommandPath())}
			}
			c.Device, c.Devices = args[0], args[1:]
			if spares != "" {
				c.Spares = strings.Split(spares, ",")
			}
			return do(cmd, "raid create", c)
		},
	}
	create.Flags().StringVarP(&c.Level, "level", "l", "", "RAID level: 0, 1, 5, 6 or 10 (required)")
	create.Flags().StringVar(&c.Metadata, "metadata", "", "superblock version (default 1.2)")
	create.Flags().StringVar(&c.Chunk, "chunk", "", "chunk size in KiB (64, 512K, 1M)")
	create.Flags().StringVar(&c.Name, "name", "", "array name stored in the superblock")
	create.Flags().StringVar(&spares, "spares", "", "spare devices, comma-separated")
	create.Flags().BoolVar(&c.Force, "force", false, "create over members holding a signature (destroys it)")
	create.Flags().BoolVar(&c.AssumeClean, "assume-clean", false, "skip the initial resync (raid1, raid10 only: for new, unused members)")

	var asm raid.Assemble
	assemble := &cobra.Command{
		Use: "assemble ARRAY DEVICE...", Short: "assemble an array from its members (undo: stop it)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usageError{fmt.Errorf("%s takes an array device and its members", cmd.CommandPath())}
			}
			return nil
		},
		Example: "  bofh raid assemble /dev/md0 /dev/sdb /dev/sdc",
		RunE: func(cmd *cobra.Command, args []string) error {
			asm.Device, asm.Devices = args[0], args[1:]
			return do(cmd, "raid assemble", asm)
		},
	}
	assemble.Flags().BoolVar(&asm.Run, "run", false, "start the array even if degraded")

	member := func(use, short, example string, mk func(dev, m string) atomic.Params) *cobra.Command {
		return &cobra.Command{Use: use + " ARRAY MEMBER", Short: short, Args: exactArgs(2), Example: example,
			RunE: func(cmd *cobra.Command, args []string) error {
				return do(cmd, "raid "+use, mk(args[0], args[1]))
			}}
	}
	var addForce bool
	add := member("add", "add a member or spare (undo: fail and remove it)", "  bofh raid add /dev/md0 /dev/sdd",
		func(d, m string) atomic.Params { return raid.Add{Device: d, Member: m, Force: addForce} })
	add.Flags().BoolVar(&addForce, "force", false, "add a device holding a non-md signature (destroys it)")

	var grow raid.Grow
	growCmd := &cobra.Command{
		Use: "grow ARRAY --raid-devices N", Short: "change the number of active devices (irreversible reshape)", Args: exactArgs(1),
		Example: "  bofh raid add /dev/md0 /dev/sdd && bofh raid grow /dev/md0 --raid-devices 3",
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("raid-devices") {
				return usageError{fmt.Errorf("%s: --raid-devices N is required", cmd.CommandPath())}
			}
			grow.Device = args[0]
			return do(cmd, "raid grow", grow)
		},
	}
	growCmd.Flags().IntVarP(&grow.RaidDevices, "raid-devices", "n", 0, "new number of active devices (required)")

	root.AddCommand(create, assemble, add,
		&cobra.Command{Use: "stop ARRAY", Short: "stop an array (undo: assemble it again)", Args: exactArgs(1),
			Example: "  bofh raid stop /dev/md0",
			RunE: func(cmd *cobra.Command, args []string) error {
				return do(cmd, "raid stop", raid.Stop{Device: args[0]})
			}},
		member("remove", "remove a failed or spare member (undo: add it back)", "  bofh raid remove /dev/md0 /dev/sdc",
			func(d, m string) atomic.Params { return raid.Remove{Device: d, Member: m} }),
		member("fail", "mark a member failed (undo: re-add it)", "  bofh raid fail /dev/md0 /dev/sdc",
			func(d, m string) atomic.Params { return raid.Fail{Device: d, Member: m} }),
		growCmd,
		&cobra.Command{Use: "show ARRAY", Short: "show an array: level, members, state, sync progress", Args: exactArgs(1),
			Example: "  bofh raid show /dev/md0\n  bofh raid show /dev/md0 -o json",
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := raid.ValidArrayDevice(args[0]); err != nil {
					return usageError{err}
				}
				arr, err := raid.Detail(cmd.Context(), a.runner(), args[0])
				if err != nil {
					return err
				}
				return a.print(arr, func(w io.Writer) { printArray(w, arr) })
			}},
		&cobra.Command{Use: "status", Short: "list running arrays (/proc/mdstat)", Args: exactArgs(0),
			Example: "  bofh raid status -o json",
			RunE: func(cmd *cobra.Command, args []string) error {
				st, err := raid.ReadMDStat(cmd.Context(), a.runner())
				if err != nil {
					return err
				}
				return a.print(st, func(w io.Writer) {
					tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "ARRAY\tSTATE\tLEVEL\tSTATUS\tSYNC")
					for _, s := range st.Arrays {
						sync := "-"
						if s.Sync != nil {
							sync = fmt.Sprintf("%s %.1f%%", s.Sync.Action, s.Sync.Percent)
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.State, s.Level, s.Status, sync)
					}
					tw.Flush()
				})
			}},
		&cobra.Command{Use: "wait ARRAY", Short: "wait for a resync, recovery or reshape to finish, showing progress", Args: exactArgs(1),
			Example: "  bofh raid wait /dev/md0",
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := raid.ValidArrayDevice(args[0]); err != nil {
					return usageError{err}
				}
				var opts raid.WaitOptions
				if f, ok := a.err.(*os.File); ok && raid.IsTerminal(f) {
					bar, done := raid.Bar(f)
					defer done()
					opts.Progress = bar
				} else if a.json() {
					opts.Progress = func(p raid.Progress) { _ = a.print(p, nil) }
				}
				return raid.Wait(cmd.Context(), a.runner(), args[0], opts)
			}},
	)
	return root
}

func printArray(w io.Writer, arr *raid.Array) {
	fmt.Fprintf(w, "device:    %s\nlevel:     %s\ndevices:   %d\nmetadata:  %s\nuuid:      %s\nname:      %s\nstate:     %s\ndegraded:  %v\n",
		arr.Device, arr.Level, arr.RaidDevices, arr.Metadata, arr.UUID, arr.Name, arr.State, arr.Degraded)
	if arr.Sync != nil {
		fmt.Fprintf(w, "sync:      %s %.1f%% (%d KiB/s, %s left)\n", arr.Sync.Action, arr.Sync.Percent, arr.Sync.Speed, arr.Sync.Finish)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tSLOT\tSTATE")
	for _, m := range arr.Members {
		state := "active"
		switch {
		case m.Faulty:
			state = "faulty"
		case m.Spare:
			state = "spare"
		case m.Rebuilding:
			state = "rebuilding"
		}
		slot := "-"
		if m.Slot >= 0 {
			slot = fmt.Sprint(m.Slot)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Device, slot, state)
	}
	tw.Flush()
}
