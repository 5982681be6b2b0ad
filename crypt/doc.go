// Package crypt wraps LUKS disk encryption: cryptsetup(8) for formatting,
// key slots, header backups and resizing, and github.com/anatol/luks.go
// (pure Go, no cryptsetup process) for reading headers and, by default,
// for unlocking a device.
//
// Every mutation is a registered step kind, journaled with its undo:
//
//   - crypt.format: luksFormat (LUKS2 by default, LUKS1 on request); refuses a
//     device holding any signature unless forced; undo restores the bytes
//     that were at the head and tail of the device before.
//   - crypt.open: unlock a device as /dev/mapper/NAME with luks.go or
//     cryptsetup; undo closes the mapping, and only a mapping of this device.
//   - crypt.close: close a mapping; undo opens it again (needs a key file).
//   - crypt.key.add: add a key slot; undo kills the slot it added.
//   - crypt.key.remove: kill the slot a key opens (or a given slot); undo
//     restores the header backed up before.
//   - crypt.key.change: change a key; undo restores the header backed up before.
//   - crypt.header.backup: write a header backup file; undo removes it.
//   - crypt.header.restore: restore a header backup; undo puts back the bytes
//     that were there.
//   - crypt.resize: resize an open mapping; undo resizes it back.
//
// Passphrases travel as run.Secret (stdin of cryptsetup, or a 0600 file in
// the step's private directory removed right after) or as the path of a
// key file; they never appear in argv, logs, journals or errors. A secret
// read back from a journal is "<redacted>" and is refused: a step that must
// survive a crash (undo of crypt.close) needs a key file.
//
// Queries: [Dump] decodes `cryptsetup luksDump --dump-json-metadata`,
// [ReadHeader] reads version, UUID and active slots, [IsLUKS], [Mapping]
// looks up a device-mapper mapping.
package crypt
