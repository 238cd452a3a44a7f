import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { PtError } from '../src/errors.js';
import { acquireStateLock, stateLockFile } from '../src/state/file-lock.js';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'lock-child.js');

/** A process that takes and drops the lock on command; `ask` sends one and waits for the answer. */
interface Taker {
  proc: ChildProcess;
  ask: (cmd: 'take' | 'drop') => Promise<string>;
}

function taker(stateDir: string, lockDir?: string): Taker {
  const proc = spawn(process.execPath, [CHILD, stateDir, ...(lockDir ? [lockDir] : [])], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  let buf = '';
  const waiting: ((line: string) => void)[] = [];
  proc.stdout.on('data', (c: Buffer) => {
    buf += c.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      waiting.shift()?.(line);
    }
  });
  proc.once('exit', () => {
    for (const w of waiting.splice(0)) w('exited');
  });
  return {
    proc,
    ask: (cmd) =>
      new Promise<string>((resolve) => {
        waiting.push(resolve);
        proc.stdin.write(`${cmd}\n`);
      }),
  };
}

function done(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) resolve();
    else
      p.once('exit', () => {
        resolve();
      });
  });
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-lock-'));
  try {
    await fn(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

const isLocked = (e: unknown): boolean => e instanceof PtError && e.code === 'PT_ERR_STORE_LOCKED';

test('state lock: two processes racing for it 50 times: exactly one holds it each time', async () => {
  await withDir(async (dir) => {
    const state = path.join(dir, 'state');
    const a = taker(state);
    const b = taker(state);
    let bothHeld = 0;
    let oneHeld = 0;
    try {
      await fs.mkdir(state);
      for (let i = 0; i < 50; i++) {
        // Left behind as by a crashed holder: a pid-file lock would race to take it over.
        await fs.writeFile(stateLockFile(state), '2147483646\n');
        // Both are told at once; each opens the file and runs flock on its own description.
        const answers = await Promise.all([a.ask('take'), b.ask('take')]);
        const held = answers.filter((x) => x === 'held').length;
        if (held === 2) bothHeld++;
        if (held === 1) oneHeld++;
        assert.ok(
          answers.every((x) => x === 'held' || x === 'PT_ERR_STORE_LOCKED'),
          `answers ${answers.join(', ')}`,
        );
        await Promise.all([a.ask('drop'), b.ask('drop')]);
      }
    } finally {
      a.proc.stdin?.end();
      b.proc.stdin?.end();
      await Promise.all([done(a.proc), done(b.proc)]);
    }
    assert.equal(bothHeld, 0, 'never held by both');
    assert.equal(oneHeld, 50, 'always held by one');
  });
});

test('state lock: a second taker in the same process is refused, and gets it after release', async () => {
  await withDir((dir) => {
    const release = acquireStateLock(dir);
    assert.throws(() => acquireStateLock(dir), isLocked);
    release();
    acquireStateLock(dir)();
    return Promise.resolve();
  });
});

test('state lock: a lock file naming a live unrelated pid (1, ourselves) does not block', async () => {
  await withDir(async (dir) => {
    const file = stateLockFile(dir);
    for (const content of ['1\n', `${process.pid}\n`, '', 'garbage']) {
      await fs.writeFile(file, content);
      const release = acquireStateLock(dir);
      assert.equal((await fs.readFile(file, 'utf8')).trim(), String(process.pid));
      release();
    }
  });
});

test('state lock: after its holder is SIGKILLed the next process takes it', async () => {
  await withDir(async (dir) => {
    const holder = taker(dir);
    const other = taker(dir);
    try {
      assert.equal(await holder.ask('take'), 'held');
      assert.equal(await other.ask('take'), 'PT_ERR_STORE_LOCKED');
      assert.throws(
        () => acquireStateLock(dir),
        (e: unknown) =>
          isLocked(e) && new RegExp(`pid ${String(holder.proc.pid)}\\b`).test(String(e)),
        'the refusal names the holder',
      );
      holder.proc.kill('SIGKILL');
      await done(holder.proc);
      assert.equal(await other.ask('take'), 'held');
    } finally {
      other.proc.stdin?.end();
      await done(other.proc);
    }
  });
});

test('state lock in a lock folder: one lock per state folder, whatever the spelling of its path', async () => {
  await withDir(async (dir) => {
    const locks = path.join(dir, 'run');
    const a = path.join(dir, 'a');
    const b = path.join(dir, 'b');
    await fs.mkdir(a);
    await fs.symlink(a, path.join(dir, 'a-link'));
    const releaseA = acquireStateLock(a, { lockDir: locks });
    const releaseB = acquireStateLock(b, { lockDir: locks });
    assert.throws(() => acquireStateLock(path.join(dir, 'a-link'), { lockDir: locks }), isLocked);
    assert.throws(() => acquireStateLock(`${a}/./`, { lockDir: locks }), isLocked);
    assert.equal((await fs.readdir(locks)).length, 2);
    assert.equal((await fs.stat(locks)).mode & 0o777, 0o700);
    releaseA();
    releaseB();
  });
});

test('state lock: a symlink, a FIFO or a directory as the lock file is refused without hanging', async () => {
  await withDir(async (dir) => {
    const file = stateLockFile(dir);
    const isIo = (e: unknown): boolean => e instanceof PtError && e.code === 'PT_ERR_STORE_IO';
    await fs.symlink(path.join(dir, 'elsewhere'), file);
    assert.throws(() => acquireStateLock(dir), isIo);
    await assert.rejects(fs.stat(path.join(dir, 'elsewhere')), 'the link was not followed');
    await fs.rm(file);
    await fs.mkdir(file);
    assert.throws(() => acquireStateLock(dir), isIo);
    await fs.rmdir(file);
    const mk = spawn('mkfifo', [file]);
    await done(mk);
    assert.throws(() => acquireStateLock(dir), isIo);
  });
});
