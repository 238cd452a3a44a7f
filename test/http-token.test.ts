import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadOrCreateToken, readToken, tokenPath } from '../src/process/file-token.js';

async function tmpDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'pt-token-'));
}

test('token file: made 0600 on first use with 43 base64url characters, the same token on every later start', async () => {
  const dir = await tmpDir();
  const first = await loadOrCreateToken(dir);
  assert.match(first, /^[A-Za-z0-9_-]{43}$/);
  const st = await fs.stat(tokenPath(dir));
  assert.equal(st.mode & 0o777, 0o600);
  assert.equal(await loadOrCreateToken(dir), first);
  assert.deepEqual(
    (await fs.readdir(dir)).sort(),
    ['api-token'],
    'no temporary file is left behind',
  );
  const [a, b] = await Promise.all([
    loadOrCreateToken(await tmpDir()),
    loadOrCreateToken(await tmpDir()),
  ]);
  assert.notEqual(a, b, 'each state folder has its own random token');
});

test('token file: readable by others (0644), a symlink, or not a token is refused and left alone', async () => {
  const dir = await tmpDir();
  const file = tokenPath(dir);
  await fs.writeFile(file, `${'a'.repeat(43)}\n`, { mode: 0o644 });
  await fs.chmod(file, 0o644);
  await assert.rejects(loadOrCreateToken(dir), { code: 'PT_ERR_UNSAFE_PATH' });
  await fs.rm(file);
  await fs.writeFile(path.join(dir, 'elsewhere'), `${'a'.repeat(43)}\n`, { mode: 0o600 });
  await fs.symlink(path.join(dir, 'elsewhere'), file);
  await assert.rejects(readToken(file), { code: 'PT_ERR_UNSAFE_PATH' });
  await fs.rm(file);
  await fs.writeFile(file, 'short\n', { mode: 0o600 });
  await assert.rejects(loadOrCreateToken(dir), { code: 'PT_ERR_STORE_CORRUPT' });
  assert.equal(await fs.readFile(file, 'utf8'), 'short\n');
});
