package capture

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bofhkit/bofh/run"
)

// readers maps each directory of testdata/capture to the package (a path
// from the repository root) whose capture_test.go reads it with
// capture.Open. A new capture directory fails TestEveryDirHasAReader until
// it is added here and read there.
var readers = map[string]string{
	"blockdev": "blockdev",
	"btrfs":    "btrfs",
	"crypt":    "crypt",
	"drbd":     "drbd",
	"fs":       "blockdev",
	"lvm":      "lvm",
	"raid":     "raid",
	"versions": "internal/capture",
}

func TestEveryDirHasAReader(t *testing.T) {
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := e.Name()
		seen[dir] = true
		pkg, ok := readers[dir]
		if !ok {
			t.Errorf("testdata/capture/%s: no package reads this capture directory (add it to readers and open it in that package's capture_test.go)", dir)
			continue
		}
		src, err := os.ReadFile(filepath.Join(root, "..", "..", pkg, "capture_test.go"))
		if err != nil {
			t.Errorf("testdata/capture/%s: its reader %s has no capture_test.go: %v", dir, pkg, err)
			continue
		}
		open := `Open(t, "` + dir + `")`
		if !strings.Contains(string(src), open) {
			t.Errorf("testdata/capture/%s: %s/capture_test.go does not call %s", dir, pkg, open)
		}
	}
	for dir := range readers {
		if !seen[dir] {
			t.Errorf("readers lists %s, which is not a directory of %s", dir, root)
		}
	}
}

// TestVersions reads the tool versions the lab captured with and checks
// the README states them.
func TestVersions(t *testing.T) {
	d := Open(t, "versions")
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file string
		re   string // first group: the version as the README writes it
	}{
		{"lvm.txt", `LVM version:\s+(\S+)`},
		{"cryptsetup.txt", `^(cryptsetup \S+)`},
		{"mdadm.txt", `^mdadm - (v\S+)`},
		{"drbdadm.txt", `DRBDADM_VERSION=(\S+)`},
		{"kernel.txt", `^Linux \S+ (\S+)`},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c := d.Read(t, tc.file)
			if c.Exit != 0 {
				t.Fatalf("%q exited %d", c.Command, c.Exit)
			}
			out := string(c.Stdout) + string(c.Stderr) // mdadm prints its version on stderr
			m := regexp.MustCompile(`(?m)` + tc.re).FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("no %s in %q", tc.re, out)
			}
			if !strings.Contains(string(readme), m[1]) {
				t.Errorf("testdata/capture/README.md does not state %q (from versions/%s)", m[1], tc.file)
			}
		})
	}
}

func write(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "README.md", "not a capture")
	write(t, dir, "ok.txt", "out\n")
	write(t, dir, "ok.txt.meta", "command: tool --flag x\nexit: 0\ntool: v1\n")
	write(t, dir, "err-ok.txt", "")
	write(t, dir, "err-ok.txt.meta", "command: tool y\nexit: 5\n")
	write(t, dir, "err-ok.txt.stderr", "tool: y not found\n")
	write(t, dir, "err-passes.txt", "")
	write(t, dir, "err-passes.txt.meta", "command: tool z\nexit: 0\n")
	write(t, dir, "fails.txt", "")
	write(t, dir, "fails.txt.meta", "command: tool w\nexit: 1\n")
	write(t, dir, "nometa.txt", "")
	write(t, dir, "gone.txt.stderr", "x")

	names, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"err-ok.txt", "err-passes.txt", "fails.txt", "nometa.txt", "ok.txt"}, names); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	bad, err := Check(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"gone.txt.stderr: side file of no capture (gone.txt missing)",
		`err-passes.txt: named err-* but "tool z" exited 0`,
		`fails.txt: "tool w" exited 1 but the name does not start with err-`,
	}
	if len(bad) != 4 || !strings.Contains(bad[3], "nometa.txt: no .meta side file") {
		t.Errorf("Check: %q, want a missing .meta for nometa.txt last", bad)
	} else if diff := cmp.Diff(want, bad[:3]); diff != "" {
		t.Errorf("Check (-want +got):\n%s", diff)
	}

	c, err := Load(dir, "err-ok.txt")
	if err != nil {
		t.Fatal(err)
	}
	if !run.StderrContains(c.Err(), "not found") || run.ExitCode(c.Err()) != 5 || c.Command != "tool y" {
		t.Errorf("Load(err-ok.txt) = %+v, Err %v", c, c.Err())
	}
	if c, err := Load(dir, "ok.txt"); err != nil || c.Err() != nil || string(c.Stdout) != "out\n" {
		t.Errorf("Load(ok.txt) = %+v, %v", c, err)
	}
}

func TestUnread(t *testing.T) {
	d := &Dir{names: []string{"a", "b", "err-c"}, path: t.TempDir(), read: map[string]bool{}}
	d.read["b"] = true
	if diff := cmp.Diff([]string{"a", "err-c"}, d.Unread()); diff != "" {
		t.Errorf("Unread (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"err-c"}, d.Errors()); diff != "" {
		t.Errorf("Errors (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a", "b"}, d.Outputs()); diff != "" {
		t.Errorf("Outputs (-want +got):\n%s", diff)
	}
}

// TestReadmeListsEveryCapture checks the README's table names every
// capture (a name may be written without its extension, with {a,b}
// alternatives or a * wildcard).
func TestReadmeListsEveryCapture(t *testing.T) {
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string][]string{} // dir -> patterns
	row := regexp.MustCompile(`(?m)^\| (\w+) \| ([^|]+) \|`)
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		for _, p := range strings.Fields(m[2]) {
			listed[m[1]] = append(listed[m[1]], expand(strings.Trim(p, ",`"))...)
		}
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		names, err := List(filepath.Join(root, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			found := false
			for _, p := range listed[e.Name()] {
				if ok, _ := filepath.Match(p, n); ok || p == n || p+filepath.Ext(n) == n {
					found = true
					break
				}
			}
			if !found {
				t.Errorf("testdata/capture/README.md: the table does not describe %s/%s", e.Name(), n)
			}
		}
	}
}

// expand returns p with each {a,b} group expanded.
func expand(p string) []string {
	i := strings.Index(p, "{")
	j := strings.Index(p, "}")
	if i < 0 || j < i {
		return []string{p}
	}
	var out []string
	for _, alt := range strings.Split(p[i+1:j], ",") {
		out = append(out, expand(p[:i]+alt+p[j+1:])...)
	}
	return out
}
