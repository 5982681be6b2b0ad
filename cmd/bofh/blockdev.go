package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/blockdev"
)

func init() { addCommand(newBlockdevCmd) }

func newBlockdevCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:     "blockdev",
		Aliases: []string{"bd"},
		Short:   "block devices: probe, loop devices, signatures, mkfs, partitions, mounts",
		Long: `blockdev probes block devices and changes them as journaled steps: a
failure rolls back what was done (a loop device detached, a partition table
restored byte for byte, a filesystem wiped and the old signatures written
back, a mount unmounted). mkfs and part table refuse a device holding any
signature unless --force.`,
		Example: `  bofh blockdev probe /dev/sdb /dev/sdc -o json
  bofh blockdev loop attach /srv/disk.img
  bofh blockdev part table /dev/loop0 --type gpt
  bofh blockdev part create /dev/loop0 --size 100M --name data
  bofh blockdev mkfs /dev/loop0p1 --type ext4 --label data
  bofh blockdev mount /dev/loop0p1 /mnt/data -O noatime
  bofh blockdev mount --pool /dev/loop0p1      # a free mountpoint from site mount_pool`,
	}
	// do runs one step as a transaction and prints its result.
	do := func(cmd *cobra.Command, name string, p atomic.Params, text func(w io.Writer, res map[string]any)) error {
		res := map[string]any{}
		id, err := a.doSteps(cmd.Context(), name, &res, p)
		if err != nil || a.json() || a.dryRun {
			if err == nil && a.json() {
				return a.print(map[string]any{"id": id, "name": name, "state": stateOf(a, err), "result": res}, nil)
			}
			return a.report(id, name, err)
		}
		if text != nil {
			text(a.out, res)
		}
		return a.report(id, name, nil)
	}

	probe := &cobra.Command{
		Use: "probe DEVICE...", Short: "sizes, partitions, holders, mounts and signatures (one lsblk and one wipefs call)",
		Example: "  bofh blockdev probe /dev/loop0\n  bofh blockdev probe /dev/sda /dev/sdb -o json",
		Args:    lvmMinArgs(1, "one or more devices"),
		RunE: func(cmd *cobra.Command, args []string) error {
			devs, err := blockdev.Probe(cmd.Context(), a.runner(), args...)
			if err != nil {
				return err
			}
			return a.print(devs, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "DEVICE\tTYPE\tSIZE\tSIGNATURES\tMOUNTS")
				var walk func(ds []blockdev.Device, pre string)
				walk = func(ds []blockdev.Device, pre string) {
					for _, d := range ds {
						var sigs []string
						for _, s := range d.Signatures {
							sigs = append(sigs, s.Type)
						}
						fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\n", pre, d.Path, d.Type, blockdev.FormatSize(d.Size), strings.Join(sigs, ","), strings.Join(d.Mounts, ","))
						walk(d.Children, pre+"  ")
					}
				}
				walk(devs, "")
				tw.Flush()
			})
		},
	}

	loop := &cobra.Command{Use: "loop", Short: "attach and detach loop devices",
		Example: "  bofh blockdev loop attach /srv/disk.img\n  bofh blockdev loop detach /dev/loop3"}
	var ro bool
	attach := &cobra.Command{
		Use: "attach FILE", Short: "attach a file to a free loop device (undo: detach it)", Args: exactArgs(1),
		Example: "  bofh blockdev loop attach /srv/disk.img\n  bofh blockdev loop attach --ro /srv/disk.img -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(cmd, "blockdev loop attach", blockdev.LoopAttach{File: args[0], ReadOnly: ro}, func(w io.Writer, r map[string]any) {
				fmt.Fprintln(w, r["device"])
			})
		},
	}
	attach.Flags().BoolVar(&ro, "ro", false, "attach read-only")
	loop.AddCommand(attach, &cobra.Command{
		Use: "detach DEVICE", Short: "detach a loop device (undo: attach the file again)", Args: exactArgs(1),
		Example: "  bofh blockdev loop detach /dev/loop3",
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(cmd, "blockdev loop detach", blockdev.LoopDetach{Device: args[0]}, nil)
		},
	})

	var mk blockdev.Mkfs
	mkfs := &cobra.Command{
		Use: "mkfs DEVICE", Short: "make an ext4, xfs, btrfs or vfat filesystem (refuses signatures unless --force)", Args: exactArgs(1),
		Example: "  bofh blockdev mkfs /dev/loop0p1 --type ext4 --label data\n  bofh blockdev mkfs /dev/sdb1 --type xfs --force",
		RunE: func(cmd *cobra.Command, args []string) error {
			mk.Device = args[0]
			return do(cmd, "blockdev mkfs", mk, func(w io.Writer, r map[string]any) {
				fmt.Fprintf(w, "%s: %s UUID=%s\n", r["device"], r["type"], r["uuid"])
			})
		},
	}
	mkfs.Flags().StringVarP(&mk.Type, "type", "t", "", "ext4, xfs, btrfs or vfat (required)")
	mkfs.Flags().StringVarP(&mk.Label, "label", "L", "", "filesystem label")
	mkfs.Flags().StringVarP(&mk.UUID, "uuid", "U", "", "filesystem UUID")
	mkfs.Flags().BoolVar(&mk.Force, "force", false, "make it over existing signatures (saved for the undo)")

	wipe := &cobra.Command{
		Use: "wipe DEVICE", Short: "erase every signature, saved so the undo writes them back", Args: exactArgs(1),
		Example: "  bofh blockdev wipe /dev/loop0",
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(cmd, "blockdev wipe", blockdev.Wipe{Device: args[0]}, nil)
		},
	}

	part := &cobra.Command{Use: "part", Short: "GPT and MBR partition tables (undo restores the table bytes exactly)",
		Example: "  bofh blockdev part table /dev/loop0 --type gpt\n  bofh blockdev part create /dev/loop0 --size 1G"}
	var pt blockdev.PartTable
	table := &cobra.Command{
		Use: "table DEVICE", Short: "write an empty partition table", Args: exactArgs(1),
		Example: "  bofh blockdev part table /dev/loop0 --type gpt",
		RunE: func(cmd *cobra.Command, args []string) error {
			pt.Device = args[0]
			return do(cmd, "blockdev part table", pt, nil)
		},
	}
	table.Flags().StringVar(&pt.Type, "type", "gpt", "gpt or mbr")
	table.Flags().BoolVar(&pt.Force, "force", false, "overwrite existing signatures")
	var pc blockdev.PartCreate
	create := &cobra.Command{
		Use: "create DEVICE", Short: "add a partition (1 MiB aligned)", Args: exactArgs(1),
		Example: "  bofh blockdev part create /dev/loop0 --size 100M --name data\n  bofh blockdev part create /dev/sdb --type lvm   # the rest of the disk",
		RunE: func(cmd *cobra.Command, args []string) error {
			pc.Device = args[0]
			return do(cmd, "blockdev part create", pc, func(w io.Writer, r map[string]any) { fmt.Fprintln(w, r["device"]) })
		},
	}
	create.Flags().IntVar(&pc.Number, "number", 0, "partition number (default: first free)")
	create.Flags().StringVar(&pc.Start, "start", "", "start offset (default: after the last partition)")
	create.Flags().StringVar(&pc.Size, "size", "", "size (default: the rest of the disk)")
	create.Flags().StringVar(&pc.Type, "type", "", "linux, efi, swap, lvm, raid, a GPT GUID or an MBR type 0xNN")
	create.Flags().StringVar(&pc.Name, "name", "", "GPT partition name")
	part.AddCommand(table, create, &cobra.Command{
		Use: "delete DEVICE NUMBER", Short: "delete a partition that is not in use", Args: exactArgs(2),
		Example: "  bofh blockdev part delete /dev/loop0 2",
		RunE: func(cmd *cobra.Command, args []string) error {
			var n int
			if _, err := fmt.Sscan(args[1], &n); err != nil {
				return usageError{fmt.Errorf("partition number %q: %w", args[1], err)}
			}
			return do(cmd, "blockdev part delete", blockdev.PartDelete{Device: args[0], Number: n}, nil)
		},
	})

	var m blockdev.MountFS
	var pool bool
	mount := &cobra.Command{
		Use: "mount SOURCE [TARGET]", Short: "mount a device or bind-mount a directory (undo: unmount it)", Args: rangeArgs(1, 2),
		Example: "  bofh blockdev mount /dev/loop0p1 /mnt/data -O noatime,discard\n  bofh blockdev mount --bind --ro /srv/www /var/www\n  bofh blockdev mount --pool /dev/loop0p1",
		RunE: func(cmd *cobra.Command, args []string) error {
			m.Source = args[0]
			if pool == (len(args) == 2) {
				return usageError{fmt.Errorf("give either a TARGET or --pool")}
			}
			if len(args) == 2 {
				m.Target = args[1]
			} else {
				var pts []string
				if a.site != nil {
					pts = a.site.MountPool
				}
				p, err := blockdev.NewMountPool(pts)
				if err != nil {
					return usageError{err}
				}
				if m.Target, err = p.Acquire(cmd.Context(), a.runner()); err != nil {
					return usageError{err}
				}
			}
			return do(cmd, "blockdev mount", m, func(w io.Writer, r map[string]any) { fmt.Fprintln(w, r["target"]) })
		},
	}
	mount.Flags().StringVarP(&m.FSType, "type", "t", "", "filesystem type")
	mount.Flags().StringSliceVarP(&m.Options, "options", "O", nil, "mount options (comma-separated)")
	mount.Flags().BoolVar(&m.Bind, "bind", false, "bind mount")
	mount.Flags().BoolVar(&m.ReadOnly, "ro", false, "read-only")
	mount.Flags().BoolVar(&pool, "pool", false, "mount on a free mountpoint of the site's mount_pool")

	umount := &cobra.Command{
		Use: "umount TARGET", Short: "unmount (undo: mount it again with the same options)", Args: exactArgs(1),
		Example: "  bofh blockdev umount /mnt/data",
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(cmd, "blockdev umount", blockdev.Umount{Target: args[0]}, nil)
		},
	}
	root.AddCommand(probe, loop, mkfs, wipe, part, mount, umount)
	return root
}

func stateOf(a *app, err error) atomic.State {
	if a.dryRun {
		return "dry-run"
	}
	if err == nil {
		return atomic.StateCommitted
	}
	return ""
}
