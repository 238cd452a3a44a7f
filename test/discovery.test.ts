import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadTopology } from '../src/host/files.js';
import { LinuxHost } from '../src/host/linux/host.js';
import { SimKernel } from '../src/host/sim/kernel.js';
import { writeSysfsTree } from '../src/host/sysfs-tree.js';
import { discover, idsFromModalias } from '../src/pci/discovery.js';
import { ManualClock } from '../src/host/clock.js';

test('idsFromModalias: ids lowercased to 4 digits and the class to 6; a non-PCI or absent modalias is null', () => {
  assert.deepEqual(idsFromModalias('pci:v00008086d00001592sv00008086sd00000002bc02sc00i00'), {
    vendorId: '8086',
    deviceId: '1592',
    subsystemVendorId: '8086',
    subsystemDeviceId: '0002',
    classId: '020000',
  });
  assert.equal(idsFromModalias('acpi:PNP0A08:'), null);
  assert.equal(idsFromModalias(undefined), null);
});

for (const name of ['sriov-nic', 'gpu-server-2s']) {
  test(`discovery of ${name}: a tree read through LinuxHost equals the simulated kernel, with or without modalias files`, async () => {
    const topo = await loadTopology(name);
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-disc-'));
    try {
      await writeSysfsTree(topo, root);
      const host = new LinuxHost({ root, uevents: false });
      const sim = new SimKernel(topo, new ManualClock(0));
      const expected = (await discover(sim.port())).devices;
      assert.ok(expected.length > 0);
      assert.deepEqual((await discover(host)).devices, expected);
      const devs = path.join(root, 'sys/bus/pci/devices');
      for (const a of await fs.readdir(devs)) await fs.rm(path.join(devs, a, 'modalias'));
      assert.deepEqual((await discover(host)).devices, expected);
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });
}
