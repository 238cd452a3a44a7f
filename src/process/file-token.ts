import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { PtError, errnoOf } from '../errors.js';
import { currentUid } from './file-private-dir.js';

/** The HTTP API's bearer token, in the agent's state folder (root only on the live host). */
export const TOKEN_FILE = 'api-token';

/** 32 random bytes, base64url: 43 characters. */
const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;

export function tokenPath(stateDir: string): string {
  return path.join(stateDir, TOKEN_FILE);
}

/**
 * The token in `<stateDir>/api-token`, created on first use and kept across restarts (a page
 * session or a scraper's configuration stays valid). The file must be a regular file owned by
 * the caller with no group or other permission bits: whoever can read it can claim devices.
 * The state folder itself has been checked by the caller (ensurePrivateDir).
 *
 * Created without a window where a half-written or world-readable file exists: the bytes go
 * to an O_EXCL temporary file (0600), which is then hard-linked into place; link(2) does not
 * replace an existing file, so two processes starting at once end up with the same token.
 */
export async function loadOrCreateToken(stateDir: string): Promise<string> {
  const file = tokenPath(stateDir);
  const existing = await readToken(file);
  if (existing !== null) return existing;
  const token = randomBytes(32).toString('base64url');
  const tmp = path.join(stateDir, `.${TOKEN_FILE}.${randomBytes(6).toString('hex')}.tmp`);
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
  const fh = await fs.open(tmp, flags, 0o600);
  try {
    try {
      await fh.writeFile(`${token}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fs.link(tmp, file);
  } catch (e) {
    if (errnoOf(e) !== 'EEXIST') throw tokenIoError(file, e);
    // Another process made it first: use theirs.
    const theirs = await readToken(file);
    if (theirs === null) throw tokenIoError(file, e);
    return theirs;
  } finally {
    await fs.rm(tmp, { force: true });
  }
  return token;
}

/** The token, or null when the file does not exist yet. */
export async function readToken(file: string): Promise<string | null> {
  let fh;
  try {
    fh = await fs.open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    const errno = errnoOf(e);
    if (errno === 'ENOENT') return null;
    if (errno === 'ELOOP')
      throw new PtError(
        'PT_ERR_UNSAFE_PATH',
        `${file} is a symlink: refusing to read a token through it`,
      );
    if (errno === 'EACCES' || errno === 'EPERM')
      throw new PtError('PT_ERR_PERMISSION', `no permission to read ${file} (run as root)`);
    throw tokenIoError(file, e);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new PtError('PT_ERR_UNSAFE_PATH', `${file} is not a regular file`);
    const uid = currentUid();
    if (st.uid !== uid)
      throw new PtError(
        'PT_ERR_UNSAFE_PATH',
        `${file} is owned by uid ${st.uid}, not by uid ${uid}: refusing a token someone else planted`,
      );
    if ((st.mode & 0o077) !== 0)
      throw new PtError(
        'PT_ERR_UNSAFE_PATH',
        `${file} has mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}: others may have read the token; delete the file and restart the agent for a new one`,
      );
    const text = (await fh.readFile('utf8')).trim();
    if (!TOKEN_RE.test(text))
      throw new PtError(
        'PT_ERR_STORE_CORRUPT',
        `${file} does not hold a passthru token; delete it and restart the agent for a new one`,
      );
    return text;
  } finally {
    await fh.close();
  }
}

function tokenIoError(file: string, e: unknown): PtError {
  return new PtError('PT_ERR_STORE_IO', `cannot write ${file}: ${errnoOf(e) ?? String(e)}`, {
    cause: e,
  });
}
