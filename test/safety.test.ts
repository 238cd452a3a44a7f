import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PtError } from '../src/errors.js';
import { loadTopology } from '../src/host/files.js';
import { parsePciAddress } from '../src/pci/address.js';
import { SimKernel } from '../src/host/sim/kernel.js';
import { eventsOf, labTopology, makeAgent, NIC, onVfio, rig, stop } from './helpers.js';

const [A] = NIC as [(typeof NIC)[number]];
const once = { withGroup: false, force: false };

test('release of a device a VM holds is refused with PT_ERR_DEVICE_IN_USE naming the pid and command; nothing is written and the claim stays', async () => {
  const r = await rig(labTopology());
  await r.agent.claim([A], once);
  r.kernel.openDevice(A);
  const calls = r.kernel.calls.length;
  await assert.rejects(
    r.agent.release([A]),
    (e: unknown) =>
      e instanceof PtError &&
      e.code === 'PT_ERR_DEVICE_IN_USE' &&
      /pid 4242 \(qemu-system-x86\)/.test(e.message),
  );
  assert.equal(r.kernel.calls.length, calls, 'no sysfs write');
  assert.ok(r.agent.engine.claims[A], 'the claim stays');
  assert.equal(r.kernel.driverOf(A), 'vfio-pci');
  await stop(r);
});

test('release --wait of a held device stays pending (status: held by pid), issues no unbind, and completes within 1 s of the holder closing', async () => {
  const r = await rig(labTopology());
  await r.agent.claim([A], once);
  r.kernel.openDevice(A);
  const unbinds = (): number =>
    r.kernel.calls.filter((c) => c.op === 'unbind' && c.address === A).length;
  const before = unbinds();
  const [out] = await r.agent.release([A], { wait: true });
  assert.equal(out?.state, 'in-use');
  assert.equal(out.holders?.[0]?.comm, 'qemu-system-x86');
  await r.clock.advance(20_000);
  const st = await r.agent.status();
  const entry = st.ledger.find((l) => l.address === A);
  assert.equal(entry?.state, 'releasing');
  assert.match(entry.message ?? '', /held by pid 4242 \(qemu-system-x86\)/);
  assert.equal(unbinds(), before, 'no unbind was issued while held');
  r.kernel.closeDevice(A);
  const ms = await r.clock.advanceUntil(() => r.kernel.driverOf(A) === 'e1000e', 5_000, 10);
  assert.ok(ms <= 1_000, `released ${ms} ms after the holder closed`);
  assert.equal(r.agent.engine.ledger[A], undefined);
  await stop(r);
});

test('a different card at a claimed address: claim becomes changed (PT_ERR_DEVICE_CHANGED), nothing is bound until --accept-change', async () => {
  const r = await rig(labTopology(), { run: false });
  await r.agent.claim([A], once);
  assert.equal(r.agent.engine.claims[A]?.identity?.deviceId, '10d3');
  // The card is swapped while the host is down: the reboot brings another device there.
  const topo = labTopology();
  const dev = topo.devices.find((d) => d.address === A);
  assert.ok(dev);
  dev.device = '1533'; // an i210 where the 82574L was
  dev.driver = 'igb';
  topo.drivers?.push({ name: 'igb', ids: ['8086:1533'] });
  const kernel = new SimKernel(topo, r.clock);
  const { agent } = makeAgent(kernel, r.clock, r.store);
  await agent.start();
  const [st] = agent.engine.claimStatuses();
  assert.equal(st?.state, 'changed');
  assert.equal(st.code, 'PT_ERR_DEVICE_CHANGED');
  assert.equal(kernel.driverOf(A), 'igb', 'the new card was not touched');
  assert.equal(kernel.calls.filter((c) => c.address === A).length, 0);
  const ledgerBefore = agent.engine.ledger[A];
  assert.equal(ledgerBefore?.originalDriver, 'e1000e');
  const [accepted] = await agent.claim([A], { ...once, acceptChange: true });
  assert.equal(accepted?.state, 'ready');
  assert.equal(kernel.driverOf(A), 'vfio-pci');
  assert.equal(
    agent.engine.ledger[A]?.originalDriver,
    'igb',
    'the new card records its own driver',
  );
  assert.equal(agent.engine.claims[A]?.identity?.deviceId, '1533');
});

test('a physical function with active VFs is refused with PT_ERR_HAS_VFS unless --force', async () => {
  const topo = await loadTopology('qemu-guest');
  const pf = parsePciAddress('0000:04:00.0');
  const r = await rig(topo, { run: false });
  await r.kernel.port().writeDeviceAttr(pf, 'sriov_numvfs', '2');
  const [st] = await r.agent.claim([pf], once);
  assert.equal(st?.state, 'refused');
  assert.equal(st.code, 'PT_ERR_HAS_VFS');
  assert.match(st.message ?? '', /2 active VFs/);
  assert.equal(r.kernel.driverOf(pf), 'nvme');
  assert.equal(r.agent.engine.claims[pf], undefined, 'a refused claim is not stored');
});

test('a claim of an absent device is stored as missing and bound as soon as the device appears (pci add uevent), with its identity recorded then', async () => {
  // Removed through sysfs, so a later rescan brings it back (as hotplug would).
  const r2 = await rig(labTopology());
  await r2.kernel.port().writeDeviceAttr(A, 'remove', '1');
  const [st] = await r2.agent.claim([A], once);
  assert.equal(st?.state, 'missing');
  const identityOf = (): string | undefined => r2.agent.engine.claims[A]?.identity?.deviceId;
  assert.ok(r2.agent.engine.claims[A], 'stored');
  assert.equal(identityOf(), undefined);
  await r2.kernel.port().rescanBus();
  // The resync is 30 s away: only the add uevent can make this fast.
  const ms = await r2.clock.advanceUntil(() => onVfio(r2.kernel, [A]), 5_000, 10);
  assert.ok(ms <= 1_000, `bound ${ms} ms after it appeared`);
  assert.equal(identityOf(), '10d3');
  await stop(r2);
});

test('hot re-add of a claimed NIC (remove, then rescan): back on vfio-pci within 1 s, without waiting for the resync', async () => {
  const r = await rig(labTopology());
  await r.agent.claim([A], once);
  await r.kernel.port().writeDeviceAttr(A, 'remove', '1');
  await r.clock.advance(100);
  await r.kernel.port().rescanBus();
  // The rescan hands the NIC to e1000e first, as the real kernel does (no override survives).
  const ms = await r.clock.advanceUntil(() => onVfio(r.kernel, [A]), 5_000, 10);
  assert.ok(ms <= 1_000, `back on vfio-pci ${ms} ms after the rescan`);
  assert.equal(r.agent.engine.ledger[A]?.originalDriver, 'e1000e');
  assert.ok(eventsOf(r.history, 'device.bound').length >= 2);
  await stop(r);
});
