// `npm run soak`: many seeded crash rounds (default 1000), one after another; prints every
// inconsistent round with its seed and operations, then the counts.
//   node dist/test/crash/soak.js [ROUNDS] [FIRST_SEED] [STEPS]
import { defaultRoundOptions, formatRound, runRound, stopStandby } from './harness.js';

const rounds = Number(process.argv[2] ?? 1000);
const first = Number(process.argv[3] ?? 1);
const steps = Number(process.argv[4] ?? 8);
const opts = await defaultRoundOptions(steps);
let inconsistent = 0;
let devicesWrong = 0;
let kills = 0;
const failing: number[] = [];
const t0 = performance.now();
// SIGINT/SIGTERM end the run after the round in flight, with the counts so far.
const run = { stopping: false };
const stop = (): void => {
  run.stopping = true;
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
let done = 0;
for (let seed = first; seed < first + rounds && !run.stopping; seed++) {
  const r = await runRound(seed, opts);
  done++;
  kills += r.kills;
  if (r.problems.length > 0) {
    inconsistent++;
    devicesWrong += r.devicesWrong;
    failing.push(seed);
    console.log(formatRound(r, true));
  }
  if ((seed - first + 1) % 50 === 0) {
    console.log(`... ${seed - first + 1} rounds, ${inconsistent} inconsistent`);
  }
}
stopStandby();
const secs = (performance.now() - t0) / 1000;
console.log(
  `crash soak: ${done} rounds (seeds ${first}-${first + done - 1}, ${steps} steps each), ${kills} SIGKILLs, ${inconsistent} inconsistent rounds, ${devicesWrong} devices wrong after releasing everything, ${secs.toFixed(0)} s`,
);
if (failing.length > 0) console.log(`failing seeds: ${failing.join(' ')}`);
process.exitCode = inconsistent > 0 ? 1 : 0;
