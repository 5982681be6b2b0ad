#!/bin/sh
# Captures real mdadm / md output inside the bofh VM lab (Debian 6.1 kernel,
# host mdadm). Run: go run ./internal/vmtest/cmd/vmrun sh testdata/raid/capture.sh
# and split stdout on the "=== name" markers.
set -x
echo 200000 >/proc/sys/dev/raid/speed_limit_min
echo 200000 >/proc/sys/dev/raid/speed_limit_max
cd /tmp
for i in 0 1 2 3 4; do truncate -s 64M d$i.img; losetup /dev/loop$i d$i.img; done
sec() { echo "=== $1"; }
mdadm --version 2>&1
uname -r
yes | mdadm --create /dev/md0 --run --level=1 --raid-devices=2 --metadata=1.2 /dev/loop0 /dev/loop1 2>&1
sec mdstat-raid1-resync; cat /proc/mdstat
sec detail-raid1-resync; mdadm --detail --export /dev/md0
mdadm --wait /dev/md0
sec detail-raid1-clean; mdadm --detail --export /dev/md0
sec detail-raid1-clean-text; mdadm --detail /dev/md0
mdadm /dev/md0 --fail /dev/loop1 2>&1
sec mdstat-raid1-degraded; cat /proc/mdstat
sec detail-raid1-degraded; mdadm --detail --export /dev/md0
mdadm /dev/md0 --remove /dev/loop1 2>&1
sec detail-raid1-removed; mdadm --detail --export /dev/md0
mdadm /dev/md0 --add /dev/loop1 2>&1
sec mdstat-raid1-recovery; cat /proc/mdstat
sec detail-raid1-recovery; mdadm --detail --export /dev/md0
mdadm --wait /dev/md0
sec examine-loop0; mdadm --examine --export /dev/loop0
echo 1000 >/proc/sys/dev/raid/speed_limit_max
yes | mdadm --create /dev/md1 --run --level=5 --raid-devices=3 --chunk=64 /dev/loop2 /dev/loop3 /dev/loop4 2>&1
sec mdstat-raid5-resync; cat /proc/mdstat
sec detail-raid5-resync; mdadm --detail --export /dev/md1
sec mdstat-two; cat /proc/mdstat
echo 200000 >/proc/sys/dev/raid/speed_limit_max
mdadm --wait /dev/md1
sec detail-raid5-clean; mdadm --detail --export /dev/md1
mdadm --stop /dev/md1 2>&1
sec detail-stopped; mdadm --detail --export /dev/md1 ; echo "rc=$?"
sec examine-none; mdadm --examine --export /tmp/d0.img; truncate -s 1M /tmp/empty.img; mdadm --examine --export /tmp/empty.img; echo "rc=$?"
mdadm --zero-superblock /dev/loop2 /dev/loop3 /dev/loop4 2>&1
mdadm --stop /dev/md0 2>&1
sec mdstat-empty; cat /proc/mdstat
for m in raid0 raid6 raid10; do :; done
yes | mdadm --create /dev/md2 --run --level=10 --raid-devices=4 /dev/loop0 /dev/loop1 /dev/loop2 /dev/loop3 2>&1
sec mdstat-raid10; cat /proc/mdstat
sec detail-raid10; mdadm --detail --export /dev/md2
mdadm --stop /dev/md2
yes | mdadm --create /dev/md3 --run --level=0 --raid-devices=2 /dev/loop0 /dev/loop1 2>&1
sec mdstat-raid0; cat /proc/mdstat
sec detail-raid0; mdadm --detail --export /dev/md3
mdadm --stop /dev/md3
mdadm --assemble /dev/md3 /dev/loop0 /dev/loop1 2>&1
mdadm --stop /dev/md3
mdadm --create /dev/md4 --run --level=1 --raid-devices=2 /dev/loop0 /dev/loop1 2>&1; echo "rc=$?"
sec mdadm-assemble-missing; mdadm --assemble /dev/md9 /dev/loop4 2>&1; echo "rc=$?"
sec mdadm-stop-missing; mdadm --stop /dev/md9 2>&1; echo "rc=$?"
sec end
