import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseAddresses } from '../src/agent/agent.js';
import { PtError } from '../src/errors.js';
import { ManualClock, settle } from '../src/host/clock.js';
import { SimKernel } from '../src/host/sim/kernel.js';
import { FileStore } from '../src/process/file-store.js';
import { MemoryStore, type StateStore } from '../src/state/model.js';
import {
  EDU,
  eventsOf,
  labTopology,
  makeAgent,
  MF0,
  MF1,
  NIC,
  onVfio,
  rig,
  ROOTFS,
  stop,
} from './helpers.js';

const [A, B] = [NIC[0]!, NIC[1]!];
const once = { withGroup: false, force: false };

test('claim binds via override + unbind + drivers_probe, records the ledger first; claiming again changes nothing', async () => {
  const r = await rig(labTopology(), { run: false });
  const [st] = await r.agent.claim([A], once);
  assert.equal(st?.state, 'ready');
  assert.equal(r.kernel.driverOf(A), 'vfio-pci');
  assert.equal(r.kernel.overrideOf(A), 'vfio-pci');
  assert.ok(r.kernel.vfioNode(10));
  const ops = r.kernel.calls.filter((c) => c.address === A).map((c) => c.op);
  assert.deepEqual(ops, ['driver_override', 'unbind', 'drivers_probe']);
  assert.ok(!r.kernel.calls.some((c) => c.op === 'new_id'));
  assert.equal((await r.store.load()).ledger[A]?.originalDriver, 'e1000e');
  const before = r.kernel.calls.length;
  const [again] = await r.agent.claim([A], once);
  assert.equal(again?.state, 'ready');
  assert.equal(r.kernel.calls.length, before, 'no writes for a claim that is already satisfied');
});

test('release restores the original driver, also after an agent restart', async () => {
  const r = await rig(labTopology(), { run: false });
  await r.agent.claim([A, B], once);
  const [out] = await r.agent.release([A]);
  assert.deepEqual(
    { address: out?.address, driver: out?.driver, ok: out?.ok },
    { address: A, driver: 'e1000e', ok: true },
  );
  assert.equal(r.kernel.overrideOf(A), null);
  assert.equal((await r.store.load()).ledger[A], undefined);
  // A new agent process on the same store and kernel still knows B's original driver.
  const { agent: second } = makeAgent(r.kernel, r.clock, r.store);
  await second.start();
  assert.equal(r.kernel.driverOf(B), 'vfio-pci');
  const [outB] = await second.release([B]);
  assert.equal(outB?.driver, 'e1000e');
  assert.equal(r.kernel.driverOf(B), 'e1000e');
  await assert.rejects(
    second.release([B]),
    (e: unknown) => e instanceof PtError && e.code === 'PT_ERR_NOT_CLAIMED',
  );
});

test('a device that had no driver is released to no driver; while the original driver is not loaded the release stays pending and the ledger keeps e1000e', async () => {
  const r = await rig(labTopology(), { run: false });
  await r.agent.claim([EDU, A], once);
  assert.equal(r.kernel.driverOf(EDU), 'vfio-pci');
  const [e] = await r.agent.release([EDU]);
  assert.equal(e?.state, 'released');
  assert.equal(e.driver, null);
  assert.equal(r.kernel.driverOf(EDU), null);
  r.kernel.rmmod('e1000e');
  const [a] = await r.agent.release([A]);
  assert.equal(a?.state, 'failed');
  assert.equal(a.code, 'PT_ERR_RELEASE_FAILED');
  assert.match(a.message ?? '', /e1000e is not loaded/);
  assert.equal(r.agent.engine.ledger[A]?.originalDriver, 'e1000e', 'the ledger still owes e1000e');
  r.kernel.modprobe('e1000e');
  await r.agent.engine.reconcile([A]);
  assert.equal(r.kernel.driverOf(A), 'e1000e');
  assert.equal(r.agent.engine.ledger[A], undefined, 'entry dropped once e1000e has it back');
});

test('unbind EBUSY: the bind fails, rolls back to the original driver, and is retried no sooner than the backoff base (500-1000 ms with jitter)', async () => {
  const r = await rig();
  r.kernel.failWrites('unbind', 'EBUSY', { address: A });
  const [st] = await r.agent.claim([A], once);
  assert.equal(st?.state, 'error');
  assert.equal(st.code, 'PT_ERR_BIND_FAILED');
  assert.match(st.message ?? '', /at unbind/);
  assert.equal(r.kernel.driverOf(A), 'e1000e');
  assert.equal(r.kernel.overrideOf(A), null, 'override rolled back');
  const failed = eventsOf(r.history, 'device.bind_failed')[0];
  assert.equal(failed?.rolledBack, true);
  await r.clock.advanceUntil(() => onVfio(r.kernel, [A]), 5_000, 10);
  assert.ok(onVfio(r.kernel, [A]), 'retried and bound');
  const bound = eventsOf(r.history, 'device.bound')[0];
  assert.ok(bound);
  const waited = bound.at - failed.at;
  assert.ok(waited >= 500 && waited <= 1_100, `retried ${waited} ms after the failure`);
  await stop(r);
});

test('a blocking unbind times out (PT_ERR_UNBIND_TIMEOUT): the claim is busy, no further write reaches the device while the unbind is pending, and it converges once released', async () => {
  const r = await rig(labTopology());
  r.kernel.blockUnbind(A);
  const pending = r.agent.claim([A], once);
  await r.clock.advance(10_000);
  const [st] = await pending;
  assert.equal(st?.code, 'PT_ERR_UNBIND_TIMEOUT');
  assert.equal(st.state, 'busy');
  assert.match(st.message ?? '', /unbind \(e1000e\) pending in the kernel for 10 s/);
  const writesTo = (): number => r.kernel.calls.filter((c) => c.address === A).length;
  const before = writesTo();
  await r.clock.advance(30_000);
  assert.equal(writesTo(), before, 'nothing issued to a device with a pending unbind');
  const status = await r.agent.status();
  assert.equal(status.busy[0]?.address, A);
  r.kernel.releaseUnbind(A);
  await r.clock.advanceUntil(() => onVfio(r.kernel, [A]), 10_000, 100);
  assert.ok(onVfio(r.kernel, [A]));
  await stop(r);
});

test('a crash between unbind and probe: a restarted agent converges and the ledger still knows e1000e', async () => {
  const clock = new ManualClock(1_000_000);
  const kernel = new SimKernel(labTopology(), clock);
  const store = new MemoryStore();
  const first = makeAgent(kernel, clock, store).agent;
  await first.start();
  kernel.severAfter('unbind', A);
  void first.claim([A], once);
  await settle();
  assert.equal(kernel.driverOf(A), null, 'left driverless mid-bind');
  assert.equal(kernel.overrideOf(A), 'vfio-pci');
  assert.equal((await store.load()).ledger[A]?.originalDriver, 'e1000e');
  const { agent: second } = makeAgent(kernel, clock, store);
  await second.start();
  assert.equal(kernel.driverOf(A), 'vfio-pci');
  assert.equal(
    (await store.load()).ledger[A]?.originalDriver,
    'e1000e',
    'not overwritten with "no driver"',
  );
  const [out] = await second.release([A]);
  assert.equal(out?.driver, 'e1000e');
});

test('reboot: a fresh kernel with host drivers bound; the agent re-applies every claim at start', async () => {
  const clock = new ManualClock(1_000_000);
  const store = new MemoryStore();
  const k1 = new SimKernel(labTopology(), clock);
  const a1 = makeAgent(k1, clock, store).agent;
  await a1.start();
  await a1.claim([A, B], once);
  const k2 = new SimKernel(labTopology(), clock);
  assert.equal(k2.driverOf(A), 'e1000e');
  const a2 = makeAgent(k2, clock, store).agent;
  await a2.start();
  assert.ok(onVfio(k2, [A, B]));
  assert.equal((await store.load()).ledger[A]?.originalDriver, 'e1000e');
});

test('a group that is not viable is refused naming the blocker; --with-group claims both', async () => {
  const r = await rig(labTopology(), { run: false });
  const [st] = await r.agent.claim([MF0], once);
  assert.equal(st?.state, 'refused');
  assert.equal(st.code, 'PT_ERR_GROUP_NOT_VIABLE');
  assert.match(st.message ?? '', /0000:00:05\.1 \(e1000\)/);
  assert.ok(
    !r.kernel.calls.some((c) => c.address === MF0 && c.op !== 'modprobe'),
    'nothing written',
  );
  assert.equal(r.kernel.driverOf(MF0), 'e1000');
  const [both] = await r.agent.claim([MF0], { withGroup: true, force: false });
  assert.equal(both?.state, 'ready');
  assert.deepEqual(both.members, [MF0, MF1]);
  assert.ok(onVfio(r.kernel, [MF0, MF1]));
  const out = await r.agent.release([MF0]);
  assert.deepEqual(
    out.map((o) => [o.address, o.driver]),
    [
      [MF0, 'e1000'],
      [MF1, 'e1000'],
    ],
  );
});

test('host-critical devices are refused with the reason unless forced', async () => {
  const r = await rig(labTopology(), { run: false });
  const [st] = await r.agent.claim([ROOTFS], once);
  assert.equal(st?.code, 'PT_ERR_HOST_CRITICAL');
  assert.match(st.message ?? '', /9p filesystem at \//);
  assert.equal(r.kernel.driverOf(ROOTFS), 'virtio-pci');
  assert.equal((await r.store.load()).claims[ROOTFS], undefined, 'a refused claim is not stored');
  const [host] = await r.agent.claim([parseAddresses(['0000:00:00.0'])[0]!], once);
  assert.equal(host?.code, 'PT_ERR_HOST_CRITICAL');
  assert.match(host.message ?? '', /host bridge/);
  const [forced] = await r.agent.claim([ROOTFS], { withGroup: false, force: true });
  assert.equal(forced?.state, 'ready');
});

test('parseAddresses rejects a list with any malformed address, or an empty list, with a PtError', () => {
  for (const bad of [
    ['0000:01:00.0', '../../etc'],
    ['0000:01:00.0/driver'],
    [],
    ['01:00.0'],
    [7],
  ]) {
    assert.throws(() => parseAddresses(bad), PtError);
  }
});

test('claiming an absent device reports missing (PT_ERR_DEVICE_NOT_FOUND) and stores the claim', async () => {
  const r = await rig(labTopology(), { run: false });
  const ghost = parseAddresses(['0000:0a:00.0'])[0]!;
  const [st] = await r.agent.claim([ghost], once);
  assert.equal(st?.state, 'missing');
  assert.equal(st.code, 'PT_ERR_DEVICE_NOT_FOUND');
  assert.ok((await r.store.load()).claims[ghost], 'stored, to be bound when it appears');
});

test('drift: someone unbinds a claimed device; the keeper notices and the engine re-binds', async () => {
  const r = await rig();
  await r.agent.claim([A], once);
  await r.kernel.port().unbindDevice(A);
  assert.equal(r.kernel.driverOf(A), null);
  await r.clock.advanceUntil(() => onVfio(r.kernel, [A]), 2_000, 10);
  assert.ok(onVfio(r.kernel, [A]));
  assert.equal(eventsOf(r.history, 'device.drift')[0]?.address, A);
  await stop(r);
});

test('a corrupt store stops the agent with PT_ERR_STORE_CORRUPT and is left byte for byte', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-store-'));
  try {
    const file = path.join(dir, 'state.json');
    for (const bad of [
      '{"format":"passthru-state/1","generation":1,"claims":',
      '{"format":"other"}',
      '[]',
      '{"format":"passthru-state/1","generation":1,"claims":{"x":{}},"ledger":{}}',
    ]) {
      await fs.writeFile(file, bad);
      const k = new SimKernel(labTopology());
      const { agent } = makeAgent(k, new ManualClock(), new FileStore(dir));
      await assert.rejects(
        agent.start(),
        (e: unknown) => e instanceof PtError && e.code === 'PT_ERR_STORE_CORRUPT',
      );
      assert.equal(await fs.readFile(file, 'utf8'), bad);
      assert.equal(k.calls.length, 0, 'nothing touched on the host');
    }
    // A good store survives a round trip and its generation only grows.
    await fs.rm(file);
    const k = new SimKernel(labTopology());
    const { agent } = makeAgent(k, new ManualClock(), new FileStore(dir));
    await agent.start();
    await agent.claim([A], once);
    const saved = JSON.parse(await fs.readFile(file, 'utf8')) as {
      generation: number;
      ledger: Record<string, unknown>;
    };
    assert.ok(saved.generation >= 2);
    assert.ok(saved.ledger[A]);
    assert.deepEqual(
      (await fs.readdir(dir)).filter((f) => f.endsWith('.tmp')),
      [],
    );
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('a ledger save that fails before the bind: no sysfs write reaches the device, the claim reports PT_ERR_STORE_IO, and the next attempt binds', async () => {
  const clock = new ManualClock(1_000_000);
  const kernel = new SimKernel(labTopology(), clock);
  const inner = new MemoryStore();
  let failLedgerOf: string | null = A;
  // Fails exactly the save that would first record A's original driver.
  const store: StateStore = {
    location: 'memory',
    load: () => inner.load(),
    save: async (st) => {
      if (failLedgerOf !== null && st.ledger[failLedgerOf] !== undefined) {
        failLedgerOf = null;
        throw new PtError('PT_ERR_STORE_IO', 'simulated disk full');
      }
      await inner.save(st);
    },
  };
  const { agent } = makeAgent(kernel, clock, store);
  await agent.start();
  const [st] = await agent.claim([A], once);
  assert.equal(st?.state, 'error');
  assert.equal(st.code, 'PT_ERR_STORE_IO');
  assert.equal(kernel.calls.filter((c) => c.address === A).length, 0, 'nothing written to A');
  assert.equal(kernel.driverOf(A), 'e1000e');
  assert.ok((await inner.load()).claims[A], 'the claim itself was stored');
  await agent.engine.reconcile([A]);
  assert.equal(kernel.driverOf(A), 'vfio-pci');
  assert.equal((await inner.load()).ledger[A]?.originalDriver, 'e1000e');
});

test('history: append-only JSON lines, rotated past the size limit, a torn line skipped', async () => {
  const { FileHistory } = await import('../src/process/file-history.js');
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-hist-'));
  try {
    const h = new FileHistory(dir, { maxBytes: 400, keep: 2 });
    for (let i = 0; i < 20; i++) await h.append({ type: 'claim.removed', at: i, address: A });
    const files = (await fs.readdir(dir)).sort();
    // The oldest rotated file went into the per-device digest (passthru why) before it was dropped.
    assert.deepEqual(files, [
      'history-devices.json',
      'history.jsonl',
      'history.jsonl.1',
      'history.jsonl.2',
    ]);
    for (const f of files.filter((x) => !x.endsWith('.json')))
      assert.ok((await fs.stat(path.join(dir, f))).size <= 400);
    const recent = await h.recent(3);
    assert.deepEqual(
      recent.map((e) => e.at),
      [17, 18, 19],
    );
    await fs.appendFile(path.join(dir, 'history.jsonl'), '{"type":"torn');
    assert.equal((await h.recent(50)).at(-1)?.at, 19);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('a group companion stays on vfio-pci while its claim exists, even if the claimed function vanishes', async () => {
  const r = await rig(labTopology(), { run: false });
  await r.agent.claim([MF0], { withGroup: true, force: false });
  r.kernel.unplug(MF0);
  await r.agent.engine.reconcile([MF0]);
  assert.equal(r.agent.engine.claimStatuses()[0]?.state, 'missing');
  assert.equal(r.kernel.driverOf(MF1), 'vfio-pci', 'not handed back to e1000 behind the claim');
  const out = await r.agent.release([MF0]);
  assert.deepEqual(
    out.map((o) => [o.address, o.state, o.driver]),
    [
      [MF0, 'pending', null],
      [MF1, 'released', 'e1000'],
    ],
  );
  assert.equal(
    r.agent.engine.ledger[MF0]?.originalDriver,
    'e1000',
    'absent device keeps its entry',
  );
});
