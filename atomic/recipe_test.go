package atomic

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRecipeValidate(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // substring of the error; "" = valid
	}{
		{"valid with refs", `
name: ok
steps:
  - id: a
    kind: test.touch
    with: {dir: /tmp, name: x}
  - kind: test.touch
    with: {dir: /tmp, name: "${a.path}-2"}
`, ""},
		{"unknown kind", "name: x\nsteps:\n  - kind: nope.nope\n", `unknown step kind "nope.nope"`},
		{"unknown field", "name: x\nsteps:\n  - kind: test.touch\n    with: {dir: /tmp, nmae: x}\n", `unknown field "nmae"`},
		{"unknown top-level field", "name: x\nstep: []\n", "field step not found"},
		{"wrong type", "name: x\nsteps:\n  - kind: test.touch\n    with: {dir: [1], name: x}\n", "cannot unmarshal"},
		{"validate fails", "name: x\nsteps:\n  - kind: test.touch\n    with: {dir: /tmp, name: x, bad: true}\n", "bad on purpose"},
		{"ref to later step", "name: x\nsteps:\n  - kind: test.touch\n    with: {dir: /tmp, name: '${b.path}'}\n  - id: b\n    kind: test.touch\n    with: {dir: /tmp, name: y}\n", `no earlier step has id "b"`},
		{"ref to missing field", "name: x\nsteps:\n  - id: a\n    kind: test.touch\n    with: {dir: /tmp, name: x}\n  - kind: test.touch\n    with: {dir: /tmp, name: '${a.size}'}\n", `has no field "size"`},
		{"control character in the name (issue 12 case 14)", "name: \"web\\rcommitted\"\nsteps:\n  - kind: test.touch\n    with: {dir: /tmp, name: x}\n", "control characters"},
		{"ref into a string (issue 12 case 14)", "name: x\nsteps:\n  - id: a\n    kind: test.touch\n    with: {dir: /tmp, name: x}\n  - kind: test.touch\n    with: {dir: /tmp, name: '${a.path.deeper}'}\n", `"path" is a string, not an object`},
		{"malformed ref", "name: x\nsteps:\n  - id: a\n    kind: test.touch\n    with: {dir: /tmp, name: x}\n  - kind: test.touch\n    with: {dir: /tmp, name: '${a}'}\n", "want ${step-id.field}"},
		{"duplicate id", "name: x\nsteps:\n  - id: a\n    kind: test.touch\n    with: {dir: /tmp, name: x}\n  - id: a\n    kind: test.touch\n    with: {dir: /tmp, name: y}\n", `id "a" used twice`},
		{"no name", "steps:\n  - kind: test.touch\n    with: {dir: /tmp, name: x}\n", "recipe has no name"},
		{"no steps", "name: x\n", "recipe has no steps"},
		{"two documents", "name: x\n---\nname: y\n", "more than one YAML document"},
		{"not yaml", "name: [", "recipe:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRecipe([]byte(tc.yaml))
			if err == nil {
				err = r.Validate()
			}
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestRecipeEscapes(t *testing.T) {
	r, err := ParseRecipe([]byte("name: x\nsteps:\n  - id: a\n    kind: test.touch\n    with: {dir: /tmp, name: x}\n  - kind: test.touch\n    with: {dir: /tmp, name: 'HOME=$${HOME} path=${a.path} $${nope.x}'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil {
		t.Fatalf("an escaped $${…} is not a reference: %v", err)
	}
	got, err := substitute(r.Steps[1].With, map[string]map[string]any{"a": {"path": "/tmp/x"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "HOME=${HOME} path=/tmp/x ${nope.x}"; got.(map[string]any)["name"] != want {
		t.Fatalf("got %q, want %q", got.(map[string]any)["name"], want)
	}
	if v, _ := substitute("$${a.path}", nil); v != "${a.path}" {
		t.Fatalf("a whole-string escape: %q", v)
	}
}

func TestRecipeApplyResolvesRefsAndResumes(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	y := fmt.Sprintf(`
name: refs
steps:
  - id: first
    kind: test.touch
    with: {dir: %[1]q, name: one}
  - id: second
    kind: test.touch
    with: {dir: %[1]q, name: "two"}
  - kind: test.touch
    with: {dir: %[1]q, name: "${second.path}"}
`, dir)
	r, err := ParseRecipe([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	// ${second.path} is absolute, so Join(dir, it) is inside dir: it names
	// dir+dir/two. Make that directory so the step can succeed.
	os.MkdirAll(filepath.Join(dir, dir), 0o755)
	id, err := Apply(context.Background(), r, WithStateDir(state), WithFailpoints("3:before:error"))
	if ExitCode(err) != ExitRolledBack {
		t.Fatalf("apply: %v", err)
	}
	d, _ := Show(state, id)
	if d.Steps[2].Status != StatusUncertain && d.Steps[2].Kind != "test.touch" {
		t.Fatalf("step 3: %+v", d.Steps[2])
	}
	want := `{"dir":"` + dir + `","name":"` + filepath.Join(dir, "two") + `"}`
	if string(d.Steps[2].Params) != want {
		t.Fatalf("resolved params %s, want %s", d.Steps[2].Params, want)
	}
	if !slices.Equal(readLog(t, dir), []string{"do:one", "do:two", "undo:two", "undo:one"}) {
		t.Fatalf("calls %v", readLog(t, dir))
	}
}

func TestResumeRefusesNonRecipeAndFinishedTx(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	tx, err := Begin(context.Background(), "go-code", WithStateDir(state), WithID("gocode"))
	if err != nil {
		t.Fatal(err)
	}
	tx.Do(context.Background(), touch{Dir: dir, Name: "a"}, nil)
	tx.Close()
	if err := ResumeID(context.Background(), "gocode", WithStateDir(state)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("resume of Go tx: %v", err)
	}
	if err := RollbackID(context.Background(), "gocode", nil, WithStateDir(state)); err != nil {
		t.Fatal(err)
	}
	if err := ResumeID(context.Background(), "gocode", WithStateDir(state)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("resume of rolled-back tx: %v", err)
	}
	if err := ResumeID(context.Background(), "nope", WithStateDir(state)); !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNotFound) {
		t.Fatalf("resume of missing tx: %v", err)
	}
}

func TestForget(t *testing.T) {
	dir, state := t.TempDir(), t.TempDir()
	tx, _ := Begin(context.Background(), "x", WithStateDir(state), WithID("f1"))
	tx.Do(context.Background(), touch{Dir: dir, Name: "a"}, nil)
	tx.Close()
	if err := Forget(state, "f1", false); !errors.Is(err, ErrInvalid) {
		t.Fatalf("forget interrupted without force: %v", err)
	}
	if err := Forget(state, "f1", true); err != nil {
		t.Fatal(err)
	}
	if txs, _ := List(state); len(txs) != 0 {
		t.Fatalf("still listed: %v", txs)
	}
}

func FuzzParseRecipe(f *testing.F) {
	f.Add([]byte("name: x\nsteps:\n  - id: a\n    kind: test.touch\n    with: {dir: /tmp, name: '${a.path}'}\n"))
	f.Add([]byte("{\"name\":\"j\",\"steps\":[{\"kind\":\"file.write\",\"with\":{\"path\":\"/x\"}}]}"))
	f.Add([]byte("name: &a x\nsteps: *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRecipe(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("parse error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if err := r.Validate(); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("validate error does not wrap ErrInvalid: %v", err)
		}
		_, _ = substitute(map[string]any{"x": "${a.b}"}, map[string]map[string]any{})
	})
}
