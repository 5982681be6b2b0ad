package atomic_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/file"
)

// A site script: two steps in one transaction. If the second fails, the
// first is undone; atomic.ExitCode turns the error into the CLI's codes.
func ExampleRun() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	state := filepath.Join(dir, "state")

	err := atomic.Run(ctx, "web-config", func(tx *atomic.Tx) error {
		if err := tx.Do(ctx, file.Dir{Path: filepath.Join(dir, "www")}, nil); err != nil {
			return err
		}
		var w file.WriteResult
		if err := tx.Do(ctx, file.Write{Path: filepath.Join(dir, "www", "index.html"), Content: "hello\n"}, &w); err != nil {
			return err
		}
		fmt.Println("wrote", filepath.Base(w.Path), w.Size, "bytes")
		return nil
	}, atomic.WithStateDir(state))
	fmt.Println("exit code", atomic.ExitCode(err))
	// Output:
	// wrote index.html 6 bytes
	// exit code 0
}

// A failure rolls back what was done, newest first.
func ExampleRun_rollback() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)

	err := atomic.Run(ctx, "half-done", func(tx *atomic.Tx) error {
		if err := tx.Do(ctx, file.Write{Path: filepath.Join(dir, "a.conf"), Content: "a\n"}, nil); err != nil {
			return err
		}
		return errors.New("the next step failed")
	}, atomic.WithStateDir(filepath.Join(dir, "state")))
	_, statErr := os.Stat(filepath.Join(dir, "a.conf"))
	fmt.Println(err)
	fmt.Println("exit code", atomic.ExitCode(err), "- a.conf exists:", statErr == nil)
	// Output:
	// the next step failed; rolled back
	// exit code 1 - a.conf exists: false
}

// Begin, Do, Commit and Rollback for callers that need control, and a
// named transaction that a crashed program resumes by running again with
// the same ID: steps already done return their recorded results.
func ExampleBegin() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	state := filepath.Join(dir, "state")

	tx, err := atomic.Begin(ctx, "provision", atomic.WithStateDir(state), atomic.WithID("provision-node07"))
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := tx.Do(ctx, file.Write{Path: filepath.Join(dir, "node07"), Content: "ready\n"}, nil); err != nil {
		_ = tx.Rollback(ctx)
		return
	}
	tx.Close() // as if the process died here: the journal stays interrupted

	txs, _ := atomic.List(state)
	fmt.Println(txs[0].ID, txs[0].State)

	tx, _ = atomic.Begin(ctx, "provision", atomic.WithStateDir(state), atomic.WithID("provision-node07"))
	fmt.Println("replaying:", tx.Replaying())
	_ = tx.Do(ctx, file.Write{Path: filepath.Join(dir, "node07"), Content: "ready\n"}, nil) // recorded: not redone
	fmt.Println(tx.Commit(ctx))
	// Output:
	// provision-node07 interrupted
	// replaying: true
	// <nil>
}

// A recipe is a transaction written as data.
func ExampleApply() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	r, err := atomic.ParseRecipe([]byte(`
name: motd
steps:
  - id: motd
    kind: file.write
    with: {path: ` + filepath.Join(dir, "motd") + `, content: "welcome\n"}
  - kind: symlink.create
    with: {path: ` + filepath.Join(dir, "issue") + `, target: "${motd.path}"}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = atomic.Apply(ctx, r, atomic.WithStateDir(filepath.Join(dir, "state")))
	target, _ := os.Readlink(filepath.Join(dir, "issue"))
	fmt.Println(err, filepath.Base(target))
	// Output:
	// <nil> motd
}
