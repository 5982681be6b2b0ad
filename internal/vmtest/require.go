package vmtest

import (
	"os"
	"strings"
	"testing"
)

// GuestCmdlineFlag is on the kernel command line of every lab guest (the
// lab's qemu passes it with -append). A host cannot grow it by setting an
// environment variable, so it tells a lab guest from a host on which
// someone exported BOFH_IN_VM=1: the kernel ignores a dotted parameter of a
// module it does not know and only shows it in /proc/cmdline.
const GuestCmdlineFlag = "bofh.lab=guest"

// InVMEnv is the environment variable the guest's init sets to 1.
const InVMEnv = "BOFH_IN_VM"

// procCmdline is read for [GuestCmdlineFlag]; tests point it elsewhere.
var procCmdline = "/proc/cmdline"

// labKernel reports whether this process runs under a kernel booted by the
// lab: its command line carries [GuestCmdlineFlag].
func labKernel() bool {
	b, err := os.ReadFile(procCmdline)
	if err != nil {
		return false
	}
	for _, f := range strings.Fields(string(b)) {
		if f == GuestCmdlineFlag {
			return true
		}
	}
	return false
}

// InGuest reports whether this process runs inside a lab guest: the guest
// init sets BOFH_IN_VM=1 AND the kernel was booted by the lab (its command
// line carries [GuestCmdlineFlag]). The environment variable alone, which a
// host can set, is not enough.
func InGuest() bool { return os.Getenv(InVMEnv) == "1" && labKernel() }

// SkipVM reports whether the person running the tests opted out of the VM
// lab with BOFH_SKIP_VM=1.
func SkipVM() bool { return os.Getenv("BOFH_SKIP_VM") == "1" }

// Require is the first call of every `//go:build vm` test: inside the lab
// guest it returns; anywhere else the test FAILS (the lab should have run it)
// unless BOFH_SKIP_VM=1, in which case it skips loudly. Never a silent pass.
// BOFH_IN_VM=1 set on a machine that is not a lab guest is a failure even
// with BOFH_SKIP_VM=1: vm tests destroy devices and must never run on a host.
func Require(t testing.TB) {
	t.Helper()
	env, lab := os.Getenv(InVMEnv) == "1", labKernel()
	switch {
	case env && lab:
		return
	case env:
		t.Fatalf("%s=1 is set, but this is not a lab guest (%s lacks %s): refusing to run a "+
			"destructive VM test on this machine; unset %s and run it with `make test-vm`",
			InVMEnv, procCmdline, GuestCmdlineFlag, InVMEnv)
	case lab:
		t.Fatalf("the kernel was booted by the lab (%s) but %s=1 is not set: the guest's init did not "+
			"set up the environment", GuestCmdlineFlag, InVMEnv)
	}
	if SkipVM() {
		t.Skip("SKIPPED: needs the VM lab (BOFH_SKIP_VM=1 set); run `make test-vm` to run it")
	}
	t.Fatal("this test needs the real-kernel VM lab and is not running inside it: " +
		"run it with `make test-vm` (go run ./internal/vmtest/cmd/labtest), or set BOFH_SKIP_VM=1 to skip")
}

// RequireLab is the first call of a host-side `//go:build lab` test that
// boots guests itself: it fails when the lab's tools are missing unless
// BOFH_SKIP_VM=1 (then it skips loudly). Booting failures are reported by
// the helpers that boot ([StartPair], [Run]) and must be t.Fatal'ed too.
func RequireLab(t testing.TB) {
	t.Helper()
	if SkipVM() {
		t.Skip("SKIPPED: needs the VM lab (BOFH_SKIP_VM=1 set)")
	}
	if os.Getenv(InVMEnv) == "1" || labKernel() {
		t.Fatal("a host-driven lab test is running inside a lab guest (or with BOFH_IN_VM=1 set); run it on the host")
	}
	if err := CheckHost(); err != nil {
		t.Fatalf("the VM lab cannot start: %v (install deps/lab.txt, or set BOFH_SKIP_VM=1 to skip)", err)
	}
}
