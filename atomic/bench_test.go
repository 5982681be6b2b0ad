package atomic

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// nop is a step that does nothing: it measures the engine alone.
type nop struct {
	N int `json:"n"`
}

func (nop) StepKind() string { return "test.nop" }

func init() {
	Register(Def[nop, struct{}, struct{}]{
		Doc:  "does nothing",
		Do:   func(context.Context, *Env, nop, struct{}) (struct{}, error) { return struct{}{}, nil },
		Undo: func(context.Context, *Env, nop, struct{}, struct{}) error { return nil },
	})
}

// BenchmarkFdatasync is the yardstick: one small record appended and
// fdatasync'ed, as the journal does for each record.
func BenchmarkFdatasync(b *testing.B) {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "f"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rec := []byte(`{"crc":123456789,"rec":{"seq":1,"type":"done","time":"2026-11-21T10:00:00Z","step":1}}` + "\n")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.Write(rec); err != nil {
			b.Fatal(err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
	}
}

func benchSteps(b *testing.B, opts ...Option) {
	ctx := context.Background()
	tx, err := Begin(ctx, "bench", append([]Option{WithStateDir(b.TempDir())}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := tx.Do(ctx, nop{N: i}, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	tx.Close()
}

// BenchmarkStep is one no-op step with the journal on disk: intent and
// done records, each fdatasync'ed.
func BenchmarkStep(b *testing.B) { benchSteps(b) }

// BenchmarkStepCPU is the engine's CPU cost per step, without fdatasync.
func BenchmarkStepCPU(b *testing.B) { benchSteps(b, withoutSync()) }

// BenchmarkRecovery is 'tx list' plus 'tx show' of a transaction of
// 10,000 steps that was interrupted.
func BenchmarkRecovery(b *testing.B) {
	state := b.TempDir()
	ctx := context.Background()
	tx, err := Begin(ctx, "big", WithStateDir(state), WithID("big"), withoutSync())
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 10000; i++ {
		if err := tx.Do(ctx, nop{N: i}, nil); err != nil {
			b.Fatal(err)
		}
	}
	tx.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		txs, err := List(state)
		if err != nil || len(txs) != 1 || txs[0].Steps != 10000 {
			b.Fatalf("list: %v %v", txs, err)
		}
		d, err := Show(state, "big")
		if err != nil || len(d.Steps) != 10000 || d.State != StateInterrupted {
			b.Fatalf("show: %v", err)
		}
	}
}

// TestRecoveryOf10kSteps checks what the benchmark measures, so the
// benchmark cannot pass on a broken journal.
func TestRecoveryOf10kSteps(t *testing.T) {
	state := t.TempDir()
	ctx := context.Background()
	tx, _ := Begin(ctx, "big", WithStateDir(state), WithID("big"), withoutSync())
	for i := 0; i < 10000; i++ {
		if err := tx.Do(ctx, nop{N: i}, nil); err != nil {
			t.Fatal(err)
		}
	}
	tx.Close()
	d, err := Show(state, "big")
	if err != nil || d.State != StateInterrupted || len(d.Steps) != 10000 || d.Steps[9999].Status != StatusDone {
		t.Fatal(fmt.Sprint(d, err))
	}
}
