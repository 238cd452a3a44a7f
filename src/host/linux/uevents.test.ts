import { test } from 'node:test';
import { spawn } from 'node:child_process';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ManualClock } from '../clock.js';
import type { Uevent } from '../port.js';
import { monitorUevents } from './uevents.js';

const EVENT = (n: number): string =>
  `KERNEL[${n}.0] remove   /module/vfio_pci (module)\\nACTION=remove\\nDEVPATH=/module/vfio_pci\\nSUBSYSTEM=module\\nSEQNUM=${n}\\n\\n`;

/** A stand-in for udevadm: a shell script with the given body. */
async function fakeUdevadm(body: string): Promise<{ bin: string; dir: string }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-udevadm-'));
  const bin = path.join(dir, 'udevadm');
  await fs.writeFile(bin, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return { bin, dir };
}

function until(pred: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    const tick = (): void => {
      if (pred()) resolve();
      else setTimeout(tick, 5);
    };
    tick();
  });
}

test('uevent monitor: udevadm exiting on its own is reported once and restarted after the backoff; events flow again', async () => {
  // Each run prints one event and exits 1; a counter file tells the runs apart.
  const { bin, dir } = await fakeUdevadm(
    `n=$(cat "$0.count" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$0.count"; printf '${EVENT(1)}' | sed "s/SEQNUM=1/SEQNUM=$n/"; exit 1`,
  );
  try {
    const clock = new ManualClock(0);
    const events: Uevent[] = [];
    const errors: string[] = [];
    const stop = monitorUevents(
      { udevadmPath: bin, clock, restartMs: 1000 },
      (e) => events.push(e),
      (e) => errors.push(e.message),
    );
    await until(() => errors.length === 1);
    assert.equal(events.length, 1);
    assert.match(
      errors[0] ?? '',
      /uevent source failed: udevadm monitor exited \(1\); restarting in 1000 ms/,
    );
    await clock.advance(999);
    assert.equal(events.length, 1, 'no restart before the backoff');
    await clock.advance(1);
    await until(() => errors.length === 2);
    assert.deepEqual(
      events.map((e) => e.props.SEQNUM),
      ['1', '2'],
    );
    stop();
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('uevent monitor: a clean stop (udevadm exits 0 on SIGTERM) reports nothing and starts nothing again', async () => {
  const { bin, dir } = await fakeUdevadm(
    `trap 'exit 0' TERM; printf '${EVENT(7)}'; while :; do sleep 0.05; done`,
  );
  try {
    const clock = new ManualClock(0);
    const events: Uevent[] = [];
    const errors: string[] = [];
    const exits: Promise<unknown>[] = [];
    const stop = monitorUevents(
      {
        udevadmPath: bin,
        clock,
        restartMs: 10,
        spawnMonitor: (p) => {
          const c = spawn(p, [], { stdio: ['ignore', 'pipe', 'ignore'] });
          exits.push(new Promise((r) => c.on('exit', r)));
          return c;
        },
      },
      (e) => events.push(e),
      (e) => errors.push(e.message),
    );
    await until(() => events.length === 1);
    stop();
    await Promise.all(exits);
    await new Promise((r) => setImmediate(r));
    await clock.advance(60_000);
    assert.deepEqual(errors, []);
    assert.equal(events.length, 1);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
