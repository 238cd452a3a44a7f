import { test } from 'node:test';
import assert from 'node:assert/strict';
import fsSync from 'node:fs';
import * as fs from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
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
      if (name === 'sriov-nic')
        assert.ok(
          expected.some((d) => d.physfn !== null),
          'has VFs',
        );
      assert.deepEqual((await discover(host)).devices, expected);
      const devs = path.join(root, 'sys/bus/pci/devices');
      for (const a of await fs.readdir(devs)) await fs.rm(path.join(devs, a, 'modalias'));
      assert.deepEqual((await discover(host)).devices, expected);
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });
}

test('discover with inPlaceWhenBound: the same devices; only driverless, vfio-bound and SR-IOV PF devices have their lock-taking attributes read in the thread pool', async () => {
  const topo = await loadTopology('sriov-nic');
  const vf = topo.devices.find((d) => d.address === '0000:3b:10.2');
  assert.ok(vf);
  vf.driver = 'vfio-pci';
  const root = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), 'pt-disc-')));
  // Pool reads are the callback fs.read (sysfs.ts); each is told apart by the file its fd is.
  const pooled: string[] = [];
  const original = fsSync.read;
  const counting = (fd: number, ...rest: unknown[]): void => {
    const file = fsSync.readlinkSync(`/proc/self/fd/${String(fd)}`);
    if (file.startsWith(root))
      pooled.push(`${path.basename(path.dirname(file))} ${path.basename(file)}`);
    (original as (...a: unknown[]) => void)(fd, ...rest);
  };
  try {
    await writeSysfsTree(topo, root);
    const host = new LinuxHost({ root, uevents: false });
    const expected = (await discover(new SimKernel(topo, new ManualClock(0)).port())).devices;
    fsSync.read = counting as typeof fsSync.read;
    syncBuiltinESMExports();
    assert.deepEqual(
      (await discover(host, undefined, { inPlaceWhenBound: true })).devices,
      expected,
    );
    assert.deepEqual(pooled.sort(), [
      '0000:00:00.0 driver_override',
      '0000:3b:00.0 driver_override',
      '0000:3b:00.0 sriov_numvfs',
      '0000:3b:00.1 driver_override',
      '0000:3b:00.1 sriov_numvfs',
      '0000:3b:10.2 driver_override',
    ]);
    pooled.length = 0;
    assert.deepEqual((await discover(host)).devices, expected);
    assert.equal(pooled.length, topo.devices.length + 2);
  } finally {
    fsSync.read = original;
    syncBuiltinESMExports();
    await fs.rm(root, { recursive: true, force: true });
  }
});

test("discovery of a tree: a PF named by another PF's virtfn link (planted) gets no physfn; the real VFs keep their PF", async () => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-disc-'));
  try {
    await writeSysfsTree(await loadTopology('sriov-nic'), root);
    const pfDir = await fs.realpath(path.join(root, 'sys/bus/pci/devices/0000:3b:00.0'));
    await fs.symlink('../0000:3b:00.1', path.join(pfDir, 'virtfn5'));
    const devices = (await discover(new LinuxHost({ root, uevents: false }))).devices;
    const physfn = (a: string): string | null | undefined =>
      devices.find((d) => d.address === a)?.physfn;
    assert.equal(physfn('0000:3b:00.1'), null);
    assert.equal(physfn('0000:3b:10.0'), '0000:3b:00.0');
    assert.equal(physfn('0000:3b:10.2'), '0000:3b:00.0');
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});
