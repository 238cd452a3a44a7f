#!/bin/busybox sh
# First stage of the lab guest: reach the host's root over 9p, put a tmpfs overlay on it so the
# guest can write, bind the kernel's modules in, then switch_root into guest-init.sh.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
arg() { sed -n "s/.*passthru\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
KVER=$(uname -r)
REPO=$(arg repo)
MODDIR=$(arg moddir)
for m in virtio_pci 9pnet_virtio 9p overlay; do modprobe "$m" || echo "initramfs: modprobe $m failed"; done
mkdir -p /host /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=524288 hostfs /host || { echo "initramfs: cannot mount hostfs"; echo o > /proc/sysrq-trigger; }
mount -t tmpfs -o size=512m tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work /newroot
mkdir -p "/newroot/lib/modules/$KVER" /newroot/job
mount --bind "/newroot$MODDIR" "/newroot/lib/modules/$KVER"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 jobfs /newroot/job || echo "initramfs: cannot mount jobfs"
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
exec switch_root /newroot /bin/bash "$REPO/test/kernel/guest-init.sh"
