import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SimKernel } from '../src/host/sim/kernel.js';
import { discover } from '../src/pci/discovery.js';
import type { Topology } from '../src/topology/format.js';
import { labTopology, makeAgent, NIC, rig, stop } from './helpers.js';

const [A, B] = NIC as [(typeof NIC)[number], (typeof NIC)[number]];
const once = { withGroup: false, force: false };
const SERIAL_A = '52-54-00-ff-ff-12-34-01';
const SERIAL_B = '52-54-00-ff-ff-12-34-02';

/** The lab, with Device Serial Numbers on the first two NICs (e1000e cards carry one). */
function withSerials(serials: Record<string, string>): Topology {
  const t = labTopology();
  for (const d of t.devices) {
    const s = serials[d.address];
    if (s !== undefined) d.serialNumber = s;
  }
  return t;
}

test('discovery reads no Device Serial Number; a claim reads its device and records the serial in the claim and the ledger', async () => {
  const topo = withSerials({ [A]: SERIAL_A, [B]: SERIAL_B });
  const k = new SimKernel(topo);
  await discover(k.port());
  assert.deepEqual(k.serialReads, [], 'discovery never reads config space past 0x100');
  const r = await rig(topo, { run: false });
  await r.agent.claim([A], once);
  assert.equal(r.agent.engine.claims[A]?.identity?.serialNumber, SERIAL_A);
  assert.equal(r.agent.engine.ledger[A]?.serialNumber, SERIAL_A);
  assert.ok(!r.kernel.serialReads.includes(B), 'the unclaimed NIC was not read');
});

test('a running agent reads a claimed device serial once: not on the 30 s resyncs, again after the device is removed and rescanned', async () => {
  const r = await rig(withSerials({ [A]: SERIAL_A }));
  await r.agent.claim([A], once);
  const reads = (): number => r.kernel.serialReads.filter((a) => a === A).length;
  const afterClaim = reads();
  assert.ok(afterClaim >= 1);
  await r.clock.advance(95_000);
  assert.equal(reads(), afterClaim, 'three resyncs read no serial');
  await r.kernel.port().writeDeviceAttr(A, 'remove', '1');
  await r.clock.advance(100);
  await r.kernel.port().rescanBus();
  await r.clock.advance(2_000);
  assert.ok(reads() > afterClaim, 'read again once the device came back');
  await stop(r);
});

test('another card of the same model (same ids, another serial) at a claimed address: changed (PT_ERR_DEVICE_CHANGED) naming both serials, untouched until --accept-change', async () => {
  const r = await rig(withSerials({ [A]: SERIAL_A }), { run: false });
  await r.agent.claim([A], once);
  // Swapped while the host was down: same 82574L, another serial number.
  const kernel = new SimKernel(withSerials({ [A]: SERIAL_B }), r.clock);
  const { agent } = makeAgent(kernel, r.clock, r.store);
  await agent.start();
  const st = agent.engine.claimStatuses().find((c) => c.address === A);
  assert.equal(st?.state, 'changed');
  assert.equal(st.code, 'PT_ERR_DEVICE_CHANGED');
  assert.ok(st.message?.includes(`serial ${SERIAL_A}`), st.message);
  assert.ok(st.message?.includes(`serial ${SERIAL_B}`), st.message);
  assert.equal(kernel.driverOf(A), 'e1000e', 'the new card was not touched');
  assert.equal(kernel.calls.filter((c) => c.address === A).length, 0);
  const [accepted] = await agent.claim([A], { ...once, acceptChange: true });
  assert.equal(accepted?.state, 'ready');
  assert.equal(agent.engine.claims[A]?.identity?.serialNumber, SERIAL_B);
  assert.equal(agent.engine.ledger[A]?.serialNumber, SERIAL_B);
});

test('the same card after a reboot (same serial) is bound again, not changed', async () => {
  const r = await rig(withSerials({ [A]: SERIAL_A }), { run: false });
  await r.agent.claim([A], once);
  const kernel = new SimKernel(withSerials({ [A]: SERIAL_A }), r.clock);
  const { agent } = makeAgent(kernel, r.clock, r.store);
  await agent.start();
  assert.equal(agent.engine.claimStatuses().find((c) => c.address === A)?.state, 'ready');
  assert.equal(kernel.driverOf(A), 'vfio-pci');
});

test('a state file written before serials were recorded loads; its claim is not changed and gains the serial at the next verification', async () => {
  const r = await rig(withSerials({ [A]: SERIAL_A }), { run: false });
  await r.agent.claim([A], once);
  const old = JSON.parse(r.store.raw()) as {
    claims: Record<string, { identity?: Record<string, string> }>;
    ledger: Record<string, Record<string, unknown>>;
  };
  Reflect.deleteProperty(old.claims[A]?.identity ?? {}, 'serialNumber');
  Reflect.deleteProperty(old.ledger[A] ?? {}, 'serialNumber');
  r.store.setRaw(JSON.stringify(old));
  const kernel = new SimKernel(withSerials({ [A]: SERIAL_A }), r.clock);
  const { agent } = makeAgent(kernel, r.clock, r.store);
  await agent.start();
  assert.equal(agent.engine.claimStatuses().find((c) => c.address === A)?.state, 'ready');
  assert.equal(agent.engine.claims[A]?.identity?.serialNumber, SERIAL_A);
});

test('a card without a serial number capability is claimed by its ids alone (no serialNumber stored)', async () => {
  const r = await rig(labTopology(), { run: false });
  await r.agent.claim([A], once);
  const identity = r.agent.engine.claims[A]?.identity;
  assert.equal(identity?.deviceId, '10d3');
  assert.equal(identity.serialNumber, undefined);
  assert.ok(!r.store.raw().includes('serialNumber'));
});
