// Package vmtest is bofh's real-kernel test lab: it boots a Debian kernel
// under qemu so that code needing kernel features the build host lacks
// (device-mapper, md RAID, DRBD) is tested against the real kernel and the
// real tools.
//
// The lab downloads the Debian kernel package with apt (once, into a cache
// directory outside the repository, see [CacheDir]), builds a tiny busybox
// initramfs keyed by kernel version and a hash of the guest init scripts, and
// boots qemu (KVM when it works, TCG otherwise) with the host's root shared
// read-only over 9p as the lower layer of an overlay on tmpfs: inside the
// guest, /usr/sbin/lvm, mdadm, cryptsetup and drbdadm are the host's own
// binaries, and every write stays in guest memory.
//
// Three ways to use it:
//
//   - [Run] boots one guest, runs one command inside, streams its output and
//     returns its exit status. The VM is always torn down.
//   - Tests tagged `//go:build vm` are compiled on the host and run inside one
//     guest by `go run ./internal/vmtest/cmd/labtest` (`make test-vm`). They
//     call [Require] first, which fails outside the guest unless
//     BOFH_SKIP_VM=1.
//   - Tests tagged `//go:build lab` run on the host and drive guests
//     themselves, e.g. two guests joined by a private network with
//     [StartPair] for DRBD replication.
//
// See docs/lab.md for how it works, timings and debugging.
package vmtest
