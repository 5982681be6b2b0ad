package tree

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/bofhkit/bofh/atomic"
)

// applyKill runs the first n steps of a recipe and closes the
// transaction without committing, as a crash would leave it, so that a
// benchmark can time atomic.RollbackID alone.
func applyKill(ctx context.Context, rec *atomic.Recipe, stateDir string, n int) (string, error) {
	tx, err := atomic.Begin(ctx, rec.Name, atomic.WithStateDir(stateDir))
	if err != nil {
		return "", err
	}
	defer tx.Close()
	for i, s := range rec.Steps[:n] {
		p, err := decodeStep(s)
		if err != nil {
			return "", err
		}
		if err := tx.Do(ctx, p, nil); err != nil {
			return "", errors.Join(err, errors.New("step "+rec.Steps[i].ID))
		}
	}
	return tx.ID(), nil // closed without commit: interrupted
}

func rollbackID(ctx context.Context, id, stateDir string) error {
	return atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(stateDir))
}

func decodeStep(s atomic.RecipeStep) (atomic.Params, error) {
	b := mustJSON(s.With)
	switch s.Kind {
	case "tree.snapshot":
		return decodeAs[SnapshotStep](b)
	case "tree.hook":
		return decodeAs[HookStep](b)
	case "tree.sync":
		return decodeAs[SyncStep](b)
	case "tree.add-only":
		return decodeAs[AddOnlyStep](b)
	case "tree.state":
		return decodeAs[StateStep](b)
	}
	return nil, errors.New("unexpected kind " + s.Kind)
}

func decodeAs[T atomic.Params](b []byte) (atomic.Params, error) {
	var x T
	err := json.Unmarshal(b, &x)
	return x, err
}
