import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultRoundOptions, formatRound, runRound, stopStandby } from './harness.js';

// The npm-test part of the crash-consistency harness: a few dozen seeded rounds (npm run soak
// runs 1000). A round is reproducible by its seed as far as the operations go; where SIGKILLs
// land in time also depends on the machine's pace.
const ROUNDS = 24;
const STEPS = 8;

after(() => {
  stopStandby();
});

const opts = await defaultRoundOptions(STEPS);
for (let seed = 1; seed <= ROUNDS; seed++) {
  test(`crash round seed ${seed}: after churn, module removals, write failures and SIGKILLs, the restarted agent's ledger covers every changed device with its true original, each device is claimed or on its original driver, and releasing all restores every original`, async () => {
    const r = await runRound(seed, opts);
    assert.deepEqual(r.problems, [], formatRound(r, true));
  });
}
