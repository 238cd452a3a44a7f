import { test } from 'node:test';
import assert from 'node:assert/strict';
import { errnoOf } from '../../errors.js';
import { parsePciAddress } from '../../pci/address.js';
import { settle } from '../clock.js';
import { SimKernel } from './kernel.js';
import { topo } from './kernel.test.js';

const B = parsePciAddress('0000:02:00.0');
const PF = parsePciAddress('0000:04:00.0');
const VF = parsePciAddress('0000:04:00.1');

/** Puts the SR-IOV PF on vfio-pci and lets a VM open it. */
async function heldPf(): Promise<{ k: SimKernel; h: ReturnType<SimKernel['port']> }> {
  const k = new SimKernel(topo());
  const h = k.port();
  await h.loadModule('vfio_pci');
  await h.writeDeviceAttr(PF, 'driver_override', 'vfio-pci');
  await h.unbindDevice(PF);
  await h.probeDevice(PF);
  k.openDevice(PF);
  return { k, h };
}

test('device_lock: while the unbind of a held device waits, its lock-taking reads and writes wait and complete after it, in order; vendor, class, numa_node answer; the driver link is gone', async () => {
  const { k, h } = await heldPf();
  const done: string[] = [];
  const track = (what: string, p: Promise<unknown>): Promise<unknown> =>
    p.then(
      (v) => done.push(`${what}=${String(v)}`),
      (e: unknown) => done.push(`${what}!${errnoOf(e) ?? '?'}`),
    );
  const all = [
    track('unbind', h.unbindDevice(PF)),
    track('read driver_override', h.readDeviceAttr(PF, 'driver_override')),
    track('read sriov_numvfs', h.readDeviceAttr(PF, 'sriov_numvfs')),
    track('write driver_override', h.writeDeviceAttr(PF, 'driver_override', '')),
    track('bind', h.bindDevice(PF, 'nvme')),
    track('drivers_probe', h.probeDevice(PF)),
  ];
  await settle();
  assert.deepEqual(done, [], 'nothing on the held device completes');
  assert.equal(k.deviceLocked(PF), true);
  assert.equal(await h.readDeviceAttr(PF, 'vendor'), '0x1b36');
  assert.equal(await h.readDeviceAttr(PF, 'class'), '0x010802');
  assert.equal(await h.readDeviceAttr(PF, 'numa_node'), '-1');
  assert.equal((await h.readDeviceLinks(PF)).driver, null, 'driver link removed first');
  assert.equal(k.driverOf(PF), 'vfio-pci', 'vfio-pci still owns it until the VM lets go');
  assert.equal(rmmodErrno(k), 'EBUSY', 'rmmod vfio_pci: in use');
  k.closeDevice(PF);
  await Promise.all(all);
  assert.deepEqual(done, [
    'unbind=undefined',
    'read driver_override=vfio-pci',
    'read sriov_numvfs=0',
    'write driver_override=undefined',
    'bind=undefined',
    'drivers_probe=undefined',
  ]);
  assert.equal(k.driverOf(PF), 'nvme', 'the queued bind ran after the override was cleared');
  assert.equal(k.deviceLocked(PF), false);
});

function rmmodErrno(k: SimKernel): string | undefined {
  try {
    k.rmmod('vfio_pci');
  } catch (e) {
    return errnoOf(e);
  }
  return undefined;
}

test('device_lock: other devices are not blocked: drivers_probe, override and unbind of another device complete while one unbind waits', async () => {
  const { k, h } = await heldPf();
  let pending = true;
  const unbind = h.unbindDevice(PF).then(() => (pending = false));
  await settle();
  await h.writeDeviceAttr(B, 'driver_override', 'vfio-pci');
  await h.unbindDevice(B);
  await h.probeDevice(B);
  assert.equal(k.driverOf(B), 'vfio-pci');
  assert.equal(await h.readDeviceAttr(B, 'driver_override'), 'vfio-pci');
  assert.equal(pending, true);
  k.closeDevice(PF);
  await unbind;
  assert.equal(k.driverOf(PF), null);
});

test('device_lock: blockUnbind holds the lock of a host-driver device the same way until released', async () => {
  const k = new SimKernel(topo());
  const h = k.port();
  k.blockUnbind(B);
  const order: string[] = [];
  const unbind = h.unbindDevice(B).then(() => order.push('unbind'));
  const read = h.readDeviceAttr(B, 'driver_override').then((v) => order.push(`read ${v}`));
  await settle();
  assert.deepEqual(order, []);
  k.releaseUnbind(B);
  await Promise.all([unbind, read]);
  assert.deepEqual(order, ['unbind', 'read (null)']);
});

test('device_lock: an abandoned unbind rejects ECANCELED at once, keeps the lock, and the kernel still completes it when the VM closes', async () => {
  const { k, h } = await heldPf();
  const ac = new AbortController();
  const unbind = h.unbindDevice(PF, { signal: ac.signal });
  await settle();
  ac.abort();
  await assert.rejects(unbind, (e: unknown) => errnoOf(e) === 'ECANCELED');
  assert.equal(k.deviceLocked(PF), true, 'the kernel still holds device_lock');
  await assert.rejects(
    h.writeDeviceAttr(PF, 'driver_override', '', { signal: ac.signal }),
    (e: unknown) => errnoOf(e) === 'ECANCELED',
  );
  k.closeDevice(PF);
  await settle();
  assert.equal(k.driverOf(PF), null);
  assert.equal(k.deviceLocked(PF), false);
  assert.equal(k.overrideOf(PF), 'vfio-pci', 'the write refused before it started never ran');
});

test('device_lock: sriov_numvfs=0 while a VM holds a VF waits (PF and VF locked), reads of the PF sriov_numvfs wait too, and both finish when the VM closes', async () => {
  const k = new SimKernel(topo());
  const h = k.port();
  await h.writeDeviceAttr(PF, 'sriov_numvfs', '1');
  await h.loadModule('vfio_pci');
  await h.writeDeviceAttr(VF, 'driver_override', 'vfio-pci');
  await h.unbindDevice(VF);
  await h.probeDevice(VF);
  k.openDevice(VF);
  const order: string[] = [];
  const disable = h.writeDeviceAttr(PF, 'sriov_numvfs', '0').then(() => order.push('disable'));
  const read = h.readDeviceAttr(PF, 'sriov_numvfs').then((v) => order.push(`read ${v}`));
  await settle();
  assert.deepEqual(order, []);
  assert.equal(k.deviceLocked(PF), true);
  assert.equal(k.deviceLocked(VF), true);
  assert.equal((await h.readDeviceLinks(VF)).driver, null);
  assert.equal(await h.readDeviceAttr(PF, 'vendor'), '0x1b36');
  k.closeDevice(VF);
  await Promise.all([disable, read]);
  assert.deepEqual(order, ['disable', 'read 0']);
  assert.equal(k.hasDevice(VF), false);
});

test('device_lock: a surprise removal during a pending unbind lets every waiter go; the reads then find no device', async () => {
  const { k, h } = await heldPf();
  const unbind = h.unbindDevice(PF);
  const read = h.readDeviceAttr(PF, 'driver_override');
  await settle();
  k.unplug(PF);
  await unbind;
  assert.equal(await read, null);
  assert.equal(k.deviceLocked(PF), false);
});
