#!/bin/bash
# Micro-benchmark of the guest's tool start-up and LVM scanning, run by
# `make lab-bench` inside a lab guest. Prints one line per measurement.
# Exits non-zero when a measured command or a check failed.
set -u
# It creates md arrays and loop devices: only in a guest the lab booted
# (BOFH_IN_VM=1 alone can be set on a host).
case " $(cat /proc/cmdline 2>/dev/null) " in
*" bofh.lab=guest "*) ;;
*) echo "bench.sh runs inside the lab guest (make lab-bench), not on a host" >&2; exit 2 ;;
esac
fail=0
t() {
	local label=$1
	shift
	local s e
	s=$(date +%s.%N)
	"$@" >/dev/null 2>/tmp/bench.err
	local rc=$?
	e=$(date +%s.%N)
	printf '%-40s %6.3fs rc=%d\n' "$label" "$(echo "$e - $s" | bc)" "$rc"
	[ $rc -eq 0 ] || { sed 's/^/    /' /tmp/bench.err; fail=1; }
}
check() { # check LABEL COMMAND...: OK or FAIL line
	local label=$1
	shift
	if "$@"; then echo "OK $label"; else echo "FAIL $label"; fail=1; return 1; fi
}
for i in 1 2 3; do t "lvm version #$i" /usr/sbin/lvm version; done
for i in 1 2 3; do t "cryptsetup --version #$i" cryptsetup --version; done
for i in 1 2; do t "mdadm --version #$i" mdadm --version; done
t "/bin/true" /bin/true
t "lvs (no PVs)" lvs
t "pvs -a (no PVs)" pvs -a

cd /tmp || exit 1
truncate -s 64M d0 d1 d2
l0=$(losetup -f --show d0) l1=$(losetup -f --show d1) l2=$(losetup -f --show d2)
t "pvcreate loop" pvcreate -q "$l2"
t "vgcreate loop" vgcreate -q bvg "$l2"
t "lvcreate loop" lvcreate -q -Zn -L 24m -n lv bvg
for i in 1 2 3; do t "lvs (1 VG) #$i" lvs; done
t "lvm fullreport json" lvm fullreport --reportformat json

# LVM on md RAID: the PV must be found through /dev/md*.
t "mdadm --create md0" mdadm --create /dev/md0 --run -q -l1 -n2 --metadata=1.2 "$l0" "$l1"
t "pvcreate md0" pvcreate -q /dev/md0
t "vgcreate on md0" vgcreate -q mdvg /dev/md0
t "lvcreate on md0" lvcreate -q -Zn -L 8m -n lv mdvg
check "LVM on md0 found" sh -c "pvs --noheadings -o pv_name,vg_name | grep -q '/dev/md0 *mdvg'" || pvs -a
t "vgchange -an mdvg" vgchange -an mdvg
t "vgchange -ay mdvg" vgchange -ay mdvg
check "/dev/mdvg/lv exists" test -e /dev/mdvg/lv

# LVM on dm-crypt: the PV must be found through /dev/mapper/*.
printf 'pw' >/tmp/key
t "luksFormat" cryptsetup luksFormat -q --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file /tmp/key /dev/bvg/lv
t "luksOpen" cryptsetup open --key-file /tmp/key /dev/bvg/lv bc
t "pvcreate mapper" pvcreate -q /dev/mapper/bc
t "vgcreate on mapper" vgcreate -q cvg /dev/mapper/bc
check "LVM on LUKS found" sh -c "pvs --noheadings -o pv_name,vg_name | grep -q '/dev/mapper/bc *cvg'" || pvs -a
for i in 1 2; do t "lvs (3 VGs, stacked) #$i" lvs; done

vgremove -ff -q cvg >/dev/null 2>&1
cryptsetup close bc
vgremove -ff -q mdvg bvg >/dev/null 2>&1
mdadm --stop /dev/md0 >/dev/null 2>&1
losetup -d "$l0" "$l1" "$l2"
grep -E "filter|devicesfile|scan_lvs|notify" /etc/lvm/lvm.conf
check "lvm.conf valid" lvmconfig --validate
exit $fail
