package tree

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
)

// TestInterruptedSyncLeavesNoTemporaries is issue 12 case 8: a sync cut
// short leaves temporaries (.~bofh~*) beside the files it was writing,
// which tree verify cannot see and the restore point does not know; the
// rollback of the uncertain sync removes them.
func TestInterruptedSyncLeavesNoTemporaries(t *testing.T) {
	l := newLab(t, "ext4")
	ctx := context.Background()
	for i, k := range upgradeKinds(t, l) {
		if k.Kind != "tree.sync" {
			continue
		}
		// What a Do killed mid-copy leaves: a big half-written temporary
		// deep in the target.
		dir := filepath.Join(l.target, "var", "lib") // unchanged between v1 and v2
		os.MkdirAll(dir, 0o755)
		tmp := filepath.Join(dir, tmpPrefix+"lib.so")
		os.WriteFile(tmp, []byte(strings.Repeat("x", 1<<20)), 0o600)
		out, err := Upgrade(ctx, l.req(), atomic.WithFailpoints(fmt.Sprintf("%d:before:error", i+1)))
		if atomic.ExitCode(err) != atomic.ExitRolledBack || out == nil {
			t.Fatalf("want a rolled-back upgrade, got %v", err)
		}
		if _, err := os.Stat(tmp); !os.IsNotExist(err) {
			t.Errorf("the temporary %s survived the rollback (%v)", tmp, err)
		}
		return
	}
	t.Fatal("the upgrade has no tree.sync step")
}
