package blockdev

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/run"
)

const recipeYAML = `name: blockdev-smoke
steps:
  - id: loop
    kind: loop.attach
    with: {file: FILE}
  - id: table
    kind: part.table
    with: {device: "${loop.device}", type: gpt}
  - id: part
    kind: part.create
    with: {device: "${loop.device}", size: 64M, name: data}
  - id: fs
    kind: fs.mkfs
    with: {device: "${part.device}", type: ext4, label: smoke}
  - id: mnt
    kind: mount
    with: {source: "${part.device}", target: MNT, options: [noatime]}
`

func recipeText(file, mnt string) string {
	return strings.ReplaceAll(strings.ReplaceAll(recipeYAML, "FILE", file), "MNT", mnt)
}

func nil2local() run.Runner { return &run.Local{} }

func recipeFor(t *testing.T, file, mnt string) *atomic.Recipe {
	t.Helper()
	r, err := atomic.ParseRecipe([]byte(recipeText(file, mnt)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// state is what the recipe leaves behind on a file and a mountpoint.
type state struct {
	loops   []string
	mounted bool
	head    []byte
	sigs    int
}

func observe(t *testing.T, file, mnt string) state {
	t.Helper()
	ctx := context.Background()
	r := &run.Local{}
	var s state
	loops, err := LoopsOf(ctx, r, file)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range loops {
		s.loops = append(s.loops, l.Device)
	}
	at, err := MountsAt(ctx, r, mnt)
	if err != nil {
		t.Fatal(err)
	}
	s.mounted = len(at) > 0
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s.head = make([]byte, tableRegion)
	f.ReadAt(s.head, 0)
	sigs, err := Signatures(ctx, r, file)
	if err != nil {
		t.Fatal(err)
	}
	s.sigs = len(sigs)
	return s
}

func TestRecipeSmoke(t *testing.T) {
	requireRoot(t)
	file := sparseFile(t, 128<<20)
	mnt := t.TempDir()
	state := t.TempDir()
	ctx := context.Background()
	id, err := atomic.Apply(ctx, recipeFor(t, file, mnt), atomic.WithStateDir(state), atomic.WithFailpoints(""))
	if err != nil {
		t.Fatalf("apply %s: %v", id, err)
	}
	s := observe(t, file, mnt)
	if len(s.loops) != 1 || !s.mounted {
		t.Fatalf("after apply: %+v", s)
	}
	out, _ := exec.Command("findmnt", "-n", "-o", "SOURCE,OPTIONS", mnt).Output()
	if !strings.Contains(string(out), s.loops[0]+"p1") || !strings.Contains(string(out), "noatime") {
		t.Fatalf("findmnt %s: %s", mnt, out)
	}
}
