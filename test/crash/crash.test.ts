import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultRoundOptions, formatRound, runRound, stopStandby } from './harness.js';

// The npm-test part of the crash-consistency harness: seeds 1-4 and every seed main's engine is
// known to fail (npm run soak runs 1000). Each round restarts the agent a few times and costs
// 2.5-10 s on the shared, loaded 2-core machine, hence only 4 here: the soak is where the counts are. A round is reproducible by its seed
// as far as the operations and the writes SIGKILLs land on go; kills "now" land wherever the
// agent happens to be.
const ROUNDS = 4;
const STEPS = 8;

// Rounds that main's engine fails today, by the adversarial finding they reproduce
// (../shared/reference/adversarial-2026-11.md). They still run and print their problems; a round
// moves out of this list when the engine is fixed, never by loosening the checks in harness.ts.
const FINDINGS = {
  1: 'adversarial finding 1: a re-bind failing after module removal rolls back to no driver and the ledger entry is forgotten',
  2: 'adversarial finding 2: a failed or interrupted release is never retried and its ledger entry is lost',
} as const;
const KNOWN_FAILING_ON_MAIN: Record<number, string> = {
  // A --with-group release whose first function's driver_override write fails: the companion
  // (0000:00:05.1) stays on vfio-pci, its ledger entry `releasing` with no reason, never retried.
  17: FINDINGS[2],
};

after(() => {
  stopStandby();
});

const opts = await defaultRoundOptions(STEPS);
const seeds = [
  ...new Set([
    ...Array.from({ length: ROUNDS }, (_, i) => i + 1),
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
