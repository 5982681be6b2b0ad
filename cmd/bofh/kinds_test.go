package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
)

const kindtestImport = "github.com/bofhkit/bofh/internal/kindtest"

// kindRefs is what the module's test files say about step kinds.
type kindRefs struct {
	cases   map[string][]string // kind → "file:line" of its kindtest.Case literals
	allowed map[string]string   // kind → reason, from kindtest.Allow literals
	covers  map[string]bool     // package dir → it calls kindtest.Cover
	errs    []string
}

// scanKindRefs parses every *_test.go file below root and collects the
// Kind of each kindtest.Case literal (also the elements of a
// []kindtest.Case literal written without their type) and each key and
// reason of a kindtest.Allow literal. A Case whose Kind is not a string
// literal, or an Allow entry that is not a literal pair with a reason, is
// an error: this test could not see it.
func scanKindRefs(t *testing.T, root string) *kindRefs {
	t.Helper()
	r := &kindRefs{cases: map[string][]string{}, allowed: map[string]string{}, covers: map[string]bool{}}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		name := ""
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == kindtestImport {
				name = "kindtest"
				if imp.Name != nil {
					name = imp.Name.Name
				}
			}
		}
		if name == "" {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		isType := func(e ast.Expr, typ string) bool {
			s, ok := e.(*ast.SelectorExpr)
			if !ok {
				return false
			}
			x, ok := s.X.(*ast.Ident)
			return ok && x.Name == name && s.Sel.Name == typ
		}
		where := func(n ast.Node) string {
			p := fset.Position(n.Pos())
			return rel + ":" + strconv.Itoa(p.Line)
		}
		had := false
		caseLit := func(cl *ast.CompositeLit) {
			had = true
			kind := ""
			for _, e := range cl.Elts {
				kv, ok := e.(*ast.KeyValueExpr)
				if !ok {
					r.errs = append(r.errs, where(cl)+": kindtest.Case without field names")
					return
				}
				if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Kind" {
					lit, ok := kv.Value.(*ast.BasicLit)
					if ok && lit.Kind == token.STRING {
						kind, _ = strconv.Unquote(lit.Value)
					} else {
						r.errs = append(r.errs, where(kv)+": kindtest.Case Kind is not a string literal")
						return
					}
				}
			}
			if kind == "" {
				r.errs = append(r.errs, where(cl)+": kindtest.Case without a Kind")
				return
			}
			r.cases[kind] = append(r.cases[kind], where(cl))
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if isType(n.Fun, "Cover") {
					r.covers[filepath.Dir(rel)] = true
				}
			case *ast.CompositeLit:
				switch {
				case isType(n.Type, "Case"):
					caseLit(n)
				case isType(n.Type, "Allow"):
					for _, e := range n.Elts {
						had = true
						kv, ok := e.(*ast.KeyValueExpr)
						if !ok {
							r.errs = append(r.errs, where(e)+": kindtest.Allow entry is not a pair of string literals")
							continue
						}
						k, ok1 := kv.Key.(*ast.BasicLit)
						v, ok2 := kv.Value.(*ast.BasicLit)
						if !ok1 || !ok2 || k.Kind != token.STRING || v.Kind != token.STRING {
							r.errs = append(r.errs, where(e)+": kindtest.Allow entry is not a pair of string literals")
							continue
						}
						kind, _ := strconv.Unquote(k.Value)
						why, _ := strconv.Unquote(v.Value)
						if strings.TrimSpace(why) == "" {
							r.errs = append(r.errs, where(e)+": kindtest.Allow entry "+kind+" has no reason")
							continue
						}
						r.allowed[kind] = why
					}
				default:
					if at, ok := n.Type.(*ast.ArrayType); ok && isType(at.Elt, "Case") {
						for _, e := range n.Elts {
							if cl, ok := e.(*ast.CompositeLit); ok && cl.Type == nil {
								caseLit(cl)
							}
						}
					}
				}
			}
			return true
		})
		if _, seen := r.covers[filepath.Dir(rel)]; had && !seen {
			r.covers[filepath.Dir(rel)] = false // unless another file calls Cover
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestEveryKindHasTranscript is the registry test of issue 11 §4: every
// step kind the bofh binary registers has a transcript test through
// internal/kindtest (a kindtest.Case in some package's test files, run by
// that package's kindtest.Cover, which makes it fail before Do, after Do
// and in its Undo), or an entry with a reason in a kindtest.Allow list.
// The test files are read with go/parser: test code cannot be imported,
// and this binary registers every kind. It lists every kind and where it
// is covered.
func TestEveryKindHasTranscript(t *testing.T) {
	refs := scanKindRefs(t, filepath.Join("..", ".."))
	for _, e := range refs.errs {
		t.Error(e)
	}
	registered := map[string]bool{}
	var lines []string
	for _, k := range atomic.Kinds() {
		registered[k.Kind] = true
		switch {
		case len(refs.cases[k.Kind]) > 0:
			lines = append(lines, k.Kind+": "+strings.Join(refs.cases[k.Kind], ", "))
		case refs.allowed[k.Kind] != "":
			lines = append(lines, k.Kind+": allowed: "+refs.allowed[k.Kind])
		default:
			lines = append(lines, k.Kind+": MISSING")
			t.Errorf("step kind %s has no transcript test: add a kindtest.Case to its package's kinds_test.go, or a kindtest.Allow entry with a reason", k.Kind)
		}
	}
	var unknown []string
	for k := range refs.cases {
		if !registered[k] {
			unknown = append(unknown, k+" (case at "+strings.Join(refs.cases[k], ", ")+")")
		}
	}
	for k := range refs.allowed {
		if !registered[k] {
			unknown = append(unknown, k+" (allow-list)")
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		t.Errorf("kindtest names %s, which is not a registered step kind", k)
	}
	for dir, ok := range refs.covers {
		if !ok {
			t.Errorf("%s has kindtest cases but no test calls kindtest.Cover", dir)
		}
	}
	t.Logf("%d step kinds:\n%s", len(lines), strings.Join(lines, "\n"))
}
