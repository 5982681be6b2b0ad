#!/bin/sh
# Captures real DRBD 8.4 output inside the bofh VM lab (Debian 6.1 kernel
# drbd module, host drbd-utils 9.22).
# Run: go run ./internal/vmtest/cmd/vmrun sh testdata/drbd/capture.sh
set -x
sec() { echo "=== $1"; }
cd /tmp
truncate -s 64M a.img; losetup /dev/loop0 a.img
mkdir -p /etc/drbd.d
cat >/etc/drbd.conf <<'X'
include "/etc/drbd.d/*.res";
X
cat >/etc/drbd.d/r0.res <<X
resource r0 {
  net { protocol C; }
  on $(hostname) {
    device /dev/drbd0;
    disk /dev/loop0;
    address 127.0.0.1:7789;
    meta-disk internal;
  }
  on peer {
    device /dev/drbd0;
    disk /dev/loop0;
    address 127.0.0.2:7789;
    meta-disk internal;
  }
}
X
drbdadm --version 2>&1
sec proc-drbd-loaded; cat /proc/drbd
drbdadm create-md --force r0 2>&1; echo "rc=$?"
drbdadm up r0 2>&1; echo "rc=$?"
sec proc-drbd-up; cat /proc/drbd
sec status-json-84; drbdsetup status --json r0 2>&1; echo "rc=$?"
sec status-84; drbdadm status r0 2>&1; echo "rc=$?"
sec role; drbdadm role r0 2>&1; sec cstate; drbdadm cstate r0 2>&1; sec dstate; drbdadm dstate r0 2>&1
drbdadm primary --force r0 2>&1; echo "rc=$?"
sec proc-drbd-primary; cat /proc/drbd
sec sh-dump-md; drbdadm dump r0 2>&1
mkfs.ext4 -q /dev/drbd0 2>&1; echo "mkfs rc=$?"
drbdadm secondary r0 2>&1
sec proc-drbd-secondary; cat /proc/drbd
drbdadm disconnect r0 2>&1; echo "rc=$?"
sec proc-drbd-standalone; cat /proc/drbd
drbdadm down r0 2>&1; echo "rc=$?"
sec proc-drbd-down; cat /proc/drbd
sec down-again; drbdadm down r0 2>&1; echo "rc=$?"
sec primary-not-up; drbdadm primary r0 2>&1; echo "rc=$?"
sec dump-md; drbdadm dump-md r0 2>&1 | head -5; echo "rc=$?"
sec wipe-md; drbdadm wipe-md --force r0 2>&1; echo "rc=$?"  
sec wipe-md-yes; echo yes | drbdadm wipe-md r0 2>&1; echo "rc=$?"
sec dump-md-after; drbdadm dump-md r0 2>&1 | head -5; echo "rc=$?"
sec blkid-after; blkid -p /dev/loop0; echo "rc=$?"
sec bad-name; drbdadm up nosuch 2>&1; echo "rc=$?"
sec end1
# md error messages (raid package)
truncate -s 32M /tmp/e.img; losetup /dev/loop5 /tmp/e.img
sec md-examine-empty; mdadm --examine --export /dev/loop5; echo "rc=$?"
sec md-detail-nonmd; mdadm --detail --export /dev/loop5; echo "rc=$?"
mknod /dev/md7 b 9 7 2>/dev/null
sec md-detail-inactive-node; mdadm --detail --export /dev/md7; echo "rc=$?"
sec md-zero-none; mdadm --zero-superblock /dev/loop5; echo "rc=$?"
mkfs.ext4 -q /dev/loop5; mkdir -p /mnt/x; mount /dev/loop5 /mnt/x
sec blkid-ext4; blkid -p -o export /dev/loop5; echo "rc=$?"
truncate -s 32M /tmp/f.img; losetup /dev/loop6 /tmp/f.img
sec blkid-empty; blkid -p -o export /dev/loop6; echo "rc=$?"
sec md-create-busy; mdadm --create /dev/md8 --run --level=1 --raid-devices=2 /dev/loop5 /dev/loop6; echo "rc=$?"
umount /mnt/x
sec end2
