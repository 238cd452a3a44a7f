import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultRoundOptions, formatRound, runRound, stopStandby } from './harness.js';

// The npm-test part of the crash-consistency harness: a few dozen seeded rounds (npm run soak
// runs 1000). A round is reproducible by its seed as far as the operations go; where SIGKILLs
// land in time also depends on the machine's pace.
const ROUNDS = 20;
const STEPS = 8;

// Rounds that main's engine fails today, by the adversarial finding they reproduce
// (../shared/reference/adversarial-2026-11.md). They still run and print their problems; a round
// moves out of this list when the engine is fixed, never by loosening the checks in harness.ts.
const FINDINGS = {
  1: 'adversarial finding 1: a re-bind failing after module removal rolls back to no driver and the ledger entry is forgotten',
  2: 'adversarial finding 2: a failed or interrupted release is never retried and its ledger entry is lost',
} as const;
const KNOWN_FAILING_ON_MAIN: Record<number, string> = { 13: FINDINGS[2], 17: FINDINGS[2] };

after(() => {
  stopStandby();
});

const opts = await defaultRoundOptions(STEPS);
for (let seed = 1; seed <= ROUNDS; seed++) {
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
