package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/bofhkit/bofh/atomic"
	_ "github.com/bofhkit/bofh/file" // dir.create, file.write, file.remove, symlink.create
)

func newApplyCmd(a *app) *cobra.Command {
	var check bool
	cmd := &cobra.Command{
		Use:   "apply FILE",
		Short: "run a recipe (YAML) as one transaction",
		Long: `apply runs the steps of a recipe as one transaction. Every step is checked
before the first one runs (unknown kinds, bad parameters, unresolved
references: exit 2, nothing done). If a step fails, the steps done so far are
undone in reverse order (exit 1). A run that is killed leaves an interrupted
journal: 'bofh tx rollback ID' or 'bofh tx resume ID'.

A recipe has a name and steps; each step has an optional id, a kind (see
'bofh step list') and its parameters under 'with'. A later step can use an
earlier step's result as ${id.field}. FILE "-" reads standard input.`,
		Example: `  cat > web.yaml <<'EOF'
  name: web-config
  steps:
    - id: conf
      kind: dir.create
      with: {path: /etc/web, mode: "0755"}
    - id: main
      kind: file.write
      with: {path: /etc/web/main.conf, content: "listen 80\n"}
    - kind: symlink.create
      with: {path: /etc/web/current, target: main.conf}
  EOF
  bofh apply web.yaml
  bofh apply --check web.yaml      # validate only
  BOFH_FAIL=2:after:error bofh apply web.yaml   # watch it roll back`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var data []byte
			var err error
			if args[0] == "-" {
				data, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 8<<20))
			} else {
				data, err = os.ReadFile(args[0])
			}
			if err != nil {
				return usageError{fmt.Errorf("read recipe: %w", err)}
			}
			r, err := atomic.ParseRecipe(data)
			if err != nil {
				return err
			}
			if check {
				if err := r.Validate(); err != nil {
					return err
				}
				return a.print(map[string]any{"name": r.Name, "steps": len(r.Steps), "valid": true}, func(w io.Writer) {
					fmt.Fprintf(w, "recipe %q: %d steps, valid\n", r.Name, len(r.Steps))
				})
			}
			id, err := atomic.Apply(cmd.Context(), r, a.txOptions()...)
			return a.report(id, r.Name, err)
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "validate the recipe and exit")
	cmd.Flags().StringVar(&a.txID, "id", "", "transaction ID (default: generated)")
	return cmd
}

// report prints the outcome of a transaction run and passes its error on.
func (a *app) report(id, name string, err error) error {
	state := atomic.StateCommitted
	switch atomic.ExitCode(err) {
	case atomic.ExitRolledBack:
		state = atomic.StateRolledBack
	case atomic.ExitRollbackIncomplete:
		state = atomic.StateRollbackFailed
	case atomic.ExitInvalid:
		state = ""
	}
	if a.dryRun {
		state = "dry-run"
	}
	out := map[string]any{"id": id, "name": name, "state": state}
	if err != nil {
		out["error"] = err.Error()
	}
	if a.json() {
		_ = a.print(out, nil)
		return err
	}
	if err == nil && id != "" {
		fmt.Fprintf(a.out, "%s: %s (%s)\n", name, state, id)
	}
	return err
}

func newTxCmd(a *app) *cobra.Command {
	tx := &cobra.Command{
		Use:   "tx",
		Short: "list, inspect, roll back, resume and forget transactions",
		Long: `Transactions live as journals under <state-dir>/journal. A transaction is
running (a live process holds it), committed, rolled-back, rollback-failed
(an undo failed: fix the cause and roll back again) or interrupted (the process
died: roll it back, or resume a recipe).`,
		Example: `  bofh tx list
  bofh tx list -o json
  bofh tx show 20261121T101500-ab12cd
  bofh tx rollback 20261121T101500-ab12cd
  bofh tx rollback --skip 3 20261121T101500-ab12cd   # step 3 was fixed by hand
  bofh tx resume 20261121T101500-ab12cd
  bofh tx forget 20261121T101500-ab12cd`,
	}
	var all bool
	list := &cobra.Command{
		Use:     "list",
		Short:   "list transactions (by default those that need attention and the last 20)",
		Example: "  bofh tx list\n  bofh tx list --all -o json",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			txs, err := atomic.List(a.stateDir)
			if err != nil {
				return err
			}
			if !all && len(txs) > 20 {
				var keep []atomic.Summary
				for i, t := range txs {
					if i >= len(txs)-20 || (t.State != atomic.StateCommitted && t.State != atomic.StateRolledBack) {
						keep = append(keep, t)
					}
				}
				txs = keep
			}
			if txs == nil {
				txs = []atomic.Summary{}
			}
			return a.print(txs, func(w io.Writer) {
				if len(txs) == 0 {
					fmt.Fprintln(w, "no transactions")
					return
				}
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tSTATE\tSTEPS\tDONE\tUPDATED")
				for _, t := range txs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", t.ID, printable(t.Name), t.State, t.Steps, t.Done, t.Updated.Local().Format(time.DateTime))
				}
				tw.Flush()
			})
		},
	}
	list.Flags().BoolVar(&all, "all", false, "list every transaction")
	show := &cobra.Command{
		Use:     "show ID",
		Short:   "show a transaction's steps, their parameters, undo data and results",
		Example: "  bofh tx show 20261121T101500-ab12cd\n  bofh tx show -o json 20261121T101500-ab12cd | jq .steps",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := atomic.Show(a.stateDir, args[0])
			if err != nil {
				return err
			}
			return a.print(d, func(w io.Writer) {
				fmt.Fprintf(w, "transaction %s %q: %s, %d/%d steps done\n", d.ID, d.Name, d.State, d.Done, len(d.Steps))
				fmt.Fprintf(w, "started %s, updated %s\n", d.Started.Local().Format(time.DateTime), d.Updated.Local().Format(time.DateTime))
				if d.Error != "" {
					fmt.Fprintf(w, "error: %s\n", printable(d.Error))
				}
				for _, s := range d.Steps {
					name := s.Kind
					if s.ID != "" {
						name = s.ID + " (" + s.Kind + ")"
					}
					fmt.Fprintf(w, "  %3d  %-9s  %s %s\n", s.Step, s.Status, name, compact(s.Params))
				}
			})
		},
	}
	var skips []string
	var force bool
	rollback := &cobra.Command{
		Use:   "rollback ID",
		Short: "undo an interrupted or rollback-failed transaction, newest step first",
		Long: `rollback undoes every step of a transaction in reverse order from its
journal alone. It stops at the first undo that fails and can be run again after
the cause is fixed; --skip N marks step N as handled by hand.`,
		Example: "  bofh tx rollback 20261121T101500-ab12cd\n  bofh tx rollback --skip 4 20261121T101500-ab12cd",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var nums []int
			for _, s := range skips {
				for _, f := range strings.Split(s, ",") {
					n, err := strconv.Atoi(strings.TrimSpace(f))
					if err != nil {
						return usageError{fmt.Errorf("--skip %q: want step numbers", s)}
					}
					nums = append(nums, n)
				}
			}
			if a.dryRun {
				return usageError{fmt.Errorf("--dry-run is not supported by tx rollback; see 'bofh tx show %s'", args[0])}
			}
			err := atomic.RollbackID(cmd.Context(), args[0], nums, a.txOptions()...)
			if err != nil {
				return err
			}
			return a.print(map[string]any{"id": args[0], "state": atomic.StateRolledBack}, func(w io.Writer) {
				fmt.Fprintf(w, "%s: rolled back\n", args[0])
			})
		},
	}
	rollback.Flags().StringSliceVar(&skips, "skip", nil, "step numbers the operator handled by hand (not undone)")
	resume := &cobra.Command{
		Use:   "resume ID",
		Short: "continue an interrupted recipe transaction from its journal",
		Long: `resume continues an interrupted recipe transaction: steps done are skipped
with their recorded results, the step that was interrupted is checked, the rest
run, and the transaction commits (or rolls back on a new failure).`,
		Example: "  bofh tx resume 20261121T101500-ab12cd",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if a.dryRun {
				return usageError{fmt.Errorf("--dry-run is not supported by tx resume")}
			}
			opts := append(a.txOptions(), atomic.WithID(args[0]))
			err := atomic.ResumeID(cmd.Context(), args[0], opts...)
			return a.report(args[0], "resume", err)
		},
	}
	forget := &cobra.Command{
		Use:     "forget ID",
		Short:   "delete a finished transaction's journal and backups",
		Example: "  bofh tx forget 20261121T101500-ab12cd\n  bofh tx forget --force 20261121T101500-ab12cd   # even if interrupted",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := atomic.Forget(a.stateDir, args[0], force); err != nil {
				return err
			}
			return a.print(map[string]any{"id": args[0], "forgotten": true}, func(w io.Writer) {
				fmt.Fprintf(w, "%s: forgotten\n", args[0])
			})
		},
	}
	forget.Flags().BoolVar(&force, "force", false, "forget a transaction that is not over (it can no longer be rolled back)")
	tx.AddCommand(list, show, rollback, resume, forget)
	return tx
}

func compact(raw json.RawMessage) string {
	s := string(raw)
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	return s
}

func newStepCmd(a *app) *cobra.Command {
	st := &cobra.Command{
		Use:     "step",
		Short:   "list the step kinds recipes and transactions can use",
		Example: "  bofh step list\n  bofh step show file.write",
	}
	list := &cobra.Command{
		Use:     "list",
		Short:   "list every registered step kind",
		Example: "  bofh step list\n  bofh step list -o json",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			kinds := atomic.Kinds()
			return a.print(kinds, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				for _, k := range kinds {
					flag := ""
					if k.Irreversible {
						flag = " [irreversible: runs at commit]"
					}
					fmt.Fprintf(tw, "%s\t%s%s\n", k.Kind, k.Doc, flag)
				}
				tw.Flush()
			})
		},
	}
	show := &cobra.Command{
		Use:     "show KIND",
		Short:   "show a step kind's parameters and result",
		Example: "  bofh step show file.write",
		Args:    exactArgs(1),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			var names []string
			for _, k := range atomic.Kinds() {
				names = append(names, k.Kind)
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := atomic.Kind(args[0])
			if err != nil {
				return err
			}
			return a.print(k, func(w io.Writer) {
				fmt.Fprintf(w, "%s: %s\n", k.Kind, k.Doc)
				if k.Irreversible {
					fmt.Fprintln(w, "irreversible: runs only at commit, after every reversible step succeeded")
				}
				fmt.Fprintln(w, "parameters:")
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				for _, f := range k.Params {
					req := "optional"
					if f.Required {
						req = "required"
					}
					fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", f.Name, f.Type, req, f.Doc)
				}
				tw.Flush()
				if len(k.Result) > 0 {
					fmt.Fprintln(w, "result (use as ${id.field}):")
					for _, f := range k.Result {
						fmt.Fprintf(w, "  %s\t%s\n", f.Name, f.Type)
					}
				}
			})
		},
	}
	st.AddCommand(list, show)
	return st
}

// printable makes text read from a journal safe for a terminal: control
// characters (an escape sequence, a carriage return that would draw a
// forged row) are shown escaped, Go-style, and tabs too (they would
// shift a table's columns).
func printable(s string) string {
	if strings.IndexFunc(s, func(c rune) bool { return unicode.IsControl(c) || c == 0x7f }) < 0 {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}
