//go:build vm

package stacktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bofhkit/bofh/atomic"
	_ "github.com/bofhkit/bofh/blockdev" // loop.attach, fs.mkfs, mount
	_ "github.com/bofhkit/bofh/crypt"    // crypt.format, crypt.open
	"github.com/bofhkit/bofh/internal/vmtest"
	"github.com/bofhkit/bofh/lvm"
	"github.com/bofhkit/bofh/raid"
	"github.com/bofhkit/bofh/run"
)

// What the example recipe names, and what the test puts in their place.
const (
	exampleA   = "/var/tmp/bofh-stack-a.img"
	exampleB   = "/var/tmp/bofh-stack-b.img"
	exampleMD  = "/dev/md100"
	exampleKey = "/etc/bofh/keys/stack.key"
	exampleMnt = "target: /srv/stack}"
	examplePBK = "pbkdf: argon2id,"

	mdDev    = "/dev/md30" // raid tests use md21–md24
	mdName   = "md30"
	mapName  = "stack_crypt"
	vgName   = "vg_stack"
	lvName   = "data"
	lvDMName = "vg_stack-data"

	stackSteps = 10
	fileSize   = 64 << 20
)

var stepNames = [stackSteps + 1]string{"", "loop.attach a", "loop.attach b", "raid.create", "crypt.format",
	"crypt.open", "lvm.pv.create", "lvm.vg.create", "lvm.lv.create", "fs.mkfs", "mount"}

var (
	local = &run.Local{}
	quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
)

const (
	helperEnv   = "BOFH_STACK_HELPER"
	recipeEnv   = "BOFH_STACK_RECIPE"
	stateEnv    = "BOFH_STACK_STATE"
	txIDEnv     = "BOFH_STACK_TXID"
	fullEnv     = "BOFH_FULL_MATRIX"
	childResult = "stacktest-helper:"
)

// TestHelperProcess is the child of the kill matrix: it applies the recipe
// in $BOFH_STACK_RECIPE with BOFH_FAIL from its environment, which kills
// it. Run directly, it has nothing to do and says so.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("helper process of TestVMStackCrash (runs only as its child)")
	}
	r, err := atomic.ParseRecipe([]byte(os.Getenv(recipeEnv)))
	if err == nil {
		_, err = atomic.Apply(context.Background(), r, atomic.WithStateDir(os.Getenv(stateEnv)),
			atomic.WithID(os.Getenv(txIDEnv)), atomic.WithLogger(quiet))
	}
	// reached only if the failpoint did not kill us
	fmt.Println(childResult, err)
	os.Exit(10 + atomic.ExitCode(err))
}

// lab is one stack under test: two image files, a key, a mountpoint.
type lab struct {
	files  [2]string
	key    string
	mnt    string
	recipe string
	// stateDir holds the journals of every case
	stateDir string
	// time spent in assertClean
	cleanTime time.Duration
	cleanN    int
	// baseline dm mappings and md arrays present before the test (other
	// packages' leftovers are theirs, not ours)
	dm0, md0 map[string]bool
}

func sh(t *testing.T, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func newLab(t *testing.T) *lab {
	t.Helper()
	dir := t.TempDir()
	l := &lab{mnt: filepath.Join(dir, "mnt"), key: filepath.Join(dir, "stack.key"), stateDir: t.TempDir()}
	for i := range l.files {
		l.files[i] = filepath.Join(dir, fmt.Sprintf("disk%c.img", 'a'+i))
	}
	if err := os.Mkdir(l.mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.key, []byte("stack key \x00\xff not a passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.resetFiles(t)
	// the example recipe, as an operator would adapt it
	_, self, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(self), "..", "..", "recipes", "stack", "raid1-luks-lvm-ext4.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, s := range []string{exampleA, exampleB, exampleMD, exampleKey, exampleMnt, examplePBK, mapName, vgName, "name: " + lvName} {
		if !strings.Contains(text, s) {
			t.Fatalf("%s: %q not found: the test's substitutions are out of date", path, s)
		}
	}
	text = strings.NewReplacer(exampleA, l.files[0], exampleB, l.files[1], exampleMD, mdDev, exampleKey, l.key,
		exampleMnt, "target: "+l.mnt+"}",
		examplePBK, "pbkdf: pbkdf2, pbkdf_iterations: 1000,").Replace(text)
	r, err := atomic.ParseRecipe([]byte(text))
	if err != nil {
		t.Fatalf("recipe: %v", err)
	}
	if len(r.Steps) != stackSteps {
		t.Fatalf("recipe has %d steps, the test knows %d", len(r.Steps), stackSteps)
	}
	l.recipe = text
	l.dm0, l.md0 = dmMappings(t), mdArrays(t)
	if l.dm0[mapName] || l.dm0[lvDMName] || l.md0[mdName] {
		t.Fatalf("the guest already has %s, %s or %s: %v %v", mapName, lvDMName, mdName, l.dm0, l.md0)
	}
	t.Cleanup(func() { l.forceTeardown(t) })
	return l
}

// resetFiles makes both images fresh sparse files (zeros).
func (l *lab) resetFiles(t *testing.T) {
	t.Helper()
	for _, f := range l.files {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(f, fileSize); err != nil {
			t.Fatal(err)
		}
	}
}

func (l *lab) loopsOf(f string) []string {
	out, _ := exec.Command("losetup", "-j", f, "-n", "-O", "NAME").Output()
	return strings.Fields(string(out))
}

func dmMappings(t *testing.T) map[string]bool {
	t.Helper()
	out := sh(t, "dmsetup", "ls")
	m := map[string]bool{}
	if strings.Contains(out, "No devices found") {
		return m
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			m[f[0]] = true
		}
	}
	return m
}

func mdArrays(t *testing.T) map[string]bool {
	t.Helper()
	st, err := raid.ReadMDStat(context.Background(), local)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, a := range st.Arrays {
		m[a.Name] = true
	}
	return m
}

func (l *lab) mounted() bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == l.mnt {
			return true
		}
	}
	return false
}

func newKeys(now, base map[string]bool) []string {
	var out []string
	for k := range now {
		if !base[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

var (
	luksMagic1 = []byte("LUKS\xba\xbe")
	luksMagic2 = []byte("SKUL\xba\xbe")
)

// assertClean checks, with the real tools, that nothing of the stack is
// left: no mount, no LV/VG/PV, no dm mapping, no md array, no loop device
// on the files, no md superblock, no LUKS header and no signature in them.
func (l *lab) assertClean(t *testing.T, what string) {
	t.Helper()
	t0 := time.Now()
	defer func() { l.cleanTime += time.Since(t0); l.cleanN++ }()
	var bad []string
	if l.mounted() {
		bad = append(bad, "mounted at "+l.mnt)
	}
	rep, err := lvm.Query(context.Background(), local)
	if err != nil {
		t.Fatalf("%s: lvm fullreport: %v", what, err)
	}
	if vg := rep.VG(vgName); vg != nil {
		bad = append(bad, fmt.Sprintf("VG %s (%d LVs)", vg.Name, vg.LVCount))
	}
	for _, lv := range rep.LVs {
		if lv.VG == vgName {
			bad = append(bad, "LV "+lv.FullName())
		}
	}
	for _, pv := range rep.PVs {
		if strings.Contains(pv.Name, mapName) || pv.VG == vgName {
			bad = append(bad, "PV "+pv.Name)
		}
	}
	if extra := newKeys(dmMappings(t), l.dm0); len(extra) > 0 {
		bad = append(bad, fmt.Sprintf("dm mappings %v", extra))
	}
	if extra := newKeys(mdArrays(t), l.md0); len(extra) > 0 {
		bad = append(bad, fmt.Sprintf("md arrays %v (/proc/mdstat)", extra))
	}
	for _, f := range l.files {
		if loops := l.loopsOf(f); len(loops) > 0 {
			bad = append(bad, fmt.Sprintf("%s attached as %v", f, loops))
		}
		// mdadm cannot open a file on tmpfs (O_DIRECT): look through a
		// read-only loop device of our own
		ro := sh(t, "losetup", "-r", "-f", "--show", f)
		sb, err := raid.Examine(context.Background(), local, ro)
		if err != nil || sb != nil {
			bad = append(bad, fmt.Sprintf("mdadm --examine %s (%s): superblock %+v, err %v", ro, f, sb, err))
		}
		if out, err := exec.Command("blkid", "-p", "-o", "export", ro).CombinedOutput(); err == nil || strings.Contains(string(out), "TYPE=") {
			bad = append(bad, fmt.Sprintf("blkid -p %s (%s) finds: %s", ro, f, strings.TrimSpace(string(out))))
		}
		sh(t, "losetup", "-d", ro)
		// the LUKS header sits at the md data offset inside the member:
		// look for either header's magic anywhere in the image
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range [][]byte{luksMagic1, luksMagic2} {
			if i := bytes.Index(data, m); i >= 0 {
				bad = append(bad, fmt.Sprintf("%s: LUKS magic %q at offset %d", f, m[:4], i))
			}
		}
	}
	if len(bad) > 0 {
		t.Fatalf("%s: not clean:\n  %s", what, strings.Join(bad, "\n  "))
	}
}

// assertEnd checks the whole stack is there and a file written to the
// mount reads back after the page cache is dropped.
func (l *lab) assertEnd(t *testing.T, what string) {
	t.Helper()
	var bad []string
	for _, f := range l.files {
		if n := len(l.loopsOf(f)); n != 1 {
			bad = append(bad, fmt.Sprintf("%s attached %d times", f, n))
		}
	}
	st, err := raid.ReadMDStat(context.Background(), local)
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := st.Get(mdName); !ok {
		bad = append(bad, "no "+mdName+" in /proc/mdstat")
	} else if a.Level != "raid1" || len(a.Members) != 2 {
		bad = append(bad, fmt.Sprintf("%s: %+v", mdName, a))
	}
	if err := exec.Command("cryptsetup", "isLuks", mdDev).Run(); err != nil {
		bad = append(bad, "cryptsetup isLuks "+mdDev+": "+err.Error())
	}
	dm := dmMappings(t)
	if !dm[mapName] || !dm[lvDMName] {
		bad = append(bad, fmt.Sprintf("dm mappings %v: want %s and %s", newKeys(dm, l.dm0), mapName, lvDMName))
	}
	rep, err := lvm.Query(context.Background(), local)
	if err != nil {
		t.Fatal(err)
	}
	if lv := rep.LV(vgName, lvName); lv == nil || !lv.Active {
		bad = append(bad, fmt.Sprintf("LV %s/%s: %+v", vgName, lvName, lv))
	}
	if !l.mounted() {
		bad = append(bad, "not mounted at "+l.mnt)
	}
	if len(bad) > 0 {
		t.Fatalf("%s: stack incomplete:\n  %s", what, strings.Join(bad, "\n  "))
	}
	want := []byte("written through ext4 → LV → PV → LUKS → RAID1 → loop\n")
	p := filepath.Join(l.mnt, "probe")
	if err := os.WriteFile(p, want, 0o644); err != nil {
		t.Fatal(err)
	}
	sh(t, "sync")
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200); err != nil {
		t.Logf("drop_caches: %v", err)
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s: read back %q, %v", what, got, err)
	}
}

// teardown takes a completed stack down by hand, top down, and makes the
// files fresh.
func (l *lab) teardown(t *testing.T) {
	t.Helper()
	sh(t, "umount", l.mnt)
	sh(t, "lvm", "vgchange", "-an", vgName)
	sh(t, "cryptsetup", "close", mapName)
	sh(t, "mdadm", "--stop", mdDev)
	for _, f := range l.files {
		for _, d := range l.loopsOf(f) {
			sh(t, "losetup", "-d", d)
		}
	}
	l.resetFiles(t)
}

// forceTeardown is the best-effort cleanup after a failure, so that the
// packages run after this one find a clean guest.
func (l *lab) forceTeardown(t *testing.T) {
	exec.Command("umount", "-l", l.mnt).Run()
	exec.Command("lvm", "vgchange", "-an", vgName).Run()
	exec.Command("dmsetup", "remove", "--force", lvDMName).Run()
	exec.Command("lvm", "vgremove", "-ff", "-y", vgName).Run()
	exec.Command("cryptsetup", "close", mapName).Run()
	exec.Command("mdadm", "--stop", mdDev).Run()
	for _, f := range l.files {
		for _, d := range l.loopsOf(f) {
			exec.Command("mdadm", "--zero-superblock", d).Run()
			exec.Command("losetup", "-d", d).Run()
		}
	}
}

func (l *lab) apply(fail string) (string, error) {
	r, err := atomic.ParseRecipe([]byte(l.recipe))
	if err != nil {
		return "", err
	}
	return atomic.Apply(context.Background(), r, atomic.WithStateDir(l.state()), atomic.WithFailpoints(fail), atomic.WithLogger(quiet))
}

func (l *lab) state() string { return l.stateDir }

// child applies the recipe in a child process that BOFH_FAIL kills, and
// returns the interrupted transaction's ID.
func (l *lab) child(t *testing.T, fail string) string {
	t.Helper()
	id := atomic.NewID()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1", recipeEnv+"="+l.recipe, stateEnv+"="+l.state(),
		txIDEnv+"="+id, atomic.FailEnv+"="+fail)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child with %s=%s was not killed: %v\n%s", atomic.FailEnv, fail, err, out)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child with %s=%s: %v, want SIGKILL\n%s", atomic.FailEnv, fail, err, out)
	}
	d, err := atomic.Show(l.state(), id)
	if err != nil {
		t.Fatalf("journal of the killed child: %v", err)
	}
	if d.State != atomic.StateInterrupted {
		t.Fatalf("killed transaction %s is %s, want %s", id, d.State, atomic.StateInterrupted)
	}
	return id
}

// TestVMStackCrash: loop ×2 → RAID1 → LUKS2 → open → PV → VG → LV → ext4
// → mount, from recipes/stack/raid1-luks-lvm-ext4.yaml. At every step:
// an in-process error after the effect rolls back to nothing; a SIGKILL
// of a child (before or after the effect), then `tx rollback`, leaves
// nothing, or `tx resume` completes the stack and a file written to it
// reads back. The default runs three cases that cover the composition
// (see the plan below); BOFH_FULL_MATRIX=1 runs error before and after and
// kill before/after × rollback/resume at every step.
func TestVMStackCrash(t *testing.T) {
	vmtest.Require(t)
	start := time.Now()
	l := newLab(t)
	full := os.Getenv(fullEnv) == "1"
	l.assertClean(t, "start")
	t.Logf("setup and first clean check: %v", time.Since(start).Round(time.Millisecond))

	// the recipe once for real: the end state, then by hand back to nothing
	t0 := time.Now()
	if _, err := l.apply(""); err != nil {
		t.Fatalf("apply: %v", err)
	}
	applyTime := time.Since(t0)
	l.assertEnd(t, "apply")
	l.teardown(t)
	l.assertClean(t, "teardown after apply")
	t.Logf("whole recipe (%d steps): %v", stackSteps, applyTime.Round(time.Millisecond))

	type combo struct {
		step          int
		phase, action string // action: error, kill-rollback, kill-resume
	}
	// Default (the TCG budget of make test): the composition, not every
	// step again: each package's own VM test already injects an error and
	// a kill at every step of its own recipe. An error after the last step
	// rolls back through every undo of the stack; a kill after crypt.open
	// is rolled back from the journal; a kill before lvm.lv.create is
	// resumed. BOFH_FULL_MATRIX=1 (make test-full): error before and after,
	// kill before/after × rollback/resume, at every step.
	plan := []combo{
		{stackSteps, atomic.FailAfter, "error"},
		{5, atomic.FailAfter, "kill-rollback"}, // crypt.open
		{8, atomic.FailBefore, "kill-resume"},  // lvm.lv.create
	}
	if full {
		plan = nil
		for i := 1; i <= stackSteps; i++ {
			for _, ph := range []string{atomic.FailBefore, atomic.FailAfter} {
				plan = append(plan, combo{i, ph, "error"}, combo{i, ph, "kill-rollback"}, combo{i, ph, "kill-resume"})
			}
		}
	}

	var ran []string
	for _, c := range plan {
		fail := fmt.Sprintf("%d:%s:%s", c.step, c.phase, strings.SplitN(c.action, "-", 2)[0])
		name := fmt.Sprintf("%02d-%s-%s", c.step, c.phase, c.action)
		ok := t.Run(name, func(t *testing.T) {
			t0 := time.Now()
			defer func() {
				t.Logf("%s (%s, %s=%s): %v", name, stepNames[c.step], atomic.FailEnv, fail, time.Since(t0).Round(time.Millisecond))
			}()
			ctx := context.Background()
			switch c.action {
			case "error":
				_, err := l.apply(fail)
				if !errors.Is(err, atomic.ErrFailpoint) || atomic.ExitCode(err) != atomic.ExitRolledBack {
					t.Fatalf("want a failpoint rolled back (exit 1), got exit %d: %v", atomic.ExitCode(err), err)
				}
				l.assertClean(t, "after rollback of "+fail)
			case "kill-rollback":
				id := l.child(t, fail)
				if err := atomic.RollbackID(ctx, id, nil, atomic.WithStateDir(l.state()), atomic.WithFailpoints(""), atomic.WithLogger(quiet)); err != nil {
					t.Fatalf("tx rollback %s: %v", id, err)
				}
				if d, err := atomic.Show(l.state(), id); err != nil || d.State != atomic.StateRolledBack {
					t.Errorf("after tx rollback: %v %v", d, err)
				}
				l.assertClean(t, "after tx rollback of a kill at "+fail)
			case "kill-resume":
				id := l.child(t, fail)
				if err := atomic.ResumeID(ctx, id, atomic.WithStateDir(l.state()), atomic.WithFailpoints(""), atomic.WithLogger(quiet)); err != nil {
					t.Fatalf("tx resume %s: %v", id, err)
				}
				if d, err := atomic.Show(l.state(), id); err != nil || d.State != atomic.StateCommitted {
					t.Errorf("after tx resume: %v %v", d, err)
				}
				l.assertEnd(t, "after tx resume of a kill at "+fail)
				l.teardown(t)
				l.assertClean(t, "teardown after resume")
			}
		})
		mark := "ok"
		if !ok {
			mark = "FAIL"
			// the next case needs a clean start
			l.forceTeardown(t)
			l.resetFiles(t)
		}
		ran = append(ran, name+" "+mark)
	}
	matrix := "default (error after the last step; kill after step 5 → rollback; kill before step 8 → resume)"
	if full {
		matrix = "full (BOFH_FULL_MATRIX=1: error before+after, kill before+after × rollback+resume)"
	}
	t.Logf("assertClean: %d checks, %v in all", l.cleanN, l.cleanTime.Round(time.Millisecond))
	t.Logf("matrix %s: %d combinations in %v:\n  %s", matrix, len(ran), time.Since(start).Round(time.Second), strings.Join(ran, "\n  "))
}
