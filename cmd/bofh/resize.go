package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/blockdev"
)

func init() { addCommand(newResizeCmd) }

func newResizeCmd(a *app) *cobra.Command {
	var fsType string
	var irreversible bool
	cmd := &cobra.Command{
		Use:   "resize LOOPDEV|FILE SIZE",
		Short: "resize a loop file, its device and its ext4/xfs/btrfs filesystem as one step (undo: back to the old sizes)",
		Long: `resize resizes a stack: the backing file of a loop device, the loop device
and the filesystem on it. Growing goes bottom-up, shrinking top-down; the size
is rounded down to the granularity every layer accepts. A shrink that would cut
data (below resize2fs -P or btrfs min-dev-size) is refused before anything
runs, as is a shrink of a mounted ext4 or of any xfs.

The step (fs.resize) is undone by resizing every layer back. Growing xfs, or a
mounted ext4, cannot be undone (neither can shrink back): bofh refuses it
unless --irreversible (step fs.grow, a grow only, run as the point of no
return). xfs and btrfs resize only while mounted; ext4 grows mounted or not
and shrinks unmounted, after e2fsck -f.

SIZE is the new size of the device: 10G, 512MiB, +1G, or -512M after --.`,
		Example: `  bofh resize /srv/vm/disk.img +2G             # ext4 unmounted, or btrfs mounted
  bofh resize /dev/loop3 512M --type ext4        # shrink (ext4 must be unmounted)
  bofh resize /srv/vm/disk.img -- -512M          # -- before a negative size
  bofh resize --irreversible /srv/xfs.img +1G    # xfs or mounted ext4: grow only
  bofh --dry-run resize /srv/vm/disk.img 20G     # print the commands`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := blockdev.Resize{Type: fsType, Size: args[1]}
			if !filepath.IsAbs(args[0]) || filepath.Clean(args[0]) != args[0] {
				return usageError{fmt.Errorf("%q must be a clean absolute path", args[0])}
			}
			fi, err := os.Stat(args[0])
			switch {
			case err != nil:
				return usageError{fmt.Errorf("%s: %w", args[0], err)}
			case fi.Mode()&os.ModeDevice != 0:
				p.Device = args[0]
			case fi.Mode().IsRegular():
				p.File = args[0]
			default:
				return usageError{fmt.Errorf("%s is not a loop device nor a backing file", args[0])}
			}
			var step atomic.Params = p
			name := "resize"
			if irreversible {
				step, name = blockdev.Grow(p), "resize (irreversible grow)"
			}
			var res blockdev.Resized
			id, err := a.doSteps(cmd.Context(), name, &res, step)
			if err != nil || a.dryRun {
				return a.report(id, name, err)
			}
			return a.print(map[string]any{"id": id, "name": name, "state": atomic.StateCommitted, "result": res}, func(w io.Writer) {
				fmt.Fprintf(w, "%s (%s): %s → %s, %s %s\n", res.Device, res.File, blockdev.FormatSize(res.Before), blockdev.FormatSize(res.Size), res.Type, blockdev.FormatSize(res.FSSize))
				_ = a.report(id, name, nil)
			})
		},
	}
	cmd.Flags().StringVarP(&fsType, "type", "t", "", "ext4, xfs or btrfs: refuse if the filesystem found is another")
	cmd.Flags().BoolVar(&irreversible, "irreversible", false, "grow only, as an irreversible step (fs.grow): for xfs and mounted ext4")
	return cmd
}
