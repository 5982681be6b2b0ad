// Package xen drives Xen domUs with the xl toolstack through run.Runner:
// xl create, shutdown -w, destroy, pause, unpause and list. Running domains
// come from `xl list -l` (libxl's domain configuration as JSON, ParseList);
// only the run state, which that JSON lacks, is read from the State column
// of `xl list <name>` (ParseListState). DomU configuration files (xl.cfg(5))
// are parsed into and written from typed values (DomuConfig, after pybofh's
// DomuConfig: name, kernel, ramdisk, vcpus, memory, disks with protocol,
// device, guest device and access); settings it does not model are kept.
// The configuration directory comes from the site file's `xen:` section
// (Config.ConfigDir, default /etc/xen); a domain's file is <dir>/<name>.cfg.
//
// Step kinds:
//
//	xen.config.write    write <dir>/<name>.cfg; undo restores the old file or removes it
//	xen.domain.create   xl create; undo destroys the domain
//	xen.domain.shutdown xl shutdown -w, destroy after a timeout; undo creates it from its config
//	xen.domain.destroy  xl destroy; undo creates it from its config
//	xen.domain.pause    xl pause; undo unpauses
//	xen.domain.unpause  xl unpause; undo pauses
//
// See README.md for what was and was not run against a real Xen host.
package xen
