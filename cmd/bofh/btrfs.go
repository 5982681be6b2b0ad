package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/btrfs"
)

func init() { addCommand(newBtrfsCmd) }

func newBtrfsCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:   "btrfs",
		Short: "btrfs subvolumes and snapshots, journaled",
		Long: `btrfs manages subvolumes and snapshots as journaled steps: a failure rolls
back what was created; deleting a subvolume is irreversible and happens only
when everything else succeeded.`,
		Example: `  bofh btrfs subvolume create /srv/vol
  bofh btrfs snapshot -r /srv/vol /srv/vol@before
  bofh btrfs swap /srv/vol /srv/vol@before     # roll back to the snapshot
  bofh btrfs subvolume list /srv -o json`,
	}
	do := func(cmd *cobra.Command, name string, p atomic.Params) error {
		var res any
		id, err := a.doSteps(cmd.Context(), name, &res, p)
		return a.report(id, name, err)
	}
	sub := &cobra.Command{Use: "subvolume", Aliases: []string{"subvol"}, Short: "create, delete, list and show subvolumes",
		Example: "  bofh btrfs subvolume create /srv/vol\n  bofh btrfs subvolume show /srv/vol"}
	sub.AddCommand(&cobra.Command{
		Use: "create PATH", Short: "create a subvolume (undo: delete it)", Args: exactArgs(1),
		Example: "  bofh btrfs subvolume create /srv/vol",
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(cmd, "btrfs subvolume create", btrfs.CreateSubvol{Path: args[0]})
		},
	}, &cobra.Command{
		Use: "delete PATH", Short: "delete a subvolume and its content (irreversible)", Args: exactArgs(1),
		Example: "  bofh btrfs subvolume delete /srv/old",
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(cmd, "btrfs subvolume delete", btrfs.DeleteSubvol{Path: args[0]})
		},
	}, &cobra.Command{
		Use: "list PATH", Short: "list the subvolumes of the filesystem holding PATH", Args: exactArgs(1),
		Example: "  bofh btrfs subvolume list /srv -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := btrfs.CheckPath("path", args[0]); err != nil {
				return usageError{err}
			}
			subs, err := btrfs.List(cmd.Context(), a.runner(), args[0])
			if err != nil {
				return err
			}
			if subs == nil {
				subs = []btrfs.Subvolume{}
			}
			return a.print(subs, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tPARENT\tUUID\tPARENT UUID\tPATH")
				for _, s := range subs {
					fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%q\n", s.ID, s.Parent, s.UUID, s.ParentUUID, s.Path)
				}
				tw.Flush()
			})
		},
	}, &cobra.Command{
		Use: "show PATH", Short: "describe a subvolume", Args: exactArgs(1),
		Example: "  bofh btrfs subvolume show /srv/vol",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := btrfs.CheckPath("path", args[0]); err != nil {
				return usageError{err}
			}
			info, err := btrfs.Show(cmd.Context(), a.runner(), args[0])
			if err != nil {
				return err
			}
			return a.print(info, func(w io.Writer) {
				fmt.Fprintf(w, "path:      %s\nuuid:      %s\nid:        %d\nparent:    %s\nreadonly:  %v\nsnapshots: %q\n",
					info.Path, info.UUID, info.ID, info.ParentUUID, info.ReadOnly, info.Snapshots)
			})
		},
	})
	var ro bool
	snap := &cobra.Command{
		Use: "snapshot SOURCE DEST", Short: "snapshot a subvolume (undo: delete the snapshot)", Args: exactArgs(2),
		Example: "  bofh btrfs snapshot -r /srv/vol /srv/vol@2026-11-21",
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(cmd, "btrfs snapshot", btrfs.Snapshot{Source: args[0], Dest: args[1], ReadOnly: ro})
		},
	}
	snap.Flags().BoolVarP(&ro, "readonly", "r", false, "read-only snapshot")
	root.AddCommand(sub, snap, &cobra.Command{
		Use: "set-default PATH", Short: "make a subvolume the default (undo: the previous default)", Args: exactArgs(1),
		Example: "  bofh btrfs set-default /srv/root@new",
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(cmd, "btrfs set-default", btrfs.SetDefault{Path: args[0]})
		},
	}, &cobra.Command{
		Use: "swap PATH WITH", Short: "exchange two subvolumes atomically (renameat2)", Args: exactArgs(2),
		Long: `swap exchanges the subvolumes at PATH and WITH in one renameat2(RENAME_EXCHANGE)
call: a crash leaves either arrangement, both complete. To roll a subvolume back
to a snapshot: swap them, check, then delete the old one (now at WITH).`,
		Example: "  bofh btrfs swap /srv/vol /srv/vol@before\n  bofh btrfs subvolume delete /srv/vol@before",
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(cmd, "btrfs swap", btrfs.Swap{Path: args[0], With: args[1]})
		},
	})
	return root
}
