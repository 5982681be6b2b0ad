package blockdev

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
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

// state is what the recipe leaves behind on a file and a mountpoint, seen
// with the real tools only (losetup, findmnt, wipefs, blkid, sha256 of the
// whole file), never with this package's own probing code.
type state struct {
	loops   []string
	mounted bool
	chunks  []string // sha256 of each MiB of the backing file, in order
	sigs    []string // wipefs --no-act of the file, and blkid -p at the partition offset
}

// chunkSize is the unit in which the whole file is compared: a difference
// is reported by the MiB it is in.
const chunkSize = 1 << 20

// partOffset is where the recipe's partition starts (the first MiB holds
// the table), so a filesystem in it is probed at that offset of the file.
const partOffset = 1 << 20

// partSize is the size of the recipe's partition (size: 64M).
const partSize = 64 << 20

func observe(t *testing.T, file, mnt string) state {
	t.Helper()
	var s state
	out, err := exec.Command("losetup", "--noheadings", "--output", "NAME", "--associated", file).Output()
	if err != nil {
		t.Fatalf("losetup -j %s: %v", file, err)
	}
	s.loops = strings.Fields(string(out))
	// findmnt exits 1 when nothing is mounted there
	out, err = exec.Command("findmnt", "--noheadings", "--output", "SOURCE", "--mountpoint", mnt).Output()
	var ee *exec.ExitError
	switch {
	case err == nil:
		s.mounted = strings.TrimSpace(string(out)) != ""
	case errors.As(err, &ee) && ee.ExitCode() == 1:
	default:
		t.Fatalf("findmnt %s: %v", mnt, err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, chunkSize)
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			s.chunks = append(s.chunks, fmt.Sprintf("%x", sha256.Sum256(buf[:n])))
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	out, err = exec.Command("wipefs", "--no-act", "--noheadings", "--output", "TYPE,OFFSET", file).Output()
	if err != nil {
		t.Fatalf("wipefs -n %s: %v", file, err)
	}
	s.sigs = strings.Fields(string(out))
	// blkid exits 2 when it finds nothing
	out, err = exec.Command("blkid", "--probe", "--offset", strconv.Itoa(partOffset), "-o", "export", file).Output()
	switch {
	case err == nil:
		s.sigs = append(s.sigs, "at-1MiB:"+strings.Join(strings.Fields(string(out)), ","))
	case errors.As(err, &ee) && ee.ExitCode() == 2:
	default:
		t.Fatalf("blkid -p -O %d %s: %v", partOffset, file, err)
	}
	return s
}

// changedMiB lists the MiB of the file whose bytes differ between a and b
// (every MiB when their sizes differ).
func changedMiB(a, b state) []int {
	var out []int
	for i := range max(len(a.chunks), len(b.chunks)) {
		if i >= len(a.chunks) || i >= len(b.chunks) || a.chunks[i] != b.chunks[i] {
			out = append(out, i)
		}
	}
	return out
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
