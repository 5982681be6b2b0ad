package blockdev

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/file"
	"github.com/bofhkit/bofh/internal/kindtest"
	"github.com/bofhkit/bofh/run"
)

// losetupJSON is 'losetup --json --list' output for dev backed by file.
func losetupJSON(dev, file string) string {
	return fmt.Sprintf(`{"loopdevices":[{"name":"%s","sizelimit":0,"offset":0,"autoclear":false,"ro":false,"back-file":"%s","dio":false,"log-sec":512}]}`, dev, file)
}

// lsblkLoop is lsblk's JSON for an unused loop device.
func lsblkLoop(dev string) string {
	return fmt.Sprintf(`{"blockdevices":[{"name":"%[1]s","kname":"%[1]s","path":"%[2]s","maj:min":"7:7","type":"loop","size":67108864,"log-sec":512,"ro":false,"fstype":null,"fsver":null,"label":null,"uuid":null,"pttype":null,"ptuuid":null,"partuuid":null,"partlabel":null,"pkname":null,"mountpoints":[null]}]}`,
		filepath.Base(dev), dev)
}

// realDir returns dir with symlinks resolved (losetup reports canonical
// backing files).
func realDir(t *testing.T, dir string) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestKinds makes every blockdev step kind fail before Do, after Do and in
// its undo with the fake runner (internal/kindtest): the exact commands,
// and the exact reverse undo sequence.
func TestKinds(t *testing.T) {
	const loop = "/dev/loop7"
	kindtest.Cover(t, []string{"fs.", "loop.", "mount", "umount", "part."}, []kindtest.Case{
		// file.write makes the backing file (no command), loop.attach
		// attaches it; the undo detaches the device found by backing file.
		{Kind: "loop.attach", InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			img := filepath.Join(realDir(t, dir), "disk.img")
			list := []string{"losetup", "--json", "--list", "--associated", img}
			return []atomic.Params{
					file.Write{Path: img, Content: "disk"},
					LoopAttach{File: img},
				}, func(f *run.Fake, step int, phase kindtest.Phase) {
					if step != 2 {
						return // file.write runs no command
					}
					switch phase {
					case kindtest.Prepare, kindtest.CheckAbsent:
						f.Expect(list...).Out("").Kind(run.Query)
					case kindtest.Do:
						f.Expect("losetup", "--find", "--show", "--partscan", img).Out(loop + "\n").Kind(run.Mutation)
					case kindtest.CheckPresent:
						f.Expect(list...).Out(losetupJSON(loop, img))
					case kindtest.Undo:
						f.Expect(list...).Out(losetupJSON(loop, img))
						f.Expect("losetup", "--detach", loop).Kind(run.Mutation)
					}
				}
		}},
		// attach, then detach the device it got; undo re-attaches it.
		{Kind: "loop.detach", InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			img := filepath.Join(realDir(t, dir), "disk.img")
			list := []string{"losetup", "--json", "--list", "--associated", img}
			info := []string{"losetup", "--json", "--list", loop}
			return []atomic.Params{
					file.Write{Path: img, Content: "disk"},
					LoopAttach{File: img, NoPartscan: true},
					LoopDetach{Device: loop},
				}, func(f *run.Fake, step int, phase kindtest.Phase) {
					switch fmt.Sprint(step, phase) {
					case "2prepare":
						f.Expect(list...).Out("")
					case "2do":
						f.Expect("losetup", "--find", "--show", img).Out(loop + "\n").Kind(run.Mutation)
					case "2undo":
						f.Expect(list...).Out(losetupJSON(loop, img))
						f.Expect("losetup", "--detach", loop).Kind(run.Mutation)
					case "3prepare":
						f.Expect(info...).Out(losetupJSON(loop, img)).Kind(run.Query)
						f.Expect("lsblk", "-J", "-b", "-o", lsblkColumns, loop).Out(lsblkLoop(loop))
						f.Expect("wipefs", "--no-act", "-J", loop).Out(`{"signatures":[]}`)
					case "3do":
						f.Expect("losetup", "--detach", loop).Kind(run.Mutation)
					case "3check-absent":
						f.Expect(info...).Out(losetupJSON(loop, img))
					case "3check-present":
						f.Expect(info...).Fail(1, "losetup: "+loop+": No such device or address")
					case "3undo":
						f.Expect(info...).Fail(1, "losetup: "+loop+": No such device or address")
						f.Expect("losetup", "--partscan", loop, img).Kind(run.Mutation)
					}
				}
		}},
	}, kindtest.Allow{
		"fs.grow":     "case being written (H6, issue 11)",
		"fs.mkfs":     "case being written (H6, issue 11)",
		"fs.resize":   "case being written (H6, issue 11)",
		"fs.wipe":     "case being written (H6, issue 11)",
		"mount":       "case being written (H6, issue 11)",
		"umount":      "case being written (H6, issue 11)",
		"part.create": "case being written (H6, issue 11)",
		"part.delete": "case being written (H6, issue 11)",
		"part.table":  "case being written (H6, issue 11)",
	})
}
