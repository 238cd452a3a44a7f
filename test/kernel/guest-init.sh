#!/bin/bash
# Second stage, PID 1 on the host's root (read-only 9p + tmpfs overlay): load drivers for every
# PCI device as udev coldplug would, run one scenario with the host's node, report, power off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
arg() { sed -n "s/.*passthru\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
# No tmpfs over /tmp or /run: the checkout (CI clones anywhere, /tmp included) must stay
# visible; the overlay's tmpfs upper layer already makes them writable.
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts
SCENARIO=$(arg scenario)
REPO=$(arg repo)
NODE=$(arg node)
BOOT=$(arg boot)
BOOT=${BOOT:-1}
# What a disk keeps across a reboot: files an earlier boot of this scenario saved in the job
# folder (/job/persist, laid out as under /) come back before anything probes a device.
if [ "$BOOT" -gt 1 ] && [ -d /job/persist ]; then cp -a /job/persist/. /; fi
t0=$(date +%s%N)
if [ "$(arg coldplug)" = udev ]; then
  # As a systemd host boots: udevd replays every device's add uevent through its rules, which
  # is where rules run (e.g. set driver_override) before 80-drivers.rules loads the driver.
  rm -rf /run/udev && mkdir -p /run/udev
  /lib/systemd/systemd-udevd --daemon
  udevadm trigger --type=subsystems --action=add
  udevadm trigger --type=devices --action=add
  udevadm settle --timeout=300
else
  for f in /sys/bus/pci/devices/*/modalias; do modprobe -q -b "$(cat "$f")" 2>/dev/null; done
fi
t1=$(date +%s%N)
echo "guest: boot $BOOT, coldplug ($(arg coldplug)) took $(( (t1 - t0) / 1000000 )) ms" >> /job/guest.log
cd "$REPO" || exit 1
"$NODE" "$REPO/dist/test/kernel/scenarios.js" "$SCENARIO" /job "$BOOT" >>/job/guest.log 2>&1
rc=$?
echo "PASSTHRU-RESULT scenario=$SCENARIO rc=$rc"
sync
echo o > /proc/sysrq-trigger
sleep 10
