import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultRoundOptions, formatRound, runRound, stopStandby } from './harness.js';

// The npm-test part of the crash-consistency harness: seeds 1-ROUNDS and every seed main's
// engine is known to fail (npm run soak runs 1000). Each round restarts the agent a few times and
// costs 2.8 s on average on the shared 2-core machine at load 14 (24 rounds took 67 s and pushed
// the whole suite past its 120 s timeout), hence 6. A round is reproducible by its seed
// as far as the operations and the writes SIGKILLs land on go; kills "now" land wherever the
// agent happens to be.
const ROUNDS = 6;
const STEPS = 8;

// Rounds that main's engine fails today, each with the adversarial finding it reproduces
// (../shared/reference/adversarial-2026-11.md), run as `todo`: they still run and print their
// problems. A round leaves this list when the engine is fixed, never by loosening the checks in
// harness.ts. Empty since main at 65850aa (seed 17, a failed group release whose companion was
// never retried, finding 2, was the last).
const KNOWN_FAILING_ON_MAIN: Record<number, string> = {};
/** Seeds that once found a bug stay in the set: 17 found the group-companion release. */
const REGRESSION_SEEDS = [17];

after(() => {
  stopStandby();
});

const opts = await defaultRoundOptions(STEPS);
const seeds = [
  ...new Set([
    ...Array.from({ length: ROUNDS }, (_, i) => i + 1),
    ...REGRESSION_SEEDS,
    ...Object.keys(KNOWN_FAILING_ON_MAIN).map(Number),
  ]),
];
for (const seed of seeds) {
  const todo = KNOWN_FAILING_ON_MAIN[seed];
  test(
    `crash round seed ${seed}: after churn, module removals, write failures and SIGKILLs, the restarted agent's ledger covers every changed device with its true original, each device is claimed or on its original driver, and releasing all restores every original`,
    todo !== undefined ? { todo } : {},
    async () => {
      const r = await runRound(seed, opts);
      assert.deepEqual(r.problems, [], formatRound(r, true));
    },
  );
}
