import { test } from 'node:test';
import assert from 'node:assert/strict';
import { errnoOf } from '../src/errors.js';
import type { HostPort } from '../src/host/port.js';
import { SimKernel } from '../src/host/sim/kernel.js';
import { ManualClock } from '../src/host/clock.js';
import {
  eventsOf,
  labTopology,
  modulesLive,
  NIC,
  onVfio,
  rig,
  stop,
  VFIO_SET_61,
} from './helpers.js';
import { ModuleKeeper } from '../src/keeper/keeper.js';
import { EventBus } from '../src/events/events.js';
import { silentLogger } from '../src/util/logger.js';

for (const mode of ['uevents', 'polling only'] as const) {
  test(`field failure (${mode}): vfio_pci, vfio_pci_core, vfio_virqfd removed by someone else, 20 times: back within 1 s`, async (t) => {
    const r = await rig(labTopology(), { uevents: mode === 'uevents' });
    const { agent, kernel, clock } = r;
    const claims = await agent.claim(NIC, { withGroup: false, force: false });
    assert.deepEqual(
      claims.map((c) => c.state),
      ['ready', 'ready', 'ready', 'ready'],
    );
    const took: number[] = [];
    for (let i = 0; i < 20; i++) {
      // What the node component did: modprobe -r vfio_pci vfio_pci_core vfio_virqfd.
      for (const m of ['vfio_pci', 'vfio_pci_core', 'vfio_virqfd']) kernel.rmmod(m);
      assert.ok(!onVfio(kernel, NIC), 'devices fell off');
      const ms = await clock.advanceUntil(
        () => onVfio(kernel, NIC) && modulesLive(kernel),
        5_000,
        10,
      );
      assert.ok(ms <= 1_000, `round ${i}: recovered in ${ms} ms of simulated time`);
      took.push(ms);
      // Let the keeper finish recording before the next removal.
      await clock.advance(300);
    }
    const st = await agent.status();
    assert.equal(st.keeper.losses, 20);
    assert.equal(st.keeper.recoveries.length, 20);
    for (const rec of st.keeper.recoveries) {
      assert.ok(
        rec.reboundAt !== null && rec.detectToReboundMs !== null && rec.detectToReboundMs <= 1_000,
      );
      assert.equal(rec.devices, 4);
      assert.equal(rec.via, mode === 'uevents' ? 'uevent' : 'poll');
    }
    assert.ok(st.claims.every((c) => c.state === 'ready'));
    took.sort((a, b) => a - b);
    t.diagnostic(
      `${mode}: removal to all 4 on vfio-pci, simulated ms: median ${took[10]}, max ${took[19]}`,
    );
    await stop(r);
  });
}

test('field failure with zero claims: the modules still come back', async () => {
  const r = await rig();
  assert.ok(modulesLive(r.kernel), 'the agent loads vfio at start');
  r.kernel.modprobeRemove('vfio_pci');
  assert.equal(r.kernel.moduleState('vfio_pci'), 'absent');
  const ms = await r.clock.advanceUntil(() => modulesLive(r.kernel), 5_000, 10);
  assert.ok(ms <= 1_000, `back in ${ms} ms`);
  assert.equal(r.history.events.filter((e) => e.type === 'module.lost').length, 1);
  await stop(r);
});

test('a module stuck in Unloading counts as lost (devices are already driverless)', async () => {
  const r = await rig();
  await r.agent.claim([NIC[0]!], { withGroup: false, force: false });
  r.kernel.rmmod('vfio_pci', { linger: true });
  await r.clock.advance(300);
  const lost = eventsOf(r.history, 'module.lost')[0];
  assert.ok(lost);
  assert.equal(lost.states.vfio_pci, 'unloading');
  r.kernel.finishUnload('vfio_pci');
  await r.clock.advanceUntil(() => onVfio(r.kernel, [NIC[0]!]), 5_000);
  assert.ok(onVfio(r.kernel, [NIC[0]!]));
  await stop(r);
});

test('race: another component keeps removing helpers while the agent reloads', async (t) => {
  let hostile = 0;
  const outcomes: string[] = [];
  // After each of the agent's modprobes, the other component strikes again.
  const r = await rig(labTopology(), {
    wrap: (base, kernel) =>
      Object.assign(Object.create(base) as HostPort, {
        loadModule: async (name: string) => {
          await base.loadModule(name);
          if (hostile > 0) {
            hostile--;
            for (const m of ['vfio_pci_core', 'vfio_virqfd', 'vfio_pci']) {
              try {
                kernel.rmmod(m);
                outcomes.push(`${m}:removed`);
              } catch (e) {
                outcomes.push(`${m}:${errnoOf(e) ?? '?'}`);
              }
            }
          }
        },
      }),
  });
  const { kernel, clock, agent } = r;
  await agent.claim(NIC.slice(0, 2), { withGroup: false, force: false });
  hostile = 6;
  kernel.rmmod('vfio_pci');
  const ms = await clock.advanceUntil(
    () => hostile === 0 && onVfio(kernel, NIC.slice(0, 2)) && modulesLive(kernel),
    60_000,
    10,
  );
  assert.ok(onVfio(kernel, NIC.slice(0, 2)) && modulesLive(kernel), 'converged');
  assert.ok(
    outcomes.some((o) => o.endsWith(':EBUSY')),
    'some of its removals failed with EBUSY',
  );
  assert.ok(
    outcomes.some((o) => o.endsWith(':removed')),
    'some succeeded between the agent steps',
  );
  t.diagnostic(`converged after ${ms} ms simulated; hostile outcomes: ${outcomes.join(' ')}`);
  await stop(r);
});

test('modprobe fails 3 times then succeeds: 3 reload failures with non-decreasing retry delays, then the devices come back and the recovery counts 4 attempts', async () => {
  const r = await rig();
  await r.agent.claim(NIC, { withGroup: false, force: false });
  r.kernel.failModuleLoads('vfio_pci', 3);
  r.kernel.rmmod('vfio_pci');
  await r.clock.advanceUntil(() => onVfio(r.kernel, NIC), 30_000, 10);
  assert.ok(onVfio(r.kernel, NIC));
  await r.clock.advance(2_000);
  const failed = eventsOf(r.history, 'module.reload_failed');
  assert.equal(failed.length, 3, 'the keeper alone retries (the engine waits for it)');
  const delays = failed.map((e) => e.retryInMs);
  for (let i = 1; i < delays.length; i++)
    assert.ok((delays[i] ?? 0) >= (delays[i - 1] ?? 0), `delays grow: ${delays.join(', ')}`);
  const done = eventsOf(r.history, 'recovery.completed')[0];
  assert.ok(done && done.recovery.attempts === 4 && done.recovery.reboundAt !== null);
  await stop(r);
});

test('a module missing for good: plain status, claims waiting, bounded retry rate', async (t) => {
  const r = await rig();
  await r.agent.claim(NIC.slice(0, 2), { withGroup: false, force: false });
  r.kernel.setModuleAvailable('vfio_pci', false);
  r.kernel.rmmod('vfio_pci');
  const before = r.kernel.calls.filter((c) => c.op === 'modprobe').length;
  await r.clock.advance(600_000);
  const attempts = r.kernel.calls.filter((c) => c.op === 'modprobe').length - before;
  const st = await r.agent.status();
  assert.match(st.keeper.waiting ?? '', /not found/);
  assert.equal(st.keeper.healthy, false);
  for (const c of st.claims) {
    assert.equal(c.state, 'waiting');
    assert.match(c.message ?? '', /^waiting for vfio-pci: /);
  }
  // 10 simulated minutes: the keeper backs off to 30 s, the engine to 60 s.
  assert.ok(attempts >= 10 && attempts <= 80, `modprobe ran ${attempts} times in 10 min`);
  t.diagnostic(`modprobe attempts in 10 simulated minutes: ${attempts}`);
  r.kernel.setModuleAvailable('vfio_pci', true);
  await r.clock.advanceUntil(() => onVfio(r.kernel, NIC.slice(0, 2)), 60_000, 50);
  assert.ok(onVfio(r.kernel, NIC.slice(0, 2)), 'comes back once the module is installed');
  await stop(r);
});

test('keeper backoff: exponential, capped, jittered within [50%, 100%]', () => {
  let x = 0;
  const randoms = [0, 0.999, 0.5];
  const k = new ModuleKeeper({
    host: new SimKernel(labTopology()).port(),
    clock: new ManualClock(),
    bus: new EventBus(),
    logger: silentLogger(),
    publish: () => undefined,
    random: () => randoms[x++ % randoms.length] ?? 0,
    options: { backoffBaseMs: 200, backoffCapMs: 30_000 },
  });
  for (let attempt = 1; attempt <= 20; attempt++) {
    const raw = Math.min(30_000, 200 * 2 ** (attempt - 1));
    const d = k.backoff(attempt);
    assert.ok(d >= raw / 2 && d <= raw, `attempt ${attempt}: ${d} within [${raw / 2}, ${raw}]`);
  }
});

test('built-in vfio modules count as present: claims work and nothing is ever modprobed', async () => {
  const topo = labTopology();
  topo.modules = VFIO_SET_61.map((name) => ({ name, state: 'builtin' as const }));
  const r = await rig(topo);
  const claims = await r.agent.claim(NIC.slice(0, 2), { withGroup: false, force: false });
  assert.deepEqual(
    claims.map((c) => c.state),
    ['ready', 'ready'],
  );
  await r.clock.advance(5_000);
  const st = await r.agent.status();
  assert.equal(st.keeper.healthy, true);
  assert.ok(st.keeper.modules.every((m) => m.state === 'builtin'));
  assert.equal(st.keeper.losses, 0);
  assert.equal(r.kernel.calls.filter((c) => c.op === 'modprobe').length, 0);
  await stop(r);
});
