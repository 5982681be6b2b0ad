// Package blockdev wraps the Linux block-device tools an operator uses to
// prepare disks: lsblk, blkid, wipefs and findmnt for probing; losetup for
// loop devices; wipefs and mkfs.{ext4,xfs,btrfs,vfat} for signatures and
// filesystems; partition tables through go-diskfs (GPT and MBR); mount and
// umount, with a MountPool of site-configured mountpoints.
//
// Probing prefers one machine-readable call over many: Probe asks lsblk
// (-J -b) about every device at once and wipefs (-J) for the signatures of
// every device at once, so probing N devices costs 2 commands, not 2N.
//
// Step kinds registered (see 'bofh step list'):
//
//   - loop.attach: attach a file to a free loop device; undo detaches it
//   - loop.detach: detach a loop device; undo attaches the same file again
//   - fs.wipe:     erase every signature, backed up; undo writes them back
//   - fs.mkfs:     make an ext4, xfs, btrfs or vfat filesystem; undo wipes it
//     and restores the signatures that were there
//   - part.table:  write an empty GPT or MBR table; undo restores the bytes
//   - part.create: add a partition; undo restores the previous table bytes
//   - part.delete: remove a partition; undo restores the previous table bytes
//   - mount:       mount a device (options, bind, read-only); undo unmounts
//   - umount:      unmount; undo mounts it again with the same options
//   - fs.resize:   resize a loop file, its device and its ext4/btrfs
//     filesystem (a Stack of Layers); undo resizes every layer back
//   - fs.grow:     the same for a grow only, irreversible (at commit): for
//     xfs and mounted ext4, which cannot shrink back
package blockdev
