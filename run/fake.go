package run

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// TB is the part of testing.TB the Fake reports through.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
}

// Fake is a scripted Runner for transcript tests. Expectations are played
// in exact order; a command that does not match the next expectation, or
// any command after the last, fails the test (through T) and returns an
// error. Call Done at the end to check every expectation was used.
type Fake struct {
	T TB

	mu    sync.Mutex
	exp   []*Expect
	next  int
	calls []Cmd
}

// Expect is one scripted command and its canned outcome.
type Expect struct {
	argv   []string
	kind   *Kind
	stdin  *string
	stdout string
	stderr string
	code   int
}

// NewFake returns a Fake reporting to t.
func NewFake(t TB) *Fake { return &Fake{T: t} }

// Expect appends an expected command with exactly this argv.
func (f *Fake) Expect(argv ...string) *Expect {
	e := &Expect{argv: argv}
	f.mu.Lock()
	f.exp = append(f.exp, e)
	f.mu.Unlock()
	return e
}

// Out sets the canned standard output.
func (e *Expect) Out(s string) *Expect { e.stdout = s; return e }

// Fail makes the command exit with code and stderr.
func (e *Expect) Fail(code int, stderr string) *Expect { e.code, e.stderr = code, stderr; return e }

// Kind requires the command to be marked k.
func (e *Expect) Kind(k Kind) *Expect { e.kind = &k; return e }

// Stdin requires the command's stdin to equal s.
func (e *Expect) Stdin(s string) *Expect { e.stdin = &s; return e }

// Run plays the next expectation.
func (f *Fake) Run(_ context.Context, c Cmd) (Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	fail := func(msg string) (Result, error) {
		if f.T != nil {
			f.T.Helper()
			f.T.Errorf("fake runner: %s", msg)
		}
		return Result{ExitCode: -1}, &Error{Argv: c.Argv, ExitCode: -1, Err: fmt.Errorf("fake runner: %s", msg)}
	}
	if f.next >= len(f.exp) {
		return fail(fmt.Sprintf("unexpected command %q (no more expectations)", c.String()))
	}
	e := f.exp[f.next]
	if !slices.Equal(e.argv, c.Argv) {
		return fail(fmt.Sprintf("command %d: got %q, want %q", f.next+1, c.String(), Cmd{Argv: e.argv}.String()))
	}
	if e.kind != nil && *e.kind != c.Kind {
		return fail(fmt.Sprintf("command %d %q: kind %s, want %s", f.next+1, c.String(), c.Kind, *e.kind))
	}
	if e.stdin != nil && *e.stdin != string(c.Stdin) {
		return fail(fmt.Sprintf("command %d %q: unexpected stdin", f.next+1, c.String()))
	}
	f.next++
	res := Result{Stdout: []byte(e.stdout), Stderr: []byte(e.stderr), ExitCode: e.code}
	if e.code != 0 && !containsInt(c.OkCodes, e.code) {
		return res, newError(c, res, 0)
	}
	return res, nil
}

// Calls returns every command run so far.
func (f *Fake) Calls() []Cmd {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Cmd(nil), f.calls...)
}

// Done fails the test if some expectations were not used.
func (f *Fake) Done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.next < len(f.exp) && f.T != nil {
		f.T.Helper()
		var left []string
		for _, e := range f.exp[f.next:] {
			left = append(left, Cmd{Argv: e.argv}.String())
		}
		f.T.Errorf("fake runner: %d expected commands not run: %s", len(left), strings.Join(left, "; "))
	}
}
