import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PtError, errnoOf } from '../errors.js';

/** Where the live host's lock lives: tmpfs, so a reboot leaves no lock behind. */
export const LIVE_LOCK_DIR = '/run/passthru';

/**
 * The lock file for a state folder. Its name carries a hash of the folder's real path, so two
 * spellings of one folder (a symlink, `./x` and `/abs/x`) meet at one lock, and two folders never
 * share one. Without `lockDir` it sits inside the state folder (simulated hosts, tests).
 */
export function stateLockFile(stateDir: string, lockDir?: string): string {
  const real = fs.realpathSync(stateDir);
  if (lockDir === undefined) return path.join(real, 'state.lock');
  const id = createHash('sha256').update(real).digest('hex').slice(0, 16);
  return path.join(lockDir, `state-${id}.lock`);
}

/**
 * One writer per state folder: the agent for its lifetime, a direct-mode claim or release for
 * its command. The lock is flock(2) on an open file description this process keeps open: the
 * kernel refuses a second holder and drops the lock when the process dies, however it dies, so
 * there is no pid to trust, no stale lock to take over and no takeover race (docs/adr/0007).
 * Node has no flock binding: util-linux `flock -n -x 3` locks the description it inherits as
 * fd 3, and the lock outlives that helper because this process still holds the description.
 * The pid written into the file is for the error message only; nothing reads it as truth.
 *
 * Returns the release function (closing the descriptor drops the lock); the file stays, because
 * unlinking a lock file lets the next taker lock a fresh inode beside a holder of the old one.
 */
export function acquireStateLock(
  stateDir: string,
  opts: { lockDir?: string; flock?: string } = {},
): () => void {
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  if (opts.lockDir !== undefined) prepareLockDir(opts.lockDir);
  const file = stateLockFile(stateDir, opts.lockDir);
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO planted as the lock file must not hang the open.
    fd = fs.openSync(
      file,
      fs.constants.O_RDWR |
        fs.constants.O_CREAT |
        fs.constants.O_NOFOLLOW |
        fs.constants.O_NONBLOCK,
      0o600,
    );
  } catch (e) {
    throw new PtError('PT_ERR_STORE_IO', `cannot open ${file}: ${errnoOf(e) ?? String(e)}`, {
      cause: e,
    });
  }
  try {
    if (!fs.fstatSync(fd).isFile()) {
      throw new PtError('PT_ERR_STORE_IO', `${file} is not a regular file: move it away`);
    }
    const r = spawnSync(opts.flock ?? 'flock', ['-n', '-x', '3'], {
      stdio: ['ignore', 'ignore', 'pipe', fd],
      timeout: 10_000,
    });
    if (r.error !== undefined) {
      throw new PtError(
        'PT_ERR_STORE_IO',
        `cannot run flock (util-linux) to lock ${file}: ${errnoOf(r.error) ?? r.error.message}`,
        { cause: r.error },
      );
    }
    if (r.status === 1) {
      const owner = readOwner(fd);
      throw new PtError(
        'PT_ERR_STORE_LOCKED',
        `another passthru process${owner !== null ? ` (pid ${owner})` : ''} is using ${stateDir}; stop it or talk to it through its socket`,
        { details: owner !== null ? { pid: owner } : {} },
      );
    }
    if (r.status !== 0) {
      throw new PtError(
        'PT_ERR_STORE_IO',
        `flock on ${file} failed (status ${String(r.status ?? r.signal)}): ${r.stderr.toString().trim()}`,
      );
    }
    fs.ftruncateSync(fd, 0);
    fs.writeSync(fd, `${process.pid}\n`, 0);
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
  let open = true;
  return () => {
    if (!open) return;
    open = false;
    fs.closeSync(fd);
  };
}

/** The lock folder is created private; an existing one must be a real directory, not a link. */
function prepareLockDir(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = fs.lstatSync(dir);
    if (!st.isDirectory()) throw new Error('not a directory');
    if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) {
      throw new Error('writable by others');
    }
  } catch (e) {
    if (e instanceof PtError) throw e;
    throw new PtError(
      'PT_ERR_STORE_IO',
      `lock folder ${dir}: ${errnoOf(e) ?? (e instanceof Error ? e.message : String(e))}`,
      { cause: e },
    );
  }
}

function readOwner(fd: number): number | null {
  const buf = Buffer.alloc(32);
  try {
    const n = fs.readSync(fd, buf, 0, buf.length, 0);
    const pid = Number(buf.subarray(0, n).toString('utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}
