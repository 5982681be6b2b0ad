// Command labtest runs bofh's real-kernel VM tests: it finds every package
// whose test files carry the build tag `vm`, compiles each package's test
// binary on the host with `go test -c -tags vm`, boots ONE lab guest and runs
// every binary inside it with -test.v (output streamed), then runs the
// host-driven `lab`-tagged tests (which boot guests themselves, e.g. the DRBD
// pair) with `go test -tags lab`. Only the tests declared in `vm` (`lab`)
// files run there: the packages' other tests are the ordinary `go test`'s.
// It exits non-zero if anything failed or the lab could not start, unless
// BOFH_SKIP_VM=1 (then it says so and exits 0).
//
// Usage:
//
//	go run ./internal/vmtest/cmd/labtest [-run regexp] [-no-host] [-no-guest] [packages...]
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
	timeout := flag.Duration("timeout", 30*time.Minute, "timeout for the whole guest run")
	flag.Parse()
	patterns := flag.Args()
	if len(patterns) == 0 {
		patterns = []string{"./..."}
	}
	if vmtest.SkipVM() {
		fmt.Println("labtest: BOFH_SKIP_VM=1: SKIPPING every VM lab test (in-guest and two-guest)")
		return
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
	failed := false
	if !*noGuest {
		if err := runGuest(ctx, pkgs, *run, *timeout); err != nil {
			fmt.Fprintln(os.Stderr, "labtest:", err)
			failed = true
		}
	}
	if !*noHost && ctx.Err() == nil {
		if err := runHost(ctx, pkgs, *run); err != nil {
			fmt.Fprintln(os.Stderr, "labtest:", err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
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

// guestScript runs each (dir, binary, name, run pattern) quadruple given as
// arguments, printing a result marker per package. It is a constant:
// package data only travels as argv.
const guestScript = `rc=0
while [ $# -ge 4 ]; do
	d=$1 b=$2 n=$3 run=$4; shift 4
	echo "=== PACKAGE $n"
	s=$(date +%s)
	(cd "$d" && "$b" -test.v -test.run "$run")
	r=$?
	echo "BOFH-PKG-RESULT $r $(( $(date +%s) - s )) $n"
	[ $r -eq 0 ] || rc=1
done
exit $rc`

func runGuest(ctx context.Context, pkgs []pkg, run string, timeout time.Duration) error {
	var vmPkgs []pkg
	var patterns []string
	for _, p := range pkgs {
		if !p.VM {
			continue
		}
		pat, ok, err := guestRunPattern(p.VMTests, run)
		if err != nil {
			return err
		}
		if !ok {
			fmt.Printf("labtest: %s: no vm test matches -run %q\n", p.ImportPath, run)
			continue
		}
		vmPkgs = append(vmPkgs, p)
		patterns = append(patterns, pat)
	}
	if len(vmPkgs) == 0 {
		fmt.Println("labtest: no package has `vm` tests to run")
		return nil
	}
	binDir, err := os.MkdirTemp("", "bofh-labtest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	argv := []string{"/bin/sh", "-c", guestScript, "labtest"}
	start := time.Now()
	for i, p := range vmPkgs {
		bin := filepath.Join(binDir, strings.ReplaceAll(p.ImportPath, "/", "_")+".test")
		fmt.Printf("labtest: compiling %s\n", p.ImportPath)
		cmd := exec.CommandContext(ctx, "go", "test", "-c", "-tags", "vm", "-o", bin, p.ImportPath)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Printf("FAIL\t%s [build failed]\n", p.ImportPath)
			return fmt.Errorf("compile %s: %w", p.ImportPath, err)
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
	results := make(chan []string, 1)
	go func() {
		var res []string
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
		for sc.Scan() {
			line := sc.Text()
			if f, ok := strings.CutPrefix(line, "BOFH-PKG-RESULT "); ok {
				res = append(res, f)
				continue
			}
			fmt.Println(line)
		}
		io.Copy(io.Discard, pr)
		results <- res
	}()
	rc, err := vmtest.Run(ctx, vmtest.Config{
		Shares:  shares,
		Stdout:  pw,
		Stderr:  os.Stderr,
		Log:     os.Stderr,
		Timeout: timeout,
		Env:     []string{"GOTRACEBACK=all"},
	}, argv...)
	pw.Close()
	res := <-results
	fmt.Println("labtest: in-guest results:")
	for _, r := range res {
		f := strings.SplitN(r, " ", 3)
		if len(f) != 3 {
			continue
		}
		if f[0] == "0" {
			fmt.Printf("ok  \t%s\t%ss [in VM]\n", f[2], f[1])
		} else {
			fmt.Printf("FAIL\t%s\t%ss [in VM, exit %s]\n", f[2], f[1], f[0])
		}
	}
	fmt.Printf("labtest: guest run took %.1fs\n", time.Since(start).Seconds())
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if rc != 0 {
		return errors.New("some in-guest test packages failed")
	}
	if len(res) != len(vmPkgs) {
		return fmt.Errorf("expected %d package results from the guest, got %d", len(vmPkgs), len(res))
	}
	return nil
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

func runHost(ctx context.Context, pkgs []pkg, run string) error {
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
		return err
	}
	if !ok {
		fmt.Println("labtest: no host-driven `lab` test to run")
		return nil
	}
	args := []string{"test", "-tags", "lab", "-count=1", "-v", "-timeout", "30m", "-p", "1", "-run", pattern}
	args = append(args, names...)
	fmt.Printf("labtest: host-driven lab tests: go %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("host-driven lab tests: %w", err)
	}
	return nil
}
