package xen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

const (
	listHeader = "Name                                        ID   Mem VCPUs\tState\tTime(s)\n"
	listRun    = listHeader + "web                                          7  1024     2     r-----      3.1\n"
	listPaused = listHeader + "web                                          7  1024     2     --p---      3.1\n"
	notFound   = "web is an invalid domain identifier (rc=-6)\n"
)

func webConfig() DomuConfig {
	return DomuConfig{Name: "web", Type: "pvh", Kernel: "/boot/vmlinuz", Memory: 1024, VCPUs: 2,
		Disks: []Disk{{Protocol: "phy", Target: "/dev/vg0/web", Vdev: "xvda", Access: "w"}}}
}

func runSteps(ctx context.Context, steps []atomic.Params, opts ...atomic.Option) error {
	return atomic.Run(ctx, "xen-test", func(tx *atomic.Tx) error {
		for _, p := range steps {
			if err := tx.Do(ctx, p, nil); err != nil {
				return err
			}
		}
		return nil
	}, opts...)
}

// TestRecipeTranscript: write the config, create the domain, pause it; an
// error injected before or after every step gives exactly the reverse undo
// sequence, and the config file is gone at the end.
func TestRecipeTranscript(t *testing.T) {
	type phase struct {
		forward func(f *run.Fake, cfg string) // the step's own commands
		check   func(f *run.Fake)             // Check of the step when its outcome is uncertain, effect present
		absent  func(f *run.Fake)             // Check when the effect is absent (failure before)
		undo    func(f *run.Fake)
	}
	steps := []phase{
		{ // xen.config.write: no commands
			forward: func(*run.Fake, string) {}, check: func(*run.Fake) {}, absent: func(*run.Fake) {}, undo: func(*run.Fake) {},
		},
		{ // xen.domain.create
			forward: func(f *run.Fake, cfg string) {
				f.Expect("xl", "list", "web").Fail(1, notFound)
				f.Expect("xl", "create", cfg)
			},
			check:  func(f *run.Fake) { f.Expect("xl", "list", "web").Out(listRun) },
			absent: func(f *run.Fake) { f.Expect("xl", "list", "web").Fail(1, notFound) },
			undo:   func(f *run.Fake) { f.Expect("xl", "destroy", "web") },
		},
		{ // xen.domain.pause
			forward: func(f *run.Fake, _ string) {
				f.Expect("xl", "list", "web").Out(listRun)
				f.Expect("xl", "pause", "web")
			},
			check:  func(f *run.Fake) { f.Expect("xl", "list", "web").Out(listPaused) },
			absent: func(f *run.Fake) { f.Expect("xl", "list", "web").Out(listRun) },
			undo: func(f *run.Fake) {
				f.Expect("xl", "list", "web").Out(listPaused)
				f.Expect("xl", "unpause", "web")
			},
		},
	}
	for i := 1; i <= len(steps); i++ {
		for _, ph := range []string{"before", "after"} {
			t.Run(fmt.Sprintf("%d:%s", i, ph), func(t *testing.T) {
				dir := t.TempDir()
				cfg := ConfigPath(dir, "web")
				f := run.NewFake(t)
				for j := 0; j < i; j++ {
					if j == i-1 && ph == "before" {
						// the failing step probes but does not act
						switch j {
						case 1:
							f.Expect("xl", "list", "web").Fail(1, notFound)
						case 2:
							f.Expect("xl", "list", "web").Out(listRun)
						}
						continue
					}
					steps[j].forward(f, cfg)
				}
				// rollback, in reverse
				for j := i - 1; j >= 0; j-- {
					if j == i-1 {
						if ph == "before" {
							steps[j].absent(f)
							continue
						}
						steps[j].check(f)
					}
					steps[j].undo(f)
				}
				err := runSteps(context.Background(), []atomic.Params{
					WriteConfig{Dir: dir, Config: webConfig()},
					CreateDomain{Name: "web", Dir: dir},
					PauseDomain{Name: "web"},
				}, atomic.WithStateDir(t.TempDir()), atomic.WithRunner(f), atomic.WithFailpoints(fmt.Sprintf("%d:%s:error", i, ph)))
				if !errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != 1 {
					t.Fatalf("err = %v (exit %d)", err, atomic.ExitCode(err))
				}
				f.Done()
				if _, err := os.Stat(cfg); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("config left behind: %v", err)
				}
			})
		}
	}
}

func TestConfigWriteRestoresOldFile(t *testing.T) {
	dir := t.TempDir()
	cfg := ConfigPath(dir, "web")
	old := []byte("name = 'web'\nmemory = 256\n")
	if err := os.WriteFile(cfg, old, 0o640); err != nil {
		t.Fatal(err)
	}
	f := run.NewFake(t)
	f.Expect("xl", "list", "web").Fail(1, notFound) // create's probe
	f.Expect("xl", "list", "web").Fail(1, notFound) // its Check in the rollback
	err := runSteps(context.Background(), []atomic.Params{
		WriteConfig{Dir: dir, Config: webConfig()},
		CreateDomain{Name: "web", Dir: dir},
	}, atomic.WithStateDir(t.TempDir()), atomic.WithRunner(f), atomic.WithFailpoints("2:before:error"))
	if !errors.Is(err, atomic.ErrFailpoint) {
		t.Fatal(err)
	}
	f.Done()
	got, _ := os.ReadFile(cfg)
	fi, _ := os.Stat(cfg)
	if string(got) != string(old) || fi.Mode().Perm() != 0o640 {
		t.Fatalf("not restored: %q %v", got, fi.Mode())
	}
	// Writing the same content again is a no-op.
	want, _ := webConfig().Format()
	os.WriteFile(cfg, want, 0o600)
	if err := runSteps(context.Background(), []atomic.Params{WriteConfig{Dir: dir, Config: webConfig()}},
		atomic.WithStateDir(t.TempDir()), atomic.WithRunner(run.NewFake(t)), atomic.WithFailpoints("1:after:error")); err != nil {
		t.Fatalf("no-op write ran: %v", err)
	}
}

func TestShutdownDestroyTranscript(t *testing.T) {
	dir := t.TempDir()
	f := run.NewFake(t)
	// shutdown that times out: destroyed; then a destroy of another step
	// fails, and the rollback creates the domain again from its config.
	f.Expect("xl", "list", "web").Out(listRun)
	f.Expect("xl", "shutdown", "-w", "web").Fail(-1, "signal: killed")
	f.Expect("xl", "list", "web").Out(listRun)
	f.Expect("xl", "destroy", "web")
	f.Expect("xl", "list", "db").Fail(1, "db is an invalid domain identifier (rc=-6)\n")
	// rollback of step 1
	f.Expect("xl", "list", "web").Fail(1, notFound)
	f.Expect("xl", "create", ConfigPath(dir, "web"))
	err := runSteps(context.Background(), []atomic.Params{
		ShutdownDomain{DomainRef: DomainRef{Name: "web", Dir: dir}, Timeout: "1s"},
		DestroyDomain{Name: "db", Dir: dir},
	}, atomic.WithStateDir(t.TempDir()), atomic.WithRunner(f), atomic.WithFailpoints(""))
	if err == nil || atomic.ExitCode(err) != 1 {
		t.Fatalf("err = %v", err)
	}
	if want := "domain db: no such domain"; !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want %q", err, want)
	}
	f.Done()
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		step atomic.Params
	}{
		{"bad name", CreateDomain{Name: "web;reboot", Dir: dir}},
		{"numeric name", PauseDomain{Name: "7"}},
		{"relative dir", CreateDomain{Name: "web", Dir: "etc/xen"}},
		{"dotdot dir", WriteConfig{Dir: "/etc/xen/../..", Config: webConfig()}},
		{"bad timeout", ShutdownDomain{DomainRef: DomainRef{Name: "web", Dir: dir}, Timeout: "-1s"}},
		{"zero timeout", ShutdownDomain{DomainRef: DomainRef{Name: "web", Dir: dir}, Timeout: "0s"}},
		{"bad config", WriteConfig{Dir: dir, Config: DomuConfig{Name: "web", Extra: "a\nb"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := run.NewFake(t) // no command may run
			err := runSteps(context.Background(), []atomic.Params{tc.step}, atomic.WithStateDir(t.TempDir()), atomic.WithRunner(f))
			if !errors.Is(err, atomic.ErrInvalid) || atomic.ExitCode(err) != 2 {
				t.Fatalf("err = %v (exit %d), want invalid (2)", err, atomic.ExitCode(err))
			}
			f.Done()
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("files written: %v", ents)
			}
		})
	}
}
