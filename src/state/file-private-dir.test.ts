import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { currentUid, ensureOneLevel, ensurePrivateDir, simBaseDir } from './file-private-dir.js';

const uid = currentUid();
const rule = { uid, privateToOwner: true, followSymlink: false, what: 'test folder' };

async function scratch(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'pt-priv-'));
}

test('simBaseDir creates passthru-sim-<uid> 0700 under the temp dir when XDG_RUNTIME_DIR is unset', async () => {
  const tmp = await scratch();
  try {
    const base = await simBaseDir({ xdgRuntimeDir: undefined, tmpDir: tmp, uid });
    assert.equal(base, path.join(tmp, `passthru-sim-${uid}`));
    const st = await fs.lstat(base);
    assert.ok(st.isDirectory());
    assert.equal(st.mode & 0o777, 0o700);
    assert.equal(st.uid, uid);
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
});

test('simBaseDir uses $XDG_RUNTIME_DIR/passthru-sim when set, and refuses an XDG_RUNTIME_DIR others can write', async () => {
  const xdg = await scratch();
  try {
    assert.equal(
      await simBaseDir({ xdgRuntimeDir: xdg, tmpDir: '/nonexistent', uid }),
      path.join(xdg, 'passthru-sim'),
    );
    await fs.chmod(xdg, 0o777);
    await assert.rejects(simBaseDir({ xdgRuntimeDir: xdg, tmpDir: '/nonexistent', uid }), {
      code: 'PT_ERR_UNSAFE_PATH',
    });
  } finally {
    await fs.rm(xdg, { recursive: true, force: true });
  }
});

test('finding 3: a pre-created group/other-writable sim folder is refused and nothing is created in it', async () => {
  const tmp = await scratch();
  try {
    const planted = path.join(tmp, `passthru-sim-${uid}`);
    await fs.mkdir(planted);
    await fs.chmod(planted, 0o777);
    await assert.rejects(simBaseDir({ xdgRuntimeDir: undefined, tmpDir: tmp, uid }), {
      code: 'PT_ERR_UNSAFE_PATH',
    });
    assert.deepEqual(await fs.readdir(planted), []);
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
});

test('finding 3: a sim folder owned by someone else is refused (owner checked against the caller)', async () => {
  const tmp = await scratch();
  try {
    const dir = path.join(tmp, 'qemu-guest');
    await fs.mkdir(dir, { mode: 0o700 });
    // Without a second user: the folder is ours, so asking for another uid is the same test.
    await assert.rejects(ensureOneLevel(dir, { ...rule, uid: uid + 1 }), {
      code: 'PT_ERR_UNSAFE_PATH',
      message: new RegExp(`owned by uid ${uid}`),
    });
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
});

test('finding 3/9: a symlink planted as the sim folder is refused, its target untouched', async () => {
  const tmp = await scratch();
  try {
    const target = path.join(tmp, 'real-state');
    await fs.mkdir(target, { mode: 0o700 });
    await fs.symlink(target, path.join(tmp, `passthru-sim-${uid}`));
    await assert.rejects(simBaseDir({ xdgRuntimeDir: undefined, tmpDir: tmp, uid }), {
      code: 'PT_ERR_UNSAFE_PATH',
      message: /symlink/,
    });
    assert.deepEqual(await fs.readdir(target), []);
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
});

test('ensurePrivateDir: a file in the folder place is PT_ERR_INVALID_ARGUMENT; an explicit state dir may be 0755 but not 0775', async () => {
  const tmp = await scratch();
  try {
    const file = path.join(tmp, 'hostname');
    await fs.writeFile(file, 'x');
    await assert.rejects(ensurePrivateDir(file, rule), { code: 'PT_ERR_INVALID_ARGUMENT' });
    const explicit = { ...rule, privateToOwner: false, followSymlink: true };
    const dir = path.join(tmp, 'state');
    await fs.mkdir(dir);
    await fs.chmod(dir, 0o755);
    await ensurePrivateDir(dir, explicit);
    await fs.chmod(dir, 0o775);
    await assert.rejects(ensurePrivateDir(dir, explicit), { code: 'PT_ERR_UNSAFE_PATH' });
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
});
