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
