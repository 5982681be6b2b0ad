package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bofhkit/bofh/internal/vmtest"
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

// TestGuestScriptFullMatrix runs the guest script on the host, as the guest
// does, with a fake test binary: BOFH_FULL_MATRIX set on the host reaches
// the binary, and when the guest's environment does not hold what the host
// asked for, the script fails before any test runs.
func TestGuestScriptFullMatrix(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake.test")
	script := "#!/bin/sh\necho '=== RUN   TestFake'\necho \"matrix=[${BOFH_FULL_MATRIX-}] args=$*\"\necho '--- PASS: TestFake (0.00s)'\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	drop := func(env []string) []string {
		var out []string
		for _, e := range env {
			if !strings.HasPrefix(e, vmtest.FullMatrixEnv+"=") {
				out = append(out, e)
			}
		}
		return out
	}
	add := func(env []string) []string { return append(env, vmtest.FullMatrixEnv+"=1") }
	same := func(env []string) []string { return env }
	tests := []struct {
		name   string
		host   string                  // BOFH_FULL_MATRIX on the host
		guest  func([]string) []string // what reaches the guest of the env labtest passes
		budget time.Duration
		rc     int
		want   []string // lines the output must hold
		ran    bool
	}{
		{"default", "", same, time.Hour, 0, []string{"matrix=[] args=-test.v -test.timeout 3600s -test.run ^(TestFake)$"}, true},
		{"full", "1", same, time.Hour, 0, []string{"matrix=[1] args=-test.v -test.timeout 3600s -test.run ^(TestFake)$"}, true},
		{"full-lost", "1", drop, time.Hour, 3, []string{"labtest: FAIL: the host asked for BOFH_FULL_MATRIX='1', the guest's tests would get '' (not forwarded): no test run"}, false},
		{"full-not-asked", "", add, time.Hour, 3, []string{"labtest: FAIL: the host asked for BOFH_FULL_MATRIX='', the guest's tests would get '1' (not forwarded): no test run"}, false},
		{"no-budget", "", same, 0, 1, []string{"labtest: FAIL: no time left for x/fake: the tests' budget of 0s is spent", "BOFH-PKG-RESULT 124 0 x/fake"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ge, err := newGuestEnv(func(k string) string {
				if k == vmtest.FullMatrixEnv {
					return tc.host
				}
				return ""
			})
			if err != nil {
				t.Fatal(err)
			}
			argv := append(ge.guestArgv(tc.budget), dir, bin, "x/fake", "^(TestFake)$")
			cmd := exec.Command(argv[0], argv[1:]...)
			// The guest's environment: stage 2's own, plus Config.Env.
			cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "BOFH_IN_VM=1"}, tc.guest(ge.env)...)
			out, err := cmd.CombinedOutput()
			rc := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				rc = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if rc != tc.rc {
				t.Errorf("exit %d, want %d\n%s", rc, tc.rc, out)
			}
			lines := strings.Split(string(out), "\n")
			for _, w := range tc.want {
				if !slices.Contains(lines, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if ran := strings.Contains(string(out), "=== RUN   TestFake"); ran != tc.ran {
				t.Errorf("test binary ran: %v, want %v\n%s", ran, tc.ran, out)
			}
		})
	}
}

func TestNewGuestEnv(t *testing.T) {
	tests := []struct {
		host    string
		env     []string
		timeout time.Duration
		wantErr bool
	}{
		{"", []string{"GOTRACEBACK=all"}, 30 * time.Minute, false},
		{"1", []string{"GOTRACEBACK=all", "BOFH_FULL_MATRIX=1"}, 2 * time.Hour, false},
		{"yes", nil, 0, true},
		{"0", nil, 0, true},
	}
	for _, tc := range tests {
		ge, err := newGuestEnv(func(k string) string {
			if k == vmtest.FullMatrixEnv {
				return tc.host
			}
			return "unrelated"
		})
		if (err != nil) != tc.wantErr {
			t.Errorf("BOFH_FULL_MATRIX=%q: err %v, want error %v", tc.host, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if diff := cmp.Diff(tc.env, ge.env); diff != "" {
			t.Errorf("BOFH_FULL_MATRIX=%q: guest env (-want +got):\n%s", tc.host, diff)
		}
		if got := defaultTimeout(ge.fullMatrix); got != tc.timeout {
			t.Errorf("BOFH_FULL_MATRIX=%q: default timeout %s, want %s", tc.host, got, tc.timeout)
		}
	}
	for _, c := range []struct{ timeout, budget time.Duration }{
		{30 * time.Minute, 25 * time.Minute},
		{2 * time.Hour, 115 * time.Minute},
		{8 * time.Minute, 6 * time.Minute},
	} {
		if got := testBudget(c.timeout); got != c.budget {
			t.Errorf("testBudget(%s) = %s, want %s", c.timeout, got, c.budget)
		}
	}
}

// TestOutputVerdict: a package passes only when its binary exited 0 AND
// started at least one test.
func TestOutputVerdict(t *testing.T) {
	out := `=== PACKAGE a
=== RUN   TestA
=== RUN   TestA/sub
--- PASS: TestA (1.00s)
=== RUN   TestHelper
    x_test.go:1: helper process
--- SKIP: TestHelper (0.00s)
PASS
BOFH-PKG-RESULT 0 3 a
=== PACKAGE b
testing: warning: no tests to run
PASS
BOFH-PKG-RESULT 0 1 b
=== PACKAGE c
=== RUN   TestC
--- FAIL: TestC (0.00s)
FAIL
BOFH-PKG-RESULT 1 2 c
=== PACKAGE d
PASS
BOFH-PKG-RESULT 0 0 d`
	w := &outputWatch{}
	var shown []string
	for _, l := range strings.Split(out, "\n") {
		if w.line(l) {
			shown = append(shown, l)
		}
	}
	for _, l := range shown {
		if strings.HasPrefix(l, "BOFH-PKG-RESULT") {
			t.Errorf("result marker shown: %q", l)
		}
	}
	var got []string
	for _, r := range w.results {
		_, line, ok := w.verdict(r)
		got = append(got, fmt.Sprintf("%v %s", ok, line))
	}
	want := []string{
		"true ok  \ta\t3s [in VM, 2 tests] (skipped: TestHelper)",
		"false FAIL\tb\t1s [in VM: exit 0 but ran no test]",
		"false FAIL\tc\t2s [in VM, exit 1]",
		"false FAIL\td\t0s [in VM: exit 0 but ran no test]",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}
}

// TestCheckFound: labtest fails when the packages hold no vm (lab) test
// for what it was asked to run.
func TestCheckFound(t *testing.T) {
	vm := pkg{ImportPath: "v", VM: true}
	lab := pkg{ImportPath: "l", Lab: true}
	tests := []struct {
		name        string
		pkgs        []pkg
		guest, host bool
		ok          bool
	}{
		{"none", nil, true, true, false},
		{"vm", []pkg{vm}, true, true, true},
		{"lab-only", []pkg{lab}, true, true, true},
		{"guest-only-without-vm", []pkg{lab}, true, false, false},
		{"host-only-without-lab", []pkg{vm}, false, true, false},
		{"host-only", []pkg{lab}, false, true, true},
	}
	for _, tc := range tests {
		if err := checkFound(tc.pkgs, []string{"./..."}, tc.guest, tc.host); (err == nil) != tc.ok {
			t.Errorf("%s: checkFound: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// TestFindPackagesNone: packages without vm or lab test files are not
// found (labtest then fails in checkFound).
func TestFindPackagesNone(t *testing.T) {
	pkgs, err := findPackages(t.Context(), []string{"github.com/bofhkit/bofh/internal/vmtest/cmd/vmrun"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) != 0 {
		t.Fatalf("findPackages = %+v, want none", pkgs)
	}
	if err := checkFound(pkgs, []string{"vmrun"}, true, true); err == nil {
		t.Fatal("checkFound accepts no packages")
	}
}
