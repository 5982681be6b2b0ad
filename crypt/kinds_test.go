package crypt

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/kindtest"
	"github.com/bofhkit/bofh/run"
)

// ktUUID is the LUKS UUID of the kind cases' images; ktDM is it as a
// device-mapper UUID carries it.
const (
	ktUUID = "6f1c7a52-1d1e-4b0e-8d3c-0a1b2c3d4e5f"
	ktDM   = "6f1c7a521d1e4b0e8d3c0a1b2c3d4e5f"
	// ktStep stands for the step's private directory in argv (it holds
	// the state dir and the transaction's ID, picked at run time)
	ktStep = "STEPDIR"
)

// ktTool sits between the steps and the fake runner of a kindtest run.
// The fake checks every command (the transcript); the cryptsetup commands
// that only read and write the image files (format, key slots, header
// backup and restore) then also run for real, so the steps find their
// effect in the files as they would on a device. Mappings (open, close,
// resize) are only in the fake. A path in the step's private directory is
// shown to the fake as STEPDIR/<name>.
type ktTool struct{ fake run.Runner }

func ktWrap(_ string, r run.Runner) run.Runner { return ktTool{r} }

func (k ktTool) Run(ctx context.Context, c run.Cmd) (run.Result, error) {
	shown := c
	shown.Argv = slices.Clone(c.Argv)
	for i, a := range shown.Argv {
		if base := filepath.Base(a); base == "header.img" || base == "header.img.tmp" {
			shown.Argv[i] = ktStep + "/" + base
		}
	}
	res, err := k.fake.Run(ctx, shown)
	if err != nil || len(c.Argv) < 2 || c.Argv[0] != "cryptsetup" {
		return res, err
	}
	switch c.Argv[1] {
	case "luksFormat", "luksAddKey", "luksKillSlot", "luksChangeKey", "luksHeaderBackup", "luksHeaderRestore":
		return (&run.Local{}).Run(ctx, c)
	}
	return res, nil
}

// ktSh runs a command for a case's setup.
func ktSh(t *testing.T, stdin string, argv ...string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

// ktImage makes dir/disk.img (20 MiB with a pattern at its head and tail)
// and the key files dir/k1, k2, k3. With slots > 0 it is a LUKS2 device
// (UUID ktUUID, cheap PBKDF2) with k1 in slot 0 and, with slots 2, k2 in
// slot 1.
func ktImage(t *testing.T, dir string, slots int) (img string, keys [3]string) {
	t.Helper()
	img = filepath.Join(dir, "disk.img")
	size := int64(20 << 20) // room for crypt.format's default LUKS2 header
	if slots > 0 {
		size = 4 << 20 // a small header (1 MiB of key slots) is quicker to write
	}
	if err := os.Rename(image(t, size), img); err != nil {
		t.Fatal(err)
	}
	for i := range keys {
		keys[i] = filepath.Join(dir, fmt.Sprintf("k%d", i+1))
		if err := os.WriteFile(keys[i], []byte(fmt.Sprintf("key %d", i+1)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cheap := []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"}
	if slots > 0 {
		ktSh(t, "", append(append([]string{"cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--luks2-keyslots-size", "1m", "--uuid", ktUUID}, cheap...),
			"--key-file", keys[0], img)...)
	}
	if slots > 1 {
		ktSh(t, "", append(append([]string{"cryptsetup", "luksAddKey", "--batch-mode"}, cheap...), "--key-file", keys[0], img, keys[1])...)
	}
	return img, keys
}

// ktLUKS describes dir/disk.img with cryptsetup itself (not this
// package's header reader): a sha256 of the whole image and its active
// key slots.
func ktLUKS(t *testing.T, dir string) string {
	t.Helper()
	img := filepath.Join(dir, "disk.img")
	return fmt.Sprintf("image sha256 %s\n%s", sum(t, img), ktSlots(t, img))
}

// ktSlots is the active key slots of img (luksDump), or "not LUKS".
func ktSlots(t *testing.T, img string) string {
	t.Helper()
	out, err := exec.Command("cryptsetup", "luksDump", "--dump-json-metadata", img).Output()
	if err != nil {
		return "not LUKS\n"
	}
	var md struct {
		Keyslots map[string]json.RawMessage `json:"keyslots"`
	}
	if err := json.Unmarshal(out, &md); err != nil {
		t.Fatalf("luksDump: %v", err)
	}
	var slots []string
	for s := range md.Keyslots {
		slots = append(slots, s)
	}
	slices.Sort(slots)
	return fmt.Sprintf("keyslots %v\n", slots)
}

// ktLUKSSlots describes dir/disk.img by its key slots and which of the
// keys k1, k2, k3 open it (cryptsetup open --test-passphrase), not by its
// bytes: killing a key slot takes it out of the header but does not give
// back the bytes it had.
func ktLUKSSlots(t *testing.T, dir string) string {
	t.Helper()
	img := filepath.Join(dir, "disk.img")
	var b strings.Builder
	b.WriteString(ktSlots(t, img))
	for i := 1; i <= 3; i++ {
		err := exec.Command("cryptsetup", "open", "--test-passphrase", "--key-file", filepath.Join(dir, fmt.Sprintf("k%d", i)), img).Run()
		fmt.Fprintf(&b, "k%d opens: %v\n", i, err == nil)
	}
	return b.String()
}

// ktFiles lists the files of dir with a sha256 of each.
func ktFiles(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		fmt.Fprintf(&b, "%s %s\n", e.Name(), sum(t, filepath.Join(dir, e.Name())))
	}
	return b.String()
}

func ktScript(m map[string]func(f *run.Fake)) kindtest.Script {
	return func(f *run.Fake, step int, phase kindtest.Phase) {
		if fn := m[fmt.Sprint(step, " ", phase)]; fn != nil {
			fn(f)
		}
	}
}

func ktSeq(fs ...func(f *run.Fake)) func(f *run.Fake) {
	return func(f *run.Fake) {
		for _, fn := range fs {
			fn(f)
		}
	}
}

// ktMut expects a mutation.
func ktMut(argv ...string) func(f *run.Fake) {
	return func(f *run.Fake) { f.Expect(argv...).Kind(run.Mutation) }
}

// ktBlank expects blkid -p finding nothing on dev.
func ktBlank(dev string) func(f *run.Fake) {
	return func(f *run.Fake) { f.Expect("blkid", "-p", "-o", "export", dev).Fail(2, "").Kind(run.Query) }
}

// ktMap expects dmsetup info of mapping name: on dev ("" for none).
func ktMap(name, dev string) func(f *run.Fake) {
	return func(f *run.Fake) {
		e := f.Expect("dmsetup", "info", "-c", "--noheadings", "--separator", ";", "-o", "name,uuid,blkdevs_used,open", name).Kind(run.Query)
		if dev == "" {
			e.Fail(1, "Device does not exist.\nCommand failed.")
		} else {
			e.Out(fmt.Sprintf("%s;CRYPT-LUKS2-%s-%s;%s;0\n", name, ktDM, name, dev))
		}
	}
}

func ktSectors(name string, n int) func(f *run.Fake) {
	return func(f *run.Fake) {
		f.Expect("blockdev", "--getsz", mapperPath(name)).Out(fmt.Sprintf("%d\n", n)).Kind(run.Query)
	}
}

var ktCheap = []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"}

// TestKinds makes every crypt step kind fail before Do, after Do and in its
// undo with the fake runner (internal/kindtest): the exact commands of each
// phase, and the exact reverse undo sequence. The header steps act on
// image files with the real cryptsetup (ktTool); the snapshot is the
// image's sha256 and its key slots as cryptsetup sees them, or for
// key.add (whose undo kills the slot it added, not giving back the
// bytes) the key slots and which keys open it. The mapping steps run
// only in the fake.
func TestKinds(t *testing.T) {
	setup := func(t *testing.T) { needCryptsetup(t) }
	kdf := KDFCost{PBKDF: "pbkdf2", PBKDFIterations: 1000}
	kindtest.Cover(t, []string{"crypt."}, []kindtest.Case{
		// a blank image; undo writes back its head and tail
		{Kind: "crypt.format", Setup: setup, Wrap: ktWrap, Snapshot: ktLUKS,
			InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
				img, k := ktImage(t, dir, 0)
				f := Format{Device: img, PBKDF: "pbkdf2", PBKDFIterations: 1000, Hash: "sha256", UUID: ktUUID, KeyFile: k[0]}
				return []atomic.Params{f}, ktScript(map[string]func(f *run.Fake){
					"1 prepare": ktBlank(img),
					"1 do": ktMut("cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--hash", "sha256", "--pbkdf", "pbkdf2",
						"--pbkdf-force-iterations", "1000", "--uuid", ktUUID, "--key-file", k[0], img),
				})
			}},
		// k3 added next to k1; undo kills the slot it added
		{Kind: "crypt.key.add", Setup: setup, Wrap: ktWrap, Snapshot: ktLUKSSlots,
			InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
				img, k := ktImage(t, dir, 1)
				return []atomic.Params{AddKey{Device: img, KeyFile: k[0], NewKeyFile: k[2], KDFCost: kdf}}, ktScript(map[string]func(f *run.Fake){
					"1 do":   ktMut(append(append([]string{"cryptsetup", "luksAddKey", "--batch-mode"}, ktCheap...), "--key-file", k[0], img, k[2])...),
					"1 undo": ktMut("cryptsetup", "luksKillSlot", "--batch-mode", img, "1"),
				})
			}},
		// k2's slot killed after a header backup; undo restores the header
		{Kind: "crypt.key.remove", Setup: setup, Wrap: ktWrap, Snapshot: ktLUKS,
			InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
				img, k := ktImage(t, dir, 2)
				return []atomic.Params{RemoveKey{Device: img, KeyFile: k[1]}}, ktScript(map[string]func(f *run.Fake){
					"1 do": ktSeq(ktMut("cryptsetup", "luksHeaderBackup", "--batch-mode", img, "--header-backup-file", ktStep+"/header.img.tmp"),
						ktMut("cryptsetup", "luksKillSlot", "--batch-mode", img, "1")),
					"1 undo": ktMut("cryptsetup", "luksHeaderRestore", "--batch-mode", img, "--header-backup-file", ktStep+"/header.img"),
				})
			}},
		// k2 becomes k3 after a header backup; undo restores the header
		{Kind: "crypt.key.change", Setup: setup, Wrap: ktWrap, Snapshot: ktLUKS,
			InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
				img, k := ktImage(t, dir, 2)
				return []atomic.Params{ChangeKey{Device: img, KeyFile: k[1], NewKeyFile: k[2], KDFCost: kdf}}, ktScript(map[string]func(f *run.Fake){
					"1 do": ktSeq(ktMut("cryptsetup", "luksHeaderBackup", "--batch-mode", img, "--header-backup-file", ktStep+"/header.img.tmp"),
						ktMut(append(append([]string{"cryptsetup", "luksChangeKey", "--batch-mode", "--key-slot", "1"}, ktCheap...),
							"--key-file", k[1], img, k[2])...)),
					"1 undo": ktMut("cryptsetup", "luksHeaderRestore", "--batch-mode", img, "--header-backup-file", ktStep+"/header.img"),
				})
			}},
		// a new backup file; undo removes it
		{Kind: "crypt.header.backup", Setup: setup, Wrap: ktWrap, Snapshot: ktFiles,
			InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
				img, _ := ktImage(t, dir, 1)
				bk := filepath.Join(dir, "hdr.bak")
				return []atomic.Params{HeaderBackup{Device: img, File: bk}}, ktScript(map[string]func(f *run.Fake){
					"1 do": ktMut("cryptsetup", "luksHeaderBackup", "--batch-mode", img, "--header-backup-file", bk),
				})
			}},
		// a backup of another image's header onto a blank image; undo
		// puts back the bytes it overwrote
		{Kind: "crypt.header.restore", Setup: setup, Wrap: ktWrap, Snapshot: ktLUKS,
			InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
				other := filepath.Join(dir, "other")
				if err := os.Mkdir(other, 0o700); err != nil {
					t.Fatal(err)
				}
				src, _ := ktImage(t, other, 1)
				bk := filepath.Join(other, "hdr.bak")
				ktSh(t, "", "cryptsetup", "luksHeaderBackup", "--batch-mode", src, "--header-backup-file", bk)
				img, _ := ktImage(t, dir, 0)
				return []atomic.Params{HeaderRestore{Device: img, File: bk}}, ktScript(map[string]func(f *run.Fake){
					"1 prepare": ktBlank(img),
					"1 do":      ktMut("cryptsetup", "luksHeaderRestore", "--batch-mode", img, "--header-backup-file", bk),
				})
			}},
		// cryptsetup open; undo closes the mapping (only one of this
		// header)
		{Kind: "crypt.open", Setup: setup,
			InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
				img, k := ktImage(t, dir, 1)
				return []atomic.Params{Open{Device: img, Name: "kt", KeyFile: k[0], Backend: BackendCryptsetup}}, ktScript(map[string]func(f *run.Fake){
					"1 prepare":       ktMap("kt", ""),
					"1 do":            ktMut("cryptsetup", "open", "--type", "luks", "--key-file", k[0], img, "kt"),
					"1 check-absent":  ktMap("kt", ""),
					"1 check-present": ktMap("kt", "loop7"),
					"1 undo":          ktSeq(ktMap("kt", "loop7"), ktMut("cryptsetup", "close", "kt")),
				})
			}},
		// luks.go loads the table (a stand-in here), then dmsetup mknodes
		{Name: "crypt.open-luksgo", Kind: "crypt.open",
			Setup: func(t *testing.T) {
				needCryptsetup(t)
				old := unlockGo
				unlockGo = func(device, name string, key []byte) error { return nil }
				t.Cleanup(func() { unlockGo = old })
			},
			InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
				img, k := ktImage(t, dir, 1)
				return []atomic.Params{Open{Device: img, Name: "kt", KeyFile: k[0]}}, ktScript(map[string]func(f *run.Fake){
					"1 prepare":       ktMap("kt", ""),
					"1 do":            ktMut("dmsetup", "mknodes", "kt"),
					"1 check-absent":  ktMap("kt", ""),
					"1 check-present": ktMap("kt", "loop7"),
					"1 undo":          ktSeq(ktMap("kt", "loop7"), ktMut("cryptsetup", "close", "kt")),
				})
			}},
		// the mapping kt is on the image (dmsetup names its device
		// relative to /dev: the image, reached as /dev/../<path>); undo
		// opens it again with the key
		{Kind: "crypt.close", Setup: setup,
			InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
				img, k := ktImage(t, dir, 1)
				rel := ".." + img
				return []atomic.Params{Close{Name: "kt", KeyFile: k[0]}}, ktScript(map[string]func(f *run.Fake){
					"1 prepare":       ktMap("kt", rel),
					"1 do":            ktMut("cryptsetup", "close", "kt"),
					"1 check-absent":  ktMap("kt", rel),
					"1 check-present": ktMap("kt", ""),
					"1 undo":          ktSeq(ktMap("kt", ""), ktMut("cryptsetup", "open", "--type", "luks", "--key-file", k[0], "/dev/"+rel, "kt")),
				})
			}},
		// 8 MiB to 4 MiB; undo resizes back
		{Kind: "crypt.resize", Steps: []atomic.Params{Resize{Name: "kt", Size: "4MiB"}},
			Script: ktScript(map[string]func(f *run.Fake){
				"1 prepare":       ktSeq(ktMap("kt", "loop7"), ktSectors("kt", 16384)),
				"1 do":            ktSeq(ktMut("cryptsetup", "resize", "--size", "8192", "kt"), ktSectors("kt", 8192)),
				"1 check-absent":  ktSectors("kt", 16384),
				"1 check-present": ktSectors("kt", 8192),
				"1 undo":          ktSeq(ktMap("kt", "loop7"), ktSectors("kt", 8192), ktMut("cryptsetup", "resize", "--size", "16384", "kt")),
			})},
	}, kindtest.Allow{})
}
