package vmtest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

//go:embed guest/init
var stage1Script []byte

//go:embed guest/stage2
var stage2Script []byte

// initramfsFormat is bumped when the initramfs layout changes in Go code.
const initramfsFormat = "1"

// bootModules are loaded by stage 1 with busybox insmod (dependencies are
// added from modules.dep); everything else is loaded by stage 2 with the
// host's modprobe from the modules share.
var bootModules = []string{"virtio_pci", "virtio_blk", "9pnet_virtio", "9p", "overlay", "virtio_console"}

// Lab is a prepared lab: a Debian kernel, its modules and an initramfs.
type Lab struct {
	// KernelVersion is the guest's `uname -r`, e.g. "6.1.0-56-amd64".
	KernelVersion string
	// Kernel is the path of the vmlinuz image.
	Kernel string
	// Initramfs is the path of the gzip'd cpio initramfs.
	Initramfs string
	// ModulesDir is the host directory shared as /lib/modules in the guest.
	ModulesDir string
	// CacheDir is the cache directory everything lives in.
	CacheDir string
}

// CacheDir returns the lab's cache directory: $BOFH_LAB_CACHE, else
// $XDG_CACHE_HOME/bofh-lab, else /var/cache/bofh-lab.
func CacheDir() string {
	if d := os.Getenv("BOFH_LAB_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "bofh-lab")
	}
	return "/var/cache/bofh-lab"
}

var (
	prepMu   sync.Mutex
	prepared *Lab
)

// Prepare makes sure the kernel and the initramfs are in the cache, fetching
// the kernel package with apt and building the initramfs if needed, and
// returns the lab. It is safe to call from several processes at once (the
// cache is locked) and cheap once the cache is warm.
func Prepare(ctx context.Context) (*Lab, error) {
	prepMu.Lock()
	defer prepMu.Unlock()
	if prepared != nil {
		return prepared, nil
	}
	cache := CacheDir()
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("vmtest: cache dir: %w", err)
	}
	unlock, err := lockFile(filepath.Join(cache, "lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	ver, kdir, err := ensureKernel(ctx, cache)
	if err != nil {
		return nil, err
	}
	lab := &Lab{
		KernelVersion: ver,
		Kernel:        filepath.Join(kdir, "boot", "vmlinuz-"+ver),
		ModulesDir:    filepath.Join(kdir, "lib", "modules"),
		CacheDir:      cache,
	}
	lab.Initramfs, err = ensureInitramfs(cache, kdir, ver)
	if err != nil {
		return nil, err
	}
	prepared = lab
	return lab, nil
}

func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("vmtest: lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("vmtest: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// kernelPackage resolves the Debian kernel image package to use:
// $BOFH_LAB_KERNEL_PKG, else what linux-image-amd64 depends on.
func kernelPackage(ctx context.Context) (string, error) {
	if p := os.Getenv("BOFH_LAB_KERNEL_PKG"); p != "" {
		return p, nil
	}
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		return "", fmt.Errorf("vmtest: apt-cache depends linux-image-amd64: %w", err)
	}
	return parseKernelDepends(out)
}

// parseKernelDepends picks the linux-image-* dependency out of
// `apt-cache depends linux-image-amd64`.
func parseKernelDepends(out []byte) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "Depends:" {
			if name := strings.Trim(f[1], "<>"); strings.HasPrefix(name, "linux-image-") {
				return name, nil
			}
		}
	}
	return "", errors.New("vmtest: no linux-image-* dependency in apt-cache output (run apt-get update?)")
}

// kernelVersion turns a package name into the kernel release it installs.
func kernelVersion(pkg string) string {
	v := strings.TrimPrefix(pkg, "linux-image-")
	return strings.TrimSuffix(v, "-unsigned")
}

func ensureKernel(ctx context.Context, cache string) (ver, dir string, err error) {
	pkg, perr := kernelPackage(ctx)
	if perr != nil {
		// Offline or no apt lists: any kernel already in the cache will do.
		if v, d, ok := newestCachedKernel(cache); ok {
			return v, d, nil
		}
		return "", "", perr
	}
	ver = kernelVersion(pkg)
	dir = filepath.Join(cache, "kernel", ver)
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return ver, dir, nil
	}
	if err := os.MkdirAll(filepath.Join(cache, "kernel"), 0o755); err != nil {
		return "", "", fmt.Errorf("vmtest: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Join(cache, "kernel"), ".fetch-")
	if err != nil {
		return "", "", fmt.Errorf("vmtest: %w", err)
	}
	defer os.RemoveAll(tmp)
	// apt drops privileges to _apt for downloads; let it write here.
	if err := os.Chmod(tmp, 0o777); err != nil {
		return "", "", fmt.Errorf("vmtest: %w", err)
	}
	if err := runCmd(ctx, tmp, "apt-get", "download", "-q", pkg); err != nil {
		return "", "", err
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return "", "", fmt.Errorf("vmtest: apt-get download %s left %d .deb files", pkg, len(debs))
	}
	x := filepath.Join(tmp, "x")
	if err := runCmd(ctx, tmp, "dpkg-deb", "-x", debs[0], x); err != nil {
		return "", "", err
	}
	if _, err := os.Stat(filepath.Join(x, "boot", "vmlinuz-"+ver)); err != nil {
		return "", "", fmt.Errorf("vmtest: %s has no vmlinuz-%s: %w", pkg, ver, err)
	}
	if err := runCmd(ctx, tmp, "depmod", "-b", x, ver); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(filepath.Join(x, ".complete"), []byte(pkg+"\n"), 0o644); err != nil {
		return "", "", fmt.Errorf("vmtest: %w", err)
	}
	os.RemoveAll(dir)
	if err := os.Rename(x, dir); err != nil {
		return "", "", fmt.Errorf("vmtest: %w", err)
	}
	return ver, dir, nil
}

func newestCachedKernel(cache string) (ver, dir string, ok bool) {
	marks, _ := filepath.Glob(filepath.Join(cache, "kernel", "*", ".complete"))
	if len(marks) == 0 {
		return "", "", false
	}
	sort.Strings(marks)
	dir = filepath.Dir(marks[len(marks)-1])
	return filepath.Base(dir), dir, true
}

func runCmd(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("vmtest: %s %s: %w: %s", name, strings.Join(args, " "), err, tail(out, 2000))
	}
	return nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// moduleOrder returns the .ko paths (relative to the modules dir of ver) of
// mods and their dependencies, dependencies first, from modules.dep.
func moduleOrder(modulesDep []byte, mods []string) ([]string, error) {
	deps := map[string][]string{}
	byName := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(modulesDep))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		deps[k] = strings.Fields(v)
		base := strings.TrimSuffix(filepath.Base(k), ".ko")
		byName[strings.ReplaceAll(base, "-", "_")] = k
	}
	var order []string
	seen := map[string]bool{}
	var add func(string)
	add = func(p string) {
		if seen[p] {
			return
		}
		seen[p] = true
		d := deps[p]
		// modules.dep lists the deepest dependency last.
		for i := len(d) - 1; i >= 0; i-- {
			add(d[i])
		}
		order = append(order, p)
	}
	for _, m := range mods {
		p, ok := byName[strings.ReplaceAll(m, "-", "_")]
		if !ok {
			// Built into the kernel (no .ko): nothing to load.
			continue
		}
		add(p)
	}
	return order, nil
}

func ensureInitramfs(cache, kdir, ver string) (string, error) {
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return "", fmt.Errorf("vmtest: busybox (install busybox-static): %w", err)
	}
	h := sha256.New()
	for _, b := range [][]byte{[]byte(initramfsFormat), []byte(ver), stage1Script, stage2Script, busybox, []byte(strings.Join(bootModules, ","))} {
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	key := hex.EncodeToString(h.Sum(nil))[:16]
	path := filepath.Join(cache, "initramfs-"+ver+"-"+key+".cpio.gz")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	mdir := filepath.Join(kdir, "lib", "modules", ver)
	dep, err := os.ReadFile(filepath.Join(mdir, "modules.dep"))
	if err != nil {
		return "", fmt.Errorf("vmtest: %w", err)
	}
	order, err := moduleOrder(dep, bootModules)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	cw := &cpioWriter{w: gz}
	for _, d := range []string{"bin", "dev", "proc", "sys", "mods", "newroot", "lower", "upper", "tmp"} {
		cw.Dir(d, 0o755)
	}
	cw.File("bin/busybox", 0o755, busybox)
	cw.Symlink("bin/sh", "busybox")
	cw.File("init", 0o755, stage1Script)
	cw.File("stage2", 0o755, stage2Script)
	var names []string
	for _, p := range order {
		data, err := os.ReadFile(filepath.Join(mdir, p))
		if err != nil {
			return "", fmt.Errorf("vmtest: %w", err)
		}
		name := filepath.Base(p)
		cw.File("mods/"+name, 0o644, data)
		names = append(names, name)
	}
	cw.File("modules.order", 0o644, []byte(strings.Join(names, "\n")+"\n"))
	if err := cw.Close(); err != nil {
		return "", err
	}
	if err := gz.Close(); err != nil {
		return "", fmt.Errorf("vmtest: gzip: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("vmtest: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("vmtest: %w", err)
	}
	// Drop initramfs images of older init scripts.
	old, _ := filepath.Glob(filepath.Join(cache, "initramfs-*.cpio.gz"))
	for _, o := range old {
		if o != path {
			os.Remove(o)
		}
	}
	return path, nil
}

// CheckHost reports whether the host has what the lab needs to boot a guest
// (the packages in deps/lab.txt) and runs as root.
func CheckHost() error {
	var missing []string
	for _, b := range []string{"qemu-system-x86_64", "apt-get", "apt-cache", "dpkg-deb", "depmod"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		missing = append(missing, "/bin/busybox (busybox-static)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("vmtest: missing on the host: %s", strings.Join(missing, ", "))
	}
	if os.Geteuid() != 0 {
		return errors.New("vmtest: the lab must run as root (9p passthrough, loop devices in tests)")
	}
	return nil
}
