// Package libvirt manages libvirt domains, storage pools, volumes and
// networks through libvirtd's unix socket with github.com/digitalocean/go-libvirt
// (the RPC protocol, no cgo, no virsh). The socket and the driver URI
// (qemu:///system, xen:///system, test:///default) come from the site
// file's `libvirt:` section (Config) and travel in every step's parameters
// (Conn), so a rollback after a crash talks to the same daemon.
//
// Domains are typed values (DomainSpec: name, vCPUs, memory, block-device
// disks such as LVs, DRBD devices or LUKS mappings, NICs on bridges, a
// serial console) rendered to domain XML with encoding/xml, never by
// pasting strings. Names are checked before anything runs (ValidName),
// memory sizes need a unit (ParseSize).
//
// Step kinds:
//
//	libvirt.domain.define    define a domain; undo destroys and undefines it (by UUID)
//	libvirt.domain.start     start a domain; undo destroys it
//	libvirt.domain.shutdown  ACPI shutdown, destroy after a timeout; undo starts it
//	libvirt.domain.destroy   power off; undo starts it
//	libvirt.domain.undefine  irreversible, runs at commit; refuses a running domain
//	libvirt.pool.define      define a dir or logical pool; undo stops and undefines it
//	libvirt.pool.start       start a pool; undo stops it
//	libvirt.volume.create    create a volume; undo deletes it (by key)
//	libvirt.network.define   define a network; undo stops and undefines it
//	libvirt.network.start    start a network; undo stops it
//
// Every undo acts only on the object the step made: a define step records
// the UUID libvirt gave the object and its undo leaves alone an object of
// the same name with another UUID.
package libvirt
