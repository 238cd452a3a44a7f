/**
 * History retention over simulated weeks with the default limits (1 MiB files, 3 rotations,
 * digest of 200 events per device for 256 devices): 4 claimed devices, a module loss every hour
 * hitting all of them, a drift a day on one. Prints the size on disk each week, the time a
 * `why` read takes at the end, and what the story still knows of the first claim.
 * Asserts nothing. Usage: node dist/bench/history-retention.js [weeks]
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildStory } from '../src/events/story.js';
import { ManualClock } from '../src/host/clock.js';
import { FileHistory } from '../src/process/file-history.js';
import { NIC } from '../test/helpers.js';

const weeks = Number(process.argv[2] ?? 12);

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const f of await fs.readdir(dir)) n += (await fs.stat(path.join(dir, f))).size;
  return n;
}

const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-bench-hist-'));
try {
  const clock = new ManualClock(Date.parse('2026-09-01T00:00:00Z'));
  const h = new FileHistory(dir);
  const [a] = NIC;
  if (a === undefined) throw new Error('no NIC');
  for (const d of NIC)
    await h.append({
      type: 'claim.added',
      at: clock.now(),
      address: d,
      withGroup: false,
      force: false,
      source: 'api',
    });
  let appended = NIC.length;
  for (let w = 1; w <= weeks; w++) {
    for (let hour = 0; hour < 7 * 24; hour++) {
      await clock.advance(3_600_000);
      const at = clock.now();
      await h.append({
        type: 'module.lost',
        at,
        modules: ['vfio_pci'],
        states: {},
        via: 'uevent',
        devices: NIC,
      });
      for (const d of NIC)
        await h.append({ type: 'claim.state', at, address: d, state: 'waiting', members: [d] });
      await h.append({ type: 'module.reloaded', at: at + 350, modules: ['vfio_pci'], attempts: 1 });
      for (const d of NIC)
        await h.append({
          type: 'claim.state',
          at: at + 400,
          address: d,
          state: 'ready',
          members: [d],
        });
      appended += 2 + 2 * NIC.length;
      if (hour % 24 === 0) {
        await h.append({ type: 'device.drift', at: at + 1000, address: a, driver: 'e1000e' });
        appended++;
      }
    }
    process.stdout.write(
      `week ${String(w)}: ${String(appended)} events appended, ${String(Math.round((await dirBytes(dir)) / 1024))} KiB on disk\n`,
    );
  }
  const t0 = performance.now();
  const read = await new FileHistory(dir).readAll();
  const story = buildStory(read, a, {
    present: true,
    driver: 'vfio-pci',
    claims: {},
    statuses: [],
    ledger: [],
    agentRunning: false,
  });
  const ms = performance.now() - t0;
  const first = story.entries.find((e) => e.kind === 'claimed');
  process.stdout.write(
    `why read + story: ${ms.toFixed(0)} ms over ${String(read.events.length)} events; first claim ${first ? new Date(first.at).toISOString() : 'lost'} by ${first?.source ?? '?'}; counts ${JSON.stringify(story.counts)}\n`,
  );
} finally {
  await fs.rm(dir, { recursive: true, force: true });
}
