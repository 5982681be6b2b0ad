package blockdev

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// lsblkLoop is lsblk's JSON for an unused loop device of 2 MiB (the size
// of image's plain-file devices).
func lsblkLoop(dev string) string {
	return fmt.Sprintf(`{"blockdevices":[{"name":"%[1]s","kname":"%[1]s","path":"%[2]s","maj:min":"7:7","type":"loop","size":2097152,"log-sec":512,"ro":false,"fstype":null,"fsver":null,"label":null,"uuid":null,"pttype":null,"ptuuid":null,"partuuid":null,"partlabel":null,"pkname":null,"mountpoints":[null]}]}`,
		filepath.Base(dev), dev)
}

// script makes a kindtest.Script from the commands of each "<step> <phase>"
// ("2 undo"); a phase not listed runs nothing.
func script(m map[string]func(f *run.Fake)) kindtest.Script {
	return func(f *run.Fake, step int, phase kindtest.Phase) {
		if fn := m[fmt.Sprintf("%d %s", step, phase)]; fn != nil {
			fn(f)
		}
	}
}

// findmntAt is 'findmnt --mountpoint' of one mount.
func findmntAt(target, source, fstype, options string) string {
	return fmt.Sprintf(`{"filesystems":[{"target":"%s","source":"%s","fstype":"%s","options":"%s","maj:min":"7:7"}]}`, target, source, fstype, options)
}

func expectFindmnt(f *run.Fake, target, out string) {
	e := f.Expect("findmnt", "-J", "-o", "TARGET,SOURCE,FSTYPE,OPTIONS,MAJ:MIN", "--mountpoint", target).Kind(run.Query)
	if out == "" {
		e.Fail(1, "")
	} else {
		e.Out(out)
	}
}

// expectProbe is ProbeOne of an unpartitioned device: lsblk, then wipefs
// listing sigs ("" for none).
func expectProbe(f *run.Fake, dev, sigs string) {
	f.Expect("lsblk", "-J", "-b", "-o", lsblkColumns, dev).Out(lsblkLoop(dev)).Kind(run.Query)
	f.Expect("wipefs", "--no-act", "-J", dev).Out(`{"signatures":[` + sigs + `]}`).Kind(run.Query)
}

func sig(dev, offset, typ string) string {
	return fmt.Sprintf(`{"device":"%s","offset":"%s","type":"%s","uuid":"u","label":null}`, filepath.Base(dev), offset, typ)
}

// attachScript adds the script of a loop.attach step (number n) of img that gets
// /dev/loop7.
func attachScript(m map[string]func(f *run.Fake), n int, img string) map[string]func(f *run.Fake) {
	list := []string{"losetup", "--json", "--list", "--associated", img}
	m[fmt.Sprint(n, " prepare")] = func(f *run.Fake) { f.Expect(list...).Out("") }
	m[fmt.Sprint(n, " do")] = func(f *run.Fake) {
		f.Expect("losetup", "--find", "--show", "--partscan", img).Out("/dev/loop7\n").Kind(run.Mutation)
	}
	m[fmt.Sprint(n, " undo")] = func(f *run.Fake) {
		f.Expect(list...).Out(losetupJSON("/dev/loop7", img))
		f.Expect("losetup", "--detach", "/dev/loop7").Kind(run.Mutation)
	}
	return m
}

// wipefsEmu emulates what wipefs and mkfs do to a device that is a plain
// file: 'wipefs --all --backup' saves the 4 bytes of the signature at
// offset 0 to $HOME/wipefs-<name>-0x0.bak and zeroes them, mkfs writes
// its own bytes at the start. The fake runner checks the commands.
type wipefsEmu struct {
	run.Runner
	dev string
}

func (e wipefsEmu) Run(ctx context.Context, c run.Cmd) (run.Result, error) {
	res, err := e.Runner.Run(ctx, c)
	if err != nil || c.Argv[len(c.Argv)-1] != e.dev {
		return res, err
	}
	f, ferr := os.OpenFile(e.dev, os.O_RDWR, 0)
	if ferr != nil {
		return res, ferr
	}
	defer f.Close()
	switch {
	case strings.Join(c.Argv[:3], " ") == "wipefs --all --backup":
		home := ""
		for _, v := range c.Env {
			if h, ok := strings.CutPrefix(v, "HOME="); ok {
				home = h
			}
		}
		old := make([]byte, 4)
		if _, ferr = f.ReadAt(old, 0); ferr == nil {
			ferr = os.WriteFile(filepath.Join(home, "wipefs-"+filepath.Base(e.dev)+"-0x0.bak"), old, 0o600)
		}
		if ferr == nil {
			_, ferr = f.WriteAt(make([]byte, 4), 0)
		}
	case strings.HasPrefix(c.Argv[0], "mkfs."):
		_, ferr = f.WriteAt(bytes.Repeat([]byte("mkfs"), 1024), 0)
	}
	return res, ferr
}

// image makes dir/disk, a "device" that is a plain file of 2 MiB whose
// first bytes are a signature ("XFSB") and the rest a pattern.
func image(t *testing.T, dir string) string {
	t.Helper()
	dev := filepath.Join(dir, "disk")
	data := bytes.Repeat([]byte{0xAB}, 2<<20)
	copy(data, "XFSB")
	if err := os.WriteFile(dev, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dev
}

// zeroImage makes dir/disk, a plain file of size zero bytes: a "disk" for
// the partition steps, which act on image files without a command.
func zeroImage(t *testing.T, dir string, size int64) string {
	t.Helper()
	dev := filepath.Join(dir, "disk")
	if err := os.WriteFile(dev, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	return dev
}

// noSigs expects step n's Prepare of a partition table on dev: one wipefs.
func noSigs(n int, dev string) map[string]func(f *run.Fake) {
	return map[string]func(f *run.Fake){fmt.Sprint(n, " prepare"): func(f *run.Fake) {
		f.Expect("wipefs", "--no-act", "-J", dev).Out(`{"signatures":[]}`).Kind(run.Query)
	}}
}

// resizeScript is the script of an offline ext4 grow of /dev/loop7 on
// /srv/d.img from 64 MiB by 32 MiB (fs.resize or fs.grow, step n), from
// the commands of TestTranscriptResizeExt4.
func resizeScript(n int, grow bool) map[string]func(f *run.Fake) {
	loopJSON := `{"loopdevices": [{"name": "/dev/loop7", "back-file": "/srv/d.img", "offset": 0, "sizelimit": 0, "ro": false}]}`
	dumpe2fs := "Block count:              65536\nBlock size:               1024\n"
	dumpe2fsBig := "Block count:              98304\nBlock size:               1024\n"
	open := func(f *run.Fake) {
		f.Expect("losetup", "--json", "--list", "/dev/loop7").Out(loopJSON)
		f.Expect("losetup", "--json", "--list", "--associated", "/srv/d.img").Out(loopJSON)
		f.Expect("blkid", "-p", "-o", "export", "/dev/loop7").Out("TYPE=ext4\n")
		f.Expect("dumpe2fs", "-h", "/dev/loop7").Out(dumpe2fs)
	}
	reopen := func(f *run.Fake, size, ext string) {
		f.Expect("losetup", "--json", "--list", "/dev/loop7").Out(loopJSON)
		f.Expect("losetup", "--json", "--list", "--associated", "/srv/d.img").Out(loopJSON)
		f.Expect("stat", "-L", "--format=%s", "/srv/d.img").Out(size + "\n")
		f.Expect("blockdev", "--getsize64", "/dev/loop7").Out(size + "\n")
		f.Expect("blkid", "-p", "-o", "export", "/dev/loop7").Out("TYPE=ext4\n")
		f.Expect("dumpe2fs", "-h", "/dev/loop7").Out(ext)
	}
	sizes := func(f *run.Fake, dev, ext string) {
		f.Expect("stat", "-L", "--format=%s", "/srv/d.img").Out(dev + "\n")
		f.Expect("blockdev", "--getsize64", "/dev/loop7").Out(dev + "\n")
		f.Expect("dumpe2fs", "-h", "/dev/loop7").Out(ext)
	}
	findmnt := func(f *run.Fake) {
		f.Expect("findmnt", "-J", "-o", "TARGET,SOURCE,FSTYPE,OPTIONS,MAJ:MIN", "--source", "/dev/loop7").Fail(1, "")
	}
	return map[string]func(f *run.Fake){
		fmt.Sprint(n, " prepare"): func(f *run.Fake) {
			open(f)
			sizes(f, "67108864", dumpe2fs)
			if !grow {
				findmnt(f) // can ext4 shrink back? (not mounted)
			}
		},
		fmt.Sprint(n, " do"): func(f *run.Fake) {
			reopen(f, "67108864", dumpe2fs)
			sizes(f, "67108864", dumpe2fs)
			f.Expect("truncate", "--no-create", "--size=100663296", "/srv/d.img").Kind(run.Mutation)
			f.Expect("losetup", "--set-capacity", "/dev/loop7").Kind(run.Mutation)
			findmnt(f)
			f.Expect("e2fsck", "-f", "-y", "/dev/loop7").Kind(run.Mutation)
			f.Expect("resize2fs", "/dev/loop7", "98304K").Kind(run.Mutation)
			sizes(f, "100663296", dumpe2fsBig)
		},
		fmt.Sprint(n, " check-absent"): func(f *run.Fake) {
			reopen(f, "67108864", dumpe2fs)
			sizes(f, "67108864", dumpe2fs)
		},
		fmt.Sprint(n, " check-present"): func(f *run.Fake) {
			reopen(f, "100663296", dumpe2fsBig)
			sizes(f, "100663296", dumpe2fsBig)
		},
		fmt.Sprint(n, " undo"): func(f *run.Fake) {
			reopen(f, "100663296", dumpe2fsBig)
			sizes(f, "100663296", dumpe2fsBig)
			findmnt(f)
			f.Expect("resize2fs", "-P", "/dev/loop7").Out(capResize2fsP)
			findmnt(f)
			f.Expect("e2fsck", "-f", "-y", "/dev/loop7").Kind(run.Mutation)
			f.Expect("resize2fs", "/dev/loop7", "65536K").Kind(run.Mutation)
			f.Expect("truncate", "--no-create", "--size=67108864", "/srv/d.img").Kind(run.Mutation)
			f.Expect("losetup", "--set-capacity", "/dev/loop7").Kind(run.Mutation)
			sizes(f, "67108864", dumpe2fs)
		},
	}
}

func merge(ms ...map[string]func(f *run.Fake)) map[string]func(f *run.Fake) {
	out := map[string]func(f *run.Fake){}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// imageSum is the sha256 of dir/disk: a plain-file device's whole content.
func imageSum(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "disk"))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(data))
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
		// a mount of an image file on a directory; undo unmounts it
		{Kind: "mount", InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			img, mnt := filepath.Join(dir, "img"), filepath.Join(dir, "mnt")
			at := findmntAt(mnt, img, "ext4", "rw,relatime")
			return []atomic.Params{
					file.Write{Path: img, Content: "fs"},
					file.Dir{Path: mnt},
					MountFS{Source: img, Target: mnt, FSType: "ext4", Options: []string{"noatime"}},
				}, script(map[string]func(f *run.Fake){
					"3 prepare":      func(f *run.Fake) { expectFindmnt(f, mnt, "") },
					"3 check-absent": func(f *run.Fake) { expectFindmnt(f, mnt, "") },
					"3 do": func(f *run.Fake) {
						f.Expect("mount", "-t", "ext4", "-o", "noatime", img, mnt).Kind(run.Mutation)
						expectFindmnt(f, mnt, at)
					},
					"3 check-present": func(f *run.Fake) { expectFindmnt(f, mnt, at) },
					"3 undo": func(f *run.Fake) {
						expectFindmnt(f, mnt, at)
						f.Expect("umount", mnt).Kind(run.Mutation)
					},
				})
		}},
		// mount, then unmount; undo mounts it again with its options
		{Kind: "umount", InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			img, mnt := filepath.Join(dir, "img"), filepath.Join(dir, "mnt")
			at := findmntAt(mnt, img, "ext4", "rw,relatime")
			return []atomic.Params{
					file.Write{Path: img, Content: "fs"},
					file.Dir{Path: mnt},
					MountFS{Source: img, Target: mnt},
					Umount{Target: mnt},
				}, script(map[string]func(f *run.Fake){
					"3 prepare": func(f *run.Fake) { expectFindmnt(f, mnt, "") },
					"3 do": func(f *run.Fake) {
						f.Expect("mount", img, mnt).Kind(run.Mutation)
						expectFindmnt(f, mnt, at)
					},
					"3 undo": func(f *run.Fake) {
						expectFindmnt(f, mnt, at)
						f.Expect("umount", mnt).Kind(run.Mutation)
					},
					"4 prepare": func(f *run.Fake) {
						expectFindmnt(f, mnt, at)
						f.Expect("findmnt", "-J", "-o", "TARGET,SOURCE,FSTYPE,OPTIONS,MAJ:MIN").Kind(run.Query).
							Out(`{"filesystems":[{"target":"/","source":"/dev/sda1","fstype":"ext4","options":"rw","maj:min":"8:1","children":[` +
								strings.TrimSuffix(strings.TrimPrefix(at, `{"filesystems":[`), `]}`) + `]}]}`)
					},
					"4 do":            func(f *run.Fake) { f.Expect("umount", mnt).Kind(run.Mutation) },
					"4 check-absent":  func(f *run.Fake) { expectFindmnt(f, mnt, at) },
					"4 check-present": func(f *run.Fake) { expectFindmnt(f, mnt, "") },
					"4 undo": func(f *run.Fake) {
						expectFindmnt(f, mnt, "")
						f.Expect("mount", "-t", "ext4", "-o", "rw,relatime", img, mnt).Kind(run.Mutation)
					},
				})
		}},
		// attach, then make a filesystem on the empty device; undo wipes it
		{Kind: "fs.mkfs", InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			img := filepath.Join(realDir(t, dir), "img")
			dev := "/dev/loop7"
			blkid := []string{"blkid", "-p", "-o", "export", dev}
			return []atomic.Params{
					file.Write{Path: img, Content: "disk"},
					LoopAttach{File: img},
					Mkfs{Device: dev, Type: "ext4", Label: "data"},
				}, script(attachScript(map[string]func(f *run.Fake){
					"3 prepare": func(f *run.Fake) { expectProbe(f, dev, "") },
					"3 do": func(f *run.Fake) {
						f.Expect("mkfs.ext4", "-q", "-F", "-L", "data", dev).Kind(run.Mutation)
						f.Expect(blkid...).Out("TYPE=ext4\nUUID=u\nLABEL=data\n")
					},
					"3 check-absent":  func(f *run.Fake) { f.Expect(blkid...).Fail(2, "") },
					"3 check-present": func(f *run.Fake) { f.Expect(blkid...).Out("TYPE=ext4\nUUID=u\nLABEL=data\n") },
					"3 undo": func(f *run.Fake) {
						expectProbe(f, dev, sig(dev, "0x438", "ext4"))
						f.Expect(blkid...).Out("TYPE=ext4\nUUID=u\nLABEL=data\n")
						f.Expect("wipefs", "--all", dev).Kind(run.Mutation)
					},
				}, 2, img))
		}},
		// a forced mkfs over an xfs signature on a plain-file "device": it
		// saves the first and last MiB and the signature; undo puts back
		// every byte (the snapshot is the file's sha256)
		{Name: "fs.mkfs-forced", Kind: "fs.mkfs", Snapshot: imageSum,
			Wrap: func(dir string, r run.Runner) run.Runner { return wipefsEmu{r, filepath.Join(dir, "disk")} },
			InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
				dev := image(t, dir)
				blkid := []string{"blkid", "-p", "-o", "export", dev}
				return []atomic.Params{
						file.Dir{Path: filepath.Join(dir, "d")},
						Mkfs{Device: dev, Type: "ext4", Force: true},
					}, script(map[string]func(f *run.Fake){
						"2 prepare": func(f *run.Fake) {
							expectProbe(f, dev, sig(dev, "0x0", "xfs"))
							f.Expect(blkid...).Out("TYPE=xfs\nUUID=u\n")
						},
						"2 do": func(f *run.Fake) {
							f.Expect("wipefs", "--all", "--backup", dev).Kind(run.Mutation)
							f.Expect("mkfs.ext4", "-q", "-F", dev).Kind(run.Mutation)
							f.Expect(blkid...).Out("TYPE=ext4\nUUID=n\n")
						},
						"2 check-absent":  func(f *run.Fake) { f.Expect(blkid...).Out("TYPE=xfs\nUUID=u\n") },
						"2 check-present": func(f *run.Fake) { f.Expect(blkid...).Out("TYPE=ext4\nUUID=n\n") },
						"2 undo": func(f *run.Fake) {
							expectProbe(f, dev, sig(dev, "0x438", "ext4"))
							f.Expect(blkid...).Out("TYPE=ext4\nUUID=n\n")
							f.Expect("wipefs", "--all", dev).Kind(run.Mutation)
						},
					})
			}},
		// wipe the signature of a plain-file "device"; undo writes the
		// saved bytes back
		{Kind: "fs.wipe", Snapshot: imageSum,
			Wrap: func(dir string, r run.Runner) run.Runner { return wipefsEmu{r, filepath.Join(dir, "disk")} },
			InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
				dev := image(t, dir)
				return []atomic.Params{
						file.Dir{Path: filepath.Join(dir, "d")},
						Wipe{Device: dev},
					}, script(map[string]func(f *run.Fake){
						"2 prepare": func(f *run.Fake) { expectProbe(f, dev, sig(dev, "0x0", "xfs")) },
						"2 do":      func(f *run.Fake) { f.Expect("wipefs", "--all", "--backup", dev).Kind(run.Mutation) },
					})
			}},
		// partition steps on an image file: no command but wipefs; the
		// undo puts back every byte (the snapshot is the file's sha256)
		{Kind: "part.table", Snapshot: imageSum, InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			dev := zeroImage(t, dir, 4<<20)
			return []atomic.Params{
				file.Dir{Path: filepath.Join(dir, "d")},
				PartTable{Device: dev, Type: "gpt"},
			}, script(noSigs(2, dev))
		}},
		{Kind: "part.create", Snapshot: imageSum, InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			dev := zeroImage(t, dir, 4<<20)
			return []atomic.Params{
				PartTable{Device: dev, Type: "gpt"},
				PartCreate{Device: dev, Size: "2M", Name: "data"},
			}, script(noSigs(1, dev))
		}},
		{Name: "part.create-mbr", Kind: "part.create", Snapshot: imageSum, InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			dev := zeroImage(t, dir, 4<<20)
			return []atomic.Params{
				PartTable{Device: dev, Type: "mbr"},
				PartCreate{Device: dev, Start: "1M", Size: "2M", Type: "0x83"},
			}, script(noSigs(1, dev))
		}},
		{Kind: "part.delete", Snapshot: imageSum, InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			dev := zeroImage(t, dir, 4<<20)
			return []atomic.Params{
				PartTable{Device: dev, Type: "gpt"},
				PartCreate{Device: dev, Size: "1M"},
				PartCreate{Device: dev, Size: "1M"},
				PartDelete{Device: dev, Number: 1},
			}, script(noSigs(1, dev))
		}},
		// an offline ext4 grow (the commands of TestTranscriptResizeExt4);
		// undo shrinks the filesystem, then the file and the device
		{Kind: "fs.resize", InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			return []atomic.Params{
				file.Dir{Path: filepath.Join(dir, "d")},
				Resize{Device: "/dev/loop7", Size: "+32M"},
			}, script(resizeScript(2, false))
		}},
		// the same grow, irreversible: it runs at commit
		{Kind: "fs.grow", InDir: func(t *testing.T, dir string) ([]atomic.Params, kindtest.Script) {
			return []atomic.Params{
				file.Dir{Path: filepath.Join(dir, "d")},
				Grow{Device: "/dev/loop7", Size: "+32M"},
			}, script(resizeScript(2, true))
		}},
	}, nil)
}
