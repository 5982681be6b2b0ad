package drbd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

func readCapture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "drbd", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type drbdScript struct {
	t   *testing.T
	dir string
}

func (s drbdScript) down(f *run.Fake) {
	f.Expect("drbdadm", "role", "data").Fail(10, readCapture(s.t, "drbdadm-role-down.txt"))
}

func (s drbdScript) up(f *run.Fake, role string) {
	f.Expect("drbdadm", "role", "data").Out(role + "/Unknown\n")
	f.Expect("drbdadm", "cstate", "data").Out("WFConnection\n")
}

func (s drbdScript) prepare(f *run.Fake, i int) {
	switch i {
	case 2:
		f.Expect("drbdadm", "sh-ll-dev", "data").Out("/dev/loop0\n")
		s.down(f)
		f.Expect("drbdadm", "dump-md", "data").Fail(255, readCapture(s.t, "drbdadm-dump-md-none.txt"))
		f.Expect("blkid", "-p", "-o", "export", "/dev/loop0").Fail(2, "")
	case 3:
		s.down(f)
	case 4:
		s.up(f, "Secondary")
	}
}

func (s drbdScript) do(f *run.Fake, i int) {
	switch i {
	case 2:
		f.Expect("drbdadm", "create-md", "--force", "data").Kind(run.Mutation)
	case 3:
		f.Expect("drbdadm", "up", "data").Kind(run.Mutation)
	case 4:
		f.Expect("drbdadm", "primary", "--force", "data").Kind(run.Mutation)
	}
}

func (s drbdScript) check(f *run.Fake, i int) {
	switch i {
	case 2:
		s.down(f)
		f.Expect("drbdadm", "dump-md", "data").Fail(255, readCapture(s.t, "drbdadm-dump-md-none.txt"))
	case 3:
		s.down(f)
	case 4:
		s.up(f, "Secondary")
	}
}

func (s drbdScript) undo(f *run.Fake, i int) {
	switch i {
	case 2:
		s.down(f)
		f.Expect("drbdadm", "dump-md", "data").Out(readCapture(s.t, "drbdadm-dump-md.txt"))
		f.Expect("drbdadm", "--", "--force", "wipe-md", "data").Kind(run.Mutation)
	case 3:
		s.up(f, "Secondary")
		f.Expect("drbdadm", "down", "data").Kind(run.Mutation)
	case 4:
		s.up(f, "Primary")
		f.Expect("drbdadm", "secondary", "data").Kind(run.Mutation)
	}
}

func drbdSteps(dir string) []atomic.Params {
	r := twoNodes()
	r.Nodes[0].Disk = "/dev/loop0"
	return []atomic.Params{
		WriteConfig{Resource: r, Dir: dir},
		CreateMD{Resource: "data"},
		Up{Resource: "data"},
		Primary{Resource: "data", Force: true},
	}
}

func runDRBD(t *testing.T, f *run.Fake, fail string, steps []atomic.Params) error {
	return atomic.Run(context.Background(), "drbd-test", func(tx *atomic.Tx) error {
		for _, p := range steps {
			if err := tx.Do(context.Background(), p, nil); err != nil {
				return err
			}
		}
		return nil
	}, atomic.WithStateDir(t.TempDir()), atomic.WithRunner(f), atomic.WithFailpoints(fail))
}

func TestDRBDWorkflowTranscript(t *testing.T) {
	n := 4
	t.Run("ok", func(t *testing.T) {
		dir := t.TempDir()
		s := drbdScript{t, dir}
		f := run.NewFake(t)
		for i := 1; i <= n; i++ {
			s.prepare(f, i)
			s.do(f, i)
		}
		if err := runDRBD(t, f, "", drbdSteps(dir)); err != nil {
			t.Fatal(err)
		}
		f.Done()
		got, err := os.ReadFile(filepath.Join(dir, "data.res"))
		if err != nil || !strings.Contains(string(got), "address 10.1.1.31:7789;") {
			t.Fatalf("config: %v\n%s", err, got)
		}
	})
	for k := 1; k <= n; k++ {
		t.Run(fmt.Sprintf("fail-before-%d", k), func(t *testing.T) {
			dir := t.TempDir()
			// a neighbour's config must survive, and its port/minor be skipped
			other := filepath.Join(dir, "r0.res")
			os.WriteFile(other, []byte(readCapture(t, "etc/r0.res")), 0o644)
			s := drbdScript{t, dir}
			f := run.NewFake(t)
			for i := 1; i < k; i++ {
				s.prepare(f, i)
				s.do(f, i)
			}
			s.prepare(f, k)
			s.check(f, k)
			for i := k - 1; i >= 1; i-- {
				s.undo(f, i)
			}
			err := runDRBD(t, f, fmt.Sprintf("%d:before:error", k), drbdSteps(dir))
			if !errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != 1 {
				t.Fatalf("got %v", err)
			}
			f.Done()
			if _, err := os.Stat(filepath.Join(dir, "data.res")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("config left behind: %v", err)
			}
			if _, err := os.Stat(other); err != nil {
				t.Errorf("neighbour config gone: %v", err)
			}
		})
	}
}

func TestDRBDBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		p    atomic.Params
		want string
	}{
		{"up all", Up{Resource: "all"}, "resource name"},
		{"primary space", Primary{Resource: "a b"}, "resource name"},
		{"create-md dash", CreateMD{Resource: "-x"}, "resource name"},
		{"config name", WriteConfig{Resource: Resource{Name: "common", Nodes: twoNodes().Nodes}, Dir: dir}, "resource name"},
		{"config dir", WriteConfig{Resource: twoNodes(), Dir: "etc/drbd.d"}, "dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := run.NewFake(t)
			err := runDRBD(t, f, "", []atomic.Params{tc.p})
			if atomic.ExitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want exit 2 mentioning %q", err, tc.want)
			}
			if len(f.Calls()) != 0 {
				t.Errorf("commands ran: %v", f.Calls())
			}
		})
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Errorf("files written: %v", ents)
	}
	t.Run("signature", func(t *testing.T) {
		f := run.NewFake(t)
		f.Expect("drbdadm", "sh-ll-dev", "data").Out("/dev/loop0\n")
		f.Expect("drbdadm", "role", "data").Fail(10, readCapture(t, "drbdadm-role-down.txt"))
		f.Expect("drbdadm", "dump-md", "data").Fail(255, readCapture(t, "drbdadm-dump-md-none.txt"))
		f.Expect("blkid", "-p", "-o", "export", "/dev/loop0").Out("TYPE=ext4\n")
		err := runDRBD(t, f, "", []atomic.Params{CreateMD{Resource: "data"}})
		if atomic.ExitCode(err) != 2 || !strings.Contains(err.Error(), "ext4 signature") {
			t.Fatalf("got %v", err)
		}
		f.Done()
	})
	t.Run("config conflict", func(t *testing.T) {
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, "data.res"), []byte("resource data { on x { device minor 1; } }\n"), 0o644)
		err := runDRBD(t, run.NewFake(t), "", []atomic.Params{WriteConfig{Resource: twoNodes(), Dir: d}})
		if atomic.ExitCode(err) != 2 || !strings.Contains(err.Error(), "other content") {
			t.Fatalf("got %v", err)
		}
		if b, _ := os.ReadFile(filepath.Join(d, "data.res")); !strings.Contains(string(b), "device minor 1") {
			t.Error("existing config overwritten")
		}
	})
}

func TestConfigRerunIsNoop(t *testing.T) {
	dir := t.TempDir()
	w := WriteConfig{Resource: twoNodes(), Dir: dir}
	if err := runDRBD(t, run.NewFake(t), "", []atomic.Params{w}); err != nil {
		t.Fatalf("first run: %v", err)
	}
	// second run: same file, same port and minor, the step is a no-op. The
	// transaction fails after it and rolls back: the no-op's undo must not
	// run (it would remove the file the first run wrote); if it did, the
	// undo failpoint on step 1 would make the rollback incomplete (exit 3)
	later := errors.New("later failure")
	state := t.TempDir()
	err := atomic.Run(context.Background(), "x", func(tx *atomic.Tx) error {
		if err := tx.Do(context.Background(), w, nil); err != nil {
			return err
		}
		return later
	}, atomic.WithStateDir(state), atomic.WithRunner(run.NewFake(t)), atomic.WithFailpoints("1:undo:error"))
	if !errors.Is(err, later) || errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != atomic.ExitRolledBack {
		t.Fatalf("got %v (exit %d), want the later failure, rolled back without undoing the no-op", err, atomic.ExitCode(err))
	}
	if txs, _ := atomic.List(state); len(txs) != 1 {
		t.Fatalf("journals: %+v", txs)
	} else if d, _ := atomic.Show(state, txs[0].ID); len(d.Steps) != 1 || d.Steps[0].Status != atomic.StatusNoop {
		t.Errorf("second run's step: %+v, want a no-op", d.Steps)
	}
	if _, err := os.Stat(filepath.Join(dir, "data.res")); err != nil {
		t.Errorf("rollback of a no-op removed the existing file: %v", err)
	}
}

func TestHasMetadata(t *testing.T) {
	for _, tc := range []struct {
		file string
		code int
		want bool
	}{
		{"drbdadm-dump-md.txt", 0, true},
		{"drbdadm-dump-md-unclean.txt", 1, true},
		{"drbdadm-dump-md-none.txt", 255, false},
	} {
		f := run.NewFake(t)
		e := f.Expect("drbdadm", "dump-md", "data")
		if tc.code == 0 {
			e.Out(readCapture(t, tc.file))
		} else {
			e.Fail(tc.code, readCapture(t, tc.file))
		}
		got, err := HasMetadata(context.Background(), f, "data")
		if err != nil || got != tc.want {
			t.Errorf("%s: got %v %v, want %v", tc.file, got, err, tc.want)
		}
	}
}
