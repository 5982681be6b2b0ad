package kindtest

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

// selfBreak names what TestSelfKinds breaks (empty: nothing).
const selfBreak = "BOFH_KINDTEST_SELF_BREAK"

// mk is a step kind of this test: "touch <path>" through the runner, undone
// by "rm -f <path>", checked with "test -e <path>".
type mk struct {
	Path string `json:"path"`
}

func (mk) StepKind() string { return "kindtest.self.mk" }

// rmk is an irreversible kind of this test: "rm -f <path>" at commit.
type rmk struct {
	Path string `json:"path"`
}

func (rmk) StepKind() string { return "kindtest.self.rm" }

func init() {
	atomic.Register(atomic.Def[mk, struct{}, struct{}]{
		Doc: "test kind",
		Do: func(ctx context.Context, env *atomic.Env, p mk, _ struct{}) (struct{}, error) {
			return struct{}{}, run.Mutate(ctx, env.Runner, "touch", p.Path)
		},
		Undo: func(ctx context.Context, env *atomic.Env, p mk, _ struct{}, _ struct{}) error {
			if os.Getenv(selfBreak) == "undo" {
				return nil
			}
			return run.Mutate(ctx, env.Runner, "rm", "-f", p.Path)
		},
		Check: func(ctx context.Context, env *atomic.Env, p mk, _ struct{}) (bool, struct{}, error) {
			res, err := env.Runner.Run(ctx, run.Cmd{Argv: []string{"test", "-e", p.Path}, OkCodes: []int{1}})
			return err == nil && res.ExitCode == 0, struct{}{}, err
		},
	})
	atomic.Register(atomic.Def[rmk, struct{}, struct{}]{
		Doc:          "irreversible test kind",
		Irreversible: true,
		Do: func(ctx context.Context, env *atomic.Env, p rmk, _ struct{}) (struct{}, error) {
			return struct{}{}, run.Mutate(ctx, env.Runner, "rm", "-f", p.Path)
		},
	})
}

// mkScript is the script of mk steps on /a (step 1) and /b (step 2), and
// of an rmk of /a as step 2.
func mkScript(f *run.Fake, step int, phase Phase) {
	path := map[int]string{1: "/a", 2: "/b"}[step]
	switch phase {
	case Do:
		f.Expect("touch", path).Kind(run.Mutation)
	case CheckAbsent:
		f.Expect("test", "-e", path).Fail(1, "")
	case CheckPresent:
		f.Expect("test", "-e", path)
	case Undo:
		f.Expect("rm", "-f", path).Kind(run.Mutation)
	}
}

// TestSelfKinds runs the harness on this test's kinds; with
// $BOFH_KINDTEST_SELF_BREAK set it is the child of TestHarnessFails, run
// with something broken.
func TestSelfKinds(t *testing.T) {
	cases := []Case{
		{Kind: "kindtest.self.mk", Steps: []atomic.Params{mk{Path: "/a"}, mk{Path: "/b"}}, Script: mkScript},
		{Kind: "kindtest.self.rm", Steps: []atomic.Params{mk{Path: "/a"}, rmk{Path: "/a"}}, Script: func(f *run.Fake, step int, phase Phase) {
			if step == 2 && phase == Do {
				f.Expect("rm", "-f", "/a").Kind(run.Mutation)
				return
			}
			mkScript(f, step, phase)
		}},
	}
	allow := Allow{}
	if os.Getenv(selfBreak) == "case" {
		cases = cases[:1]
	}
	if os.Getenv(selfBreak) == "reason" {
		cases = cases[:1]
		allow["kindtest.self.rm"] = " "
	}
	Cover(t, []string{"kindtest.self."}, cases, allow)
}

// TestHarnessFails runs TestSelfKinds in a child with a do-nothing undo, a
// kind without a case, and an allow-list entry without a reason: each
// fails, saying why.
func TestHarnessFails(t *testing.T) {
	for _, tc := range []struct{ brk, want string }{
		{"undo", "fake runner: 2 expected commands not run: rm -f /b; rm -f /a"},
		{"case", "kind kindtest.self.rm: no kindtest.Case and no kindtest.Allow entry"},
		{"reason", `allow-list: "kindtest.self.rm" has no reason`},
	} {
		t.Run(tc.brk, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestSelfKinds$", "-test.count=1")
			cmd.Env = append(os.Environ(), selfBreak+"="+tc.brk)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("child: %v, want it to fail with %q:\n%s", err, tc.want, out)
			}
		})
	}
}
