// A separate process for the state-lock tests. Reads commands on stdin, one per line:
// `take` tries the lock and answers `held` or the error code; `drop` releases it and answers
// `dropped`. Exits when stdin closes (or when it is killed, holding the lock or not).
import { acquireStateLock } from '../src/state/file-lock.js';
import { isPtError } from '../src/errors.js';

const [stateDir, lockDir] = process.argv.slice(2);
if (stateDir === undefined) throw new Error('usage: lock-child STATE_DIR [LOCK_DIR]');
let release: (() => void) | null = null;
let buf = '';
process.stdin.on('data', (c: Buffer) => {
  buf += c.toString('utf8');
  let nl;
  while ((nl = buf.indexOf('\n')) >= 0) {
    const cmd = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    if (cmd === 'take') {
      try {
        release = acquireStateLock(stateDir, lockDir !== undefined ? { lockDir } : {});
        process.stdout.write('held\n');
      } catch (e) {
        process.stdout.write(`${isPtError(e) ? e.code : String(e)}\n`);
      }
    } else if (cmd === 'drop') {
      release?.();
      release = null;
      process.stdout.write('dropped\n');
    }
  }
});
process.stdin.on('end', () => process.exit(0));
