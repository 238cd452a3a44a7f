import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../host/clock.js';
import { backoffDelay } from '../util/backoff.js';
import { WorkQueue } from './workqueue.js';

const policy = { baseMs: 100, capMs: 1_000 };

test('workqueue: a key added twice is handed out once; a key added while processing comes back after done()', () => {
  const clock = new ManualClock(0);
  const q = new WorkQueue<string>(clock, policy, () => 1);
  q.add('a');
  q.add('a');
  assert.deepEqual(q.take(), ['a']);
  q.add('a');
  assert.deepEqual(q.take(), [], 'not handed out while processing');
  q.done('a');
  assert.deepEqual(q.take(), ['a']);
  q.done('a');
  assert.deepEqual(q.take(), []);
});

test('workqueue: failures of one key back off exponentially up to the cap without delaying other keys; forget() resets', async () => {
  const clock = new ManualClock(0);
  const q = new WorkQueue<string>(clock, policy, () => 1);
  const delays: number[] = [];
  for (let i = 0; i < 6; i++) {
    delays.push(q.addRateLimited('a'));
    q.add('b');
    assert.deepEqual(q.take(), ['b'], 'b is not held back by a');
    q.done('b');
    await clock.advance(delays.at(-1) ?? 0);
    assert.deepEqual(q.take(), ['a']);
    q.done('a');
  }
  assert.deepEqual(delays, [100, 200, 400, 800, 1_000, 1_000]);
  q.forget('a');
  assert.equal(q.addRateLimited('a'), 100);
});

test('workqueue: an earlier deadline wins; nextDueIn reports the wait', async () => {
  const clock = new ManualClock(0);
  const q = new WorkQueue<string>(clock, policy, () => 1);
  q.addAfter('a', 500);
  q.addAfter('a', 200);
  assert.equal(q.nextDueIn(), 200);
  await clock.advance(199);
  assert.deepEqual(q.take(), []);
  await clock.advance(1);
  assert.deepEqual(q.take(), ['a']);
  assert.equal(q.nextDueIn(), null);
});

test('backoff: jitter keeps every delay within [50%, 100%] of the capped exponential', () => {
  for (const r of [0, 0.25, 0.999]) {
    for (let attempt = 1; attempt <= 12; attempt++) {
      const raw = Math.min(1_000, 100 * 2 ** (attempt - 1));
      const d = backoffDelay(policy, attempt, () => r);
      assert.ok(d >= raw / 2 && d <= raw, `attempt ${attempt}, random ${r}: ${d}`);
    }
  }
});
