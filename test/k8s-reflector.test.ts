import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../src/host/clock.js';
import { Reflector } from '../src/k8s/reflector.js';
import { CLAIMS } from '../src/k8s/resources.js';
import { silentLogger } from '../src/util/logger.js';
import { startFake } from './fake-apiserver/load.js';
import { apiFor } from './k8s-rig.js';

async function until(clock: ManualClock, pred: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 300 && !pred(); i++) {
    await clock.advance(100);
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.ok(pred(), `timed out waiting for ${what}`);
}

const claim = (name: string, node: string): Record<string, unknown> => ({
  metadata: { name },
  spec: { address: `0000:${name.slice(-5, -3)}:00.0`, nodeName: node },
});

test('reflector: a watch that ends resumes from its resourceVersion; after compaction it gets 410, relists, and drops what vanished meanwhile', async () => {
  const fake = await startFake();
  const clock = new ManualClock(0);
  const r = new Reflector(apiFor(fake, 'r'), CLAIMS, clock, silentLogger(), () => undefined, {
    random: () => 0.5,
    fieldSelector: 'spec.nodeName=node1',
  });
  const ac = new AbortController();
  const running = r.run(ac.signal);
  fake.seed('pcideviceclaims', claim('node1-000001000', 'node1'));
  fake.seed('pcideviceclaims', claim('node2-000001000', 'node2'));
  await until(clock, () => r.items.size === 1, 'the first claim');
  fake.closeWatches();
  fake.seed('pcideviceclaims', claim('node1-000002000', 'node1'));
  await until(clock, () => r.items.size === 2, 'the claim created while the watch was closed');
  assert.equal(r.counts.lists, 1, 'resumed without a relist');
  fake.stallWatches();
  await apiFor(fake, 'u').delete(CLAIMS, 'node1-000001000');
  fake.compact();
  fake.closeWatches();
  await until(clock, () => r.counts.relists410 === 1 && r.items.size === 1, 'the relist after 410');
  assert.deepEqual([...r.items.keys()], ['node1-000002000']);
  assert.equal(r.counts.lists, 2);
  ac.abort();
  await clock.advance(1);
  await running;
  await fake.stop();
});

test('reflector: a server that refuses the field selector (400) is watched through the fallback selector', async () => {
  const fake = await startFake();
  const clock = new ManualClock(0);
  const r = new Reflector(apiFor(fake, 'r'), CLAIMS, clock, silentLogger(), () => undefined, {
    random: () => 0.5,
    fieldSelector: 'spec.userName=admin',
    fallback: {},
  });
  fake.seed('pcideviceclaims', claim('node1-000001000', 'node1'));
  const ac = new AbortController();
  const running = r.run(ac.signal);
  await until(clock, () => r.items.size === 1, 'the claim through the fallback');
  ac.abort();
  await clock.advance(1);
  await running;
  await fake.stop();
});

test('reflector: a watch whose first response never comes is timed out after startTimeoutMs, retried with backoff, reported in lastError, and then delivers', async () => {
  const fake = await startFake();
  const clock = new ManualClock(0);
  const r = new Reflector(apiFor(fake, 'r'), CLAIMS, clock, silentLogger(), () => undefined, {
    random: () => 0.5,
    fieldSelector: 'spec.nodeName=node1',
    startTimeoutMs: 10_000,
  });
  fake.inject({ status: 0, hang: true, times: 2, match: (q) => q.watch });
  const ac = new AbortController();
  const running = r.run(ac.signal);
  await until(clock, () => r.counts.startTimeouts === 1, 'the first start timeout');
  assert.match(r.lastError ?? '', /watch pcideviceclaims: no response in 10000 ms/);
  assert.equal(r.failing, 1);
  await until(clock, () => r.counts.startTimeouts === 2, 'the second start timeout');
  assert.equal(r.failing, 2, 'backing off');
  fake.seed('pcideviceclaims', claim('node1-000001000', 'node1'));
  await until(clock, () => r.items.has('node1-000001000'), 'the claim through the third watch');
  assert.equal(r.lastError, null);
  assert.equal(r.counts.watches, 3);
  // The two stuck requests are still open on the server; the third watch is the live one.
  ac.abort();
  await clock.advance(1);
  await running;
  await fake.stop();
});
