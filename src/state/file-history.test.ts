import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pino } from 'pino';
import type { DomainEvent } from '../events/events.js';
import { parsePciAddress } from '../pci/address.js';
import { FileHistory } from './file-history.js';

const A = parsePciAddress('0000:01:00.0');
const ev = (at: number): DomainEvent => ({ type: 'claim.removed', at, address: A });

async function scratch(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'pt-hist-'));
}

/** A logger that keeps its lines, to count what was logged. */
function capture(): { logger: pino.Logger; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const logger = pino(
    { level: 'trace' },
    {
      write: (s: string) => {
        lines.push(JSON.parse(s) as { level: number; msg: string });
      },
    },
  );
  return { logger, lines };
}

test('finding 3: a symlink planted as history.jsonl is not appended through; the failure is logged once and counted', async () => {
  const dir = await scratch();
  try {
    const victim = path.join(dir, 'victim');
    await fs.writeFile(victim, 'root-owned content\n');
    await fs.symlink(victim, path.join(dir, 'history.jsonl'));
    const { logger, lines } = capture();
    const h = new FileHistory(dir, { logger });
    for (let i = 0; i < 3; i++) await h.append(ev(i));
    assert.equal(await fs.readFile(victim, 'utf8'), 'root-owned content\n');
    assert.equal(h.health().writeErrors, 3);
    assert.match(h.health().lastError ?? '', /ELOOP/);
    assert.equal(lines.filter((l) => l.level >= 50).length, 1, 'one error line for three failures');
    // The events still reach status from memory.
    assert.deepEqual(
      (await h.recent(10)).map((e) => e.at),
      [0, 1, 2],
    );
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('recent() reads the files once, then serves from memory: a status request costs no file read', async () => {
  const dir = await scratch();
  try {
    const lines = Array.from({ length: 500 }, (_, i) => JSON.stringify(ev(i))).join('\n');
    await fs.writeFile(path.join(dir, 'history.jsonl'), `${lines}\n`);
    const h = new FileHistory(dir, { window: 50 });
    assert.deepEqual(
      (await h.recent(3)).map((e) => e.at),
      [497, 498, 499],
    );
    // Gone from disk: an answer now can only come from memory.
    await fs.rm(path.join(dir, 'history.jsonl'));
    assert.equal((await h.recent(1000)).length, 50, 'bounded by the window');
    await h.append(ev(500));
    assert.deepEqual(
      (await h.recent(2)).map((e) => e.at),
      [499, 500],
    );
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('a torn last line after a crash is skipped on load and the next event starts on its own line', async () => {
  const dir = await scratch();
  try {
    const file = path.join(dir, 'history.jsonl');
    await fs.writeFile(file, `${JSON.stringify(ev(1))}\n{"type":"torn`);
    const h = new FileHistory(dir);
    assert.deepEqual(
      (await h.recent(5)).map((e) => e.at),
      [1],
    );
    await h.append(ev(2));
    const text = await fs.readFile(file, 'utf8');
    assert.equal(text.split('\n').at(-2), JSON.stringify(ev(2)));
    const reread = new FileHistory(dir);
    assert.deepEqual(
      (await reread.recent(5)).map((e) => e.at),
      [1, 2],
    );
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('history.jsonl is created 0600', async () => {
  const dir = await scratch();
  try {
    await new FileHistory(dir).append(ev(1));
    assert.equal((await fs.stat(path.join(dir, 'history.jsonl'))).mode & 0o777, 0o600);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
