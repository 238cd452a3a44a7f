import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HostObserver } from '../src/engine/observe.js';
import { InFlight } from '../src/engine/inflight.js';
import { ManualClock } from '../src/host/clock.js';
import type { HostPort } from '../src/host/port.js';
import { eventsOf, labTopology, MF0, MF1, NIC, onVfio, rig, stop } from './helpers.js';

const [A] = NIC as [(typeof NIC)[number]];
const once = { withGroup: false, force: false };

/** The port, counting listDevices calls and the addresses readDevice is asked for. */
function counting(base: HostPort): { host: HostPort; lists: () => number; reads: string[] } {
  let lists = 0;
  const reads: string[] = [];
  const host = Object.assign(Object.create(base) as HostPort, {
    listDevices: () => {
      lists++;
      return base.listDevices();
    },
    readDevice: (...a: Parameters<HostPort['readDevice']>) => {
      reads.push(a[0]);
      return base.readDevice(...a);
    },
  });
  return { host, lists: () => lists, reads };
}

test('a resync at rest lists the bus once and reads only the claimed devices and their IOMMU group members, not every device', async () => {
  let c: ReturnType<typeof counting> | undefined;
  const r = await rig(labTopology(), {
    wrap: (base) => {
      c = counting(base);
      return c.host;
    },
  });
  assert.ok(c);
  await r.agent.claim([A, MF0], { withGroup: true, force: false });
  assert.ok(onVfio(r.kernel, [A, MF0, MF1]));
  const everyDevice = (await r.kernel.port().listDevices()).length;
  const lists0 = c.lists();
  c.reads.length = 0;
  await r.clock.advance(30_000);
  assert.equal(c.lists() - lists0, 1, 'one listing in a 30 s resync period');
  assert.deepEqual([...new Set(c.reads)].sort(), [A, MF0, MF1].sort());
  assert.ok(everyDevice > 3, `the lab has ${String(everyDevice)} functions`);
  assert.ok(onVfio(r.kernel, [A, MF0, MF1]));
  await stop(r);
});

test('without uevents, a claim of an absent device is bound at the first resync after the device appears (the resync looks at every claim)', async () => {
  const r = await rig(labTopology(), { uevents: false });
  await r.kernel.port().writeDeviceAttr(A, 'remove', '1');
  const [st] = await r.agent.claim([A], once);
  assert.equal(st?.state, 'missing');
  await r.kernel.port().rescanBus();
  await r.clock.advance(5_000);
  assert.equal(r.kernel.driverOf(A), 'e1000e', 'no uevent: nothing looks before the resync');
  const ms = await r.clock.advanceUntil(() => onVfio(r.kernel, [A]), 31_000, 100);
  assert.ok(ms <= 26_000, `bound ${String(ms)} ms after the first 5 s`);
  assert.equal(r.agent.engine.ledger[A]?.originalDriver, 'e1000e');
  await stop(r);
});

test('without uevents, a function that appears in a claimed IOMMU group is bound with it at the next resync (the resync lists the bus)', async () => {
  const r = await rig(labTopology(), { uevents: false });
  await r.kernel.port().writeDeviceAttr(MF1, 'remove', '1');
  await r.agent.claim([MF0], { withGroup: true, force: false });
  assert.ok(onVfio(r.kernel, [MF0]));
  await r.kernel.port().rescanBus();
  assert.notEqual(r.kernel.driverOf(MF1), 'vfio-pci', 'the rescan gives it a host driver');
  const ms = await r.clock.advanceUntil(() => onVfio(r.kernel, [MF0, MF1]), 31_000, 100);
  assert.ok(ms <= 30_000, `both on vfio-pci ${String(ms)} ms after the rescan`);
  assert.deepEqual(r.agent.engine.claimStatuses().find((s) => s.address === MF0)?.members, [
    MF0,
    MF1,
  ]);
  await stop(r);
});

test('without uevents, a claimed device removed from the bus is reported missing at the next resync', async () => {
  const r = await rig(labTopology(), { uevents: false });
  await r.agent.claim([A], once);
  await r.kernel.port().writeDeviceAttr(A, 'remove', '1');
  await r.clock.advanceUntil(
    () => r.agent.engine.claimStatuses().find((s) => s.address === A)?.state === 'missing',
    31_000,
    100,
  );
  assert.equal(r.agent.engine.claimStatuses().find((s) => s.address === A)?.state, 'missing');
  assert.ok(eventsOf(r.history, 'claim.state').some((e) => e.state === 'missing'));
  await stop(r);
});

test("the engine's view keeps full records of the claimed devices and their IOMMU group members only, and every function's address and group", async () => {
  const r = await rig(labTopology());
  await r.agent.claim([MF0], { withGroup: true, force: false });
  const clock = new ManualClock(0);
  const observer = new HostObserver(r.kernel.port(), new InFlight(clock));
  const view = await observer.look(new Set([MF0]));
  const all = await r.kernel.port().listDevices();
  assert.deepEqual([...view.inv.byAddress.keys()].sort(), [MF0, MF1].sort());
  assert.deepEqual([...view.bus.keys()].sort(), [...all].sort());
  const g = view.bus.get(MF0);
  assert.ok(g != null);
  assert.deepEqual([...(view.inv.groups.get(g)?.members ?? [])].sort(), [MF0, MF1].sort());
  assert.equal(
    view.inv.groups.size,
    new Set([...view.bus.values()].filter((x) => x !== null)).size,
  );
  await stop(r);
});

test("a full discovery started by one claim's look (its device vanished) keeps the other claims' device records in the engine's view", async () => {
  const r = await rig(labTopology(), { uevents: false });
  const B = NIC[1]!;
  await r.agent.claim([A, B], once);
  const observer = (r.agent.engine as unknown as { observer: HostObserver }).observer;
  const before = observer.last();
  await r.kernel.port().writeDeviceAttr(A, 'remove', '1');
  // The keeper's poll sees A off vfio-pci and has only A's key looked at.
  await r.clock.advanceUntil(
    () => observer.last() !== before && !observer.last()?.bus.has(A),
    2_000,
  );
  const view = observer.last();
  assert.ok(view);
  assert.equal(view.bus.has(A), false, 'the full discovery ran');
  assert.ok(view.inv.byAddress.has(B), "B's record is kept");
  await stop(r);
});
