// Package stacktest holds cross-package recipe tests: recipes that stack
// several tool packages' step kinds (loop devices, md RAID, LUKS, LVM,
// filesystems, mounts) and crash them at every step, checking with the real
// tools that a rollback leaves nothing behind and a resume completes the
// stack. It has no API and registers no step kinds; its tests import the
// tool packages only for their steps and probes.
package stacktest
