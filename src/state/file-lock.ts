import * as fs from 'node:fs';
import * as path from 'node:path';
import { PtError, errnoOf } from '../errors.js';

/**
 * One writer per state folder: the agent for its lifetime, a direct-mode claim or release for
 * its command. `state.lock` holds the owner's pid; a lock whose pid is gone is stale and taken
 * over. Released on exit, normal or by signal.
 */
export function acquireStateLock(dir: string): () => void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, 'state.lock');
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      fs.writeSync(fd, `${process.pid}\n`);
      fs.closeSync(fd);
      const release = (): void => {
        try {
          if (fs.readFileSync(file, 'utf8').trim() === String(process.pid)) fs.unlinkSync(file);
        } catch {
          // already gone
        }
      };
      process.once('exit', release);
      return release;
    } catch (e) {
      if (errnoOf(e) !== 'EEXIST') {
        throw new PtError('PT_ERR_STORE_IO', `cannot create ${file}: ${errnoOf(e) ?? String(e)}`, {
          cause: e,
        });
      }
      const owner = Number(fs.readFileSync(file, 'utf8').trim());
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) {
        throw new PtError(
          'PT_ERR_STORE_IO',
          `another passthru process (pid ${owner}) is using ${dir}; stop it or talk to it through its socket`,
          {
            retryable: true,
            details: { pid: owner },
          },
        );
      }
      fs.rmSync(file, { force: true });
    }
  }
  throw new PtError('PT_ERR_STORE_IO', `cannot take ${file}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errnoOf(e) === 'EPERM';
  }
}
