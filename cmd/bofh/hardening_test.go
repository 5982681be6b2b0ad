package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
)

// TestListEscapesControlCharacters is issue 12 case 14: a transaction name
// with control characters (a Go workflow's, or an old journal's) is shown
// escaped by tx list and tx show, never raw: "\r" drew a forged row.
func TestListEscapesControlCharacters(t *testing.T) {
	state := t.TempDir()
	name := "web\r9999  forged  committed\x1b[2K"
	if err := atomic.Run(context.Background(), name, func(*atomic.Tx) error { return nil }, atomic.WithStateDir(state)); err != nil {
		t.Fatal(err)
	}
	out, errs, code := bofh(t, nil, "--state-dir", state, "tx", "list")
	if code != 0 {
		t.Fatalf("tx list: exit %d: %s", code, errs)
	}
	if strings.ContainsAny(out, "\r\x1b") || !strings.Contains(out, `web\r9999`) {
		t.Errorf("tx list printed the name raw:\n%q", out)
	}
}

// TestEmptyStateDirRefused is issue 12 case 14: --state-dir "" is bad
// input (exit 2), not silently /var/lib/bofh.
func TestEmptyStateDirRefused(t *testing.T) {
	_, errs, code := bofh(t, nil, "--state-dir", "", "tx", "list")
	if code != 2 || !strings.Contains(errs, "--state-dir is empty") {
		t.Errorf("exit %d, %q; want 2 and a clear message", code, errs)
	}
}

// TestKillBetweenEndAndCleanup is issue 12 case 10 in the crash matrix: a
// kill after the terminal record (committed, or rolled back) and before
// the backups are removed leaves data/<id>; the next tx list removes it
// and reports the transaction as it ended.
func TestKillBetweenEndAndCleanup(t *testing.T) {
	for _, tc := range []struct{ fail, state string }{
		{"0:end:kill", "committed"},
		{"3:after:error,0:end:kill", "rolled-back"},
	} {
		t.Run(tc.state, func(t *testing.T) {
			_, recipe := fixture(t)
			state := t.TempDir()
			_, errs, code := bofh(t, []string{"BOFH_FAIL=" + tc.fail}, "--state-dir", state, "apply", recipe)
			if code != -9 {
				t.Fatalf("exit %d, want killed (-9): %s", code, errs)
			}
			ents, _ := os.ReadDir(filepath.Join(state, "data"))
			if len(ents) != 1 {
				t.Fatalf("after the kill data/ holds %d entries, want the transaction's backups", len(ents))
			}
			txs := listTx(t, state)
			if len(txs) != 1 || txs[0].State != tc.state {
				t.Fatalf("tx list = %+v, want one %s transaction", txs, tc.state)
			}
			if ents, _ := os.ReadDir(filepath.Join(state, "data")); len(ents) != 0 {
				t.Errorf("tx list left data/%s", ents[0].Name())
			}
		})
	}
}
