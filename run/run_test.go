package run

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLocal(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		cmd      Cmd
		wantOut  string
		wantCode int
		wantErr  string
	}{
		{"stdout", Q("echo", "hi"), "hi\n", 0, ""},
		{"stdin", Cmd{Argv: []string{"cat"}, Stdin: []byte("piped")}, "piped", 0, ""},
		{"locale is C", Q("sh", "-c", "echo $LC_ALL"), "C\n", 0, ""},
		{"extra env", Cmd{Argv: []string{"sh", "-c", "echo $FOO"}, Env: []string{"FOO=bar"}}, "bar\n", 0, ""},
		{"exit code and stderr tail", Q("sh", "-c", "echo oops >&2; exit 3"), "", 3, "exit 3: oops"},
		{"ok code", Cmd{Argv: []string{"sh", "-c", "exit 100"}, OkCodes: []int{100}}, "", 100, ""},
		{"not installed", Q("bofh-no-such-program"), "", -1, "program not installed"},
		{"timeout", Cmd{Argv: []string{"sleep", "5"}, Timeout: 50 * time.Millisecond}, "", -1, "deadline exceeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := &Local{}
			res, err := l.Run(ctx, tc.cmd)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("err %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
			if string(res.Stdout) != tc.wantOut || res.ExitCode != tc.wantCode {
				t.Fatalf("out %q code %d, want %q %d", res.Stdout, res.ExitCode, tc.wantOut, tc.wantCode)
			}
			if tc.wantErr != "" && ExitCode(err) != tc.wantCode {
				t.Fatalf("ExitCode(err) = %d, want %d", ExitCode(err), tc.wantCode)
			}
		})
	}
	if _, err := (&Local{}).Run(ctx, Q("bofh-no-such-program")); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("not installed: %v", err)
	}
}

func TestLocalPaths(t *testing.T) {
	l := &Local{Paths: map[string]string{"lvm": "/bin/echo"}}
	out, err := Output(context.Background(), l, "lvm", "version")
	if err != nil || string(out) != "version\n" {
		t.Fatalf("%q %v", out, err)
	}
}

func TestSecretsNeverShow(t *testing.T) {
	const pass = "hunter2-sekrit"
	sec := Secret(pass)
	var logbuf bytes.Buffer
	l := &Local{Log: slog.New(slog.NewTextHandler(&logbuf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	// a tool that echoes its input to stderr, as some do on failure
	_, err := l.Run(context.Background(), Cmd{Argv: []string{"sh", "-c", "cat >&2; exit 2"}, Stdin: []byte(sec.Reveal()), Secrets: []Secret{sec}})
	if err == nil {
		t.Fatal("want failure")
	}
	j, _ := json.Marshal(struct{ P Secret }{sec})
	for what, s := range map[string]string{
		"error": err.Error(), "log": logbuf.String(), "json": string(j),
		"%v": fmt.Sprintf("%v", sec), "%#v": fmt.Sprintf("%#v", sec), "%s": fmt.Sprintf("%s", sec),
	} {
		if strings.Contains(s, pass) {
			t.Errorf("%s leaks the secret: %s", what, s)
		}
	}
	if !strings.Contains(err.Error(), Redacted) {
		t.Errorf("error should show <redacted> where the secret was: %v", err)
	}
}

func TestDryRun(t *testing.T) {
	f := NewFake(t)
	f.Expect("lvm", "fullreport").Kind(Query).Out("{}")
	var out bytes.Buffer
	d := &DryRun{Inner: f, Out: &out}
	ctx := context.Background()
	if got, err := Output(ctx, d, "lvm", "fullreport"); err != nil || string(got) != "{}" {
		t.Fatalf("query: %q %v", got, err)
	}
	if err := Mutate(ctx, d, "lvcreate", "-n", "my lv", "vg0"); err != nil {
		t.Fatal(err)
	}
	f.Done()
	if rec := d.Recorded(); len(rec) != 1 || rec[0].Argv[0] != "lvcreate" {
		t.Fatalf("recorded %v", rec)
	}
	if want := "would run: lvcreate -n 'my lv' vg0\n"; out.String() != want {
		t.Fatalf("printed %q, want %q", out.String(), want)
	}
}

// recorder captures what a Fake reports instead of failing the test.
type recorder struct{ msgs []string }

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}

func TestFake(t *testing.T) {
	ctx := context.Background()
	t.Run("plays in order", func(t *testing.T) {
		f := NewFake(t)
		f.Expect("a").Out("1")
		f.Expect("b").Fail(5, "no such thing")
		if out, _ := Output(ctx, f, "a"); string(out) != "1" {
			t.Fatal(string(out))
		}
		err := Mutate(ctx, f, "b")
		if ExitCode(err) != 5 || !StderrContains(err, "NO SUCH") {
			t.Fatalf("err %v", err)
		}
		f.Done()
	})
	tests := []struct {
		name string
		play func(f *Fake)
		want string
	}{
		{"wrong argv", func(f *Fake) { f.Expect("a", "1"); Output(ctx, f, "a", "2") }, `got "a 2", want "a 1"`},
		{"unexpected", func(f *Fake) { Output(ctx, f, "x") }, "no more expectations"},
		{"wrong kind", func(f *Fake) { f.Expect("a").Kind(Mutation); Output(ctx, f, "a") }, "kind query, want mutation"},
		{"wrong stdin", func(f *Fake) { f.Expect("a").Stdin("x"); f.Run(ctx, Cmd{Argv: []string{"a"}, Stdin: []byte("y")}) }, "unexpected stdin"},
		{"left over", func(f *Fake) { f.Expect("a"); f.Done() }, "1 expected commands not run: a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &recorder{}
			tc.play(NewFake(r))
			if len(r.msgs) != 1 || !strings.Contains(r.msgs[0], tc.want) {
				t.Fatalf("reported %q, want %q", r.msgs, tc.want)
			}
		})
	}
}

func TestShortSecretsDoNotGarble(t *testing.T) {
	c := Cmd{Argv: []string{"cryptsetup", "--cipher", "aria-xts-plain64", "x"}, Secrets: []Secret{"x"}}
	if got, want := c.String(), "cryptsetup --cipher aria-xts-plain64 '<redacted>'"; got != want {
		t.Fatalf("%s, want %s", got, want)
	}
}

func TestCmdString(t *testing.T) {
	c := Cmd{Argv: []string{"cryptsetup", "open", "--key-file", "-", "/dev/loop0", "it's"}, Secrets: []Secret{"loop0"}}
	if got, want := c.String(), `cryptsetup open --key-file - '/dev/<redacted>' 'it'\''s'`; got != want {
		t.Fatalf("%s, want %s", got, want)
	}
}
