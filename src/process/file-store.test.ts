import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PtError } from '../errors.js';
import { FileStore } from './file-store.js';
import { writeFileAtomic } from './file-atomic.js';
import { emptyState, type State } from '../state/model.js';
import type { PciAddress } from '../pci/address.js';

const A = '0000:01:00.0' as PciAddress;

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-store-'));
  try {
    await fn(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

const code =
  (c: string) =>
  (e: unknown): boolean =>
    e instanceof PtError && e.code === c;

function next(s: State): State {
  return { ...s, generation: s.generation + 1 };
}

test('store: a save over a generation another writer saved in between is PT_ERR_STORE_CONFLICT and writes nothing', async () => {
  await withDir(async (dir) => {
    const one = new FileStore(dir);
    const two = new FileStore(dir);
    const s1 = await one.load();
    const s2 = await two.load();
    await one.save({
      ...next(s1),
      ledger: {
        [A]: {
          address: A,
          originalDriver: 'e1000e',
          vendorId: '8086',
          deviceId: '10d3',
          recordedAt: 1,
        },
      },
    });
    const before = await fs.readFile(one.location, 'utf8');
    await assert.rejects(two.save(next(s2)), code('PT_ERR_STORE_CONFLICT'));
    assert.equal(await fs.readFile(one.location, 'utf8'), before);
    // The first writer goes on; a reload lets the second one in again.
    await one.save(next(next(s1)));
    const s3 = await two.load();
    await two.save(next(s3));
    assert.equal((await two.load()).generation, 3);
  });
});

test('store: a save that would not move the generation forward is refused', async () => {
  await withDir(async (dir) => {
    const st = new FileStore(dir);
    const s = await st.load();
    await st.save(next(s));
    await assert.rejects(st.save(next(s)), code('PT_ERR_STORE_CONFLICT'));
  });
});

test('store: wrong shapes are PT_ERR_STORE_CORRUPT and the file is left byte for byte', async () => {
  await withDir(async (dir) => {
    const good = { ...emptyState(), generation: 1 };
    const entry = {
      address: A,
      originalDriver: 'e1000e',
      vendorId: '8086',
      deviceId: '10d3',
      recordedAt: 1,
    };
    const bad: unknown[] = [
      { ...good, claims: [] },
      { ...good, ledger: [] },
      { ...good, generation: 1e308 },
      { ...good, generation: -1 },
      { ...good, generation: 1.5 },
      { ...good, ledger: { [A]: { ...entry, originalDriver: 'e1000e\n' } } },
      { ...good, ledger: { [A]: { ...entry, originalDriver: '../../etc' } } },
      { ...good, ledger: { [A]: { ...entry, address: '0000:02:00.0' } } },
      { ...good, ledger: { 'not-an-address': { ...entry, address: 'not-an-address' } } },
      { ...good, claims: { [A]: { address: A, withGroup: 'yes', force: false, createdAt: 1 } } },
      { ...good, claims: { [A]: { address: A, withGroup: false, force: false } } },
      { ...good, extra: 1 },
      { ...good, format: 'passthru-state/2' },
      null,
      [],
    ];
    const st = new FileStore(dir);
    for (const b of bad) {
      const text = JSON.stringify(b);
      await fs.writeFile(st.location, text);
      await assert.rejects(st.load(), code('PT_ERR_STORE_CORRUPT'), text);
      assert.equal(await fs.readFile(st.location, 'utf8'), text);
    }
    await fs.writeFile(st.location, JSON.stringify({ ...good, ledger: { [A]: entry } }));
    assert.deepEqual((await st.load()).ledger[A], entry);
  });
});

test('atomic write: a failed save leaves no temporary file, and the old content stays', async () => {
  await withDir(async (dir) => {
    const st = new FileStore(dir);
    await st.save(next(await st.load()));
    // A directory where the rename must land makes the save fail after the temp file exists.
    const target = path.join(dir, 'blocked');
    await fs.mkdir(target);
    await fs.writeFile(path.join(target, 'x'), '');
    await assert.rejects(writeFileAtomic(target, 'data'));
    assert.deepEqual(
      (await fs.readdir(dir)).filter((f) => f.endsWith('.tmp')),
      [],
    );
    // A read-only folder: the store reports PT_ERR_STORE_IO and leaks nothing either.
    if (process.getuid?.() !== 0) {
      await fs.chmod(dir, 0o500);
      try {
        await assert.rejects(st.save(next(await st.load())), code('PT_ERR_STORE_IO'));
      } finally {
        await fs.chmod(dir, 0o700);
      }
    }
    assert.deepEqual(
      (await fs.readdir(dir)).filter((f) => f.endsWith('.tmp')),
      [],
    );
    assert.equal((await st.load()).generation, 1);
  });
});

test('atomic write: parents are created only with the mode the caller gives', async () => {
  await withDir(async (dir) => {
    await assert.rejects(writeFileAtomic(path.join(dir, 'no/such/file'), 'x'), { code: 'ENOENT' });
    await writeFileAtomic(path.join(dir, 'etc/modprobe.d/x.conf'), 'x', 0o644, 0o755);
    assert.equal((await fs.stat(path.join(dir, 'etc/modprobe.d'))).mode & 0o777, 0o755);
    assert.equal((await fs.stat(path.join(dir, 'etc/modprobe.d/x.conf'))).mode & 0o777, 0o644);
  });
});
