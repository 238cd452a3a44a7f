import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock, settle } from '../src/host/clock.js';
import { SimKernel } from '../src/host/sim/kernel.js';
import { MemoryStore } from '../src/state/model.js';
import { eventsOf, labTopology, makeAgent, NIC, onVfio, rig, stop, type Rig } from './helpers.js';

const [A, B] = NIC as [(typeof NIC)[number], (typeof NIC)[number]];
const once = { withGroup: false, force: false };

/** Read afresh each time: the ledger object is replaced on every save. */
function originalOf(r: Rig, a: typeof A): string | null | undefined {
  return r.agent.engine.ledger[a]?.originalDriver;
}

// Adversarial finding 1: a failed re-bind after a module loss used to roll back to "no driver"
// and the ledger entry was then forgotten.
test('module loss, a failed reload and a failing drivers_probe, then release: the NIC ends on e1000e and the ledger keeps e1000e until it does', async () => {
  const r = await rig(labTopology());
  await r.agent.claim([A], once);
  r.kernel.failModuleLoads('vfio_pci', 1);
  r.kernel.failWrites('drivers_probe', 'EIO', { address: A });
  r.kernel.modprobeRemove('vfio_pci');
  await r.clock.advance(400);
  const lost: string[] = [];
  const watch = setInterval(() => {
    if (r.agent.engine.ledger[A]?.originalDriver !== 'e1000e' && r.kernel.driverOf(A) !== 'e1000e')
      lost.push('ledger lost e1000e while the NIC was not on it');
  }, 0);
  const out = await r.agent.release([A]);
  assert.notEqual(out[0]?.state, undefined);
  await r.clock.advanceUntil(() => r.kernel.driverOf(A) === 'e1000e', 10_000, 50);
  clearInterval(watch);
  assert.deepEqual(lost, []);
  assert.equal(r.kernel.driverOf(A), 'e1000e');
  assert.equal(r.kernel.overrideOf(A), null);
  assert.equal(r.agent.engine.ledger[A], undefined, 'dropped only once e1000e has it');
  await stop(r);
});

test('a bind that fails after a module loss rolls back to the ledger original (e1000e), not to the driverless state the pass saw', async () => {
  const r = await rig(labTopology());
  await r.agent.claim([A], once);
  // The reload re-binds by itself only devices whose override still names vfio-pci: clear it,
  // so the engine has to bind, and make that bind fail at drivers_probe.
  r.kernel.modprobeRemove('vfio_pci');
  await r.kernel.port().writeDeviceAttr(A, 'driver_override', '\n');
  r.kernel.failWrites('drivers_probe', 'EIO', { address: A });
  let driverAtFailure: string | null | undefined;
  r.agent.bus.subscribe((e) => {
    if (e.type === 'device.bind_failed' && driverAtFailure === undefined)
      driverAtFailure = r.kernel.driverOf(A);
  });
  await r.clock.advanceUntil(() => eventsOf(r.history, 'device.bind_failed').length > 0, 5_000, 10);
  const failed = eventsOf(r.history, 'device.bind_failed')[0];
  assert.equal(failed?.rolledBack, true);
  assert.equal(driverAtFailure, 'e1000e', 'rolled back to e1000e, not left driverless');
  assert.equal(r.agent.engine.ledger[A]?.originalDriver, 'e1000e');
  await r.clock.advanceUntil(() => onVfio(r.kernel, [A]), 10_000, 50);
  assert.ok(onVfio(r.kernel, [A]), 'the retry binds it');
  assert.equal(originalOf(r, A), 'e1000e', 'never overwritten with null');
  await stop(r);
});

// Adversarial finding 2: a failed release was forgotten by the next pass.
test('a release whose drivers_probe fails keeps the ledger entry across later passes and is retried until the NIC is on e1000e', async () => {
  const r = await rig(labTopology());
  await r.agent.claim([A], once);
  r.kernel.failWrites('drivers_probe', 'EIO', { address: A, times: 2 });
  const [out] = await r.agent.release([A]);
  assert.equal(out?.state, 'failed');
  assert.equal(out.code, 'PT_ERR_RELEASE_FAILED');
  await r.agent.claim([B], once); // any later pass
  assert.equal(r.agent.engine.ledger[A]?.originalDriver, 'e1000e');
  assert.equal(r.kernel.driverOf(A), null);
  await r.clock.advanceUntil(() => r.kernel.driverOf(A) === 'e1000e', 10_000, 50);
  assert.equal(r.kernel.driverOf(A), 'e1000e');
  assert.equal(r.agent.engine.ledger[A], undefined);
  assert.equal(
    eventsOf(r.history, 'device.release_failed').length,
    2,
    'two failures, then success',
  );
  await stop(r);
});

test('killed between the release unbind and the probe: the restarted agent finds the driverless NIC in the ledger and gives it back to e1000e', async () => {
  const clock = new ManualClock(1_000_000);
  const kernel = new SimKernel(labTopology(), clock);
  const store = new MemoryStore();
  const first = makeAgent(kernel, clock, store).agent;
  await first.start();
  await first.claim([A], once);
  kernel.severAfter('unbind', A);
  void first.release([A]);
  await settle();
  assert.equal(kernel.driverOf(A), null, 'left driverless mid-release');
  assert.equal(kernel.overrideOf(A), null);
  assert.equal((await store.load()).ledger[A]?.originalDriver, 'e1000e');
  const { agent: second } = makeAgent(kernel, clock, store);
  await second.start();
  assert.equal(kernel.driverOf(A), 'e1000e');
  assert.equal((await store.load()).ledger[A], undefined);
});

test('release --abandon drops the ledger entry of a device that cannot be restored, writes nothing to it, and records it in history', async () => {
  const r = await rig(labTopology(), { run: false });
  await r.agent.claim([A], once);
  r.kernel.rmmod('e1000e');
  const [first] = await r.agent.release([A]);
  assert.equal(first?.state, 'failed');
  const calls = r.kernel.calls.length;
  const [out] = await r.agent.release([A], { abandon: true });
  assert.equal(out?.state, 'abandoned');
  assert.equal(out.expected, 'e1000e');
  assert.equal(r.kernel.calls.length, calls);
  assert.equal(r.agent.engine.ledger[A], undefined);
  assert.equal(eventsOf(r.history, 'ledger.abandoned')[0]?.originalDriver, 'e1000e');
});

test("without an agent, a claim when vfio cannot be loaded returns waiting with modprobe's reason instead of hanging, and changes no device", async () => {
  const clock = new ManualClock(1_000_000);
  const kernel = new SimKernel(labTopology(), clock);
  kernel.setModuleAvailable('vfio_pci', false);
  const { agent } = makeAgent(kernel, clock, new MemoryStore());
  await agent.start();
  const [st] = await agent.claim([A], once);
  assert.equal(st?.state, 'waiting');
  assert.match(st.message ?? '', /Module vfio_pci not found/);
  assert.equal(kernel.driverOf(A), 'e1000e');
  assert.equal(kernel.overrideOf(A), null);
});

test('without an agent, a refused claim loads no module', async () => {
  const clock = new ManualClock(1_000_000);
  const kernel = new SimKernel(labTopology(), clock);
  const { agent } = makeAgent(kernel, clock, new MemoryStore());
  await agent.start();
  const [st] = await agent.claim([labTopology().devices[1]!.address as typeof A], once);
  assert.equal(st?.state, 'refused');
  assert.equal(kernel.calls.filter((c) => c.op === 'modprobe').length, 0);
});
