package main

import (
	"context"
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
