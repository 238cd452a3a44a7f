import { test } from 'node:test';
import assert from 'node:assert/strict';
import { errnoOf } from '../../errors.js';
import { parsePciAddress } from '../../pci/address.js';
import { ManualClock, settle } from '../clock.js';
import { SimKernel } from './kernel.js';
import { TOPOLOGY_FORMAT, type Topology } from '../../topology/format.js';

const A = parsePciAddress('0000:01:00.0');
const B = parsePciAddress('0000:02:00.0');
const F0 = parsePciAddress('0000:00:05.0');
const F1 = parsePciAddress('0000:00:05.1');
const EDU = parsePciAddress('0000:00:06.0');
const PF = parsePciAddress('0000:04:00.0');

export function topo(release = '6.1.0-26-amd64'): Topology {
  return {
    format: TOPOLOGY_FORMAT,
    name: 'unit',
    kernel: { release },
    drivers: [
      { name: 'e1000e', ids: ['8086:10d3'] },
      { name: 'e1000', ids: ['8086:100e'] },
      { name: 'nvme', ids: ['class:010802'] },
      { name: 'pcieport', module: null, ids: ['class:060400'] },
    ],
    devices: [
      {
        address: '0000:00:01.0',
        vendor: '1b36',
        device: '000c',
        class: '060400',
        driver: 'pcieport',
        iommuGroup: 1,
      },
      {
        address: A,
        vendor: '8086',
        device: '10d3',
        class: '020000',
        driver: 'e1000e',
        iommuGroup: 10,
        numaNode: 1,
        parent: '0000:00:01.0',
      },
      {
        address: B,
        vendor: '8086',
        device: '10d3',
        class: '020000',
        driver: 'e1000e',
        iommuGroup: 11,
      },
      {
        address: F0,
        vendor: '8086',
        device: '100e',
        class: '020000',
        driver: 'e1000',
        iommuGroup: 7,
      },
      {
        address: F1,
        vendor: '8086',
        device: '100e',
        class: '020000',
        driver: 'e1000',
        iommuGroup: 7,
      },
      {
        address: EDU,
        vendor: '1234',
        device: '11e8',
        class: '00ff00',
        driver: null,
        iommuGroup: 8,
      },
      {
        address: PF,
        vendor: '1b36',
        device: '0010',
        class: '010802',
        driver: 'nvme',
        iommuGroup: 13,
        sriov: { totalVfs: 2, vfDevice: '0010' },
      },
    ],
  };
}

async function errno(p: Promise<unknown> | (() => unknown)): Promise<string | undefined> {
  try {
    if (typeof p === 'function') p();
    else await p;
  } catch (e) {
    return errnoOf(e);
  }
  return undefined;
}

test('sim: driver_override reads (null) when unset, only the named driver binds, empty clears', async () => {
  const k = new SimKernel(topo());
  const h = k.port();
  assert.equal(await h.readDeviceAttr(A, 'driver_override'), '(null)');
  await h.writeDeviceAttr(A, 'driver_override', 'vfio-pci');
  assert.equal(await h.readDeviceAttr(A, 'driver_override'), 'vfio-pci');
  // Writing the override neither unbinds nor loads anything.
  assert.equal(k.driverOf(A), 'e1000e');
  await h.unbindDevice(A);
  assert.equal(k.driverOf(A), null);
  // vfio-pci is not loaded: probe succeeds and binds nothing; e1000e may not take it either.
  await h.probeDevice(A);
  assert.equal(k.driverOf(A), null);
  assert.equal(await errno(h.bindDevice(A, 'e1000e')), 'ENODEV');
  await h.writeDeviceAttr(A, 'driver_override', '\n');
  assert.equal(await h.readDeviceAttr(A, 'driver_override'), '(null)');
  await h.probeDevice(A);
  assert.equal(k.driverOf(A), 'e1000e');
});

test('sim: unbind ENODEV when unbound; bind ENODEV without a match and EBUSY when bound', async () => {
  const k = new SimKernel(topo());
  const h = k.port();
  assert.equal(await errno(h.unbindDevice(EDU)), 'ENODEV');
  assert.equal(await errno(h.bindDevice(EDU, 'e1000e')), 'ENODEV');
  assert.equal(await errno(h.bindDevice(A, 'e1000e')), 'EBUSY');
  assert.equal(await errno(h.bindDevice(A, 'no-such-driver')), 'ENOENT');
  assert.equal(await errno(h.probeDevice(parsePciAddress('0000:09:00.0'))), 'ENODEV');
  // drivers_probe on a driverless device nobody matches: success, still driverless.
  await h.probeDevice(EDU);
  assert.equal(k.driverOf(EDU), null);
});

test('sim: vfio bind via override + unbind + drivers_probe creates /dev/vfio/<group>; NUMA read', async () => {
  const k = new SimKernel(topo());
  const h = k.port();
  await h.loadModule('vfio-pci');
  for (const m of ['vfio', 'vfio_pci_core', 'vfio_virqfd', 'irqbypass', 'vfio_pci'])
    assert.equal(k.moduleState(m), 'live', m);
  assert.equal(await h.vfioGroupNodeExists(10), false);
  await h.writeDeviceAttr(A, 'driver_override', 'vfio-pci');
  await h.unbindDevice(A);
  await h.probeDevice(A);
  assert.equal((await h.readDeviceLinks(A)).driver, 'vfio-pci');
  assert.equal(await h.vfioGroupNodeExists(10), true);
  assert.equal(await h.readDeviceAttr(A, 'numa_node'), '1');
  assert.equal(await h.readDeviceAttr(B, 'numa_node'), '-1');
  assert.equal((await h.readDeviceLinks(A)).parent, '0000:00:01.0');
  await h.unbindDevice(A);
  assert.equal(await h.vfioGroupNodeExists(10), false);
});

test('sim: rmmod vfio_pci leaves idle devices driverless with the override; reload re-binds them', async () => {
  const k = new SimKernel(topo());
  const h = k.port();
  await h.loadModule('vfio_pci');
  for (const a of [A, B]) {
    await h.writeDeviceAttr(a, 'driver_override', 'vfio-pci');
    await h.unbindDevice(a);
    await h.probeDevice(a);
  }
  // B's override is cleared before the unload: it must not come back on vfio-pci.
  await h.writeDeviceAttr(B, 'driver_override', '');
  k.modprobeRemove('vfio_pci');
  assert.equal(k.moduleState('vfio_pci'), 'absent');
  assert.equal(k.moduleState('vfio_pci_core'), 'absent');
  assert.equal(k.moduleState('vfio'), 'absent');
  assert.equal(k.driverOf(A), null);
  assert.equal(k.overrideOf(A), 'vfio-pci');
  assert.equal(k.vfioNode(10), false);
  assert.equal((await h.moduleStatus(['vfio-pci'])).get('vfio_pci'), null);
  await h.loadModule('vfio-pci');
  assert.equal(k.driverOf(A), 'vfio-pci');
  assert.equal(k.driverOf(B), null);
  assert.equal(k.vfioNode(10), true);
});

test('sim: rmmod fails EBUSY while a VM holds a device or another module depends on it', async () => {
  const k = new SimKernel(topo());
  const h = k.port();
  await h.loadModule('vfio_pci');
  await h.writeDeviceAttr(A, 'driver_override', 'vfio-pci');
  await h.unbindDevice(A);
  await h.probeDevice(A);
  k.openDevice(A);
  assert.equal(k.refcount('vfio_pci'), 1);
  assert.equal(
    await errno(() => {
      k.rmmod('vfio_pci');
    }),
    'EBUSY',
  );
  assert.equal(
    await errno(() => {
      k.rmmod('vfio_pci_core');
    }),
    'EBUSY',
  );
  assert.equal(k.driverOf(A), 'vfio-pci');
  k.closeDevice(A);
  k.rmmod('vfio_pci');
  assert.equal(k.driverOf(A), null);
  assert.equal(
    await errno(() => {
      k.rmmod('vfio_pci');
    }),
    'ENOENT',
  );
});

test('sim: built-in modules never unload and report builtin; module state Unloading lingers on request', async () => {
  const t = topo();
  t.modules = [
    { name: 'vfio', state: 'builtin' },
    { name: 'irqbypass', state: 'builtin' },
  ];
  const k = new SimKernel(t);
  const h = k.port();
  assert.equal((await h.moduleStatus(['vfio'])).get('vfio')?.state, 'builtin');
  assert.equal(
    await errno(() => {
      k.rmmod('vfio');
    }),
    'EPERM',
  );
  await h.loadModule('vfio_pci');
  k.rmmod('vfio_pci', { linger: true });
  assert.equal((await h.moduleStatus(['vfio_pci'])).get('vfio_pci')?.state, 'unloading');
  k.finishUnload('vfio_pci');
  assert.equal((await h.moduleStatus(['vfio_pci'])).get('vfio_pci'), null);
});

test('sim: kernels from 6.2 have no vfio_virqfd', () => {
  const k = new SimKernel(topo('6.8.0-45-generic'));
  assert.equal(k.moduleState('vfio_virqfd'), undefined);
  assert.equal(k.availability('vfio_virqfd').kind, 'missing');
  assert.deepEqual(k.availability('vfio_pci_core').deps.sort(), ['irqbypass', 'vfio']);
});

test('sim: IOMMU group with two functions: one on vfio-pci still leaves /dev/vfio and a host-driver sibling', async () => {
  const k = new SimKernel(topo());
  const h = k.port();
  await h.loadModule('vfio_pci');
  await h.writeDeviceAttr(F0, 'driver_override', 'vfio-pci');
  await h.unbindDevice(F0);
  await h.probeDevice(F0);
  assert.equal(k.vfioNode(7), true);
  assert.equal(k.driverOf(F1), 'e1000');
});

test('sim: sriov_numvfs creates VFs with physfn links and own groups; N to M needs 0 first', async () => {
  const k = new SimKernel(topo());
  const h = k.port();
  assert.equal(await h.readDeviceAttr(PF, 'sriov_totalvfs'), '2');
  assert.equal(await errno(h.writeDeviceAttr(PF, 'sriov_numvfs', '3')), 'ERANGE');
  await h.writeDeviceAttr(PF, 'sriov_numvfs', '1');
  assert.equal(await errno(h.writeDeviceAttr(PF, 'sriov_numvfs', '2')), 'EBUSY');
  await h.writeDeviceAttr(PF, 'sriov_numvfs', '0');
  await h.writeDeviceAttr(PF, 'sriov_numvfs', '2');
  const links = await h.readDeviceLinks(PF);
  assert.deepEqual(links.virtfns, ['0000:04:00.1', '0000:04:00.2']);
  const vf = parsePciAddress('0000:04:00.1');
  const vfl = await h.readDeviceLinks(vf);
  assert.equal(vfl.physfn, PF);
  assert.notEqual(vfl.iommuGroup, links.iommuGroup);
  // Autoprobe bound the VFs to nvme; they can go to vfio-pci as they are.
  assert.equal(k.driverOf(vf), 'nvme');
  await h.loadModule('vfio_pci');
  await h.writeDeviceAttr(vf, 'driver_override', 'vfio-pci');
  await h.unbindDevice(vf);
  await h.probeDevice(vf);
  assert.equal(k.driverOf(vf), 'vfio-pci');
  k.openDevice(vf);
  // As on the real kernel (docs/simulated-kernel.md): removing a held VF waits for the VM.
  let removed = false;
  const disabling = h.writeDeviceAttr(PF, 'sriov_numvfs', '0').then(() => {
    removed = true;
  });
  await settle();
  assert.equal(removed, false);
  assert.equal(k.hasDevice(vf), true);
  k.closeDevice(vf);
  await disabling;
  assert.equal(k.hasDevice(vf), false);
  assert.equal(await h.readDeviceAttr(PF, 'sriov_numvfs'), '0');
});

test('sim: remove then rescan brings the device back with driver_override cleared', async () => {
  const k = new SimKernel(topo());
  const h = k.port();
  await h.writeDeviceAttr(B, 'driver_override', 'vfio-pci');
  await h.writeDeviceAttr(B, 'remove', '1');
  assert.equal(await h.deviceExists(B), false);
  await h.rescanBus();
  assert.equal(await h.deviceExists(B), true);
  assert.equal(k.overrideOf(B), null);
  assert.equal(k.driverOf(B), 'e1000e');
});

test('sim fault: a write fails with a chosen errno, N times, for one address', async () => {
  const k = new SimKernel(topo());
  const h = k.port();
  k.failWrites('driver_override', 'EACCES', { address: A, times: 2 });
  assert.equal(await errno(h.writeDeviceAttr(A, 'driver_override', 'vfio-pci')), 'EACCES');
  await h.writeDeviceAttr(B, 'driver_override', 'vfio-pci');
  assert.equal(await errno(h.writeDeviceAttr(A, 'driver_override', 'vfio-pci')), 'EACCES');
  await h.writeDeviceAttr(A, 'driver_override', 'vfio-pci');
  assert.equal(k.overrideOf(A), 'vfio-pci');
});

test('sim fault: a module load fails N times, then succeeds; a missing module fails for good', async () => {
  const k = new SimKernel(topo());
  const h = k.port();
  k.failModuleLoads('vfio_pci', 3);
  for (let i = 0; i < 3; i++) assert.equal(await errno(h.loadModule('vfio_pci')), 'EMODPROBE');
  await h.loadModule('vfio_pci');
  assert.equal(k.moduleState('vfio_pci'), 'live');
  k.rmmod('vfio_pci');
  k.setModuleAvailable('vfio_pci', false);
  assert.equal(await errno(h.loadModule('vfio_pci')), 'ENOENT');
  assert.equal((await h.moduleAvailability('vfio-pci')).kind, 'missing');
});

test('sim fault: an unbind blocks until released; a VM-held vfio device blocks unbind until closed', async () => {
  const k = new SimKernel(topo());
  const h = k.port();
  k.blockUnbind(B);
  let done = false;
  const p = h.unbindDevice(B).then(() => {
    done = true;
  });
  await settle();
  assert.equal(done, false);
  assert.equal(k.driverOf(B), 'e1000e');
  k.releaseUnbind(B);
  await p;
  assert.equal(k.driverOf(B), null);

  await h.loadModule('vfio_pci');
  await h.writeDeviceAttr(A, 'driver_override', 'vfio-pci');
  await h.unbindDevice(A);
  await h.probeDevice(A);
  k.openDevice(A);
  let released = false;
  const q = h.unbindDevice(A).then(() => {
    released = true;
  });
  await settle();
  assert.equal(released, false);
  k.closeDevice(A);
  await q;
  assert.equal(k.driverOf(A), null);
});

test('sim fault: a device disappears; a severed port never answers again, a new one does', async () => {
  const clock = new ManualClock();
  const k = new SimKernel(topo(), clock);
  const h = k.port();
  k.unplug(B);
  assert.equal(await h.deviceExists(B), false);
  assert.equal(await errno(h.unbindDevice(B)), 'ENODEV');

  k.severAfter('unbind', A);
  await h.unbindDevice(A);
  let answered = false;
  void h.probeDevice(A).then(() => {
    answered = true;
  });
  await settle();
  assert.equal(answered, false);
  assert.equal(k.driverOf(A), null);
  const h2 = k.port();
  await h2.probeDevice(A);
  assert.equal(k.driverOf(A), 'e1000e');
});

test('sim: uevents for module removal, unbind and bind', async () => {
  const k = new SimKernel(topo());
  const h = k.port();
  const seen: string[] = [];
  const stop = h.watchUevents(
    (e) => seen.push(`${e.action} ${e.devpath}`),
    () => undefined,
  );
  await h.loadModule('vfio_pci');
  await h.writeDeviceAttr(A, 'driver_override', 'vfio-pci');
  await h.unbindDevice(A);
  await h.probeDevice(A);
  k.rmmod('vfio_pci');
  stop?.();
  assert.ok(seen.includes('add /module/vfio_pci'));
  assert.ok(seen.includes('remove /module/vfio_pci'));
  assert.ok(seen.some((s) => s.startsWith('bind ') && s.endsWith(A)));
  assert.ok(seen.filter((s) => s.startsWith('unbind ')).length === 2);
});

test('sim: the state round-trips through toTopology', async () => {
  const k = new SimKernel(topo());
  const h = k.port();
  await h.writeDeviceAttr(PF, 'sriov_numvfs', '2');
  await h.writeDeviceAttr(B, 'driver_override', 'vfio-pci');
  const k2 = new SimKernel(k.toTopology());
  assert.deepEqual(k2.listDevices(), k.listDevices());
  assert.equal(k2.overrideOf(B), 'vfio-pci');
  assert.deepEqual(k2.links(PF).virtfns, k.links(PF).virtfns);
});
