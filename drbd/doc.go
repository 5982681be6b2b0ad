// Package drbd wraps DRBD replicated block devices: it writes resource
// files (.res) from a typed [Resource] spec, allocating the next free port
// and minor from the configs already in the config directory (site section
// `drbd:`, key `config_dir`, default /etc/drbd.d), runs drbdadm(8), and
// decodes state from `drbdsetup status --json` (DRBD 9) and /proc/drbd
// (DRBD 8.4, what the Debian kernel ships; text, the only form it has).
//
// Step kinds registered (see 'bofh step show <kind>'):
//
//   - drbd.config.write: write <config_dir>/<name>.res; undo removes it
//     (a file with other content already there is a conflict, not
//     overwritten).
//   - drbd.create-md: drbdadm create-md; refuses a backing disk holding a
//     signature unless forced; undo wipes the metadata it wrote
//     (drbdadm wipe-md).
//   - drbd.up: drbdadm up; undo takes it down.
//   - drbd.down: drbdadm down; undo brings it up again (and primary, if it
//     was).
//   - drbd.primary: drbdadm primary (--force for the first promotion of
//     new data); undo makes it secondary.
//   - drbd.secondary: drbdadm secondary; undo makes it primary again.
//   - drbd.connect / drbd.disconnect: each undoes the other.
//   - drbd.adjust: drbdadm adjust (apply the config file); its undo is a
//     no-op: the config step's own undo restores the file, and an adjust
//     after the rollback applies it.
//   - drbd.verify: start an online verify; it changes no data, its undo is
//     a no-op.
//   - drbd.invalidate: discard this node's data and resync it from the
//     peer. Irreversible: runs only at commit.
//
// Resource names are validated before any command: 1-63 characters from
// letters, digits, '_', '-', '.', '+', not starting with '-' or '.', and
// not one of drbdadm's keywords ("all", "common", "resource", …).
package drbd
