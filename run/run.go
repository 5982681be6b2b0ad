// Package run executes external commands for bofh: argv only (never a shell
// string), stdin, extra environment and a timeout through the context, with
// LC_ALL=C and binary paths that a site can override.
//
// Every command is marked as a Query (reads state) or a Mutation (changes
// it). The Local runner executes both; the DryRun runner executes queries
// and only records mutations; the Fake runner plays scripted expectations
// for transcript tests. A failed command returns an *Error that keeps the
// argv (secrets redacted), the exit code and the tail of stderr.
//
// Package run registers no step kinds.
package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Kind says whether a command only reads state or changes it.
type Kind int

const (
	// Query reads state; a dry run executes it.
	Query Kind = iota
	// Mutation changes state; a dry run records it instead of running it.
	Mutation
)

func (k Kind) String() string {
	if k == Mutation {
		return "mutation"
	}
	return "query"
}

// Cmd is one external command.
type Cmd struct {
	// Argv is the program and its arguments. Argv[0] is a bare program
	// name ("lvm") resolved through the runner's Paths, or an absolute path.
	Argv []string
	// Kind marks the command as a Query or a Mutation.
	Kind Kind
	// Stdin, when not nil, is written to the command's standard input.
	// Use a Secret for passphrases: it is never logged.
	Stdin []byte
	// Env holds extra KEY=VALUE entries added to the environment.
	Env []string
	// Secrets are values that must never appear in logs or errors; they
	// are replaced by "<redacted>" wherever they occur in argv, env or stderr.
	Secrets []Secret
	// Dir is the working directory; empty means the runner's.
	Dir string
	// Timeout bounds the command; zero means the context's deadline only.
	Timeout time.Duration
	// OkCodes lists exit codes other than 0 that count as success
	// (e.g. 100 for "reboot needed").
	OkCodes []int
}

// Q returns a Query command for argv.
func Q(argv ...string) Cmd { return Cmd{Argv: argv, Kind: Query} }

// M returns a Mutation command for argv.
func M(argv ...string) Cmd { return Cmd{Argv: argv, Kind: Mutation} }

// String renders the command for logs and dry-run output, quoting
// arguments that need it and redacting secrets.
func (c Cmd) String() string {
	var b strings.Builder
	for i, a := range c.Argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(quote(redact(a, c.Secrets)))
	}
	return b.String()
}

func quote(s string) string {
	if s == "" {
		return "''"
	}
	if strings.ContainsAny(s, " \t\n'\"\\$`*?[]{}()<>|&;#~") {
		return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return s
}

// Result is what a finished command produced.
type Result struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
	Duration time.Duration
}

// Runner executes commands.
type Runner interface {
	// Run executes c. A non-zero exit (not listed in c.OkCodes) or a
	// failure to start returns an *Error; the Result is still filled in.
	Run(ctx context.Context, c Cmd) (Result, error)
}

// Error is a failed command.
type Error struct {
	// Argv is the command line with secrets redacted.
	Argv []string
	// ExitCode is the exit status, or -1 when the command did not start
	// or was killed.
	ExitCode int
	// Stderr is the tail of standard error (secrets redacted).
	Stderr string
	// Stdout is the tail of standard output (secrets redacted).
	Stdout string
	// Err is the underlying cause (exec error, context error), if any.
	Err error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: exit %d", strings.Join(e.Argv, " "), e.ExitCode)
	if e.Err != nil && e.ExitCode < 0 {
		msg = fmt.Sprintf("%s: %v", strings.Join(e.Argv, " "), e.Err)
	}
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// ErrNotInstalled is wrapped by the error of a command whose program cannot
// be found.
var ErrNotInstalled = errors.New("program not installed")

// ExitCode returns the exit code of a command error, or -1 if err is not
// an *Error, or 0 for a nil error.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var e *Error
	if errors.As(err, &e) {
		return e.ExitCode
	}
	return -1
}

// StderrContains reports whether err is a command *Error whose stderr
// contains any of the substrings (case-insensitive). Tool packages build
// their classifiers (not found, exists, busy) on it.
func StderrContains(err error, subs ...string) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	low := strings.ToLower(e.Stderr + "\n" + e.Stdout)
	for _, s := range subs {
		if strings.Contains(low, strings.ToLower(s)) {
			return true
		}
	}
	return false
}

// Secret is a value that must never be logged, journaled or shown in argv:
// a passphrase, a BMC password. It marshals to JSON and prints as
// "<redacted>".
type Secret string

// Redacted is what a Secret prints and marshals as.
const Redacted = "<redacted>"

// String returns "<redacted>".
func (Secret) String() string { return Redacted }

// GoString returns "<redacted>" so %#v does not leak it either.
func (Secret) GoString() string { return Redacted }

// MarshalJSON marshals the secret as "<redacted>".
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText marshals the secret as "<redacted>" (YAML, text encoders).
func (Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// LogValue keeps the secret out of slog output.
func (Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// Reveal returns the secret's value. Call it only where the value is
// handed to a program through stdin, a file or the environment.
func (s Secret) Reveal() string { return string(s) }

// SecretFromFile reads a secret from a file, trimming one trailing newline.
func SecretFromFile(path string) (Secret, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	return Secret(strings.TrimSuffix(string(b), "\n")), nil
}

// minSubstringSecret is the shortest secret redacted wherever it occurs
// inside a longer string; a shorter one (a weak passphrase such as "x")
// would garble every error and show where its characters occur, so it is
// redacted only where it stands alone.
const minSubstringSecret = 4

func redact(s string, secrets []Secret) string {
	for _, sec := range secrets {
		switch {
		case len(sec) == 0:
		case len(sec) >= minSubstringSecret:
			s = strings.ReplaceAll(s, string(sec), Redacted)
		case strings.TrimSpace(s) == string(sec):
			s = Redacted
		}
	}
	return s
}

// Local runs commands on this machine.
type Local struct {
	// Paths maps bare program names to absolute paths (site overrides).
	Paths map[string]string
	// Log receives one debug record per command; nil uses slog.Default().
	Log *slog.Logger
	// TailBytes bounds the stderr/stdout kept in an *Error (default 4096).
	TailBytes int
}

// Resolve returns the path that argv0 runs as.
func (l *Local) Resolve(argv0 string) string {
	if p, ok := l.Paths[argv0]; ok && p != "" {
		return p
	}
	return argv0
}

// Run executes c on this machine.
func (l *Local) Run(ctx context.Context, c Cmd) (Result, error) {
	if len(c.Argv) == 0 {
		return Result{}, &Error{ExitCode: -1, Err: errors.New("empty argv")}
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	argv := append([]string{l.Resolve(c.Argv[0])}, c.Argv[1:]...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), "LC_ALL=C", "LANG=C"), c.Env...)
	cmd.Dir = c.Dir
	// Its own process group: a Ctrl-C at the terminal reaches bofh, which
	// stops at the next step boundary, not the command in the middle of
	// a step (or of an undo).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	start := time.Now()
	err := cmd.Run()
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), Duration: time.Since(start)}
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	} else {
		res.ExitCode = -1
	}
	log := l.Log
	if log == nil {
		log = slog.Default()
	}
	log.Debug("exec", "cmd", c.String(), "kind", c.Kind.String(), "exit", res.ExitCode, "duration", res.Duration)
	if err == nil || (res.ExitCode > 0 && containsInt(c.OkCodes, res.ExitCode)) {
		return res, nil
	}
	e := newError(c, res, l.TailBytes)
	switch {
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, os.ErrNotExist):
		e.Err = fmt.Errorf("%w: %v", ErrNotInstalled, err)
	case ctx.Err() != nil:
		e.Err = ctx.Err()
		e.ExitCode = -1
	default:
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			e.Err = err
		}
	}
	return res, e
}

func newError(c Cmd, res Result, tail int) *Error {
	if tail <= 0 {
		tail = 4096
	}
	argv := make([]string, len(c.Argv))
	for i, a := range c.Argv {
		argv[i] = redact(a, c.Secrets)
	}
	return &Error{
		Argv:     argv,
		ExitCode: res.ExitCode,
		Stderr:   redact(tailOf(res.Stderr, tail), c.Secrets),
		Stdout:   redact(tailOf(res.Stdout, tail), c.Secrets),
	}
}

func tailOf(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// DryRun executes queries through Inner and records mutations without
// running them, printing each to Out (if set) as "would run: …".
type DryRun struct {
	Inner Runner
	Out   io.Writer

	mu       sync.Mutex
	recorded []Cmd
}

// Run executes a Query through Inner; a Mutation is recorded and succeeds
// with empty output.
func (d *DryRun) Run(ctx context.Context, c Cmd) (Result, error) {
	if c.Kind == Query {
		return d.Inner.Run(ctx, c)
	}
	d.mu.Lock()
	d.recorded = append(d.recorded, c)
	d.mu.Unlock()
	if d.Out != nil {
		fmt.Fprintf(d.Out, "would run: %s\n", c.String())
	}
	return Result{}, nil
}

// Recorded returns the mutations recorded so far, in order.
func (d *DryRun) Recorded() []Cmd {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Cmd(nil), d.recorded...)
}

// Output runs a query and returns its standard output.
func Output(ctx context.Context, r Runner, argv ...string) ([]byte, error) {
	res, err := r.Run(ctx, Q(argv...))
	return res.Stdout, err
}

// Mutate runs a mutation and returns its error.
func Mutate(ctx context.Context, r Runner, argv ...string) error {
	_, err := r.Run(ctx, M(argv...))
	return err
}
