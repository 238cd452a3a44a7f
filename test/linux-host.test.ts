import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { errnoOf } from '../src/errors.js';
import { loadTopology } from '../src/host/files.js';
import { LinuxHost } from '../src/host/linux/host.js';
import { parseProcModules } from '../src/host/linux/modules.js';
import { writeSysfsTree } from '../src/host/sysfs-tree.js';
import { parsePciAddress } from '../src/pci/address.js';
import { parseUeventStream } from '../src/host/linux/uevents.js';
import type { Uevent } from '../src/host/port.js';

async function tree(): Promise<string> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-linux-'));
  await writeSysfsTree(await loadTopology('qemu-guest'), root);
  return root;
}

async function link(root: string, target: string, at: string): Promise<void> {
  await fs.mkdir(path.dirname(path.join(root, at)), { recursive: true });
  await fs.symlink(
    path.relative(path.dirname(path.join(root, at)), path.join(root, target)),
    path.join(root, at),
  );
}

test('hostUses finds the root 9p share even when its mount is invisible, mounted disks and the default-route NIC behind a bridge', async () => {
  const root = await tree();
  try {
    const pci = 'sys/devices/pci0000:00';
    // The 9p device under the overlay root (its own mount is not in this namespace).
    await fs.mkdir(path.join(root, pci, '0000:00:02.0/virtio0'), { recursive: true });
    await fs.writeFile(path.join(root, pci, '0000:00:02.0/virtio0/mount_tag'), 'hostfs\0');
    await fs.mkdir(path.join(root, 'sys/bus/virtio/drivers/9pnet_virtio'), { recursive: true });
    await link(root, 'sys/bus/virtio/drivers/9pnet_virtio', `${pci}/0000:00:02.0/virtio0/driver`);
    await link(root, `${pci}/0000:00:02.0/virtio0`, 'sys/bus/virtio/devices/virtio0');
    // A partition of the nvme behind root port 00:01.3 is mounted at /boot.
    const part = `${pci}/0000:00:01.3/0000:04:00.0/nvme/nvme0/nvme0n1/nvme0n1p2`;
    await fs.mkdir(path.join(root, part), { recursive: true });
    await link(root, part, 'sys/class/block/nvme0n1p2');
    // The default route leaves through br0, whose port is the NIC at 01:00.0.
    await fs.mkdir(path.join(root, 'sys/class/net/br0/brif/eth0'), { recursive: true });
    await fs.mkdir(path.join(root, 'sys/class/net/eth0'), { recursive: true });
    await link(root, `${pci}/0000:00:01.0/0000:01:00.0`, 'sys/class/net/eth0/device');
    await fs.mkdir(path.join(root, 'proc/net'), { recursive: true });
    await fs.writeFile(
      path.join(root, 'proc/mounts'),
      'overlay / overlay rw,lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work 0 0\n/dev/nvme0n1p2 /boot ext4 rw 0 0\nproc /proc proc rw 0 0\n',
    );
    await fs.writeFile(
      path.join(root, 'proc/net/route'),
      'Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\nbr0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n',
    );
    const uses = await new LinuxHost({ root, uevents: false }).hostUses();
    const has = (addr: string, re: RegExp): boolean =>
      uses.some((u) => u.address === addr && re.test(u.use));
    assert.ok(has('0000:00:02.0', /9p share "hostfs"/), JSON.stringify(uses));
    assert.ok(has('0000:04:00.0', /filesystem mounted at \/boot/));
    assert.ok(
      has('0000:01:00.0', /br0 carries the default route|eth0 carries the default route|br0/),
    );
    assert.ok(!uses.some((u) => u.address === '0000:02:00.0'));
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});

test('LinuxHost on a tree: writes only to existing attributes, unbind without a driver is ENODEV, no module loading', async () => {
  const root = await tree();
  try {
    const h = new LinuxHost({ root, uevents: false });
    const edu = parsePciAddress('0000:00:06.0');
    const nic = parsePciAddress('0000:01:00.0');
    await h.writeDeviceAttr(nic, 'driver_override', 'vfio-pci');
    assert.equal(await h.readDeviceAttr(nic, 'driver_override'), 'vfio-pci');
    await assert.rejects(h.unbindDevice(edu), (e: unknown) => errnoOf(e) === 'ENODEV');
    await assert.rejects(
      h.writeDeviceAttr(edu, 'sriov_numvfs', '2'),
      (e: unknown) => errnoOf(e) === 'ENOENT',
    );
    await assert.rejects(
      fs.stat(path.join(root, 'sys/bus/pci/devices/0000:00:06.0/sriov_numvfs')),
      'nothing created',
    );
    await assert.rejects(h.bindDevice(nic, '../../evil'), (e: unknown) => errnoOf(e) === 'EINVAL');
    await assert.rejects(h.loadModule('vfio_pci'), (e: unknown) => errnoOf(e) === 'EPERM');
    const links = await h.readDeviceLinks(nic);
    assert.deepEqual(
      [links.driver, links.iommuGroup, links.parent],
      ['e1000e', 10, '0000:00:01.0'],
    );
    assert.equal(
      h.watchUevents(
        () => undefined,
        () => undefined,
      ),
      null,
    );
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});

test('parseProcModules: exact names, states; a substring never matches', () => {
  const m = parseProcModules(
    'vfio_pci_core 94208 1 vfio_pci, Live 0x0000000000000000\nmlx5_vfio_pci 16384 0 - Live 0x0\nvfio_pci 16384 0 - Unloading 0x0\n',
  );
  assert.equal(m.get('vfio_pci')?.state, 'unloading');
  assert.equal(m.get('vfio_pci_core')?.state, 'live');
  assert.equal(m.get('vfio_pci_core')?.refcount, 1);
  assert.equal(m.get('vfio'), undefined);
});

test('uevent stream parser: blocks of KEY=value after a KERNEL[...] header, split across chunks', () => {
  const seen: Uevent[] = [];
  const feed = parseUeventStream((e) => seen.push(e));
  const text =
    'monitor will print the received events for:\nKERNEL - the kernel uevent\n\nKERNEL[120.5] remove   /module/vfio_pci (module)\nACTION=remove\nDEVPATH=/module/vfio_pci\nSUBSYSTEM=module\nSEQNUM=1\n\nKERNEL[120.6] unbind /devices/pci0000:00/0000:00:01.0/0000:01:00.0 (pci)\nACTION=unbind\nDEVPATH=/devices/pci0000:00/0000:00:01.0/0000:01:00.0\nSUBSYSTEM=pci\nDRIVER=vfio-pci\n\n';
  for (let i = 0; i < text.length; i += 7) feed(text.slice(i, i + 7));
  assert.deepEqual(
    seen.map((e) => [e.action, e.subsystem, e.driver]),
    [
      ['remove', 'module', undefined],
      ['unbind', 'pci', 'vfio-pci'],
    ],
  );
});
