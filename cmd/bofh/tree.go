package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/tree"
)

func init() { addCommand(newTreeCmd) }

func newTreeCmd(a *app) *cobra.Command {
	var store, passwordFile string
	var hookTimeout time.Duration
	var checksum bool
	root := &cobra.Command{
		Use:   "tree",
		Short: "deploy, upgrade and verify file trees (eDeploy, transactional)",
		Long: `tree installs role trees from a tree store (install/<version>/<role>/,
metadata/<from>/<role>/<to>/{exclude,add_only,pre,post}) into a target root,
upgrades them with a restore point (btrfs snapshot when the target is a
subvolume, otherwise a hard-link backup of what changes), and verifies drift.
The target's role and version live in <target>/etc/bofh-tree.json, written
last. A post hook exiting 100 reports reboot_needed.

--store is a local directory or a remote store reached over rsync:
rsync://host[:port]/module[/path] or host::module[/path] (an rsync daemon;
the password from --password-file, a 0600 file, or from RSYNC_PASSWORD in
the environment, never in the URL),
or [user@]host:/path (rsync over ssh; the ssh command and its options,
such as port and key, from RSYNC_RSH). A remote store is mirrored under
<state-dir>/tree-stores/<hash>/: before each command bofh refreshes the
mirror's metadata/ and list of versions and fetches exactly the trees the
command needs (owners, modes, ACLs, xattrs and hard links preserved), then
works from the mirror. --dry-run refreshes the mirror too: it is bofh's
cache, not the operator's data. seed needs a local store; gc no store.`,
		Example: `  bofh tree --store /srv/trees deploy web 1.0 /mnt/root
  bofh tree --store rsync://trees.example.org/trees deploy web 1.0 /mnt/root
  bofh tree --store rsync://deploy@trees.example.org/trees --password-file /etc/bofh/trees.pw upgrade 1.1 /mnt/root
  bofh tree --store /srv/trees test-upgrade 1.1 /mnt/root
  bofh tree --store /srv/trees upgrade 1.1 /mnt/root -o json
  bofh tree --store /srv/trees verify /mnt/root`,
	}
	root.PersistentFlags().StringVar(&store, "store", envOr("BOFH_TREE_STORE", "/var/lib/bofh/trees"), "tree store: a directory, rsync://host[:port]/module[/path], host::module[/path] or [user@]host:/path (env BOFH_TREE_STORE)")
	root.PersistentFlags().StringVar(&passwordFile, "password-file", os.Getenv("BOFH_TREE_PASSWORD_FILE"), "file holding an rsync daemon store's password, readable by its owner only (env BOFH_TREE_PASSWORD_FILE)")
	root.PersistentFlags().DurationVar(&hookTimeout, "hook-timeout", 10*time.Minute, "time limit of each pre/post hook")
	// local resolves --store before a command: a local directory as it
	// is; a remote store's mirror, refreshed, with the trees named
	// (version, role) fetched.
	local := func(cmd *cobra.Command, trees ...[2]string) (string, error) {
		return tree.LocalStoreWith(cmd.Context(), a.runner(), store, a.stateDir, tree.StoreOptions{PasswordFile: passwordFile}, trees, nil)
	}
	// targetTree is what a target records (version, role), for the
	// commands that fetch its trees; none when it records nothing or
	// cannot be read: the command itself then says why.
	targetTree := func(target, version string) [][2]string {
		if tree.CheckRoot("target", target) != nil {
			return nil
		}
		st, err := tree.ReadState(target)
		if err != nil || st == nil {
			return nil
		}
		if version == "" {
			version = st.Version
		}
		return [][2]string{{version, st.Role}}
	}
	req := func(store, role, version, target string) tree.Request {
		return tree.Request{Store: store, Role: role, Version: version, Target: target, StateDir: a.stateDir, HookTimeout: hookTimeout, Checksum: checksum}
	}
	printOutcome := func(o *tree.Outcome, err error) error {
		if o == nil {
			return err
		}
		state := "committed"
		if err != nil {
			state = "rolled-back"
			if atomic.ExitCode(err) == atomic.ExitRollbackIncomplete {
				state = "rollback-failed"
			}
		}
		if a.dryRun {
			state = "dry-run"
		}
		v := map[string]any{"outcome": o, "state": state}
		if err != nil {
			v["error"] = err.Error()
		}
		_ = a.print(v, func(w io.Writer) {
			if err == nil {
				fmt.Fprintf(w, "%s %s → %s: %s (%s)", o.Role, o.From, o.To, state, o.TxID)
				if o.RebootNeeded {
					fmt.Fprint(w, "; reboot needed")
				}
				fmt.Fprintln(w)
			}
		})
		return err
	}
	printReport := func(r *tree.Report) error {
		return a.print(r, func(w io.Writer) {
			for _, c := range r.Changes {
				fmt.Fprintf(w, "%-8s %s %v\n", c.Kind, strconv.Quote("/"+c.Path), c.Details)
			}
			fmt.Fprintf(w, "%d changes\n", len(r.Changes))
		})
	}
	// upgradeStore resolves the store for an upgrade of target to
	// version: the new version's tree, and (best effort) the current
	// one's, which lets the upgrade trust the quick check where the two
	// versions have the same content.
	upgradeStore := func(cmd *cobra.Command, target, version string) (string, error) {
		return tree.LocalStoreWith(cmd.Context(), a.runner(), store, a.stateDir, tree.StoreOptions{PasswordFile: passwordFile}, targetTree(target, version), targetTree(target, ""))
	}
	const checksumHelp = `An upgrade copies a target file whose type, size or mtime differs from the
new version's. A file alike in both is compared byte for byte only where
the store's current and new versions differ at its path (reproducible
builds keep sizes and mtimes); the answers are cached per version pair in
<state-dir>/cache/tree-pairs. A target file edited in place keeping its
size and mtime is therefore left as it is (as with rsync -a; verify
reports it) unless --checksum compares every such file.`
	upgradeCmd := &cobra.Command{
		Use: "upgrade VERSION TARGET", Short: "upgrade a target (snapshot, pre, sync, add_only, post, version)", Args: exactArgs(2),
		Long:    "upgrade snapshots the target, runs pre, syncs the new version's tree honouring\nexclude, copies absent add_only paths, runs post and records the version;\nany failure rolls the target back.\n\n" + checksumHelp,
		Example: "  bofh tree --store /srv/trees upgrade 1.1 /mnt/root\n  bofh tree --store /srv/trees upgrade 1.1 /mnt/root --checksum\n  BOFH_FAIL=3:after:error bofh tree upgrade 1.1 /mnt/root   # watch it roll back",
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := upgradeStore(cmd, args[1], args[0])
			if err != nil {
				return err
			}
			o, err := tree.Upgrade(cmd.Context(), req(dir, "", args[0], args[1]), a.txOptions()...)
			return printOutcome(o, err)
		},
	}
	testUpgradeCmd := &cobra.Command{
		Use: "test-upgrade VERSION TARGET", Short: "show what an upgrade would change, changing nothing", Args: exactArgs(2),
		Long:    "test-upgrade reports what upgrade would change, changing nothing.\n\n" + checksumHelp,
		Example: "  bofh tree --store /srv/trees test-upgrade 1.1 /mnt/root\n  bofh tree --store /srv/trees test-upgrade 1.1 /mnt/root --checksum -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := upgradeStore(cmd, args[1], args[0])
			if err != nil {
				return err
			}
			r, err := tree.TestUpgrade(req(dir, "", args[0], args[1]))
			if err != nil {
				return err
			}
			return printReport(r)
		},
	}
	for _, c := range []*cobra.Command{upgradeCmd, testUpgradeCmd} {
		c.Flags().BoolVar(&checksum, "checksum", false, "compare every target file alike in size and mtime with the new version byte for byte")
	}
	root.AddCommand(&cobra.Command{
		Use: "deploy ROLE VERSION TARGET", Short: "first install of a tree into an empty target", Args: exactArgs(3),
		Example: "  bofh tree --store /srv/trees deploy web 1.0 /mnt/root\n  bofh tree --store rsync://trees.example.org/trees deploy web 1.0 /mnt/root",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := tree.CheckRoot("target", args[2]); err != nil {
				return err
			}
			dir, err := local(cmd, [2]string{args[1], args[0]})
			if err != nil {
				return err
			}
			o, err := tree.Deploy(cmd.Context(), req(dir, args[0], args[1], args[2]), a.txOptions()...)
			return printOutcome(o, err)
		},
	}, upgradeCmd, testUpgradeCmd, &cobra.Command{
		Use: "verify TARGET", Short: "drift between a target and the tree of its recorded version", Args: exactArgs(1),
		Example: "  bofh tree --store /srv/trees verify /mnt/root -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := local(cmd, targetTree(args[0], "")...)
			if err != nil {
				return err
			}
			r, err := tree.Verify(dir, args[0])
			if err != nil {
				return err
			}
			if err := printReport(r); err != nil {
				return err
			}
			if len(r.Changes) > 0 {
				return fmt.Errorf("%d paths drifted from %s %s", len(r.Changes), r.Role, r.Version)
			}
			return nil
		},
	}, &cobra.Command{
		Use: "list ROLE|TARGET", Short: "versions of a role and the upgrades with metadata", Args: exactArgs(1),
		Example: "  bofh tree --store /srv/trees list web\n  bofh tree --store /srv/trees list /mnt/root",
		RunE: func(cmd *cobra.Command, args []string) error {
			role, target := args[0], ""
			if fi, err := os.Lstat(args[0]); err == nil && fi.IsDir() && args[0][0] == '/' {
				role, target = "", args[0]
			}
			dir, err := local(cmd)
			if err != nil {
				return err
			}
			l, err := tree.List(dir, role, target)
			if err != nil {
				return err
			}
			return a.print(l, func(w io.Writer) {
				for _, v := range l.Versions {
					cur := " "
					if v == l.Current {
						cur = "*"
					}
					fmt.Fprintf(w, "%s %s → %v\n", cur, v, l.Upgrades[v])
				}
			})
		},
	}, &cobra.Command{
		Use: "diff ROLE A B", Short: "differences between two versions of a role", Args: exactArgs(3),
		Example: "  bofh tree --store /srv/trees diff web 1.0 1.1",
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, err := local(cmd, [2]string{args[1], args[0]}, [2]string{args[2], args[0]})
			if err != nil {
				return err
			}
			r, err := tree.DiffVersions(dir, args[0], args[1], args[2])
			if err != nil {
				return err
			}
			return printReport(r)
		},
	}, &cobra.Command{
		Use:   "gc TARGET",
		Short: "delete the trees rollbacks moved aside and stale restore points beside a btrfs target",
		Long: `gc deletes, beside a btrfs target, the upgraded trees that rollbacks moved
aside (.<target>.bofh-trash-<uuid>, when the subvolume's UUID is the one in
its name) and restore points (.<target>.bofh-<from>-<to>) left by committed
transactions. It keeps anything an unfinished transaction in the state dir
refers to, look-alikes, restore points no journal records, and everything
when a journal cannot be read, and says why. Deleting is not undoable and
not journaled; --dry-run lists what would be deleted.`,
		Args:    exactArgs(1),
		Example: "  bofh tree gc /mnt/root --dry-run\n  bofh tree gc /mnt/root -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := tree.GC(cmd.Context(), a.runner(), args[0], tree.GCOptions{StateDir: a.stateDir, DryRun: a.dryRun})
			if rep == nil {
				return err
			}
			if perr := a.print(rep, func(w io.Writer) {
				for _, e := range rep.Entries {
					fmt.Fprintf(w, "%-12s %-13s %s: %s\n", e.Action, e.Kind, strconv.Quote(e.Path), e.Reason)
				}
				verb := "deleted"
				if rep.DryRun {
					verb = "would delete"
				}
				fmt.Fprintf(w, "%s %d, kept %d\n", verb, rep.Deleted, rep.Kept)
			}); perr != nil {
				return perr
			}
			return err
		},
	}, &cobra.Command{
		Use: "seed ROLE FROM TO", Short: "create metadata for a new upgrade pair, suggesting exclude/add_only", Args: exactArgs(3),
		Example: "  bofh tree --store /srv/trees seed web 1.0 1.1",
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.dryRun {
				return usageError{fmt.Errorf("--dry-run: seed only writes metadata files; use diff")}
			}
			if tree.IsRemote(store) {
				return usageError{fmt.Errorf("seed writes metadata: needs a local store, not %s", store)}
			}
			d, err := tree.Seed(store, args[0], args[1], args[2])
			if err != nil {
				return err
			}
			return a.print(map[string]string{"metadata": d}, func(w io.Writer) { fmt.Fprintln(w, d) })
		},
	})
	return root
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
