// Package raid wraps Linux md software RAID: mdadm(8) for creating,
// assembling, stopping and changing arrays, `mdadm --detail --export` and
// `mdadm --examine --export` for their state, and /proc/mdstat (text, the
// only place the kernel reports resync progress) for state and progress.
//
// Step kinds registered (see 'bofh step show <kind>'):
//
//   - raid.create: mdadm --create (levels 0, 1, 5, 6, 10; metadata; chunk;
//     --assume-clean for raid1 and raid10 only).
//     Undo stops the array and zeroes the superblocks of the members it
//     wrote, and only those.
//   - raid.assemble: mdadm --assemble; undo stops the array.
//   - raid.stop: mdadm --stop; undo assembles it again from the members it
//     had.
//   - raid.add: mdadm --add; undo fails and removes the member, and zeroes
//     its superblock if it had none before.
//   - raid.remove: mdadm --remove of a failed or spare member; undo adds it
//     back (--re-add, else --add).
//   - raid.fail: mdadm --fail; undo removes the member and adds it back
//     (--re-add, else --add), which resyncs it.
//   - raid.grow: mdadm --grow --raid-devices. Irreversible: a reshape back
//     is another long reshape that can itself fail (and shrinking a
//     raid4/5/6 needs the data above it shrunk first), so the step runs
//     only at commit, after every reversible step succeeded.
//
// Before any command runs, parameters are validated: a RAID level needs a
// minimum number of devices (raid0 2, raid1 2, raid5 3, raid6 4, raid10 2),
// members must be distinct absolute /dev paths, and raid.create refuses a
// member that holds any signature (filesystem, partition table, old md
// superblock) unless Force is set, or that is in use (mounted, held by
// another device) in any case.
//
// [Wait] follows a resync, recovery, reshape or check and reports
// [Progress] to a callback; [Bar] draws it on a terminal.
package raid
