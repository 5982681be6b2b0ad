package hosttest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Kernel objects outlive a test binary that is SIGKILLed (a timeout, a
// crash test gone wrong, a human's ^\): loop devices, mounts and network
// namespaces have no process to die with. The helpers therefore name what
// they make after the process that made it, and the first helper called in
// a process sweeps away what dead owners left:
//
//	$TMPDIR/bofh-hosttest-<owner>-loop-*.img  a LoopFile's backing file
//	$TMPDIR/bofh-hosttest-<owner>-mnt-*       a TempMount's mount point
//	$TMPDIR/bofh-hosttest-<owner>-netns-<ns>  marks NetNS <ns> (made first)
//	$TMPDIR/bofh-hosttest-<owner>-tmp-*       a daemon's files (Sshd)
//
// <owner> is "<pid>.<start time>" (the start time in clock ticks since
// boot, from /proc/<pid>/stat), so a recycled pid is not mistaken for the
// owner. Processes hosttest starts (sshd, rsync) die with the test binary
// instead: see StartDaemon.

// OwnedPrefix is the name prefix of the temporary files and directories
// the helpers make, followed by an owner tag and "-".
const OwnedPrefix = "bofh-hosttest-"

var (
	selfOnce sync.Once
	selfTag  string
)

// Owner returns this process's owner tag, "<pid>.<start time>".
func Owner() string {
	selfOnce.Do(func() {
		st, err := startTime(os.Getpid())
		if err != nil {
			st = "0"
		}
		selfTag = fmt.Sprintf("%d.%s", os.Getpid(), st)
	})
	return selfTag
}

// startTime reads field 22 of /proc/<pid>/stat.
func startTime(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces and parens
	if i < 0 {
		return "", fmt.Errorf("hosttest: /proc/%d/stat: %q", pid, s)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", fmt.Errorf("hosttest: /proc/%d/stat: %q", pid, s)
	}
	return f[19], nil // field 22; f[0] is field 3
}

// OwnerGone reports whether the process an owner tag names has exited. A
// malformed tag is not gone (never sweep what is not understood).
func OwnerGone(tag string) bool {
	pidS, st, ok := strings.Cut(tag, ".")
	pid, err := strconv.Atoi(pidS)
	if !ok || err != nil || pid <= 0 || st == "" {
		return false
	}
	now, err := startTime(pid)
	if err != nil {
		return os.IsNotExist(err) || strings.Contains(err.Error(), "no such process")
	}
	return st != "0" && now != st // "0": the owner could not read its start time
}

// ownedName returns the base name for a new owned object of kind, ending
// in rest.
func ownedName(kind, rest string) string {
	return OwnedPrefix + Owner() + "-" + kind + "-" + rest
}

// parseOwned splits a base name made by ownedName into owner, kind and rest.
func parseOwned(base string) (owner, kind, rest string, ok bool) {
	s, ok := strings.CutPrefix(base, OwnedPrefix)
	if !ok {
		return "", "", "", false
	}
	owner, s, ok = strings.Cut(s, "-")
	if !ok {
		return "", "", "", false
	}
	kind, rest, ok = strings.Cut(s, "-")
	return owner, kind, rest, ok
}

var sweepOnce sync.Once

// sweep removes, once per process, what dead owners left: mounts on their
// mount points and on their loop devices first, then the loop devices,
// then their network namespaces, then the names themselves. Errors are
// ignored: a sweep is best effort and must not fail a test that made
// none of it.
func sweep() {
	sweepOnce.Do(func() { _ = Sweep(os.TempDir()) })
}

// Sweep removes what owners that have exited left in dir (normally
// $TMPDIR): their mounts, loop devices, network namespaces and the named
// files themselves. It returns an error naming what it could not remove.
// The helpers call it once per process.
func Sweep(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var loops, mnts, nets, tmps []string
	for _, e := range ents {
		owner, kind, _, ok := parseOwned(e.Name())
		if !ok || !OwnerGone(owner) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		switch kind {
		case "loop":
			loops = append(loops, p)
		case "mnt":
			mnts = append(mnts, p)
		case "netns":
			nets = append(nets, p)
		case "tmp":
			tmps = append(tmps, p)
		}
	}
	if len(loops)+len(mnts)+len(nets)+len(tmps) == 0 {
		return nil
	}
	var errs []string
	fail := func(err error) {
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	devs := loopsBackedBy(loops)
	// Unmount, deepest first: whatever sits below a stale mount point, and
	// whatever is mounted from a stale loop device, wherever.
	mounts, err := mountTable()
	fail(err)
	var umount []string
	for _, m := range mounts {
		if devs[m.source] || under(m.target, mnts) || under(m.target, tmps) {
			umount = append(umount, m.target)
		}
	}
	sort.Slice(umount, func(i, j int) bool { return len(umount[i]) > len(umount[j]) })
	for _, target := range umount {
		err := unix.Unmount(target, 0)
		if err == unix.EBUSY {
			err = unix.Unmount(target, unix.MNT_DETACH)
		}
		if err != nil && err != unix.EINVAL && err != unix.ENOENT {
			fail(fmt.Errorf("umount %s: %w", target, err))
		}
	}
	for dev := range devs {
		if _, err := output("losetup", "--detach", dev); err != nil {
			fail(err)
		}
	}
	for _, f := range loops {
		fail(ignoreNotExist(os.Remove(f)))
	}
	for _, m := range mnts {
		fail(ignoreNotExist(os.Remove(m))) // never RemoveAll: a mount may still be there
	}
	if after, err := mountTable(); err == nil {
		for _, d := range tmps {
			busy := false
			for _, m := range after {
				busy = busy || under(m.target, []string{d})
			}
			if busy {
				fail(fmt.Errorf("%s: still mounted below, not removed", d))
				continue
			}
			fail(os.RemoveAll(d))
		}
	}
	for _, marker := range nets {
		_, _, name, _ := parseOwned(filepath.Base(marker))
		if _, err := os.Stat(filepath.Join("/run/netns", name)); err == nil {
			if _, err := output("ip", "netns", "delete", name); err != nil {
				fail(err)
				continue
			}
		}
		fail(ignoreNotExist(os.Remove(marker)))
	}
	if len(errs) > 0 {
		return fmt.Errorf("hosttest: sweep: %s", strings.Join(errs, "; "))
	}
	return nil
}

func ignoreNotExist(err error) error {
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

func under(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// loopsBackedBy returns the loop devices whose backing file is one of files.
func loopsBackedBy(files []string) map[string]bool {
	devs := map[string]bool{}
	if len(files) == 0 {
		return devs
	}
	out, err := output("losetup", "--list", "--noheadings", "--raw", "--output", "NAME,BACK-FILE")
	if err != nil {
		return devs
	}
	want := map[string]bool{}
	for _, f := range files {
		want[f] = true
	}
	for _, line := range strings.Split(out, "\n") {
		name, back, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		back = strings.TrimSuffix(unescapeHex(back), " (deleted)")
		if want[back] {
			devs[name] = true
		}
	}
	return devs
}

// unescapeHex undoes lsblk/losetup --raw's \xHH escapes.
func unescapeHex(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

type mount struct{ target, source string }

// mountTable reads /proc/self/mountinfo.
func mountTable() ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		a, b := strings.Fields(pre), strings.Fields(post)
		if !ok || len(a) < 5 || len(b) < 2 {
			continue
		}
		ms = append(ms, mount{target: unescapeOctal(a[4]), source: unescapeOctal(b[1])})
	}
	return ms, sc.Err()
}

// unescapeOctal undoes mountinfo's \NNN escapes.
func unescapeOctal(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// StartDaemon starts cmd so that it cannot outlive the test binary, even
// when that is SIGKILLed: cmd gets its own process group (Setpgid; stop it
// with syscall.Kill(-pid, ...) to reach its children too) and the
// parent-death signal SIGKILL. The kernel sends that signal when the
// thread that forked the child exits, not the process, so cmd is started
// from an OS thread locked for as long as cmd runs. Other SysProcAttr
// fields the caller set (Cloneflags, ...) are kept. The caller waits for
// cmd as usual.
func StartDaemon(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		err := cmd.Start()
		errc <- err
		if err != nil {
			return
		}
		// Wait for the exit without reaping (cmd.Wait does that).
		var info unix.Siginfo
		for {
			if err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != unix.EINTR {
				return
			}
		}
	}()
	return <-errc
}

// CombinedOutput is cmd.CombinedOutput for a child that must not outlive
// the test binary, such as a crash test's child: it is started with
// StartDaemon.
func CombinedOutput(cmd *exec.Cmd) ([]byte, error) {
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := StartDaemon(cmd); err != nil {
		return nil, err
	}
	err := cmd.Wait()
	return b.Bytes(), err
}
