import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { PtError, errnoOf } from '../errors.js';

/**
 * What a folder the agent keeps state or a socket in must look like. Another user who owns the
 * folder, or may write into it, can plant symlinks that make a root agent write through them
 * (adversarial finding 3), or put a fake socket in the agent's place.
 */
export interface DirRule {
  /** The only acceptable owner (the calling user: root for the live host). */
  uid: number;
  /** true: no permission bits at all for group and others (socket folders: 0700). */
  privateToOwner: boolean;
  /** false: refuse a symlink in place of the folder (default folders under shared parents). */
  followSymlink: boolean;
  /** Names the folder in messages (`--state-dir`, `socket folder`). */
  what: string;
  /** Also accept root as the owner (reading a root agent's state as another user). */
  allowRootOwner?: boolean;
}

export function currentUid(): number {
  // process.getuid is absent only on Windows, which passthru does not run on.
  return process.getuid?.() ?? 0;
}

/** Throws PT_ERR_UNSAFE_PATH unless `dir` is a folder owned by rule.uid that others cannot write. */
export async function checkPrivateDir(dir: string, rule: DirRule): Promise<void> {
  let st;
  try {
    st = rule.followSymlink ? await fs.stat(dir) : await fs.lstat(dir);
  } catch (e) {
    const errno = errnoOf(e);
    if (errno === 'ENOTDIR')
      throw new PtError('PT_ERR_INVALID_ARGUMENT', `${rule.what} ${dir} is not a directory`);
    if (errno === 'EACCES')
      throw new PtError('PT_ERR_PERMISSION', `no permission to use ${rule.what} ${dir}`);
    throw e;
  }
  if (st.isSymbolicLink())
    throw new PtError(
      'PT_ERR_UNSAFE_PATH',
      `${rule.what} ${dir} is a symlink: refusing a folder another user may have planted`,
    );
  if (!st.isDirectory())
    throw new PtError('PT_ERR_INVALID_ARGUMENT', `${rule.what} ${dir} is not a directory`);
  if (st.uid !== rule.uid && !(rule.allowRootOwner === true && st.uid === 0))
    throw new PtError(
      'PT_ERR_UNSAFE_PATH',
      `${rule.what} ${dir} is owned by uid ${st.uid}, not by uid ${rule.uid} (who runs passthru)`,
      { details: { path: dir, owner: st.uid } },
    );
  const bad = rule.privateToOwner ? 0o077 : 0o022;
  if ((st.mode & bad) !== 0)
    throw new PtError(
      'PT_ERR_UNSAFE_PATH',
      `${rule.what} ${dir} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}: ${rule.privateToOwner ? 'make it 0700' : 'group and others must not write to it'}`,
      { details: { path: dir, mode: st.mode & 0o777 } },
    );
}

/**
 * Creates `dir` (0700, parents too) when missing, then checks it with `rule`. A folder created
 * here is ours; one that already existed may be anybody's, hence the check either way.
 */
export async function ensurePrivateDir(dir: string, rule: DirRule): Promise<void> {
  try {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    const errno = errnoOf(e);
    if (errno === 'EEXIST' || errno === 'ENOTDIR')
      throw new PtError('PT_ERR_INVALID_ARGUMENT', `${rule.what} ${dir} is not a directory`);
    if (errno === 'EACCES' || errno === 'EPERM')
      throw new PtError('PT_ERR_PERMISSION', `cannot create ${rule.what} ${dir}: ${errno}`);
    throw new PtError(
      'PT_ERR_STORE_IO',
      `cannot create ${rule.what} ${dir}: ${errno ?? String(e)}`,
    );
  }
  await checkPrivateDir(dir, rule);
}

/**
 * The per-user base folder for simulated hosts: $XDG_RUNTIME_DIR/passthru-sim (systemd makes
 * XDG_RUNTIME_DIR 0700 for its user), else passthru-sim-<uid> under the temp dir. Either way
 * it is created 0700 and refused when someone else owns it or can reach into it.
 */
export async function simBaseDir(env: {
  xdgRuntimeDir: string | undefined;
  tmpDir: string;
  uid: number;
}): Promise<string> {
  const rule: DirRule = {
    uid: env.uid,
    privateToOwner: true,
    followSymlink: false,
    what: 'simulated-host folder',
  };
  if (env.xdgRuntimeDir !== undefined && path.isAbsolute(env.xdgRuntimeDir)) {
    await checkPrivateDir(env.xdgRuntimeDir, {
      ...rule,
      followSymlink: true,
      what: 'XDG_RUNTIME_DIR',
    });
    const base = path.join(env.xdgRuntimeDir, 'passthru-sim');
    await ensureOneLevel(base, rule);
    return base;
  }
  const base = path.join(env.tmpDir, `passthru-sim-${env.uid}`);
  await ensureOneLevel(base, rule);
  return base;
}

/** mkdir of the last component only: the parent (a shared temp dir) is not ours to create. */
export async function ensureOneLevel(dir: string, rule: DirRule): Promise<void> {
  try {
    await fs.mkdir(dir, { mode: 0o700 });
  } catch (e) {
    if (errnoOf(e) !== 'EEXIST') {
      const errno = errnoOf(e);
      if (errno === 'EACCES' || errno === 'EPERM')
        throw new PtError('PT_ERR_PERMISSION', `cannot create ${rule.what} ${dir}: ${errno}`);
      throw new PtError(
        'PT_ERR_STORE_IO',
        `cannot create ${rule.what} ${dir}: ${errno ?? String(e)}`,
      );
    }
  }
  await checkPrivateDir(dir, rule);
}
