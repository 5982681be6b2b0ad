#!/bin/bash
# Runs INSIDE a bofh lab guest (make testdata-capture): builds LVM, LUKS, md
# RAID, DRBD, btrfs and filesystem objects on loop devices and records the
# real tools' output under OUT/<tool>/. Every captured file F gets F.meta
# (command, exit status, tool version, kernel) and, when the command wrote
# to stderr, F.stderr.
set -u
OUT=${1:?usage: capture.sh OUTDIR}
[ "${BOFH_IN_VM:-}" = 1 ] || { echo "capture.sh runs inside the lab guest (make testdata-capture)" >&2; exit 2; }
WORK=/tmp/capture
mkdir -p "$WORK"
cd "$WORK" || exit 1

KERNEL=$(uname -r)
KVER=$(uname -v)
declare -A VER
VER[lvm]=$(lvm version 2>&1 | tr '\n' ';')
VER[crypt]=$(cryptsetup --version 2>&1)
VER[raid]=$(mdadm --version 2>&1)
VER[drbd]="$(drbdadm --version 2>&1 | tr '\n' ';') module: $(head -1 /proc/drbd 2>/dev/null)"
VER[blockdev]="$(lsblk --version 2>&1); $(blkid --version 2>&1)"
VER[btrfs]=$(btrfs --version 2>&1)
VER[versions]="(this file)"
VER[fs]="$(mkfs.ext4 -V 2>&1 | head -1); $(mkfs.xfs -V 2>&1); $(mkfs.vfat --help 2>&1 | head -1); $(mount --version 2>&1)"

fail=0
# cap TOOL FILE CMD...: run CMD, stdout to OUT/TOOL/FILE, metadata beside it.
cap() {
	local tool=$1 file=$2
	shift 2
	local dir="$OUT/$tool"
	mkdir -p "$dir"
	"$@" >"$dir/$file" 2>"$dir/$file.stderr"
	local rc=$?
	[ -s "$dir/$file.stderr" ] || rm -f "$dir/$file.stderr"
	{
		echo "command: $*"
		echo "exit: $rc"
		echo "tool: ${VER[$tool]}"
		echo "kernel: $KERNEL $KVER"
		echo "captured: bofh VM lab (Debian kernel under qemu, host tools over 9p)"
	} >"$dir/$file.meta"
	echo "captured $tool/$file (exit $rc)"
	return 0
}
# must CMD...: a setup step; a failure aborts the capture.
must() {
	if ! "$@"; then
		echo "capture: setup step failed: $*" >&2
		fail=1
		exit 1
	fi
}
loop() { # loop NAME SIZE -> prints the loop device
	truncate -s "$2" "$WORK/$1.img" && losetup --find --show "$WORK/$1.img"
}

################ LVM
cap lvm fullreport-empty.json lvm fullreport --reportformat json --units b --nosuffix
PV1=$(loop pv1 256M)
PV2=$(loop pv2 256M)
must pvcreate -q "$PV1" "$PV2"
must vgcreate -q --addtag bofh --addtag site=lab vgcap "$PV1" "$PV2"
must lvcreate -q -Zn -L 32m -n lin --addtag role=data vgcap
must lvcreate -q -Zn --type thin-pool -L 64m -n pool vgcap
must lvcreate -q -V 128m --thinpool pool -n thin --addtag thin vgcap
must lvcreate -q -s -L 16m -n snap vgcap/lin
must lvcreate -q -s -n tsnap vgcap/thin
must lvcreate -q -Zn -L 8m -n inactive vgcap
must lvchange -q -an vgcap/inactive
ORPHAN=$(loop orphan 64M)
must pvcreate -q "$ORPHAN"
cap lvm fullreport.json lvm fullreport --reportformat json --units b --nosuffix
# exactly lvm.ReportArgs(): the one query bofh makes (lvm/capture_test.go
# checks the command matches)
REPORT=(lvm fullreport --reportformat json --units b --nosuffix
	--configreport vg -o vg_name,vg_uuid,vg_attr,vg_size,vg_free,vg_extent_size,vg_extent_count,vg_free_count,pv_count,lv_count,snap_count,vg_tags
	--configreport pv -o pv_name,pv_uuid,pv_attr,pv_size,pv_free,dev_size,pe_start,pv_pe_count,pv_pe_alloc_count,vg_name,pv_tags
	--configreport lv -o lv_name,vg_name,lv_uuid,lv_path,lv_dm_path,lv_attr,lv_layout,lv_role,lv_size,pool_lv,origin,data_percent,metadata_percent,lv_active,lv_merging,lv_tags
	--configreport pvseg -o pvseg_start
	--configreport seg -o segtype)
cap lvm fullreport-bofh.json "${REPORT[@]}"
cap lvm fullreport-bofh-vg.json "${REPORT[@]}" vgcap
cap lvm err-fullreport-missing-vg.json "${REPORT[@]}" novg
cap lvm lvs-all.json lvs -a --reportformat json --units b --nosuffix -o lv_all
cap lvm vgs-all.json vgs --reportformat json --units b --nosuffix -o vg_all
cap lvm pvs-all.json pvs --reportformat json --units b --nosuffix -o pv_all
cap lvm lvs-segments.json lvs -a --reportformat json --units b --nosuffix -o lv_name,vg_name,segtype,seg_size,devices,pool_lv,origin,data_percent,metadata_percent
cap blockdev blkid-lvm2-member.txt blkid -p -o export "$PV1"
# failures
cap lvm err-lvcreate-missing-vg.txt lvcreate -L 8m -n x novg
cap lvm err-vgcreate-exists.txt vgcreate vgcap "$(loop spare 64M)"
cap lvm err-lvcreate-no-space.txt lvcreate -L 10g -n big vgcap
cap lvm err-lvcreate-exists.txt lvcreate -Zn -L 8m -n lin vgcap
cap lvm err-lvs-missing-vg.txt lvs --reportformat json novg
cap lvm err-lvs-missing-lv.txt lvs --reportformat json vgcap/nolv
cap lvm err-lvcreate-bad-name.txt lvcreate -Zn -L 8m -n "snapshot" vgcap
must mkfs.ext4 -q /dev/vgcap/lin
mkdir -p /mnt/lin && must mount /dev/vgcap/lin /mnt/lin
cap lvm err-lvremove-open.txt lvremove -y vgcap/lin
cap lvm err-vgremove-active-no-force.txt vgremove vgcap </dev/null
cap lvm err-pvremove-in-use.txt pvremove "$PV1"
umount /mnt/lin

################ LUKS
echo -n 'correct horse battery staple' >"$WORK/key"
echo -n 'wrong' >"$WORK/badkey"
L2=$(loop luks2 64M)
L1=$(loop luks1 64M)
LA=$(loop luks2a 64M)
must cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --label bofhcap --key-file "$WORK/key" "$L2"
must cryptsetup luksFormat -q --type luks1 --pbkdf-force-iterations 1000 --key-file "$WORK/key" "$L1"
must cryptsetup luksFormat -q --type luks2 --pbkdf argon2id --pbkdf-memory 32 --pbkdf-force-iterations 4 --pbkdf-parallel 1 --key-file "$WORK/key" "$LA"
must cryptsetup luksAddKey -q --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$WORK/key" "$L2" "$WORK/badkey"
cap crypt luks2-dump.json cryptsetup luksDump --dump-json-metadata "$L2"
cap crypt luks2-dump.txt cryptsetup luksDump "$L2"
cap crypt luks2-argon2id-dump.json cryptsetup luksDump --dump-json-metadata "$LA"
cap crypt luks1-dump.txt cryptsetup luksDump "$L1"
cap crypt err-luks1-dump-json.txt cryptsetup luksDump --dump-json-metadata "$L1"
must cryptsetup open --key-file "$WORK/key" "$L2" capluks2
cap crypt status-luks2.txt cryptsetup status capluks2
# crypt.Mapping's query
cap crypt dmsetup-info.txt dmsetup info -c --noheadings --separator ";" -o name,uuid,blkdevs_used,open capluks2
cap crypt err-dmsetup-info-missing.txt dmsetup info -c --noheadings --separator ";" -o name,uuid,blkdevs_used,open nosuchmapping
cap blockdev blkid-luks2.txt blkid -p -o export "$L2"
cap blockdev blkid-luks1.txt blkid -p -o export "$L1"
# the right key, but for a key slot that holds none
cap crypt err-open-keyslot-unused.txt cryptsetup open --key-file "$WORK/key" --test-passphrase "$L1" --key-slot 3
printf 'nope' >"$WORK/wrong2"
cap crypt err-open-wrong-key.txt cryptsetup open --key-file "$WORK/wrong2" "$L1" capbad
cap crypt err-open-name-in-use.txt cryptsetup open --key-file "$WORK/key" "$L1" capluks2
cap crypt err-open-device-in-use.txt cryptsetup open --key-file "$WORK/key" "$L2" capluks2b
cap crypt err-isluks-not-luks.txt cryptsetup isLuks "$PV1"
cap crypt err-status-missing.txt cryptsetup status nosuchmapping
cap crypt err-close-missing.txt cryptsetup close nosuchmapping
cap crypt err-luksdump-not-luks.txt cryptsetup luksDump "$PV1"

################ md RAID
# Keep resync slow so "resyncing" can be captured, then let it finish.
echo 2000 >/proc/sys/dev/raid/speed_limit_min
echo 4000 >/proc/sys/dev/raid/speed_limit_max
R1A=$(loop r1a 64M)
R1B=$(loop r1b 64M)
R5A=$(loop r5a 64M)
R5B=$(loop r5b 64M)
R5C=$(loop r5c 64M)
must mdadm --create /dev/md/caprd1 --run --level=1 --raid-devices=2 --metadata=1.2 --name=caprd1 "$R1A" "$R1B"
must mdadm --create /dev/md/caprd5 --run --level=5 --raid-devices=3 --metadata=1.2 --name=caprd5 "$R5A" "$R5B" "$R5C"
cap raid detail-raid1-resyncing.txt mdadm --detail --export /dev/md/caprd1
cap raid detail-raid5-resyncing.txt mdadm --detail --export /dev/md/caprd5
cap raid detail-raid1-resyncing-human.txt mdadm --detail /dev/md/caprd1
cap raid mdstat-resyncing.txt cat /proc/mdstat
echo 200000 >/proc/sys/dev/raid/speed_limit_max
echo 100000 >/proc/sys/dev/raid/speed_limit_min
mdadm --wait /dev/md/caprd1 /dev/md/caprd5
cap raid detail-raid1-clean.txt mdadm --detail --export /dev/md/caprd1
cap raid detail-raid5-clean.txt mdadm --detail --export /dev/md/caprd5
cap raid detail-raid5-clean-human.txt mdadm --detail /dev/md/caprd5
cap raid mdstat-clean.txt cat /proc/mdstat
cap raid examine-member.txt mdadm --examine --export "$R1A"
cap raid detail-scan.txt mdadm --detail --scan
cap blockdev blkid-linux-raid-member.txt blkid -p -o export "$R1A"
# mount guesses the type from the md superblock; with -t it opens the
# member, which the running array holds exclusively
cap blockdev err-mount-raid-member.txt mount "$R1A" /mnt/lin
cap blockdev err-mount-busy.txt mount -t ext4 "$R1A" /mnt/lin
must mdadm /dev/md/caprd1 --fail "$R1B"
must mdadm /dev/md/caprd1 --remove "$R1B"
must mdadm /dev/md/caprd5 --fail "$R5C"
cap raid detail-raid1-degraded.txt mdadm --detail --export /dev/md/caprd1
cap raid detail-raid5-degraded-faulty.txt mdadm --detail --export /dev/md/caprd5
cap raid detail-raid1-degraded-human.txt mdadm --detail /dev/md/caprd1
cap raid mdstat-degraded.txt cat /proc/mdstat
R0=$(loop r0 64M)
cap raid err-create-too-few-devices.txt mdadm --create /dev/md/capbad --run --level=5 --raid-devices=3 "$R0"
cap raid err-create-member-in-use.txt mdadm --create /dev/md/capbad2 --run --level=1 --raid-devices=2 "$R1A" "$R0"
cap raid err-detail-not-md.txt mdadm --detail --export "$R0"
cap raid err-stop-missing.txt mdadm --stop /dev/md/nosuch
cap raid err-examine-no-superblock.txt mdadm --examine "$R0"
cap raid err-assemble-no-superblock.txt mdadm --assemble /dev/md/capbad3 "$R0"
MD1=$(readlink -f /dev/md/caprd1)
must mdadm --stop /dev/md/caprd1
must mdadm --stop /dev/md/caprd5
cap raid mdstat-empty.txt cat /proc/mdstat
cap raid err-detail-stopped.txt mdadm --detail --export /dev/md/caprd1
cap raid err-detail-stopped-node.txt mdadm --detail --export "$MD1"

################ DRBD (8.4 kernel module, drbd-utils 9)
D0=$(loop drbd0 64M)
ip link set lo up
H=$(uname -n)
cat >/etc/drbd.d/capr0.res <<EOF
resource capr0 {
  device /dev/drbd7;
  disk $D0;
  meta-disk internal;
  on $H { address 127.0.0.1:7797; }
  on capture-peer { address 127.0.0.2:7797; }
}
EOF
cap drbd proc-drbd-none.txt cat /proc/drbd
cap drbd drbdadm-dump.txt drbdadm dump capr0
cap drbd drbdadm-dump-all.txt drbdadm dump all
cap drbd drbdadm-dump-xml.txt drbdadm dump-xml capr0
cap drbd err-status-json-down.txt drbdsetup status --json capr0
must drbdadm create-md --force capr0
must drbdadm up capr0
cap drbd proc-drbd-wfconnection-secondary.txt cat /proc/drbd
cap drbd err-status-json-secondary.txt drbdsetup status --json capr0
cap drbd drbdadm-status-secondary.txt drbdadm status capr0
must drbdadm primary --force capr0
cap drbd proc-drbd-wfconnection-primary.txt cat /proc/drbd
cap drbd err-status-json-primary.txt drbdsetup status --json capr0
cap drbd drbdadm-status-primary.txt drbdadm status capr0
cap drbd drbdadm-role.txt drbdadm role capr0
cap drbd drbdadm-cstate.txt drbdadm cstate capr0
cap drbd drbdadm-dstate.txt drbdadm dstate capr0
cap drbd drbdsetup-show.txt drbdsetup show capr0
# what drbd.ResourceStatus (8.4 path) and drbd.BackingDisk run
cap drbd drbdadm-sh-minor.txt drbdadm sh-minor capr0
cap drbd drbdadm-sh-ll-dev.txt drbdadm sh-ll-dev capr0
cap drbd err-sh-minor-undefined.txt drbdadm sh-minor nosuchres
cap drbd err-up-undefined.txt drbdadm up nosuchres
cap drbd err-create-md-while-up.txt drbdadm create-md --force capr0
must drbdadm disconnect capr0
cap drbd proc-drbd-standalone.txt cat /proc/drbd
must drbdadm down capr0
cap drbd proc-drbd-down.txt cat /proc/drbd
cap drbd err-role-down.txt drbdadm role capr0
cap drbd err-dump-md-unclean.txt drbdadm dump-md capr0

################ filesystems, lsblk, blkid, btrfs
FE=$(loop ext4 64M)
FX=$(loop xfs 320M)
FB=$(loop btrfs 256M)
FV=$(loop vfat 64M)
must mkfs.ext4 -q -L capext4 "$FE"
must mkfs.xfs -q -L capxfs "$FX"
must mkfs.btrfs -q -L capbtrfs "$FB"
must mkfs.vfat -n CAPVFAT "$FV" >/dev/null
cap blockdev blkid-ext4.txt blkid -p -o export "$FE"
cap blockdev blkid-xfs.txt blkid -p -o export "$FX"
cap blockdev blkid-btrfs.txt blkid -p -o export "$FB"
cap blockdev blkid-vfat.txt blkid -p -o export "$FV"
cap blockdev err-blkid-empty.txt blkid -p -o export "$R0"
cap blockdev blkid-export-all.txt blkid -o export
mkdir -p /mnt/btrfs /mnt/ext4
must mount "$FB" /mnt/btrfs
must mount "$FE" /mnt/ext4
must btrfs -q subvolume create /mnt/btrfs/a
must btrfs -q subvolume create /mnt/btrfs/a/b
must btrfs -q subvolume snapshot -r /mnt/btrfs/a /mnt/btrfs/a-snap
cap btrfs subvolume-list.txt btrfs subvolume list -a -p -u -q -R /mnt/btrfs
cap btrfs subvolume-show.txt btrfs subvolume show /mnt/btrfs/a
cap btrfs subvolume-show-snapshot.txt btrfs subvolume show /mnt/btrfs/a-snap
cap btrfs subvolume-show-toplevel.txt btrfs subvolume show /mnt/btrfs
cap btrfs filesystem-show.txt btrfs filesystem show --raw /mnt/btrfs
cap btrfs filesystem-usage.txt btrfs filesystem usage -b /mnt/btrfs
# what blockdev's btrfs resize reads
cap btrfs dump-super.txt btrfs inspect-internal dump-super "$FB"
cap btrfs min-dev-size.txt btrfs inspect-internal min-dev-size --id 1 /mnt/btrfs
cap btrfs err-subvolume-create-exists.txt btrfs subvolume create /mnt/btrfs/a
cap btrfs err-subvolume-delete-not-btrfs.txt btrfs subvolume delete /mnt/ext4
must mkdir /mnt/btrfs/plain
cap btrfs err-subvolume-delete-not-subvol.txt btrfs subvolume delete /mnt/btrfs/plain
cap btrfs err-subvolume-show-not-subvol.txt btrfs subvolume show /mnt/btrfs/plain
cap btrfs err-subvolume-list-not-btrfs.txt btrfs subvolume list /mnt/ext4
# lsblk over the whole stack (loop, LVM, dm-crypt, ...)
must cryptsetup open --key-file "$WORK/key" "$L1" capluks1
cap blockdev lsblk-all.json lsblk -J -b -O
cap blockdev lsblk-columns.json lsblk -J -b -o NAME,KNAME,PATH,MAJ:MIN,TYPE,SIZE,FSTYPE,LABEL,UUID,PARTUUID,MOUNTPOINTS,RO,RM,PKNAME
cap blockdev lsblk-probe.json lsblk -J -b -o NAME,KNAME,PATH,MAJ:MIN,TYPE,SIZE,LOG-SEC,RO,FSTYPE,FSVER,LABEL,UUID,PTTYPE,PTUUID,PARTUUID,PARTLABEL,PKNAME,MOUNTPOINTS "$FE" "$FX" "$FB" "$FV" "$R0"
cap blockdev wipefs-probe.json wipefs --no-act -J "$FE" "$FX" "$FB" "$FV" "$R0"
cap blockdev wipefs-empty.json wipefs --no-act -J "$R0"
cap blockdev losetup-list.json losetup --json --list
cap blockdev losetup-unattached.json losetup --json --list "$(losetup --find)"
# the columns blockdev.Mounts asks for; --mountpoint as blockdev.MountsAt
cap blockdev findmnt.json findmnt -J -o TARGET,SOURCE,FSTYPE,OPTIONS,MAJ:MIN
cap blockdev findmnt-mountpoint.json findmnt -J -o TARGET,SOURCE,FSTYPE,OPTIONS,MAJ:MIN --mountpoint /mnt/ext4
cap blockdev findmnt-source.json findmnt -J -o TARGET,SOURCE,FSTYPE,OPTIONS,MAJ:MIN --source "$FE"
cap blockdev err-findmnt-not-mounted.json findmnt -J -o TARGET,SOURCE,FSTYPE,OPTIONS,MAJ:MIN --mountpoint /mnt/lin
# mount/umount failures
cap blockdev err-mount-already-mounted.txt mount "$FE" /mnt/ext4
(cd /mnt/ext4 && exec sleep 20) &
SLEEPER=$!
sleep 0.5
cap blockdev err-umount-busy.txt umount /mnt/ext4
kill $SLEEPER 2>/dev/null
wait $SLEEPER 2>/dev/null
cap blockdev err-mount-no-fs.txt mount "$R0" /mnt/lin
# the ext4 device is mounted on /mnt/ext4: mounting it elsewhere fails
cap blockdev err-mount-mounted-elsewhere.txt mount -t xfs "$FE" /mnt/lin
# the vfat device is not mounted: a wrong -t is the kernel's EINVAL
cap blockdev err-mount-wrong-type.txt mount -t xfs "$FV" /mnt/lin
cap blockdev err-losetup-detach-missing.txt losetup -d /dev/loop250
# --no-act lists a mounted fs (exit 0); erasing opens it O_EXCL and fails
cap blockdev wipefs-mounted.json wipefs --no-act -J "$FB"
cap blockdev err-wipefs-in-use.txt wipefs -a "$FB"
cap fs err-mkfs-ext4-mounted.txt mkfs.ext4 -q "$FE"
cap fs err-mkfs-xfs-mounted.txt mkfs.xfs -q "$FE"
umount /mnt/ext4 /mnt/btrfs
cap fs err-mkfs-xfs-existing-fs.txt mkfs.xfs -q "$FE"
# what blockdev's ext4 and xfs resize read
cap fs dumpe2fs.txt dumpe2fs -h "$FE"
cap fs resize2fs-min.txt resize2fs -P "$FE"
cap fs xfs-info.txt xfs_info "$FX"

################ versions
cap versions lvm.txt lvm version
cap versions cryptsetup.txt cryptsetup --version
cap versions mdadm.txt mdadm --version
cap versions drbdadm.txt drbdadm --version
cap versions kernel.txt uname -a
echo "capture: done"
exit $fail
