import { spawn } from 'node:child_process';
import { SysError } from '../../errors.js';

/**
 * A sysfs write that may block in the kernel (an unbind from vfio-pci while a VM holds the
 * device sleeps, uninterruptibly, until the VM lets go) runs in a short-lived `dd` process, not
 * on Node's thread pool: when the caller gives up (its AbortSignal fires) the process is
 * killed and forgotten, so no pool thread stays pinned and the event loop never waits on it.
 * The kernel may still finish the write later; callers must treat an abandoned write as
 * "outcome unknown" and re-read.
 *
 * dd opens without O_CREAT (conv=nocreat), without truncation, never following a final
 * symlink (oflag=nofollow), and issues one write(2) of the whole value (iflag=fullblock). The
 * value travels on stdin and the path as one argv entry: no shell, nothing interpolated.
 */
export function writeInChild(
  ddPath: string,
  file: string,
  value: string,
  signal?: AbortSignal,
): Promise<void> {
  signal?.throwIfAborted();
  const data = value.endsWith('\n') ? value : `${value}\n`;
  return new Promise<void>((resolve, reject) => {
    const child = spawn(
      ddPath,
      [
        `of=${file}`,
        'bs=4096',
        'iflag=fullblock',
        'oflag=nofollow',
        'conv=nocreat,notrunc',
        'status=none',
      ],
      { stdio: ['pipe', 'ignore', 'pipe'], env: { LC_ALL: 'C', PATH: '/usr/bin:/bin' } },
    );
    let stderr = '';
    let settled = false;
    const settle = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve();
    };
    const onAbort = (): void => {
      // SIGKILL is delivered once the kernel lets the write return; until then the process
      // sleeps in D state, which costs the agent nothing: it no longer waits for it.
      child.kill('SIGKILL');
      child.unref();
      child.stderr.destroy();
      settle(
        new SysError('ECANCELED', `write to ${file} abandoned; the kernel may still complete it`),
      );
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (c: string) => {
      if (stderr.length < 4096) stderr += c;
    });
    child.on('error', (e) => {
      settle(e);
    });
    child.on('close', (code) => {
      if (code === 0) settle(null);
      else
        settle(
          new SysError(
            errnoFromMessage(stderr),
            `write to ${file}: ${stderr.trim() || `dd exited ${code ?? 'on a signal'}`}`,
          ),
        );
    });
    child.stdin.on('error', () => undefined); // dd exited before reading: its exit code says why
    child.stdin.end(data);
  });
}

/** glibc's strerror texts (LC_ALL=C) for the errnos a sysfs write can give. */
const MESSAGES: [string, string][] = [
  ['No such device or address', 'ENXIO'],
  ['No such device', 'ENODEV'],
  ['Device or resource busy', 'EBUSY'],
  ['Invalid argument', 'EINVAL'],
  ['No such file or directory', 'ENOENT'],
  ['Operation not permitted', 'EPERM'],
  ['Permission denied', 'EACCES'],
  ['File exists', 'EEXIST'],
  ['Too many levels of symbolic links', 'ELOOP'],
  ['Numerical result out of range', 'ERANGE'],
  ['Resource temporarily unavailable', 'EAGAIN'],
  ['Cannot allocate memory', 'ENOMEM'],
  ['No space left on device', 'ENOSPC'],
  ['Read-only file system', 'EROFS'],
  ['Not a directory', 'ENOTDIR'],
  ['Is a directory', 'EISDIR'],
  ['Input/output error', 'EIO'],
];

export function errnoFromMessage(stderr: string): string {
  for (const [text, code] of MESSAGES) if (stderr.includes(text)) return code;
  return 'EIO';
}
