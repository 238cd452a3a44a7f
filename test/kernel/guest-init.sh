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
t0=$(date +%s%N)
for f in /sys/bus/pci/devices/*/modalias; do modprobe -q -b "$(cat "$f")" 2>/dev/null; done
t1=$(date +%s%N)
echo "guest: coldplug took $(( (t1 - t0) / 1000000 )) ms" > /job/guest.log
cd "$REPO" || exit 1
"$NODE" "$REPO/dist/test/kernel/scenarios.js" "$SCENARIO" /job >>/job/guest.log 2>&1
rc=$?
echo "PASSTHRU-RESULT scenario=$SCENARIO rc=$rc"
sync
echo o > /proc/sysrq-trigger
sleep 10
