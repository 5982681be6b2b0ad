package vmtest

import (
	"os"
	"testing"
)

// InGuest reports whether this process runs inside a lab guest (the guest
// init sets BOFH_IN_VM=1).
func InGuest() bool { return os.Getenv("BOFH_IN_VM") == "1" }

// SkipVM reports whether the person running the tests opted out of the VM
// lab with BOFH_SKIP_VM=1.
func SkipVM() bool { return os.Getenv("BOFH_SKIP_VM") == "1" }

// Require is the first call of every `//go:build vm` test: inside the lab
// guest it returns; anywhere else the test FAILS (the lab should have run it)
// unless BOFH_SKIP_VM=1, in which case it skips loudly. Never a silent pass.
func Require(t testing.TB) {
	t.Helper()
	if InGuest() {
		return
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
	if InGuest() {
		t.Fatal("a host-driven lab test is running inside a lab guest; run it on the host")
	}
	if err := CheckHost(); err != nil {
		t.Fatalf("the VM lab cannot start: %v (install deps/lab.txt, or set BOFH_SKIP_VM=1 to skip)", err)
	}
}
