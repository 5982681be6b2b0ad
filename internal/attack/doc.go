// Package attack holds the attack suite of issue 12: its tests drive the
// real bofh binary the way an unprivileged attacker, a power cut, a full
// disk or an operator's signals would, one test (or table row) per
// numbered case of the issue, and assert the fixed behaviour with tools
// outside bofh (sha256, stat, getfacl, getfattr, strace, ls).
//
// The binary is built from ./cmd/bofh in TestMain; BOFH_ATTACK_BIN points
// the suite at another build instead (an old commit's, to see which cases
// it fails). The tests need root (the attacker is uid 65534 through
// setpriv, the disk is a tiny tmpfs); they fail without it unless
// BOFH_SKIP_ROOT=1.
//
// Tests are named after the case: TestCase01… to TestCase14…, and
// TestCrashMatrixRollbacks for the crash matrix's kills inside undos and
// rollbacks of rollbacks. The kill between the terminal record and the
// cleanup has no failpoint; TestCase10KillBeforeCleanup makes its leftover
// by hand. The power-cut test (a fault at every fsync) is not here.
//
// The package has no non-test code.
package attack
