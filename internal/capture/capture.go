// Package capture lets parser tests read the real tool output that
// `make testdata-capture` records under testdata/capture/<dir>/ (see its
// README.md), and makes sure none of it goes unread: Open lists a capture
// directory, Read returns one capture with its exit status and stderr, and
// when the test ends every capture it did not Read fails it by name.
//
// A capture F is the command's stdout; F.meta holds "command:" and
// "exit:" lines and F.stderr its stderr (only when non-empty). Captures
// named err-* are failures recorded on purpose: Open fails the test on an
// err-* capture that exited 0, or a capture with a non-zero exit that is
// not named err-*, so a mislabelled capture cannot hide.
//
// It is internal: a test helper for bofh's own packages.
package capture

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/bofhkit/bofh/run"
)

// Side-file suffixes written beside each capture.
const (
	MetaSuffix   = ".meta"
	StderrSuffix = ".stderr"
)

// ErrPrefix starts the name of every capture of a command that failed.
const ErrPrefix = "err-"

// Capture is one recorded command.
type Capture struct {
	// Name is the file name inside its directory, e.g. "blkid-ext4.txt".
	Name string
	// Command is the command line from the .meta file.
	Command string
	// Exit is the exit status from the .meta file.
	Exit int
	// Stdout is what the command wrote on stdout (the capture file).
	Stdout []byte
	// Stderr is what it wrote on stderr (the .stderr file, or empty).
	Stderr []byte
}

// Err returns the error a run.Runner returns for this command: nil when
// it exited 0, else a *run.Error with its argv, exit code, stderr and
// stdout, as run.Local builds it.
func (c Capture) Err() error {
	if c.Exit == 0 {
		return nil
	}
	return &run.Error{Argv: strings.Fields(c.Command), ExitCode: c.Exit, Stderr: string(c.Stderr), Stdout: string(c.Stdout)}
}

// Dir is one capture directory as a test reads it.
type Dir struct {
	name  string
	path  string
	names []string

	mu   sync.Mutex
	read map[string]bool
}

// Root returns the repository's testdata/capture directory, found by
// walking up from the working directory to go.mod.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("capture: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "testdata", "capture"), nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("capture: no go.mod above the working directory")
		}
		dir = up
	}
}

// List returns the capture names in dir (testdata/capture/<dir>): every
// file except the .meta and .stderr side files and README files.
func List(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || strings.HasSuffix(n, MetaSuffix) || strings.HasSuffix(n, StderrSuffix) || strings.HasPrefix(n, "README") {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// Load reads the capture name in dir with its side files.
func Load(dir, name string) (Capture, error) {
	c := Capture{Name: name}
	var err error
	if c.Stdout, err = os.ReadFile(filepath.Join(dir, name)); err != nil {
		return c, fmt.Errorf("capture: %w", err)
	}
	meta, err := os.ReadFile(filepath.Join(dir, name+MetaSuffix))
	if err != nil {
		return c, fmt.Errorf("%s: no %s side file: %w", name, MetaSuffix, err)
	}
	exit := ""
	sc := bufio.NewScanner(bytes.NewReader(meta))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ": ")
		switch k {
		case "command":
			c.Command = v
		case "exit":
			exit = v
		}
	}
	if c.Exit, err = strconv.Atoi(exit); err != nil || c.Command == "" {
		return c, fmt.Errorf("capture %s%s: want \"command:\" and a numeric \"exit:\" line, got exit %q", name, MetaSuffix, exit)
	}
	c.Stderr, err = os.ReadFile(filepath.Join(dir, name+StderrSuffix))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return c, fmt.Errorf("capture: %w", err)
	}
	return c, nil
}

// Check returns the problems of the capture directory dir that no parser
// test would notice: a side file without its capture, a capture without
// .meta, an err-* capture that exited 0 and a failed command whose
// capture is not named err-*.
func Check(dir string) ([]string, error) {
	names, err := List(dir)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	var bad []string
	for _, e := range ents {
		n := e.Name()
		for _, suf := range []string{MetaSuffix, StderrSuffix} {
			if base, ok := strings.CutSuffix(n, suf); ok && !have[base] {
				bad = append(bad, fmt.Sprintf("%s: side file of no capture (%s missing)", n, base))
			}
		}
	}
	for _, n := range names {
		c, err := Load(dir, n)
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		isErr := strings.HasPrefix(n, ErrPrefix)
		switch {
		case isErr && c.Exit == 0:
			bad = append(bad, fmt.Sprintf("%s: named %s* but %q exited 0", n, ErrPrefix, c.Command))
		case !isErr && c.Exit != 0:
			bad = append(bad, fmt.Sprintf("%s: %q exited %d but the name does not start with %s", n, c.Command, c.Exit, ErrPrefix))
		}
	}
	return bad, nil
}

// Open lists testdata/capture/<dir> for t and checks it (see Check). When
// t ends without having failed, every capture it did not Read fails it,
// named; a run whose -run or -skip selects subtests is exempt (it logs
// that it did not check).
func Open(t testing.TB, dir string) *Dir {
	t.Helper()
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	d := &Dir{name: dir, path: filepath.Join(root, dir), read: map[string]bool{}}
	if d.names, err = List(d.path); err != nil {
		t.Fatal(err)
	}
	if len(d.names) == 0 {
		t.Fatalf("capture: %s holds no capture", d.path)
	}
	bad, err := Check(d.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Errorf("testdata/capture/%s/%s", dir, b)
	}
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		if filtered() {
			t.Logf("capture: -run/-skip select subtests: not checking that every capture in %s was read", dir)
			return
		}
		for _, n := range d.Unread() {
			t.Errorf("testdata/capture/%s/%s: no test reads this capture (parse it, or classify it in the error table)", dir, n)
		}
	})
	return d
}

// filtered reports whether -run names a subtest or -skip is set, so that
// some subtests of a test may not run.
func filtered() bool {
	if f := flag.Lookup("test.run"); f != nil && strings.Contains(f.Value.String(), "/") {
		return true
	}
	f := flag.Lookup("test.skip")
	return f != nil && f.Value.String() != ""
}

// Path returns the directory's path.
func (d *Dir) Path() string { return d.path }

// Names returns every capture in the directory, sorted.
func (d *Dir) Names() []string { return append([]string(nil), d.names...) }

// Errors returns the err-* captures, sorted.
func (d *Dir) Errors() []string {
	var out []string
	for _, n := range d.names {
		if strings.HasPrefix(n, ErrPrefix) {
			out = append(out, n)
		}
	}
	return out
}

// Outputs returns the captures that are not err-*, sorted.
func (d *Dir) Outputs() []string {
	var out []string
	for _, n := range d.names {
		if !strings.HasPrefix(n, ErrPrefix) {
			out = append(out, n)
		}
	}
	return out
}

// Read returns the capture name and marks it read; a missing capture
// fails t at once.
func (d *Dir) Read(t testing.TB, name string) Capture {
	t.Helper()
	c, err := Load(d.path, name)
	if err != nil {
		t.Fatalf("testdata/capture/%s: %v", d.name, err)
	}
	d.mu.Lock()
	d.read[name] = true
	d.mu.Unlock()
	return c
}

// Unread returns the captures not Read yet, sorted.
func (d *Dir) Unread() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, n := range d.names {
		if !d.read[n] {
			out = append(out, n)
		}
	}
	return out
}

// Seed adds the stdout of every capture in testdata/capture/<dir> whose
// name match accepts (all when match is nil) to the fuzz target's seed
// corpus. Seeding does not count as reading.
func Seed(f *testing.F, dir string, match func(name string) bool) {
	f.Helper()
	root, err := Root()
	if err != nil {
		f.Fatal(err)
	}
	path := filepath.Join(root, dir)
	names, err := List(path)
	if err != nil {
		f.Fatal(err)
	}
	n := 0
	for _, name := range names {
		if match != nil && !match(name) {
			continue
		}
		c, err := Load(path, name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(c.Stdout)
		n++
	}
	if n == 0 {
		f.Fatalf("capture: no capture in %s to seed from", path)
	}
}

// Classifier is one error classifier of a package under its class name.
type Classifier struct {
	// Class names what Is says yes to: "not-found", "busy", ….
	Class string
	// Is is the package's classifier.
	Is func(error) bool
}

// Classes returns the classes of the classifiers that say yes to err, in
// their order (nil for none).
func Classes(err error, cs []Classifier) []string {
	var out []string
	for _, c := range cs {
		if c.Is(err) {
			out = append(out, c.Class)
		}
	}
	return out
}

// CheckErrors reads every err-* capture of d, runs the classifiers over
// the error a runner returns for it (Capture.Err) and compares the classes
// that say yes with the table's row (nil: none). A capture missing from
// the table, or a row naming no capture, fails t.
func (d *Dir) CheckErrors(t testing.TB, table map[string][]string, cs []Classifier) {
	t.Helper()
	errs := d.Errors()
	for _, name := range errs {
		want, ok := table[name]
		if !ok {
			t.Errorf("testdata/capture/%s/%s: not in the error table: add the classes it must get", d.name, name)
			continue
		}
		c := d.Read(t, name)
		if got := Classes(c.Err(), cs); !slices.Equal(want, got) {
			t.Errorf("testdata/capture/%s/%s (exit %d, %q): classes %q, want %q", d.name, name, c.Exit,
				strings.TrimSpace(string(c.Stderr)), got, want)
		}
	}
	for name := range table {
		if !slices.Contains(errs, name) {
			t.Errorf("the error table of testdata/capture/%s names %s, which is not captured", d.name, name)
		}
	}
}

// ReadFile reads the capture name of testdata/capture/<dir> for a test
// whose package does not own that directory (crypt reading blockdev's
// blkid captures); it does not count as reading it there.
func ReadFile(t testing.TB, dir, name string) Capture {
	t.Helper()
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(filepath.Join(root, dir), name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
