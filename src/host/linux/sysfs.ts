import * as fsSync from 'node:fs';
import { constants as fsc } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { SysError, errnoOf } from '../../errors.js';

/**
 * File access under a root prefix: '/' for the live host, or a directory holding a sysfs and
 * procfs tree (`--root TREE`). Under a tree, every path is resolved first and must stay inside
 * the tree: a symlink that leads out of it reads as absent and refuses writes (EXDEV), so a
 * planted tree cannot steer the agent's writes to files elsewhere. Every read refuses FIFOs and
 * device nodes (opened non-blocking, then checked), so a planted FIFO cannot hang a read.
 */
export class RootedFs {
  readonly root: string;
  readonly live: boolean;
  private readonly realRoot: string;

  constructor(root: string) {
    this.root = path.resolve(root);
    this.live = this.root === '/';
    this.realRoot = this.live ? '/' : realpathOr(this.root, this.root);
  }

  p(...parts: string[]): string {
    return path.join(this.root, ...parts);
  }

  /** The resolved location of `p`, or null when it does not exist or leaves the tree. */
  private resolved(p: string): string | null {
    if (this.live) return p;
    const real = realpathOr(p, null);
    return real !== null && this.inside(real) ? real : null;
  }

  /**
   * Where to open `p` for reading: under a tree, its directory resolved (cached: discovery
   * opens a dozen attributes per device directory, and a realpath per read made it 3x
   * slower) and its last component opened with O_NOFOLLOW (see openRead). Null when the
   * directory is missing or leaves the tree.
   */
  private readPath(p: string): string | null {
    if (this.live) return p;
    const dir = path.dirname(p);
    let real = this.dirCache.get(dir);
    if (real === undefined) {
      const r = this.resolved(dir);
      if (r === null) return null;
      if (this.dirCache.size > DIR_CACHE_MAX) this.dirCache.clear();
      this.dirCache.set(dir, r);
      real = r;
    }
    return path.join(real, path.basename(p));
  }

  private readonly dirCache = new Map<string, string>();

  /** Read flags: never block on a FIFO; under a tree, never follow a final symlink blindly. */
  private get readFlags(): number {
    return fsc.O_RDONLY | fsc.O_NONBLOCK | (this.live ? 0 : fsc.O_NOFOLLOW);
  }

  /**
   * A final symlink under a tree (ELOOP with O_NOFOLLOW) is followed only when its target
   * stays inside the tree.
   */
  private followInside(p: string, e: unknown): string | null {
    if (this.live || errnoOf(e) !== 'ELOOP') return null;
    return this.resolved(p);
  }

  private inside(real: string): boolean {
    return real === this.realRoot || real.startsWith(`${this.realRoot}/`);
  }

  /**
   * The attribute's text without its trailing newline, or null when absent or unreadable.
   * Synchronous on purpose: plain sysfs and procfs attributes come from kernel memory in
   * microseconds, and a thread-pool round trip per attribute made discovery 4x slower
   * (bench/discovery.ts). Never use it for an attribute that takes device_lock: see
   * readTextAsync.
   */
  readText(p: string): string | null {
    return this.openAndRead(p, (fd) => this.readFd(fd));
  }

  /**
   * Opens p (confined) and hands the fd to `read`, which closes it. A link under a tree that
   * opening refused is followed inside the tree and read whole instead.
   */
  private openAndRead<T>(p: string, read: (fd: number) => T): T | string | null {
    const at = this.readPath(p);
    if (at === null) return null;
    let fd: number;
    try {
      fd = fsSync.openSync(at, this.readFlags);
    } catch (e) {
      const inside = this.followInside(p, e);
      if (inside === null) return absentOrThrow(e);
      return this.readTextAt(inside);
    }
    return read(fd);
  }

  private readTextAt(at: string): string | null {
    let fd: number;
    try {
      fd = fsSync.openSync(at, fsc.O_RDONLY | fsc.O_NONBLOCK);
    } catch (e) {
      return absentOrThrow(e);
    }
    return this.readFd(fd);
  }

  private readFd(fd: number): string | null {
    try {
      if (!fsSync.fstatSync(fd).isFile()) return null;
      const chunks: Buffer[] = [];
      let total = 0;
      for (;;) {
        const n = fsSync.readSync(fd, scratch, 0, READ_CHUNK, null);
        if (n === 0) break;
        chunks.push(Buffer.from(scratch.subarray(0, n)));
        total += n;
        if (total > MAX_TEXT) break;
      }
      return trimNewline(Buffer.concat(chunks).toString('utf8'));
    } catch (e) {
      return absentOrThrow(e);
    } finally {
      fsSync.closeSync(fd);
    }
  }

  /**
   * Like readText, but the read runs on libuv's thread pool, so a read that sleeps on
   * device_lock (driver_override, sriov_numvfs, uevent while an unbind is pending) stalls a pool
   * thread rather than the event loop. Concurrent reads of one path share one request, so a
   * stuck attribute pins at most one pool thread however often it is asked for.
   */
  readTextAsync(p: string): Promise<string | null> {
    const pending = this.inflight.get(p);
    if (pending !== undefined) return pending;
    const run = (async (): Promise<string | null> => {
      // Opening and closing a sysfs attribute never takes device_lock; only the read does
      // (the attribute's show function). So open and close here, in place, and send just the
      // read to the pool: one pool round trip per attribute, and an absent attribute (no
      // sriov_numvfs on most devices) costs none.
      let at = this.readPath(p);
      if (at === null) return null;
      let fd: number;
      try {
        fd = fsSync.openSync(at, this.readFlags);
      } catch (e) {
        at = this.followInside(p, e);
        if (at === null) return absentOrThrow(e);
        try {
          fd = fsSync.openSync(at, fsc.O_RDONLY | fsc.O_NONBLOCK);
        } catch (e2) {
          return absentOrThrow(e2);
        }
      }
      try {
        // fstat, like open, is answered without device_lock.
        if (!fsSync.fstatSync(fd).isFile()) return null;
        // The lock-taking attributes (driver_override, sriov_numvfs, uevent) print a line or
        // a few: a page holds them. 64 KiB per read made a 4096-function discovery allocate
        // 256 MiB of buffers, which stayed in the agent's RSS.
        const buf = lockedReadBufs.pop() ?? Buffer.allocUnsafe(LOCKED_ATTR_MAX);
        const n = await new Promise<number>((resolve, reject) => {
          fsSync.read(fd, buf, 0, LOCKED_ATTR_MAX, null, (err, bytes) => {
            if (err) reject(err);
            else resolve(bytes);
          });
        });
        const text = trimNewline(buf.subarray(0, n).toString('utf8'));
        if (lockedReadBufs.length < 64) lockedReadBufs.push(buf);
        return text;
      } catch (e) {
        return absentOrThrow(e);
      } finally {
        fsSync.closeSync(fd);
      }
    })().finally(() => this.inflight.delete(p));
    this.inflight.set(p, run);
    return run;
  }

  private readonly inflight = new Map<string, Promise<string | null>>();

  readBytes(p: string, length: number): Uint8Array | null {
    const at = this.resolved(p);
    if (at === null) return null;
    try {
      const fd = fsSync.openSync(at, fsc.O_RDONLY | fsc.O_NONBLOCK);
      try {
        if (!fsSync.fstatSync(fd).isFile()) return null;
        const buf = Buffer.alloc(length);
        const n = fsSync.readSync(fd, buf, 0, length, 0);
        return n >= length ? new Uint8Array(buf) : null;
      } finally {
        fsSync.closeSync(fd);
      }
    } catch {
      return null;
    }
  }

  /**
   * Opens `p` once and hands `walk` a reader of `length` bytes at any offset (each read in the
   * thread pool): for config space, where a capability walk needs a few dwords, not 4 KiB.
   * Null when the file is absent, leaves the tree or is not a regular file; a read past the
   * end, or one the kernel answers short (config past 64 bytes for non-root), answers null.
   */
  async readAtOffsets<T>(
    p: string,
    walk: (read: (offset: number, length: number) => Promise<Uint8Array | null>) => Promise<T>,
  ): Promise<T | null> {
    const at = this.resolved(p);
    if (at === null) return null;
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(at, fsc.O_RDONLY | fsc.O_NONBLOCK);
    } catch {
      return null;
    }
    try {
      if (!(await fh.stat()).isFile()) return null;
      return await walk(async (offset, length) => {
        try {
          const buf = Buffer.alloc(length);
          const { bytesRead } = await fh.read(buf, 0, length, offset);
          return bytesRead === length ? new Uint8Array(buf) : null;
        } catch {
          return null;
        }
      });
    } finally {
      await fh.close();
    }
  }

  readdir(p: string): string[] {
    return this.readdirOrNull(p) ?? [];
  }

  /** The directory's entry names; null when it is absent, unreadable or leaves the tree. */
  readdirOrNull(p: string): string[] | null {
    const at = this.readPath(`${p}/.`);
    if (at === null) return null;
    try {
      return fsSync.readdirSync(at);
    } catch {
      return null;
    }
  }

  /**
   * A sysfs attribute's text, like readText but cheaper: one read into a shared buffer. A sysfs
   * attribute's show function prints at most a page and read(2) returns it whole, as does a
   * regular file in a tree unless it is larger than the buffer (then the rest is read too).
   */
  readAttrText(p: string): string | null {
    // undefined: the file filled the buffer, so it is read again whole.
    const text = this.openAndRead(p, (fd): string | null | undefined => {
      try {
        if (!fsSync.fstatSync(fd).isFile()) return null;
        const n = fsSync.readSync(fd, scratch, 0, scratch.length, null);
        return n < scratch.length ? trimNewline(scratch.toString('utf8', 0, n)) : undefined;
      } catch (e) {
        return absentOrThrow(e);
      } finally {
        fsSync.closeSync(fd);
      }
    });
    return text === undefined ? this.readText(p) : text;
  }

  /**
   * The basename of a symlink's target; null when absent or (under a tree) leading out of it.
   * Under a tree the target is judged by its text, resolved against the link's real directory:
   * only the name is used here, and every write that follows a name (unbind through the
   * driver link) resolves its own path and is confined again (writablePath).
   */
  readLinkBase(p: string): string | null {
    if (this.live) {
      const target = this.readLink(p);
      return target === null ? null : path.basename(target);
    }
    const at = this.readPath(p);
    if (at === null) return null;
    let target: string;
    try {
      target = fsSync.readlinkSync(at);
    } catch {
      return null;
    }
    if (!this.inside(path.resolve(path.dirname(at), target))) return null;
    return path.basename(target);
  }

  /** The raw target of a symlink (procfs fd links), or null. */
  readLink(p: string): string | null {
    const at = this.readPath(p);
    if (at === null) return null;
    try {
      return fsSync.readlinkSync(at);
    } catch {
      return null;
    }
  }

  realpath(p: string): string | null {
    return this.resolved(p);
  }

  exists(p: string): boolean {
    const dir = this.resolved(path.dirname(p));
    if (dir === null) return false;
    try {
      fsSync.lstatSync(path.join(dir, path.basename(p)));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * The path a write may open: its directory resolved (inside the tree), its last component
   * never followed. Throws ENOENT when the directory does not exist, EXDEV when it leaves the
   * tree.
   */
  writablePath(p: string): string {
    if (this.live) return p;
    const dirReal = realpathOr(path.dirname(p), null);
    if (dirReal === null) throw new SysError('ENOENT', `${p}: no such file or directory`);
    if (!this.inside(dirReal)) throw new SysError('EXDEV', `${p} leads out of ${this.root}`);
    return path.join(dirReal, path.basename(p));
  }

  /**
   * One write(2) of `value` (newline added) to an existing attribute: opened without O_CREAT
   * and with O_NOFOLLOW. In-process, on the thread pool: only for writes that cannot block on
   * a held device (see writeAbandonable).
   */
  async writeExisting(p: string, value: string, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const at = this.writablePath(p);
    // O_NONBLOCK: a FIFO planted in a tree fails with ENXIO instead of hanging a pool thread.
    const fh = await fs.open(at, fsc.O_WRONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    try {
      if (!(await fh.stat()).isFile()) throw new SysError('EINVAL', `${p} is not an attribute`);
      await fh.write(value.endsWith('\n') ? value : `${value}\n`);
    } finally {
      await fh.close();
    }
  }
}

const READ_CHUNK = 65536;
const LOCKED_ATTR_MAX = 4096;
/**
 * Pages of finished lock-taking reads, reused: a new page per read (8192 per 4096-function
 * discovery) left ~4 MiB of malloc fragments in the agent's RSS after each resync.
 */
const lockedReadBufs: Buffer[] = [];
/** Reused by every synchronous attribute read (the text is copied out before the next). */
const scratch = Buffer.allocUnsafe(READ_CHUNK);
const DIR_CACHE_MAX = 50_000;
/** procfs files the agent reads (/proc/modules, mounts) stay far below this. */
const MAX_TEXT = 16 * 1024 * 1024;

function trimNewline(t: string): string {
  return t.endsWith('\n') ? t.slice(0, -1) : t;
}

function realpathOr<T>(p: string, fallback: T): string | T {
  try {
    return fsSync.realpathSync.native(p);
  } catch {
    return fallback;
  }
}

const ABSENT = new Set([
  'ENOENT',
  'ENOTDIR',
  'EACCES',
  'EINVAL',
  'EIO',
  'ENODEV',
  'EISDIR',
  'ENXIO',
  'EAGAIN',
  'ELOOP',
]);

function absentOrThrow(e: unknown): null {
  const code = errnoOf(e);
  if (code !== undefined && ABSENT.has(code)) return null;
  throw e instanceof Error ? e : new Error(String(e));
}
