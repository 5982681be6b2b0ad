package tree

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bofhkit/bofh/atomic"
	"github.com/bofhkit/bofh/internal/hosttest"
)

// requireRoot fails the test when not root, unless BOFH_SKIP_ROOT=1 (the
// name the package's tests call it by).
var requireRoot = hosttest.RequireRoot

func sh(t testing.TB, argv ...string) {
	t.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%q: %v\n%s", argv, err, out)
	}
}

// newFS makes a filesystem of type fstype on a loop device over a sparse
// file and returns its mount point, unmounted at cleanup. It mounts by
// itself rather than with hosttest.TempMount so that a filesystem left
// busy by a test still fails it at cleanup.
func newFS(t testing.TB, fstype string, size int64) string {
	t.Helper()
	dev := hosttest.LoopFile(t, size) // fails unless root
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	switch fstype {
	case "btrfs":
		sh(t, "mkfs.btrfs", "-q", dev)
	case "ext4":
		sh(t, "mkfs.ext4", "-q", "-F", dev)
	}
	sh(t, "mount", dev, mnt)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

// newTarget returns an empty target on fs: a subvolume on btrfs, a
// directory on ext4.
func newTarget(t testing.TB, mnt, fstype string) string {
	tgt := filepath.Join(mnt, "target")
	if fstype == "btrfs" {
		sh(t, "btrfs", "subvolume", "create", tgt)
	} else if err := os.Mkdir(tgt, 0o755); err != nil {
		t.Fatal(err)
	}
	return tgt
}

func write(t testing.TB, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	// the raw bits (0o4755 is setuid here): os.Chmod takes the setuid,
	// setgid and sticky bits as os.ModeSetuid etc., not as 0o7000
	if err := unix.Chmod(p, uint32(mode)); err != nil {
		t.Fatal(err)
	}
}

// makeStore builds a store with web v1 and v2 and metadata v1 → v2.
// marker is where the hooks write that they ran.
func makeStore(t testing.TB, dir, marker string) string {
	t.Helper()
	store := filepath.Join(dir, "store")
	for _, v := range []string{"v1", "v2"} {
		r := filepath.Join(store, "install", v, "web")
		write(t, filepath.Join(r, "etc/app.conf"), "conf "+v+"\n", 0o644)
		write(t, filepath.Join(r, "etc/motd"), "hello\n", 0o644)
		write(t, filepath.Join(r, "usr/bin/tool"), "#!/bin/sh\necho "+v+"\n", 0o755)
		write(t, filepath.Join(r, "usr/bin/suid"), "suid", 0o4755)
		write(t, filepath.Join(r, "usr/lib/lib.so"), strings.Repeat("L", 70000), 0o644)
		write(t, filepath.Join(r, "name with space"), "sp", 0o644)
		write(t, filepath.Join(r, "new\nline"), "nl", 0o644)
		write(t, filepath.Join(r, "bad\xff\xfename"), "nonutf8", 0o600)
		write(t, filepath.Join(r, "usr/bin/a"), "hardlinked "+v, 0o755)
		sh(t, "ln", "-f", filepath.Join(r, "usr/bin/a"), filepath.Join(r, "usr/bin/b"))
		os.MkdirAll(filepath.Join(r, "var/lib"), 0o755)
		os.Chown(filepath.Join(r, "etc/motd"), 1234, 4321)
		if err := unix.Lsetxattr(filepath.Join(r, "etc/motd"), "user.bofh", []byte("x-"+v), 0); err != nil {
			t.Fatal(err)
		}
		sh(t, "setfacl", "-m", "u:1234:r", filepath.Join(r, "etc/app.conf"))
	}
	v1, v2 := filepath.Join(store, "install/v1/web"), filepath.Join(store, "install/v2/web")
	write(t, filepath.Join(v1, "usr/share/doc/old.txt"), "old", 0o644)
	os.Symlink("usr/bin/tool", filepath.Join(v1, "link"))
	os.Symlink("usr/bin/a", filepath.Join(v2, "link"))
	write(t, filepath.Join(v2, "usr/share/doc/new.txt"), "new", 0o644)
	os.Chmod(filepath.Join(v2, "usr/lib/lib.so"), 0o600)
	write(t, filepath.Join(v2, "etc/local.conf"), "local defaults\n", 0o640)
	md := filepath.Join(store, "metadata/v1/web/v2")
	write(t, filepath.Join(md, "exclude"), "# data\n/var/lib/data\n*.log\n", 0o644)
	write(t, filepath.Join(md, "add_only"), "/etc/local.conf\n", 0o644)
	write(t, filepath.Join(md, "pre"), "#!/bin/sh\necho pre $BOFH_TREE_FROM $BOFH_TREE_TO >> '"+marker+"'\n", 0o755)
	write(t, filepath.Join(md, "post"), "#!/bin/sh\necho post >> '"+marker+"'\nexit 100\n", 0o755)
	return store
}

type lab struct {
	fstype, mnt, store, target, state, marker string
}

func newLab(t *testing.T, fstype string) *lab {
	mnt := newFS(t, fstype, 512<<20)
	l := &lab{fstype: fstype, mnt: mnt, marker: filepath.Join(t.TempDir(), "hooks")}
	l.store = makeStore(t, mnt, l.marker)
	l.target = newTarget(t, mnt, fstype)
	l.state = filepath.Join(mnt, "state") // same fs: hard-link backups
	ctx := context.Background()
	if _, err := Deploy(ctx, Request{Store: l.store, Role: "web", Version: "v1", Target: l.target, StateDir: l.state}); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(l.store, l.target)
	if err != nil || len(rep.Changes) != 0 {
		t.Fatalf("verify after deploy: %+v %v", rep, err)
	}
	// operator data, excluded from the upgrade
	write(t, filepath.Join(l.target, "var/lib/data/db"), "precious", 0o600)
	write(t, filepath.Join(l.target, "usr/app.log"), "log", 0o644)
	atVersion(t, l, "v1", "deploy")
	return l
}

func (l *lab) req() Request {
	return Request{Store: l.store, Version: "v2", Target: l.target, StateDir: l.state, HookTimeout: 20 * time.Second}
}

func TestHostUpgrade(t *testing.T) {
	for _, fstype := range []string{"btrfs", "ext4"} {
		t.Run(fstype, func(t *testing.T) {
			l := newLab(t, fstype)
			ctx := context.Background()
			before := fingerprint(t, l.target)
			rep, err := TestUpgrade(Request{Store: l.store, Version: "v2", Target: l.target})
			if err != nil || len(rep.Changes) == 0 {
				t.Fatalf("test-upgrade: %+v %v", rep, err)
			}
			sameFingerprint(t, "test-upgrade changed the target", before, fingerprint(t, l.target))
			out, err := Upgrade(ctx, l.req())
			if err != nil {
				t.Fatal(err)
			}
			atVersion(t, l, "v2", "upgrade")
			if !out.RebootNeeded {
				t.Errorf("post exited 100 but reboot_needed is false: %+v", out)
			}
			want := map[string]string{"btrfs": ModeBtrfs, "ext4": ModeBackup}[fstype]
			if out.Restore != want {
				t.Errorf("restore point %q, want %q", out.Restore, want)
			}
			if b, _ := os.ReadFile(l.marker); string(b) != "pre v1 v2\npost\n" {
				t.Errorf("hooks wrote %q", b)
			}
			st, _ := ReadState(l.target)
			if st == nil || st.Version != "v2" {
				t.Fatalf("state %+v", st)
			}
			if r, err := Verify(l.store, l.target); err != nil || len(r.Changes) != 0 {
				t.Fatalf("verify after upgrade: %+v %v", r, err)
			}
			if b, _ := os.ReadFile(filepath.Join(l.target, "var/lib/data/db")); string(b) != "precious" {
				t.Error("excluded data lost")
			}
			if _, err := os.Lstat(filepath.Join(l.target, "usr/app.log")); err != nil {
				t.Error("excluded *.log removed")
			}
			if b, _ := os.ReadFile(filepath.Join(l.target, "etc/local.conf")); string(b) != "local defaults\n" {
				t.Errorf("add_only not copied: %q", b)
			}
			if _, err := os.Lstat(filepath.Join(l.target, "usr/share/doc/old.txt")); !errors.Is(err, os.ErrNotExist) {
				t.Error("old.txt not deleted")
			}
			var a, b unix.Stat_t
			unix.Lstat(filepath.Join(l.target, "usr/bin/a"), &a)
			unix.Lstat(filepath.Join(l.target, "usr/bin/b"), &b)
			if a.Ino != b.Ino {
				t.Error("hard link not preserved")
			}
			if fstype == "btrfs" {
				ents, _ := os.ReadDir(l.mnt)
				for _, e := range ents {
					if strings.Contains(e.Name(), ".bofh-") {
						t.Errorf("snapshot %s left after commit", e.Name())
					}
				}
			}
			// add_only: an operator-edited file is never overwritten
			write(t, filepath.Join(l.target, "etc/local.conf"), "edited", 0o640)
			// drift of every kind
			write(t, filepath.Join(l.target, "etc/app.conf"), "conf XX\n", 0o644) // same size
			os.Chmod(filepath.Join(l.target, "usr/bin/tool"), 0o700)
			os.Lchown(filepath.Join(l.target, "name with space"), 7, 7)
			os.Remove(filepath.Join(l.target, "link"))
			os.Symlink("/etc/passwd", filepath.Join(l.target, "link"))
			os.Remove(filepath.Join(l.target, "usr/share/doc/new.txt"))
			write(t, filepath.Join(l.target, "usr/bin/intruder"), "x", 0o755)
			unix.Lsetxattr(filepath.Join(l.target, "etc/motd"), "user.bofh", []byte("tampered"), 0)
			// a hard-link group split into two copies alike in all else
			sh(t, "cp", "-a", filepath.Join(l.target, "usr/bin/a"), filepath.Join(l.target, "usr/bin/a.split"))
			os.Rename(filepath.Join(l.target, "usr/bin/a.split"), filepath.Join(l.target, "usr/bin/b"))
			r, err := Verify(l.store, l.target)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, c := range r.Changes {
				got[c.Path] = c.Kind + ":" + strings.Join(c.Details, ",")
			}
			wantDrift := map[string]string{
				"etc/app.conf": "changed:content", "usr/bin/tool": "changed:mode", "name with space": "changed:owner",
				"link": "changed:symlink", "usr/share/doc/new.txt": "removed:", "usr/bin/intruder": "added:", "etc/motd": "changed:xattrs",
				"usr/bin/a": "changed:hardlink", "usr/bin/b": "changed:hardlink",
			}
			for k, v := range wantDrift {
				if got[k] != v {
					t.Errorf("verify %s = %q, want %q", k, got[k], v)
				}
			}
			if len(got) != len(wantDrift) {
				t.Errorf("verify found %v", got)
			}
		})
	}
}

// upgradeSteps is the number of steps of the v1 → v2 recipe.
func upgradeSteps(t *testing.T, l *lab) int {
	return len(upgradeKinds(t, l))
}

// upgradeKinds is the kinds of the v1 → v2 recipe's steps, in order.
func upgradeKinds(t *testing.T, l *lab) []atomic.KindInfo {
	t.Helper()
	rec, _, err := UpgradeRecipe(l.req())
	if err != nil {
		t.Fatal(err)
	}
	var out []atomic.KindInfo
	for _, s := range rec.Steps {
		k, err := atomic.Kind(s.Kind)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, k)
	}
	return out
}

// labExcluded are the lab target's paths an upgrade leaves alone: the
// operator data the metadata excludes, and the state file (checked on
// its own).
var labExcluded = map[string]bool{"var/lib/data": true, "var/lib/data/db": true, "usr/app.log": true, StateFile: true}

// atVersion fails unless the lab's target is the store's tree of version
// exactly, as the oracle sees both (content, modes, owners, mtimes,
// xattrs, ACLs, links), but for the paths an upgrade leaves alone, and
// its state file names version; the excluded data is intact. Directory
// mtimes are left out: a sync sets them only on the directories whose
// entries it changes (a directory holding only a changed subdirectory
// keeps the target's time, as Verify does not compare them), so whether
// they match the store's depends on whether the store's versions were
// written within one clock tick. A rollback is still compared with the
// pre-upgrade tree directory mtimes and all.
func atVersion(t *testing.T, l *lab, version, what string) {
	t.Helper()
	cut := func(m map[string]string, drop bool) map[string]string {
		o := map[string]string{}
		for k, v := range m {
			if drop && labExcluded[k] {
				continue
			}
			if strings.HasPrefix(v, "dir ") {
				v = v[:strings.Index(v, " mtime=")]
			}
			o[k] = v
		}
		return o
	}
	want := cut(fingerprint(t, filepath.Join(l.store, "install", version, "web")), false)
	sameFingerprint(t, what+": target against the store's "+version, want, cut(fingerprint(t, l.target), true))
	var st struct{ Role, Version string }
	if b, err := os.ReadFile(filepath.Join(l.target, StateFile)); err != nil || json.Unmarshal(b, &st) != nil || st != (struct{ Role, Version string }{"web", version}) {
		t.Fatalf("%s: state file %+v (%v), want role web version %s", what, st, err, version)
	}
	if b, err := os.ReadFile(filepath.Join(l.target, "var/lib/data/db")); err != nil || string(b) != "precious" {
		t.Fatalf("%s: excluded data %q %v", what, b, err)
	}
}

// snapshotPath is where a btrfs upgrade from → to keeps the target's
// snapshot until commit.
func (l *lab) snapshotPath(from, to string) string {
	return filepath.Join(l.mnt, ".target.bofh-"+from+"-"+to)
}

// noSnapshot fails if the v1 → v2 snapshot exists.
func noSnapshot(t *testing.T, l *lab, what string) {
	t.Helper()
	if _, err := os.Lstat(l.snapshotPath("v1", "v2")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s: snapshot %s: %v, want it gone", what, l.snapshotPath("v1", "v2"), err)
	}
}

// txState is the state of transaction id in the lab's state dir.
func txState(t *testing.T, l *lab, id string) atomic.State {
	t.Helper()
	txs, err := atomic.List(l.state)
	if err != nil {
		t.Fatal(err)
	}
	for _, tx := range txs {
		if tx.ID == id {
			return tx.State
		}
	}
	t.Fatalf("transaction %q not in %s: %+v", id, l.state, txs)
	return ""
}

// irreversibleRan checks what the design says of an irreversible step
// that acted at commit and then failed (or was killed): it is the point
// of no return, so nothing is rolled back. The rollback (err) stops at
// that step, incomplete; the target is the complete v2, the snapshot is
// gone, and the journal says rollback-failed.
func irreversibleRan(t *testing.T, l *lab, id string, err error, what string) {
	t.Helper()
	if !errors.Is(err, atomic.ErrRollbackIncomplete) || atomic.ExitCode(err) != atomic.ExitRollbackIncomplete ||
		!strings.Contains(err.Error(), "irreversible") {
		t.Fatalf("%s: %v (exit %d), want the rollback refused at the irreversible step (exit %d)",
			what, err, atomic.ExitCode(err), atomic.ExitRollbackIncomplete)
	}
	atVersion(t, l, "v2", what)
	noSnapshot(t, l, what)
	if st := txState(t, l, id); st != atomic.StateRollbackFailed {
		t.Fatalf("%s: transaction %s, want %s", what, st, atomic.StateRollbackFailed)
	}
	// a rollback run again refuses again and touches nothing
	now := fingerprint(t, l.target)
	if err := atomic.RollbackID(context.Background(), id, nil, atomic.WithStateDir(l.state)); !errors.Is(err, atomic.ErrRollbackIncomplete) {
		t.Fatalf("%s: second rollback: %v, want it refused", what, err)
	}
	sameFingerprint(t, what+": second rollback", now, fingerprint(t, l.target))
}

// TestHostUpgradeFailEveryStep injects an error before and after every
// step of an upgrade on btrfs and ext4, the irreversible snapshot drop at
// commit included. A reversible step's failure rolls the target back to
// the pre-upgrade tree exactly, excluded data included; so does the
// snapshot drop's failure before it acted. Once it has acted, nothing is
// rolled back (see irreversibleRan).
func TestHostUpgradeFailEveryStep(t *testing.T) {
	for _, fstype := range []string{"btrfs", "ext4"} {
		t.Run(fstype, func(t *testing.T) {
			l := newLab(t, fstype)
			ctx := context.Background()
			before := fingerprint(t, l.target)
			kinds := upgradeKinds(t, l)
			irreversible := 0
			for i, k := range kinds {
				n := i + 1
				for _, phase := range []string{"before", "after"} {
					what := fmt.Sprintf("%s: step %d (%s) %s", fstype, n, k.Kind, phase)
					out, err := Upgrade(ctx, l.req(), atomic.WithFailpoints(fmt.Sprintf("%d:%s:error", n, phase)))
					if !errors.Is(err, atomic.ErrFailpoint) || out == nil {
						t.Fatalf("%s: %v, want the failpoint's error", what, err)
					}
					if k.Irreversible && phase == "after" {
						if n != len(kinds) {
							t.Fatalf("%s: the irreversible step is not the last one: the target stays at v2 and later rounds would start there", what)
						}
						irreversible++
						irreversibleRan(t, l, out.TxID, err, what)
						continue
					}
					if atomic.ExitCode(err) != atomic.ExitRolledBack {
						t.Fatalf("%s: exit %d, want %d (rolled back): %v", what, atomic.ExitCode(err), atomic.ExitRolledBack, err)
					}
					sameFingerprint(t, what+": rollback", before, fingerprint(t, l.target))
					atVersion(t, l, "v1", what)
					noSnapshot(t, l, what)
					if st := txState(t, l, out.TxID); st != atomic.StateRolledBack {
						t.Fatalf("%s: transaction %s, want %s", what, st, atomic.StateRolledBack)
					}
				}
			}
			if want := map[string]int{"btrfs": 1, "ext4": 0}[fstype]; irreversible != want {
				t.Fatalf("%d irreversible steps failed after acting, want %d", irreversible, want)
			}
		})
	}
}

const helperEnv = "BOFH_TREE_TEST_HELPER"

// TestHelperUpgrade is the child process of TestHostUpgradeCrash.
func TestHelperUpgrade(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper process for TestHostUpgradeCrash")
	}
	r := Request{Store: os.Getenv("T_STORE"), Version: "v2", Target: os.Getenv("T_TARGET"), StateDir: os.Getenv("T_STATE")}
	if _, err := Upgrade(context.Background(), r, atomic.WithID(os.Getenv("T_ID"))); err != nil {
		t.Fatal(err)
	}
}

// killedUpgrade runs the upgrade in a child process with failpoint fp
// (n:phase:kill) and wants it dead of SIGKILL, its transaction
// interrupted.
func killedUpgrade(t *testing.T, l *lab, id, fp, what string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperUpgrade$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "T_STORE="+l.store, "T_TARGET="+l.target, "T_STATE="+l.state,
		"T_ID="+id, atomic.FailEnv+"="+fp)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("%s: helper: %v, want it killed\n%s", what, err, out)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("%s: helper ended with %v, want SIGKILL\n%s", what, ee, out)
	}
	if st := txState(t, l, id); st != atomic.StateInterrupted {
		t.Fatalf("%s: transaction %s after the kill, want %s", what, st, atomic.StateInterrupted)
	}
}

// TestHostUpgradeCrash kills the upgrade before and after every step's
// effect on both filesystems, the last step included (on btrfs the
// irreversible snapshot drop at commit: before it is the commit point,
// after it the point of no return). 'rollback' restores the pre-upgrade
// tree exactly, except after the point of no return, where it refuses
// and leaves the complete v2; 'resume' reaches v2 exactly.
func TestHostUpgradeCrash(t *testing.T) {
	for _, fstype := range []string{"btrfs", "ext4"} {
		t.Run(fstype, func(t *testing.T) {
			l := newLab(t, fstype)
			ctx := context.Background()
			before := fingerprint(t, l.target)
			kinds := upgradeKinds(t, l)
			for i, k := range kinds {
				n := i + 1
				for _, phase := range []string{"before", "after"} {
					for _, end := range []string{"rollback", "resume"} {
						id := fmt.Sprintf("crash-%d-%s-%s", n, phase, end)
						what := fmt.Sprintf("%s: kill %s step %d (%s), %s", fstype, phase, n, k.Kind, end)
						killedUpgrade(t, l, id, fmt.Sprintf("%d:%s:kill", n, phase), what)
						switch {
						case end == "rollback" && k.Irreversible && phase == "after":
							err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(l.state))
							irreversibleRan(t, l, id, err, what)
							before = restoreV1(t, l, before)
						case end == "rollback":
							if err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(l.state)); err != nil {
								t.Fatalf("%s: %v", what, err)
							}
							sameFingerprint(t, what, before, fingerprint(t, l.target))
							noSnapshot(t, l, what)
							if st := txState(t, l, id); st != atomic.StateRolledBack {
								t.Fatalf("%s: transaction %s, want %s", what, st, atomic.StateRolledBack)
							}
						case end == "resume":
							if err := atomic.ResumeID(ctx, id, atomic.WithStateDir(l.state)); err != nil {
								t.Fatalf("%s: %v", what, err)
							}
							atVersion(t, l, "v2", what)
							noSnapshot(t, l, what)
							if st := txState(t, l, id); st != atomic.StateCommitted {
								t.Fatalf("%s: transaction %s, want %s", what, st, atomic.StateCommitted)
							}
							// back to v1 for the next round: a fresh lab would cost more
							before = restoreV1(t, l, before)
						}
					}
				}
			}
		})
	}
}

// restoreV1 puts the target back to v1 by upgrading "back" with metadata
// v2 → v1 made on the fly, then checks the fingerprint.
func restoreV1(t *testing.T, l *lab, before map[string]string) map[string]string {
	t.Helper()
	md := filepath.Join(l.store, "metadata/v2/web/v1")
	write(t, filepath.Join(md, "exclude"), "/var/lib/data\n*.log\n/etc/local.conf\n", 0o644)
	if _, err := Upgrade(context.Background(), Request{Store: l.store, Version: "v1", Target: l.target, StateDir: l.state}); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(l.store, "metadata/v2"))
	os.Remove(filepath.Join(l.target, "etc/local.conf"))
	// mtimes of directories touched by the round trip differ: compare
	// everything but directory mtimes
	strip := func(m map[string]string) map[string]string {
		o := map[string]string{}
		for k, v := range m {
			if (strings.HasPrefix(v, "dir ") || k == StateFile) && strings.Contains(v, " mtime=") {
				v = v[:strings.Index(v, " mtime=")]
			}
			o[k] = v
		}
		return o
	}
	now := fingerprint(t, l.target)
	sameFingerprint(t, "back at v1", strip(before), strip(now))
	return now
}

func TestHostHostile(t *testing.T) {
	l := newLab(t, "ext4")
	ctx := context.Background()
	before := fingerprint(t, l.target)
	md := filepath.Join(l.store, "metadata/v1/web/v2")
	unchanged := func(t *testing.T, what string) {
		t.Helper()
		sameFingerprint(t, what, before, fingerprint(t, l.target))
	}
	t.Run("dotdot in exclude", func(t *testing.T) {
		write(t, filepath.Join(md, "exclude"), "/var/../etc\n", 0o644)
		defer write(t, filepath.Join(md, "exclude"), "/var/lib/data\n*.log\n", 0o644)
		_, err := Upgrade(ctx, l.req())
		if atomic.ExitCode(err) != atomic.ExitInvalid || !strings.Contains(err.Error(), "..") {
			t.Fatalf("err = %v", err)
		}
		unchanged(t, "after refused exclude")
	})
	t.Run("missing version", func(t *testing.T) {
		r := l.req()
		r.Version = "v9"
		_, err := Upgrade(ctx, r)
		if atomic.ExitCode(err) != atomic.ExitInvalid || !errors.Is(err, ErrNoVersion) {
			t.Fatalf("err = %v", err)
		}
		unchanged(t, "after missing version")
	})
	t.Run("missing metadata", func(t *testing.T) {
		os.MkdirAll(filepath.Join(l.store, "install/v3/web"), 0o755)
		r := l.req()
		r.Version = "v3"
		_, err := Upgrade(ctx, r)
		if atomic.ExitCode(err) != atomic.ExitInvalid || !errors.Is(err, ErrNoMetadata) {
			t.Fatalf("err = %v", err)
		}
		unchanged(t, "after missing metadata")
	})
	t.Run("symlinked version in store", func(t *testing.T) {
		os.Symlink(filepath.Join(l.store, "install/v2"), filepath.Join(l.store, "install/v4"))
		os.MkdirAll(filepath.Join(l.store, "metadata/v1/web/v4"), 0o755)
		r := l.req()
		r.Version = "v4"
		if _, err := Upgrade(ctx, r); atomic.ExitCode(err) != atomic.ExitInvalid {
			t.Fatalf("err = %v", err)
		}
		unchanged(t, "after symlinked version")
	})
	t.Run("post hangs", func(t *testing.T) {
		write(t, filepath.Join(md, "post"), "#!/bin/sh\nsleep 600\n", 0o755)
		r := l.req()
		r.HookTimeout = time.Second
		start := time.Now()
		_, err := Upgrade(ctx, r)
		if atomic.ExitCode(err) != atomic.ExitRolledBack || !strings.Contains(err.Error(), "did not finish") {
			t.Fatalf("err = %v", err)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("took %s", d)
		}
		write(t, filepath.Join(md, "post"), "#!/bin/sh\nexit 0\n", 0o755)
		unchanged(t, "after hung post")
	})
	t.Run("symlink out of the target", func(t *testing.T) {
		outside := t.TempDir()
		doc := filepath.Join(l.target, "usr/share/doc")
		os.RemoveAll(doc)
		os.Symlink(outside, doc)
		write(t, filepath.Join(outside, "keep"), "outside", 0o644)
		if _, err := Upgrade(ctx, l.req()); err != nil {
			t.Fatal(err)
		}
		ents, _ := os.ReadDir(outside)
		if len(ents) != 1 || ents[0].Name() != "keep" {
			t.Fatalf("upgrade wrote through a symlink out of the target: %v", ents)
		}
		if fi, err := os.Lstat(doc); err != nil || !fi.IsDir() {
			t.Fatalf("usr/share/doc is not a directory now: %v", err)
		}
	})
}

func TestHostDeployRefusesNonEmpty(t *testing.T) {
	l := newLab(t, "ext4")
	_, err := Deploy(context.Background(), Request{Store: l.store, Role: "web", Version: "v1", Target: l.target, StateDir: l.state})
	if atomic.ExitCode(err) != atomic.ExitInvalid {
		t.Fatalf("deploy over a deployed target: %v", err)
	}
}
