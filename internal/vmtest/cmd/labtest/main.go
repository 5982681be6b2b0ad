// Command labtest runs bofh's real-kernel VM tests: it finds every package
// whose test files carry the build tag `vm`, compiles each package's test
// binary on the host with `go test -c -tags vm`, boots ONE lab guest and runs
// every binary inside it with -test.v (output streamed), then runs the
// host-driven `lab`-tagged tests (which boot guests themselves, e.g. the DRBD
// pair) with `go test -tags lab`. Only the tests declared in `vm` (`lab`)
// files run there: the packages' other tests are the ordinary `go test`'s.
// It exits non-zero if anything failed, the lab could not start, or there
// was nothing to run (no package with vm or lab tests, a package whose
// binary ran no test), unless BOFH_SKIP_VM=1 (then it says so and exits 0).
//
// BOFH_FULL_MATRIX=1 (make test-full) is forwarded to the guest's tests,
// and the guest checks that it arrived: the expected value also travels as
// an argument of the guest script, which fails before any test runs when
// its environment disagrees. It raises the default timeout from 30 minutes
// to 2 hours (the full crash matrices take about an hour under TCG). The
// timeout bounds the guest run (boot to power-off); each test binary in the
// guest gets -test.timeout for what is left of it, so a hung test panics
// with its goroutines before qemu is killed. The host-driven lab tests get
// the same timeout.
//
// Usage:
//
//	go run ./internal/vmtest/cmd/labtest [-run regexp] [-no-host] [-no-guest] [-timeout d] [packages...]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/build/constraint"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/bofhkit/bofh/internal/vmtest"
)

type pkg struct {
	ImportPath string
	Dir        string
	VM, Lab    bool
	// VMTests are the Test functions declared in the package's vm-only
	// test files: the only tests run in the guest (the package's host
	// tests run on the host, in `go test`).
	VMTests []string
	// LabTests are the Test functions declared in its lab-only test files.
	LabTests []string
}

func main() {
	run := flag.String("run", "", "pass -test.run to the test binaries")
	noHost := flag.Bool("no-host", false, "skip the host-driven `lab` tests")
	noGuest := flag.Bool("no-guest", false, "skip the in-guest `vm` tests")
	timeout := flag.Duration("timeout", 0, "timeout for the whole guest run, and for the host-driven lab tests "+
		"(default 30m, or 2h with "+vmtest.FullMatrixEnv+"=1)")
	flag.Parse()
	patterns := flag.Args()
	if len(patterns) == 0 {
		patterns = []string{"./..."}
	}
	if vmtest.SkipVM() {
		fmt.Println("labtest: BOFH_SKIP_VM=1: SKIPPING every VM lab test (in-guest and two-guest)")
		return
	}
	ge, err := newGuestEnv(os.Getenv)
	if err != nil {
		fatal(err)
	}
	if *timeout == 0 {
		*timeout = defaultTimeout(ge.fullMatrix)
	}
	if ge.fullMatrix != "" {
		fmt.Printf("labtest: %s=%s: the full crash matrices (timeout %s)\n", vmtest.FullMatrixEnv, ge.fullMatrix, *timeout)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := vmtest.CheckHost(); err != nil {
		fatal(err)
	}
	pkgs, err := findPackages(ctx, patterns)
	if err != nil {
		fatal(err)
	}
	if err := checkFound(pkgs, patterns, !*noGuest, !*noHost); err != nil {
		fatal(err)
	}
	failed := false
	ran := 0
	if !*noGuest {
		n, err := runGuest(ctx, pkgs, *run, *timeout, ge)
		ran += n
		if err != nil {
			fmt.Fprintln(os.Stderr, "labtest:", err)
			failed = true
		}
	}
	if !*noHost && ctx.Err() == nil {
		n, err := runHost(ctx, pkgs, *run, *timeout)
		ran += n
		if err != nil {
			fmt.Fprintln(os.Stderr, "labtest:", err)
			failed = true
		}
	}
	if ran == 0 && !failed {
		fmt.Fprintf(os.Stderr, "labtest: FAIL: no vm or lab test matched -run %q: nothing ran\n", *run)
		failed = true
	}
	if failed {
		os.Exit(1)
	}
}

// defaultTimeout is the timeout of the guest run and of the host-driven
// lab tests: the default matrices take ~17 minutes of guest time under TCG
// on a shared machine, the full ones (make test-full) about an hour.
func defaultTimeout(fullMatrix string) time.Duration {
	if fullMatrix != "" {
		return 2 * time.Hour
	}
	return 30 * time.Minute
}

// checkFound fails when the packages that should hold vm (lab) tests hold
// none: a broken tag filter or package discovery must not pass as "nothing
// to test".
func checkFound(pkgs []pkg, patterns []string, guest, host bool) error {
	var vm, lab int
	for _, p := range pkgs {
		if p.VM {
			vm++
		}
		if p.Lab {
			lab++
		}
	}
	switch {
	case guest && host && vm+lab == 0:
		return fmt.Errorf("no package in %q has `vm` or `lab` tests: nothing to run (a broken build-tag filter?)", patterns)
	case guest && !host && vm == 0:
		return fmt.Errorf("no package in %q has `vm` tests: nothing to run in the guest", patterns)
	case host && !guest && lab == 0:
		return fmt.Errorf("no package in %q has `lab` tests: nothing to run on the host", patterns)
	}
	return nil
}

// guestEnv is what labtest passes from the host's environment to the
// guest's tests.
type guestEnv struct {
	// fullMatrix is the host's BOFH_FULL_MATRIX: "" or "1".
	fullMatrix string
	// env holds the KEY=VALUE pairs set in the guest.
	env []string
}

// newGuestEnv reads the host's environment through getenv.
func newGuestEnv(getenv func(string) string) (guestEnv, error) {
	ge := guestEnv{fullMatrix: getenv(vmtest.FullMatrixEnv), env: []string{"GOTRACEBACK=all"}}
	switch ge.fullMatrix {
	case "":
	case "1":
		ge.env = append(ge.env, vmtest.FullMatrixEnv+"=1")
	default:
		return ge, fmt.Errorf("%s=%q: want 1 or unset", vmtest.FullMatrixEnv, ge.fullMatrix)
	}
	return ge, nil
}

// guestArgv is the guest's command: guestScript with the value of
// BOFH_FULL_MATRIX the host expects the guest's environment to hold, the
// number of seconds the tests may take, then a quadruple per package.
func (ge guestEnv) guestArgv(budget time.Duration) []string {
	return []string{"/bin/sh", "-c", guestScript, "labtest", ge.fullMatrix, strconv.Itoa(int(budget.Seconds()))}
}

// testBudget is how much of the guest run's timeout the tests may spend:
// the rest is for booting (up to ~2.5 minutes under TCG on a loaded
// machine) and powering off.
func testBudget(timeout time.Duration) time.Duration {
	margin := 5 * time.Minute
	if timeout < 4*margin {
		margin = timeout / 4
	}
	return timeout - margin
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "labtest:", err)
	os.Exit(1)
}

// findPackages lists the packages matching patterns and marks those with
// `vm`- or `lab`-constrained test files.
func findPackages(ctx context.Context, patterns []string) ([]pkg, error) {
	args := append([]string{"list", "-e", "-tags", "vm lab", "-f",
		"{{.ImportPath}}\t{{.Dir}}\t{{join .TestGoFiles \",\"}},{{join .XTestGoFiles \",\"}}"}, patterns...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	var pkgs []pkg
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 3 {
			continue
		}
		p := pkg{ImportPath: f[0], Dir: f[1]}
		for _, name := range strings.Split(f[2], ",") {
			if name == "" {
				continue
			}
			path := filepath.Join(p.Dir, name)
			vm, lab, err := fileTags(path)
			if err != nil {
				return nil, err
			}
			p.VM = p.VM || vm
			p.Lab = p.Lab || lab
			if vm || lab {
				tests, err := testFuncs(path)
				if err != nil {
					return nil, err
				}
				if vm {
					p.VMTests = append(p.VMTests, tests...)
				}
				if lab {
					p.LabTests = append(p.LabTests, tests...)
				}
			}
		}
		if p.VM || p.Lab {
			pkgs = append(pkgs, p)
		}
	}
	return pkgs, nil
}

// fileTags reports whether a file is built only with tag vm, or only with tag lab.
func fileTags(path string) (vm, lab bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return false, false, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "package ") {
			break
		}
		if !constraint.IsGoBuild(line) {
			continue
		}
		expr, err := constraint.Parse(line)
		if err != nil {
			return false, false, fmt.Errorf("%s: %w", path, err)
		}
		with := func(tag string) func(string) bool {
			return func(t string) bool {
				return t == tag || t == "linux" || t == "amd64" || t == "unix" || t == "gc"
			}
		}
		base := expr.Eval(with(""))
		return expr.Eval(with("vm")) && !base, expr.Eval(with("lab")) && !base, nil
	}
	return false, false, nil
}

// testFuncs returns the names of the top-level `func TestXxx(*testing.T)`
// declared in a Go test file, the way `go test` recognises them.
func testFuncs(path string) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	testing := ""
	for _, imp := range f.Imports {
		if imp.Path.Value == `"testing"` {
			testing = "testing"
			if imp.Name != nil {
				testing = imp.Name.Name
			}
		}
	}
	var names []string
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Recv != nil || fn.Type.TypeParams != nil || !isTestName(fn.Name.Name) {
			continue
		}
		if fn.Type.Results != nil && len(fn.Type.Results.List) > 0 {
			continue
		}
		params := fn.Type.Params.List
		if len(params) != 1 || len(params[0].Names) > 1 {
			continue
		}
		if isTestingT(params[0].Type, testing) {
			names = append(names, fn.Name.Name)
		}
	}
	return names, nil
}

// isTestName reports whether name is Test followed by nothing or by a
// character that is not a lower-case letter (go test's rule).
func isTestName(name string) bool {
	rest, ok := strings.CutPrefix(name, "Test")
	if !ok {
		return false
	}
	if rest == "" {
		return true
	}
	r, _ := utf8.DecodeRuneInString(rest)
	return !unicode.IsLower(r)
}

// isTestingT reports whether expr is *testing.T (testing imported as pkg;
// "." when dot-imported).
func isTestingT(expr ast.Expr, pkg string) bool {
	star, ok := expr.(*ast.StarExpr)
	if !ok {
		return false
	}
	switch x := star.X.(type) {
	case *ast.SelectorExpr:
		id, ok := x.X.(*ast.Ident)
		return ok && pkg != "" && id.Name == pkg && x.Sel.Name == "T"
	case *ast.Ident:
		return pkg == "." && x.Name == "T"
	}
	return false
}

// guestRunPattern returns the -test.run pattern that restricts a package's
// vm test binary to its vm tests, combined with the user's -run filter. The
// filter is read as the testing package reads it: alternatives separated by
// top-level '|', each a list of slash-separated levels whose first level
// must match the top-level test name. ok is false when no test is left.
func guestRunPattern(tests []string, user string) (pattern string, ok bool, err error) {
	var alts []string
	for _, alt := range splitRegexp(user) {
		first, rest := alt[0], alt[1:]
		var re *regexp.Regexp
		if first != "" {
			if re, err = regexp.Compile(first); err != nil {
				return "", false, fmt.Errorf("-run %q: %w", user, err)
			}
		}
		var keep []string
		seen := map[string]bool{}
		for _, name := range tests {
			if seen[name] || (re != nil && !re.MatchString(name)) {
				continue
			}
			seen[name] = true
			keep = append(keep, name)
		}
		if len(keep) == 0 {
			continue
		}
		sort.Strings(keep)
		p := "^(" + strings.Join(keep, "|") + ")$"
		if len(rest) > 0 {
			p += "/" + strings.Join(rest, "/")
		}
		alts = append(alts, p)
	}
	if len(alts) == 0 {
		return "", false, nil
	}
	return strings.Join(alts, "|"), true, nil
}

// splitRegexp splits a -run pattern into its top-level '|' alternatives,
// each split into its '/' levels, as the testing package does.
func splitRegexp(s string) [][]string {
	var alts [][]string
	var levels []string
	cs, cp := 0, 0 // depth of [] and ()
	for i := 0; i < len(s); {
		switch s[i] {
		case '[':
			cs++
		case ']':
			if cs--; cs < 0 {
				cs = 0
			}
		case '(':
			if cs == 0 {
				cp++
			}
		case ')':
			if cs == 0 {
				cp--
			}
		case '\\':
			i++
		case '/', '|':
			if cs == 0 && cp == 0 {
				levels = append(levels, s[:i])
				if s[i] == '|' {
					alts = append(alts, levels)
					levels = nil
				}
				s = s[i+1:]
				i = 0
				continue
			}
		}
		i++
	}
	return append(alts, append(levels, s))
}

// guestScript checks that the guest's BOFH_FULL_MATRIX is what the host
// asked for ($1; exit 3 and no test run when not), then runs each (dir,
// binary, name, run pattern) quadruple that follows the time budget ($2,
// seconds) with -test.timeout set to what is left of the budget, printing
// a result marker per package. It is a constant: package data only travels
// as argv.
const guestScript = `want=$1 budget=$2
shift 2
if [ "${BOFH_FULL_MATRIX-}" != "$want" ]; then
	echo "labtest: FAIL: the host asked for BOFH_FULL_MATRIX='$want', the guest's tests would get '${BOFH_FULL_MATRIX-}' (not forwarded): no test run"
	exit 3
fi
start=$(date +%s)
rc=0
while [ $# -ge 4 ]; do
	d=$1 b=$2 n=$3 run=$4; shift 4
	echo "=== PACKAGE $n"
	s=$(date +%s)
	left=$((budget - (s - start)))
	if [ $left -le 0 ]; then
		echo "labtest: FAIL: no time left for $n: the tests' budget of ${budget}s is spent"
		r=124
	else
		(cd "$d" && "$b" -test.v -test.timeout "${left}s" -test.run "$run")
		r=$?
	fi
	echo "BOFH-PKG-RESULT $r $(( $(date +%s) - s )) $n"
	[ $r -eq 0 ] || rc=1
done
exit $rc`

// pkgOutput is what the guest's output says about one package's run.
type pkgOutput struct {
	name    string
	topRuns int      // top-level tests started (=== RUN   TestX)
	skipped []string // top-level tests skipped
	noTests bool     // the binary said it had no tests to run
}

// outputWatch reads the guest script's output: it passes every line on but
// the result markers, which it collects, and notes per package the tests
// that ran and were skipped.
type outputWatch struct {
	results []string
	pkgs    map[string]*pkgOutput
	cur     *pkgOutput
}

func (w *outputWatch) line(l string) (show bool) {
	if w.pkgs == nil {
		w.pkgs = map[string]*pkgOutput{}
	}
	if f, ok := strings.CutPrefix(l, "BOFH-PKG-RESULT "); ok {
		w.results = append(w.results, f)
		w.cur = nil
		return false
	}
	if n, ok := strings.CutPrefix(l, "=== PACKAGE "); ok {
		w.cur = &pkgOutput{name: n}
		w.pkgs[n] = w.cur
		return true
	}
	if w.cur == nil {
		return true
	}
	switch {
	case strings.HasPrefix(l, "=== RUN   ") && !strings.Contains(l, "/"):
		w.cur.topRuns++
	case strings.HasPrefix(l, "--- SKIP: "):
		name, _, _ := strings.Cut(strings.TrimPrefix(l, "--- SKIP: "), " ")
		w.cur.skipped = append(w.cur.skipped, name)
	case l == "testing: warning: no tests to run":
		w.cur.noTests = true
	}
	return true
}

// verdict reads one result marker ("rc seconds name") against what the
// package's output showed: a package that exited 0 but ran no test fails.
func (w *outputWatch) verdict(r string) (name, line string, ok bool) {
	f := strings.SplitN(r, " ", 3)
	if len(f) != 3 {
		return "", fmt.Sprintf("FAIL\t? [bad result line %q]", r), false
	}
	name = f[2]
	o := w.pkgs[name]
	switch {
	case f[0] != "0":
		return name, fmt.Sprintf("FAIL\t%s\t%ss [in VM, exit %s]", name, f[1], f[0]), false
	case o == nil || o.topRuns == 0 || o.noTests:
		return name, fmt.Sprintf("FAIL\t%s\t%ss [in VM: exit 0 but ran no test]", name, f[1]), false
	}
	line = fmt.Sprintf("ok  \t%s\t%ss [in VM, %d tests]", name, f[1], o.topRuns)
	if len(o.skipped) > 0 {
		line += fmt.Sprintf(" (skipped: %s)", strings.Join(o.skipped, " "))
	}
	return name, line, true
}

// runGuest runs the packages' vm tests in one guest and returns how many
// packages it ran.
func runGuest(ctx context.Context, pkgs []pkg, run string, timeout time.Duration, ge guestEnv) (int, error) {
	var vmPkgs []pkg
	var patterns []string
	for _, p := range pkgs {
		if !p.VM {
			continue
		}
		pat, ok, err := guestRunPattern(p.VMTests, run)
		if err != nil {
			return 0, err
		}
		if !ok {
			fmt.Printf("labtest: %s: no vm test matches -run %q\n", p.ImportPath, run)
			continue
		}
		vmPkgs = append(vmPkgs, p)
		patterns = append(patterns, pat)
	}
	if len(vmPkgs) == 0 {
		fmt.Printf("labtest: no `vm` test matches -run %q\n", run)
		return 0, nil
	}
	binDir, err := os.MkdirTemp("", "bofh-labtest-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(binDir)
	budget := testBudget(timeout)
	argv := ge.guestArgv(budget)
	start := time.Now()
	for i, p := range vmPkgs {
		bin := filepath.Join(binDir, strings.ReplaceAll(p.ImportPath, "/", "_")+".test")
		fmt.Printf("labtest: compiling %s\n", p.ImportPath)
		cmd := exec.CommandContext(ctx, "go", "test", "-c", "-tags", "vm", "-o", bin, p.ImportPath)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Printf("FAIL\t%s [build failed]\n", p.ImportPath)
			return 0, fmt.Errorf("compile %s: %w", p.ImportPath, err)
		}
		fmt.Printf("labtest: %s: in the guest: -test.run %s\n", p.ImportPath, patterns[i])
		argv = append(argv, p.Dir, bin, p.ImportPath, patterns[i])
	}
	fmt.Printf("labtest: compiled %d test binaries in %.1fs\n", len(vmPkgs), time.Since(start).Seconds())
	shares := []vmtest.Share{{HostPath: binDir, ReadOnly: true}}
	if wd, err := os.Getwd(); err == nil && hiddenInGuest(wd) {
		shares = append(shares, vmtest.Share{HostPath: moduleRoot(wd), ReadOnly: true})
	}
	pr, pw := io.Pipe()
	done := make(chan *outputWatch, 1)
	go func() {
		w := &outputWatch{}
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
		for sc.Scan() {
			if line := sc.Text(); w.line(line) {
				fmt.Println(line)
			}
		}
		io.Copy(io.Discard, pr)
		done <- w
	}()
	fmt.Printf("labtest: guest run timeout %s, of which the tests may take %s\n", timeout, budget)
	rc, err := vmtest.Run(ctx, vmtest.Config{
		Shares:  shares,
		Stdout:  pw,
		Stderr:  os.Stderr,
		Log:     os.Stderr,
		Timeout: timeout,
		Env:     ge.env,
	}, argv...)
	pw.Close()
	w := <-done
	fmt.Println("labtest: in-guest results:")
	bad := 0
	for _, r := range w.results {
		_, line, ok := w.verdict(r)
		fmt.Println(line)
		if !ok {
			bad++
		}
	}
	fmt.Printf("labtest: guest run took %.1fs\n", time.Since(start).Seconds())
	switch {
	case err != nil:
		return len(vmPkgs), fmt.Errorf("lab: %w", err)
	case len(w.results) == 0 && rc != 0:
		return len(vmPkgs), fmt.Errorf("the guest script failed before running any package (exit %d)", rc)
	case rc != 0 || bad > 0:
		return len(vmPkgs), errors.New("some in-guest test packages failed")
	case len(w.results) != len(vmPkgs):
		return len(vmPkgs), fmt.Errorf("expected %d package results from the guest, got %d", len(vmPkgs), len(w.results))
	}
	return len(vmPkgs), nil
}

// hiddenInGuest reports whether path lies under a directory the guest
// covers with its own tmpfs.
func hiddenInGuest(path string) bool {
	for _, p := range []string{"/tmp", "/run", "/dev/shm"} {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

func moduleRoot(dir string) string {
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
	}
	return dir
}

// runHost runs the host-driven lab tests and returns how many packages it
// ran.
func runHost(ctx context.Context, pkgs []pkg, run string, timeout time.Duration) (int, error) {
	var names, tests []string
	for _, p := range pkgs {
		if p.Lab {
			names = append(names, p.ImportPath)
			tests = append(tests, p.LabTests...)
		}
	}
	// Only the tests of the lab files: the packages' other tests are
	// run by the ordinary `go test`.
	pattern, ok, err := guestRunPattern(tests, run)
	if err != nil {
		return 0, err
	}
	if !ok {
		fmt.Printf("labtest: no host-driven `lab` test matches -run %q\n", run)
		return 0, nil
	}
	args := []string{"test", "-tags", "lab", "-count=1", "-v", "-timeout", timeout.String(), "-p", "1", "-run", pattern}
	args = append(args, names...)
	fmt.Printf("labtest: host-driven lab tests: go %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return len(names), fmt.Errorf("host-driven lab tests: %w", err)
	}
	return len(names), nil
}
