package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
	"github.com/bofhkit/bofh/site"
)

// app holds the global flags and what they resolve to.
type app struct {
	stateDir string
	sitePath string
	dryRun   bool
	output   string
	logLevel string
	txID     string

	site *site.Config
	log  *slog.Logger
	out  io.Writer
	err  io.Writer
}

// commands are added by the files of this package (one per tool) from
// their init functions.
var commands []func(a *app) *cobra.Command

func addCommand(f func(a *app) *cobra.Command) { commands = append(commands, f) }

func newRoot() *cobra.Command {
	a := &app{}
	root := &cobra.Command{
		Use:   "bofh",
		Short: "transactional sysadmin toolkit: every change journaled, every failure rolled back",
		Long: `bofh wraps block devices, mounts, LVM, btrfs, LUKS, md RAID, DRBD, Xen,
libvirt, IPMI BMCs and file trees. Every mutating step journals its undo before
it acts; a failure rolls back in reverse order; a crashed run can be rolled
back or resumed from its journal ('bofh tx list').

Exit codes: 0 ok; 1 failed and rolled back; 2 bad input, nothing done;
3 failed and rollback incomplete (journal kept).`,
		Example: `  bofh apply site.yaml          # run a recipe as one transaction
  bofh tx list                  # find interrupted transactions
  bofh tx rollback 20261121T101500-ab12cd
  bofh step list                # every step kind and its parameters`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.setup(cmd)
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.stateDir, "state-dir", atomic.StateDirFromEnv(), "where journals and backups live (env BOFH_STATE_DIR)")
	pf.StringVar(&a.sitePath, "site", site.PathFromEnv(), "site configuration file (env BOFH_SITE)")
	pf.BoolVar(&a.dryRun, "dry-run", false, "run queries, print the commands that would change anything, change nothing")
	pf.StringVarP(&a.output, "output", "o", "text", "output format: text or json")
	pf.StringVar(&a.logLevel, "log-level", "warn", "log level: debug, info, warn, error (debug shows every command)")
	root.AddCommand(newApplyCmd(a), newTxCmd(a), newStepCmd(a), newCompletionCmd())
	for _, f := range commands {
		root.AddCommand(f(a))
	}
	strictUsage(root)
	return root
}

// strictUsage makes every bad command line exit 2: argument validators'
// errors become usage errors, and a group command given an unknown
// subcommand says so instead of printing its help and exiting 0.
func strictUsage(cmd *cobra.Command) {
	if args := cmd.Args; args != nil {
		cmd.Args = func(c *cobra.Command, a []string) error {
			if err := args(c, a); err != nil {
				var ue usageError
				if errors.As(err, &ue) {
					return err
				}
				return usageError{err}
			}
			return nil
		}
	}
	if cmd.HasSubCommands() && cmd.Run == nil && cmd.RunE == nil {
		cmd.Args = func(c *cobra.Command, a []string) error {
			if len(a) > 0 {
				return usageError{fmt.Errorf("unknown command %q for %q (see '%s --help')", a[0], c.CommandPath(), c.CommandPath())}
			}
			return nil
		}
		cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	}
	for _, c := range cmd.Commands() {
		strictUsage(c)
	}
}

func (a *app) setup(cmd *cobra.Command) error {
	a.out, a.err = cmd.OutOrStdout(), cmd.ErrOrStderr()
	if a.output != "text" && a.output != "json" {
		return usageError{fmt.Errorf("-o %q: want text or json", a.output)}
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(a.logLevel)); err != nil {
		return usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", a.logLevel)}
	}
	a.log = slog.New(slog.NewTextHandler(a.err, &slog.HandlerOptions{Level: lvl}))
	slog.SetDefault(a.log)
	if strings.TrimSpace(a.stateDir) == "" {
		// An empty --state-dir (or BOFH_STATE_DIR set empty by a script's
		// unset variable) must not quietly become the default.
		return usageError{fmt.Errorf("--state-dir is empty: name a directory, or leave the flag out for %s", atomic.DefaultStateDir)}
	}
	if abs, err := filepath.Abs(a.stateDir); err == nil {
		a.stateDir = abs
	}
	explicit := cmd.Flags().Changed("site") || os.Getenv("BOFH_SITE") != ""
	s, err := site.Load(a.sitePath, explicit)
	if err != nil {
		return usageError{err}
	}
	a.site = s
	return nil
}

// runner returns the runner commands use: site binary paths, debug logging.
func (a *app) runner() run.Runner {
	var paths map[string]string
	if a.site != nil {
		paths = a.site.Paths
	}
	return &run.Local{Paths: paths, Log: a.log}
}

// txOptions returns the options every transaction of this invocation uses.
func (a *app) txOptions() []atomic.Option {
	opts := []atomic.Option{atomic.WithStateDir(a.stateDir), atomic.WithRunner(a.runner()), atomic.WithLogger(a.log), atomic.WithStop(stopRun)}
	if a.dryRun {
		opts = append(opts, atomic.WithDryRun(a.err))
	}
	if a.txID != "" {
		opts = append(opts, atomic.WithID(a.txID))
	}
	return opts
}

// json reports whether -o json was asked for.
func (a *app) json() bool { return a.output == "json" }

// print writes v as indented JSON with -o json, or calls text otherwise.
func (a *app) print(v any, text func(w io.Writer)) error {
	if a.json() {
		enc := json.NewEncoder(a.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(a.out)
	return nil
}

// doSteps runs steps as one transaction named name and prints the last
// step's result (decoded into out when not nil). It is how a single
// mutating subcommand ('bofh lvm lv create …') runs: journaled, rolled
// back on failure, printed in dry runs.
func (a *app) doSteps(ctx context.Context, name string, out any, steps ...atomic.Params) (string, error) {
	for _, p := range steps {
		if err := atomic.Validate(p); err != nil {
			return "", err // nothing started, nothing journaled
		}
	}
	var id string
	err := atomic.Run(ctx, name, func(tx *atomic.Tx) error {
		id = tx.ID()
		for i, p := range steps {
			var dst any
			if i == len(steps)-1 {
				dst = out
			}
			if err := tx.Do(ctx, p, dst); err != nil {
				return err
			}
		}
		return nil
	}, a.txOptions()...)
	return id, err
}

// exactArgs is cobra.ExactArgs with a usage error (exit 2).
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s takes %d argument(s), got %d (see --help)", cmd.CommandPath(), n, len(args))}
		}
		return nil
	}
}

// rangeArgs is cobra.RangeArgs with a usage error (exit 2).
func rangeArgs(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || len(args) > max {
			return usageError{fmt.Errorf("%s takes %d to %d arguments, got %d (see --help)", cmd.CommandPath(), min, max, len(args))}
		}
		return nil
	}
}

func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pad)
}

func newCompletionCmd() *cobra.Command {
	return &cobra.Command{
		Use:       "completion bash|zsh|fish|powershell",
		Short:     "print a shell completion script",
		Example:   "  source <(bofh completion bash)\n  bofh completion zsh > \"${fpath[1]}/_bofh\"",
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		Args:      exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(cmd.OutOrStdout(), true)
			case "zsh":
				return root.GenZshCompletion(cmd.OutOrStdout())
			case "fish":
				return root.GenFishCompletion(cmd.OutOrStdout(), true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(cmd.OutOrStdout())
			}
			return usageError{fmt.Errorf("unknown shell %q", args[0])}
		},
	}
}
