// Adversarial findings 1 and 2 (../shared/reference/adversarial-2026-11.md) as their CLI repros:
// a real `passthru --sim qemu-guest agent` process, claim and release by the CLI, the kernel
// pokes by the same requests `passthru sim ...` sends over the control socket.
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { requestAgent } from '../src/process/socket-client.js';
import { systemClock } from '../src/host/clock.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bundle/passthru.js');
const NIC = '0000:01:00.0';
const OTHER = '0000:02:00.0';
/** An e1000 pair sharing IOMMU group 7 on the qemu-guest topology. */
const GROUP = '0000:00:05.0';
const COMPANION = '0000:00:05.1';

interface Cli {
  code: number | null;
  out: string;
}

function cli(state: string, args: string[]): Promise<Cli> {
  return new Promise((resolve) => {
    const p = spawn(
      process.execPath,
      [MAIN, '--sim', 'qemu-guest', '--state-dir', state, ...args],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    p.stderr.on('data', (c: Buffer) => (out += c.toString()));
    p.once('exit', (code) => {
      resolve({ code, out });
    });
  });
}

interface Machine {
  dir: string;
  agent: ChildProcess;
  socket: string;
  poke: (op: string, body: Record<string, unknown>) => Promise<void>;
  driver: (a: string) => Promise<string | null>;
  ledger: () => Promise<Record<string, { originalDriver: string | null }>>;
  stop: () => Promise<void>;
}

async function machine(): Promise<Machine> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-ledger-cli-'));
  const socket = path.join(dir, 'agent.sock');
  const agent = spawn(
    process.execPath,
    [MAIN, '--sim', 'qemu-guest', '--state-dir', dir, 'agent', '--poll-ms', '50'],
    { stdio: ['ignore', 'ignore', 'ignore'] },
  );
  for (let i = 0; i < 500; i++) {
    const r = await requestAgent(socket, 'GET', '/v1/status').catch(() => null);
    if ((r?.body as { phase?: string } | undefined)?.phase === 'running') break;
    await systemClock.sleep(20);
  }
  const exited = new Promise<void>((resolve) => {
    agent.once('exit', () => {
      resolve();
    });
  });
  return {
    dir,
    agent,
    socket,
    poke: async (op, body) => {
      const r = await requestAgent(socket, 'POST', `/v1/sim/${op}`, body);
      assert.equal(r?.status, 200, `sim ${op}`);
    },
    driver: async (a) => {
      const r = await requestAgent(socket, 'GET', '/v1/sim/state');
      const t = r?.body as { devices: { address: string; driver?: string | null }[] };
      return t.devices.find((d) => d.address === a)?.driver ?? null;
    },
    ledger: async () => {
      const s = JSON.parse(await fs.readFile(path.join(dir, 'state.json'), 'utf8')) as {
        ledger: Record<string, { originalDriver: string | null }>;
      };
      return s.ledger;
    },
    stop: async () => {
      agent.kill('SIGTERM');
      await exited;
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Waits (the agent retries with backoff) until the NIC is on e1000e and its ledger entry is gone;
 * on every look before the NIC is on e1000e, the ledger must still hold e1000e for it. Returns
 * the NIC's driver and whether the entry is still there at the end.
 */
async function watchUntilRestored(
  m: Machine,
  lost: string[],
): Promise<{ driver: string | null; entry: boolean }> {
  let driver: string | null = null;
  let entry = true;
  for (let i = 0; i < 300; i++) {
    driver = await m.driver(NIC);
    const e = (await m.ledger())[NIC];
    entry = e !== undefined;
    if (driver === 'e1000e' && !entry) break;
    if (driver !== 'e1000e' && e?.originalDriver !== 'e1000e')
      lost.push(`ledger ${JSON.stringify(e)} while on ${String(driver)}`);
    await systemClock.sleep(50);
  }
  return { driver, entry };
}

test('finding 1 by the CLI: claim, a failed vfio reload, a failing drivers_probe, modprobe -r, release: the NIC ends on e1000e and the ledger holds e1000e until it is', async () => {
  const m = await machine();
  try {
    assert.equal((await cli(m.dir, ['claim', NIC])).code, 0);
    await m.poke('fail-load', { module: 'vfio_pci', times: 1 });
    await m.poke('fail-write', { op: 'drivers_probe', errno: 'EIO', address: NIC, times: 1 });
    await m.poke('modprobe-r', { module: 'vfio_pci' });
    const rel = await cli(m.dir, ['release', NIC]);
    assert.doesNotMatch(rel.out, /nothing was bound/);
    const lost: string[] = [];
    assert.deepEqual(await watchUntilRestored(m, lost), { driver: 'e1000e', entry: false });
    assert.deepEqual(lost, []);
  } finally {
    await m.stop();
  }
});

test('finding 2 by the CLI: a release whose drivers_probe fails, then a claim of another NIC: the ledger keeps e1000e and the release is retried until the NIC is on e1000e', async () => {
  const m = await machine();
  try {
    assert.equal((await cli(m.dir, ['claim', NIC])).code, 0);
    await m.poke('fail-write', { op: 'drivers_probe', errno: 'EIO', address: NIC, times: 1 });
    await cli(m.dir, ['release', NIC]);
    assert.equal((await cli(m.dir, ['claim', OTHER])).code, 0, 'a later pass');
    const lost: string[] = [];
    assert.deepEqual(await watchUntilRestored(m, lost), { driver: 'e1000e', entry: false });
    assert.deepEqual(lost, []);
    assert.equal((await m.ledger())[OTHER]?.originalDriver, 'e1000e');
  } finally {
    await m.stop();
  }
});

// Found by the crash harness (soak seeds 15, 17 and 37 on main at 255a21e, where the companion
// stayed on vfio-pci, its ledger entry `releasing` with no reason, never retried): the release of
// a --with-group claim whose first function's driver_override write fails.
test('a --with-group release whose first driver_override write fails: both functions of the group end on e1000 and the ledger empties', async () => {
  const m = await machine();
  try {
    assert.equal((await cli(m.dir, ['claim', GROUP, '--with-group'])).code, 0);
    await m.poke('fail-write', { op: 'driver_override', errno: 'EIO', address: GROUP, times: 1 });
    await cli(m.dir, ['release', GROUP]);
    let drivers: (string | null)[] = [];
    // The retry comes after the key's backoff (0.5-1 s); allow a loaded machine 15 s for it.
    for (let i = 0; i < 300; i++) {
      drivers = [await m.driver(GROUP), await m.driver(COMPANION)];
      // The entry goes only after the device is verified back: wait for both.
      if (drivers.every((d) => d === 'e1000') && Object.keys(await m.ledger()).length === 0) break;
      await systemClock.sleep(50);
    }
    assert.deepEqual(drivers, ['e1000', 'e1000']);
    assert.deepEqual(await m.ledger(), {});
  } finally {
    await m.stop();
  }
});
