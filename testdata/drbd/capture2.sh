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
echo 'include "/etc/drbd.d/ra.res";' >/etc/drbd-a.conf
echo 'include "/etc/drbd.d/rb.res";' >/etc/drbd-b.conf
ln -sf /etc/drbd-a.conf /etc/drbd.conf
# drbdadm refuses one IP:port in two resources of one config: give each
# resource its own config file (-c) so they replicate to each other.
A="drbdadm -c /etc/drbd-a.conf"; B="drbdadm -c /etc/drbd-b.conf"
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
$A create-md --force ra 2>&1; $B create-md --force rb 2>&1
sec sh-ll-dev; $A sh-ll-dev ra; echo "rc=$?"
sec dump-md-ok; $A dump-md ra 2>&1 | head -3; echo "rc=$?"
$A up ra 2>&1; echo "up rc=$?"
sec proc-drbd-wfconnection; cat /proc/drbd
sec role-up; $A role ra; echo "rc=$?"
sec cstate-up; $A cstate ra; echo "rc=$?"
sec dump-md-up; $A dump-md ra 2>&1 | head -3; echo "rc=$?"
$B up rb 2>&1; echo "up rc=$?"
sleep 3
sec proc-drbd-connected; cat /proc/drbd
$A primary --force ra 2>&1; echo "primary rc=$?"
sleep 2
sec proc-drbd-sync; cat /proc/drbd
sec role-primary; $A role ra; $B role rb
sec cstate-sync; $A cstate ra; $B cstate rb
sec dstate-sync; $A dstate ra; $B dstate rb
for i in $(seq 1 60); do grep -q "sync.ed" /proc/drbd || break; sleep 1; done
sec proc-drbd-synced; cat /proc/drbd
$A verify ra 2>&1; sleep 1
sec proc-drbd-verify; cat /proc/drbd
$A disconnect ra 2>&1
sec proc-drbd-standalone; cat /proc/drbd
sec cstate-standalone; $A cstate ra
sec primary-busy; mkdir -p /mnt/d; mkfs.ext4 -q /dev/drbd0; mount /dev/drbd0 /mnt/d; $A secondary ra 2>&1; echo "rc=$?"; umount /mnt/d
$A down ra 2>&1; $B down rb 2>&1
sec proc-drbd-down; cat /proc/drbd
sec wipe-md-dashdash; $A -- --force wipe-md ra 2>&1; echo "rc=$?"
sec dump-md-wiped; $A dump-md ra 2>&1 | head -3; echo "rc=$?"
sec wipe-md-after; $B wipe-md rb --force 2>&1; echo "rc=$?"
sec not-defined; $A role nosuch 2>&1; echo "rc=$?"; $A sh-ll-dev nosuch 2>&1; echo "rc=$?"
sec end
