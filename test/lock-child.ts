// A separate process for the state-lock tests: takes the lock, says so on stdout, and holds it
// until its stdin closes (or it is killed).
import { acquireStateLock } from '../src/state/file-lock.js';
import { isPtError } from '../src/errors.js';

const [stateDir, lockDir] = process.argv.slice(2);
if (stateDir === undefined) throw new Error('usage: lock-child STATE_DIR [LOCK_DIR]');
try {
  acquireStateLock(stateDir, lockDir !== undefined ? { lockDir } : {});
  process.stdout.write('held\n');
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
} catch (e) {
  process.stdout.write(`${isPtError(e) ? e.code : String(e)}\n`);
  process.exit(0);
}
