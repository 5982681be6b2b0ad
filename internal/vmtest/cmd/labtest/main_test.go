package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func writeFile(t *testing.T, name, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTestFuncs(t *testing.T) {
	p := writeFile(t, "x_vm_test.go", `//go:build vm

package x

import (
	tt "testing"
)

func TestA(t *tt.T)              {}
func Test(t *tt.T)               {}
func Test_b(t *tt.T)             {}
func TestHelperProcess(t *tt.T)  {}
func Testlower(t *tt.T)          {}
func TestBench(b *tt.B)          {}
func TestTwo(a, b *tt.T)         {}
func TestRet(t *tt.T) error      { return nil }
func TestGen[P any](t *tt.T)     {}
func helper(t *tt.T)             {}
func BenchmarkX(b *tt.B)         {}
func FuzzX(f *tt.F)              {}
func ExampleX()                  {}
type s struct{}
func (s) TestMethod(t *tt.T)     {}
`)
	got, err := testFuncs(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"TestA", "Test", "Test_b", "TestHelperProcess"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("testFuncs = %q, want %q", got, want)
	}

	dot := writeFile(t, "dot_test.go", "package x\nimport . \"testing\"\nfunc TestDot(t *T) {}\n")
	if got, err := testFuncs(dot); err != nil || !reflect.DeepEqual(got, []string{"TestDot"}) {
		t.Errorf("dot import: %q, %v", got, err)
	}
	if _, err := testFuncs(writeFile(t, "bad_test.go", "package x\nfunc (")); err == nil {
		t.Error("a file that does not parse gave no error")
	}
}

func TestFileTagsVM(t *testing.T) {
	for _, c := range []struct {
		src     string
		vm, lab bool
	}{
		{"//go:build vm\n\npackage x\n", true, false},
		{"//go:build lab\n\npackage x\n", false, true},
		{"//go:build vm && linux\n\npackage x\n", true, false},
		{"//go:build vm || lab\n\npackage x\n", true, true},
		{"//go:build !vm\n\npackage x\n", false, false},
		{"//go:build linux\n\npackage x\n", false, false},
		{"// Copyright\n\npackage x\n", false, false},
	} {
		vm, lab, err := fileTags(writeFile(t, "f_test.go", c.src))
		if err != nil || vm != c.vm || lab != c.lab {
			t.Errorf("%q: vm=%v lab=%v err=%v, want vm=%v lab=%v", c.src, vm, lab, err, c.vm, c.lab)
		}
	}
}

func TestGuestRunPattern(t *testing.T) {
	tests := []string{"TestVMB", "TestVMA", "TestHelperProcess", "TestVMA"}
	for _, c := range []struct {
		user, want string
		ok         bool
	}{
		{"", "^(TestHelperProcess|TestVMA|TestVMB)$", true},
		{"VMA", "^(TestVMA)$", true},
		{"TestVM", "^(TestVMA|TestVMB)$", true},
		{"TestVMA/linear", "^(TestVMA)$/linear", true},
		{"VMA/a/b", "^(TestVMA)$/a/b", true},
		{"VMA|VMB/x", "^(TestVMA)$|^(TestVMB)$/x", true},
		{"(VMA|VMB)/x", "^(TestVMA|TestVMB)$/x", true},
		{"[/|]|VMB", "^(TestVMB)$", true},
		{"HostOnly", "", false},
		{"/sub", "^(TestHelperProcess|TestVMA|TestVMB)$/sub", true},
	} {
		got, ok, err := guestRunPattern(tests, c.user)
		if err != nil || got != c.want || ok != c.ok {
			t.Errorf("guestRunPattern(%q) = %q, %v, %v; want %q, %v", c.user, got, ok, err, c.want, c.ok)
		}
	}
	if _, _, err := guestRunPattern(tests, "(["); err == nil {
		t.Error("bad -run regexp gave no error")
	}
	if _, ok, _ := guestRunPattern(nil, ""); ok {
		t.Error("a package without vm tests has something to run")
	}
}

func TestSplitRegexp(t *testing.T) {
	for in, want := range map[string][][]string{
		"":          {{""}},
		"a":         {{"a"}},
		"a/b":       {{"a", "b"}},
		"a|b/c":     {{"a"}, {"b", "c"}},
		`a\/b`:      {{`a\/b`}},
		"(a/b)|[|]": {{"(a/b)"}, {"[|]"}},
	} {
		if got := splitRegexp(in); !reflect.DeepEqual(got, want) {
			t.Errorf("splitRegexp(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestFindPackagesVMTests checks, on this repository, that the smoke test's
// vm tests are found and the package's host tests are not among them.
func TestFindPackagesVMTests(t *testing.T) {
	pkgs, err := findPackages(t.Context(), []string{"github.com/bofhkit/bofh/internal/vmtest"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 1 || !pkgs[0].VM || !pkgs[0].Lab || !reflect.DeepEqual(pkgs[0].LabTests, []string{"TestPairNetwork"}) {
		t.Fatalf("findPackages = %+v", pkgs)
	}
	have := map[string]bool{}
	for _, n := range pkgs[0].VMTests {
		have[n] = true
	}
	if !have["TestSmokeGuest"] || !have["TestSmokeLVM"] {
		t.Errorf("vm tests %q lack the smoke tests", pkgs[0].VMTests)
	}
	for n := range have {
		if n == "TestRequireOutsideGuest" || n == "TestPairNetwork" || n == "TestModuleOrder" {
			t.Errorf("vm tests include %s, which is not in a vm file", n)
		}
	}
}
