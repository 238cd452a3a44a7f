import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { deviceStory } from '../src/agent/story-source.js';
import type { DomainEvent } from '../src/events/events.js';
import { buildStory, type DeviceStory, type StoryState } from '../src/events/story.js';
import { ManualClock } from '../src/host/clock.js';
import type { PciAddress } from '../src/pci/address.js';
import { FileHistory } from '../src/process/file-history.js';
import { MemoryHistory } from '../src/state/history.js';
import type { HostPort } from '../src/host/port.js';
import { SimKernel } from '../src/host/sim/kernel.js';
import { MemoryStore } from '../src/state/model.js';
import { apiServer, NIC, ROOTFS, labTopology, makeAgent, onVfio, rig, stop } from './helpers.js';

const A = NIC[0] as PciAddress;
const B = NIC[1] as PciAddress;

const nothingClaimed: StoryState = {
  present: true,
  driver: 'e1000e',
  claims: {},
  statuses: [],
  ledger: [],
  agentRunning: true,
};

test('why: a claim by the API, a bind, a module loss timed back, drift and a release, from the agent on the simulated kernel', async () => {
  // After the start, modprobe takes 300 ms, as measured in the real-kernel lab.
  let slow = false;
  const r = await rig(labTopology(), {
    wrap: (base) =>
      Object.assign(Object.create(base) as HostPort, {
        loadModule: async (name: string) => {
          if (slow) await base.clock.sleep(300);
          await base.loadModule(name);
        },
      }),
  });
  try {
    await r.agent.claim([A], { withGroup: false, force: false, source: 'api' });
    await r.agent.claim([ROOTFS], { withGroup: false, force: false, source: 'cli' });
    await r.clock.advance(60_000);
    slow = true;
    r.kernel.rmmod('vfio_pci');
    const lossAt = r.clock.now();
    await r.clock.advanceUntil(() => onVfio(r.kernel, [A]), 10_000, 10);
    await r.clock.advanceUntil(() => !r.agent.keeper.status().recovering, 10_000, 10);
    await r.clock.advance(60_000);
    // Someone else takes it back to its host driver: drift, and the agent puts it back.
    await r.kernel.port().unbindDevice(A);
    await r.kernel.port().writeDeviceAttr(A, 'driver_override', '\n');
    await r.kernel.port().probeDevice(A);
    await r.clock.advanceUntil(
      () => r.history.events.some((e) => e.type === 'device.drift'),
      20_000,
      100,
    );
    await r.clock.advanceUntil(() => onVfio(r.kernel, [A]), 20_000, 100);
    const story = await deviceStory(r.agent, A, null, true);
    const kinds = story.entries.map((e) => e.kind);
    assert.equal(kinds[0], 'claimed');
    assert.equal(story.entries[0]?.source, 'api');
    assert.ok(kinds.includes('bound'));
    const lost = story.entries.find((e) => e.kind === 'module-lost');
    assert.equal(lost?.at, lossAt);
    const back = story.entries.find((e) => e.kind === 'back');
    assert.ok(back?.ms !== undefined && back.ms >= 300, 'the time back includes the modprobe');
    assert.equal(back.at - lossAt, back.ms);
    const drift = story.entries.find((e) => e.kind === 'drift');
    assert.match(
      drift?.text ?? '',
      /^someone else unbound it from vfio-pci: now on (no driver|e1000e) after /,
    );
    assert.equal(story.counts.losses, 1);
    assert.equal(story.counts.drifts, 1);
    assert.equal(story.counts.binds, 2, 'the first bind and the re-bind after the drift');
    assert.deepEqual(
      {
        ok: story.now.ok,
        driver: story.now.driver,
        claim: story.now.claim,
        source: story.now.source,
      },
      { ok: true, driver: 'vfio-pci', claim: A, source: 'api' },
    );
    // The refused claim of the root filesystem's device, with its code.
    const refused = await deviceStory(r.agent, ROOTFS, null, true);
    assert.deepEqual(refused.counts.refusals, { PT_ERR_HOST_CRITICAL: 1 });
    assert.equal(refused.now.claim, null);
    // --since leaves the claim out but still tells where the device stands.
    const recent = await deviceStory(r.agent, A, lossAt + 1, true);
    assert.ok(!recent.entries.some((e) => e.kind === 'claimed' || e.kind === 'module-lost'));
    assert.equal(recent.now.ok, true);
    await r.agent.release([A]);
    const after = await deviceStory(r.agent, A, null, true);
    assert.equal(after.entries.at(-1)?.kind, 'released');
    assert.match(
      after.entries.at(-1)?.text ?? '',
      /released to e1000e \(its original driver\) after/,
    );
    assert.equal(after.now.claim, null);
  } finally {
    await stop(r);
  }
});

test('why: a claim waiting for vfio-pci ends with the reason in one sentence and the fix', () => {
  const events: DomainEvent[] = [
    {
      type: 'claim.added',
      at: 1,
      address: A,
      withGroup: false,
      force: false,
      source: 'kubernetes',
    },
    { type: 'device.bound', at: 2, address: A, from: 'e1000e', ms: 40 },
    { type: 'claim.state', at: 3, address: A, state: 'ready', members: [A] },
    {
      type: 'module.lost',
      at: 10_000,
      modules: ['vfio_pci'],
      states: { vfio_pci: 'missing' },
      via: 'poll',
      devices: [A, B],
    },
    {
      type: 'claim.state',
      at: 10_000,
      address: A,
      state: 'waiting',
      members: [A],
      code: 'PT_ERR_MODULE_UNAVAILABLE',
      message: 'waiting for vfio-pci: modprobe: FATAL: Module vfio_pci not found',
    },
  ];
  const s = buildStory({ events, digest: {}, older: {} }, A, {
    present: true,
    driver: null,
    claims: {
      [A]: { address: A, withGroup: false, force: false, createdAt: 1, source: 'kubernetes' },
    },
    statuses: [
      {
        address: A,
        state: 'waiting',
        withGroup: false,
        force: false,
        members: [A],
        group: 10,
        originalDrivers: { [A]: 'e1000e' },
        code: 'PT_ERR_MODULE_UNAVAILABLE',
        message: 'waiting for vfio-pci: modprobe: FATAL: Module vfio_pci not found',
        lastChange: 10_000,
      },
    ],
    ledger: [],
    agentRunning: true,
  });
  assert.deepEqual(
    s.entries.map((e) => e.kind),
    ['claimed', 'bound', 'state', 'module-lost', 'state'],
  );
  assert.match(s.entries[3]?.text ?? '', /after 10\.0 s on it/);
  assert.equal(s.now.ok, false);
  assert.equal(s.now.reason, 'waiting for vfio-pci: modprobe: FATAL: Module vfio_pci not found');
  assert.match(s.now.fix ?? '', /passthru doctor/);
  assert.equal(s.now.source, 'kubernetes');
  // B was hit by the same loss but is not claimed: its story is the loss and nothing owed.
  const b = buildStory({ events, digest: {}, older: {} }, B, nothingClaimed);
  assert.deepEqual(
    b.entries.map((e) => e.kind),
    ['module-lost'],
  );
  assert.equal(b.now.ok, true);
});

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of await fs.readdir(dir)) n += (await fs.stat(path.join(dir, f))).size;
  return n;
}

test('history over simulated weeks stays bounded and keeps what why needs: the first claim, its source, every loss counted', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-why-'));
  try {
    const clock = new ManualClock(Date.parse('2026-10-01T00:00:00Z'));
    const opts = { maxBytes: 16 * 1024, keep: 2, digest: { eventsPerDevice: 60, devices: 12 } };
    const h = new FileHistory(dir, opts);
    const claimedAt = clock.now();
    await h.append({
      type: 'claim.added',
      at: claimedAt,
      address: A,
      withGroup: false,
      force: false,
      source: 'kubernetes',
    });
    await h.append({ type: 'device.bound', at: clock.now(), address: A, from: 'e1000e', ms: 30 });
    let losses = 0;
    let churn = 0;
    /** Six weeks: a module loss every 4 hours, and VFs of other devices coming and going. */
    const sixWeeks = async (): Promise<void> => {
      for (let i = 0; i < 6 * 7 * 6; i++) {
        await clock.advance(4 * 3_600_000);
        losses++;
        const at = clock.now();
        await h.append({
          type: 'module.lost',
          at,
          modules: ['vfio_pci'],
          states: {},
          via: 'poll',
          devices: [A, B],
        });
        await h.append({
          type: 'claim.state',
          at,
          address: A,
          state: 'waiting',
          members: [A],
          code: 'PT_ERR_MODULE_UNAVAILABLE',
        });
        await h.append({
          type: 'module.reloaded',
          at: at + 300,
          modules: ['vfio_pci'],
          attempts: 1,
        });
        await h.append({
          type: 'claim.state',
          at: at + 400,
          address: A,
          state: 'ready',
          members: [A],
        });
        // A drifts too: its share of the digest rolls faster than B's, which keeps the same
        // losses in detail longer (a loss must still be counted once for A).
        await h.append({ type: 'device.drift', at: at + 500, address: A, driver: 'e1000e' });
        const vf = `0000:81:${(churn++ % 64).toString(16).padStart(2, '0')}.1` as PciAddress;
        await h.append({ type: 'claim.removed', at, address: vf });
      }
    };
    await sixWeeks();
    const after6 = await dirBytes(dir);
    await sixWeeks();
    const after12 = await dirBytes(dir);
    // Three files of at most 16 KiB plus a digest of at most 12 devices x 60 events.
    assert.ok(after12 <= 3 * 16 * 1024 + 12 * 60 * 200, `history is ${String(after12)} bytes`);
    assert.ok(
      after12 - after6 < 16 * 1024,
      `grew ${String(after12 - after6)} bytes in six more weeks`,
    );
    const digest = JSON.parse(
      await fs.readFile(path.join(dir, 'history-devices.json'), 'utf8'),
    ) as {
      devices: Record<string, unknown>;
    };
    assert.ok(Object.keys(digest.devices).length <= 12);

    // A reader of its own (passthru why without an agent) changes nothing on disk.
    const before = await fs.readdir(dir);
    const sizes = await dirBytes(dir);
    const read = await new FileHistory(dir, opts).readAll();
    assert.deepEqual(await fs.readdir(dir), before);
    assert.equal(await dirBytes(dir), sizes);

    const story = buildStory(read, A, nothingClaimed);
    const claimed = story.entries.find((e) => e.kind === 'claimed');
    assert.equal(claimed?.at, claimedAt, 'the claim made twelve weeks ago is still told');
    assert.equal(claimed.source, 'kubernetes');
    assert.equal(story.entries[0]?.kind, 'older');
    assert.equal(story.counts.losses, losses, 'every loss is counted once, detailed or not');
    assert.equal(story.counts.drifts, losses);
    assert.equal(buildStory(read, B, nothingClaimed).counts.losses, losses);
    assert.equal(story.counts.claims, 1);
    assert.deepEqual(
      story.entries.slice(-2).map((e) => e.kind),
      ['back', 'drift'],
      'the newest events are there in detail',
    );
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('MemoryHistory.readAll gives every event, oldest first', async () => {
  const h = new MemoryHistory();
  await h.append({ type: 'claim.removed', at: 1, address: A });
  await h.append({ type: 'claim.removed', at: 2, address: B });
  assert.deepEqual(
    (await h.readAll()).events.map((e) => e.at),
    [1, 2],
  );
});

test('GET /v1/devices/:address/story answers the story; a bad address or since is 400 PT_ERR_INVALID_*', async () => {
  const r = await rig(labTopology(), { run: false });
  const { server } = await apiServer(r, { sim: false });
  try {
    await r.agent.claim([A], { withGroup: false, force: false, source: 'api' });
    const res = await server.app.inject({ method: 'GET', url: `/v1/devices/${A}/story` });
    assert.equal(res.statusCode, 200, res.body);
    const story = res.json<DeviceStory>();
    assert.equal(story.entries[0]?.source, 'api');
    assert.equal(story.now.ok, true);
    const later = await server.app.inject({
      method: 'GET',
      url: `/v1/devices/${A}/story?since=${String(r.clock.now() + 1)}`,
    });
    assert.deepEqual(later.json<DeviceStory>().entries, []);
    for (const [url, code] of [
      ['/v1/devices/nonsense/story', 'PT_ERR_INVALID_ADDRESS'],
      [`/v1/devices/${A}/story?since=yesterday`, 'PT_ERR_INVALID_ARGUMENT'],
    ] as const) {
      const bad = await server.app.inject({ method: 'GET', url });
      assert.equal(bad.statusCode, 400, url);
      assert.equal(bad.json<{ error: { code: string } }>().error.code, code);
    }
  } finally {
    await server.close();
    await stop(r);
  }
});

test('a read-only look (status or why without an agent) records nothing in the history', async () => {
  const clock = new ManualClock(1_000_000);
  const kernel = new SimKernel(labTopology(), clock);
  const store = new MemoryStore();
  const first = makeAgent(kernel, clock, store);
  await first.agent.start();
  await first.agent.claim([A], { withGroup: false, force: false, source: 'cli' });
  // Another process looks: the claim is seen (its state computed), nothing is appended.
  const look = makeAgent(kernel, clock, store);
  const st = await look.agent.inspect();
  assert.equal(st.claims[0]?.state, 'ready');
  assert.deepEqual(look.history.events, []);
  const story = await deviceStory(look.agent, A, null, false);
  assert.equal(story.now.ok, true);
  assert.deepEqual(look.history.events, []);
});
