import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

// V8 flags are process-wide: each case runs in a child Node of its own, so the test process
// keeps Node's defaults.
const leanHeap = fileURLToPath(new URL('./lean-heap.js', import.meta.url));

/** Runs `body` in a child Node after importing lean-heap.js; returns what it printed as JSON. */
function child(body: string): Record<string, number> {
  const script = `
    import * as v8 from 'node:v8';
    import { enableLeanHeap, afterGarbageBurst } from ${JSON.stringify(leanHeap)};
    const space = (n) => v8.getHeapSpaceStatistics().find((s) => s.space_name === n);
    // Survivors as a discovery makes them: lists that live across several young collections.
    const churn = () => {
      const keep = [];
      for (let r = 0; r < 20; r++) {
        const a = [];
        for (let i = 0; i < 100000; i++) a.push({ i, s: 'x' + i });
        keep.push(a);
        if (keep.length > 3) keep.shift();
      }
    };
    ${body}
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, number>;
}

const MiB = 1024 * 1024;

test('without enableLeanHeap, churn grows the young generation past 8 MiB (what it prevents)', () => {
  const got = child(`
    churn();
    console.log(JSON.stringify({ young: space('new_space').space_size }));
  `);
  assert.ok((got.young ?? 0) > 8 * MiB, `young generation ${String(got.young)} bytes`);
});

test('after enableLeanHeap, the same churn leaves the young generation at 4 MiB or less', () => {
  const got = child(`
    enableLeanHeap();
    churn();
    console.log(JSON.stringify({ young: space('new_space').space_size }));
  `);
  assert.ok((got.young ?? Infinity) <= 4 * MiB, `young generation ${String(got.young)} bytes`);
});

/** Major collections seen while `body` runs: after two turns, and after the settle delay. */
const countMajorGcs = (body: string): string => `
  const { PerformanceObserver, constants } = await import('node:perf_hooks');
  let majors = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      if (e.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors++;
  });
  obs.observe({ entryTypes: ['gc'] });
  ${body}
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  // gc entries reach observers asynchronously.
  await new Promise((r) => setTimeout(r, 50));
  const first = majors;
  await new Promise((r) => setTimeout(r, 1500));
  obs.disconnect();
  console.log(JSON.stringify({ first, settled: majors }));
`;

test('afterGarbageBurst twice in one turn: one full collection on the next turn, one more a second later', () => {
  const got = child(`
    enableLeanHeap();
    ${countMajorGcs('afterGarbageBurst(); afterGarbageBurst();')}
  `);
  assert.deepEqual(got, { first: 1, settled: 2 });
});

test('afterGarbageBurst before enableLeanHeap runs no collection: one-shot commands keep V8 defaults', () => {
  const got = child(countMajorGcs('afterGarbageBurst();'));
  assert.deepEqual(got, { first: 0, settled: 0 });
});
