#!/bin/sh
# Captures DRBD 8.4 /proc/drbd during a real sync: two resources in one
# guest replicate to each other over loopback addresses.
# Run: go run ./internal/vmtest/cmd/vmrun sh testdata/drbd/capture2.sh
sec() { echo "=== $1"; }
cd /tmp
ip link set lo up; ip addr add 10.99.9.1/32 dev lo; ip addr add 10.99.9.2/32 dev lo
truncate -s 64M a.img b.img; losetup /dev/loop0 a.img; losetup /dev/loop1 b.img
H=$(hostname)
mkdir -p /etc/drbd.d
echo 'include "/etc/drbd.d/*.res";' >/etc/drbd.conf
cat >/etc/drbd.d/ra.res <<X
resource ra {
  net { protocol C; }
  disk { c-plan-ahead 0; resync-rate 4M; }
  on $H { device /dev/drbd0 minor 0; disk /dev/loop0; address 10.99.9.1:7789; meta-disk internal; }
  on peera { device /dev/drbd0 minor 0; disk /dev/loop0; address 10.99.9.2:7790; meta-disk internal; }
}
X
cat >/etc/drbd.d/rb.res <<X
resource rb {
  net { protocol C; }
  disk { c-plan-ahead 0; resync-rate 4M; }
  on $H { device /dev/drbd1 minor 1; disk /dev/loop1; address 10.99.9.2:7790; meta-disk internal; }
  on peerb { device /dev/drbd1 minor 1; disk /dev/loop1; address 10.99.9.1:7789; meta-disk internal; }
}
X
drbdadm create-md --force ra 2>&1; drbdadm create-md --force rb 2>&1
sec sh-ll-dev; drbdadm sh-ll-dev ra; echo "rc=$?"
sec dump-md-ok; drbdadm dump-md ra 2>&1 | head -3; echo "rc=$?"
drbdadm up ra 2>&1; echo "up rc=$?"
sec proc-drbd-wfconnection; cat /proc/drbd
sec role-up; drbdadm role ra; echo "rc=$?"
sec cstate-up; drbdadm cstate ra; echo "rc=$?"
sec dump-md-up; drbdadm dump-md ra 2>&1 | head -3; echo "rc=$?"
drbdadm up rb 2>&1; echo "up rc=$?"
sleep 3
sec proc-drbd-connected; cat /proc/drbd
drbdadm primary --force ra 2>&1; echo "primary rc=$?"
sleep 2
sec proc-drbd-sync; cat /proc/drbd
sec role-primary; drbdadm role ra; drbdadm role rb
sec cstate-sync; drbdadm cstate ra; drbdadm cstate rb
sec dstate-sync; drbdadm dstate ra; drbdadm dstate rb
drbdsetup-84 wait-sync 0 2>&1 || drbdadm wait-sync ra 2>&1 || sleep 20
sec proc-drbd-synced; cat /proc/drbd
drbdadm verify ra 2>&1; sleep 1
sec proc-drbd-verify; cat /proc/drbd
drbdadm disconnect ra 2>&1
sec proc-drbd-standalone; cat /proc/drbd
sec cstate-standalone; drbdadm cstate ra
sec primary-busy; mkdir -p /mnt/d; mkfs.ext4 -q /dev/drbd0; mount /dev/drbd0 /mnt/d; drbdadm secondary ra 2>&1; echo "rc=$?"; umount /mnt/d
drbdadm down ra 2>&1; drbdadm down rb 2>&1
sec proc-drbd-down; cat /proc/drbd
sec wipe-md-dashdash; drbdadm -- --force wipe-md ra 2>&1; echo "rc=$?"
sec dump-md-wiped; drbdadm dump-md ra 2>&1 | head -3; echo "rc=$?"
sec wipe-md-after; drbdadm wipe-md rb --force 2>&1; echo "rc=$?"
sec not-defined; drbdadm role nosuch 2>&1; echo "rc=$?"; drbdadm sh-ll-dev nosuch 2>&1; echo "rc=$?"
sec end
