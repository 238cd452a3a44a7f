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
/** A directory found by RootedFs.locateDir; `at` is where its entries are opened. */
export interface LocatedDir {
  readonly at: string;
  /** Under a tree, the directory's real location (where its links are judged from); else null. */
  readonly real: string | null;
  /** The name of the directory above its real location (a PCI device's upstream bridge). */
  readonly upper: string | null;
}

export class RootedFs {
  readonly root: string;
  readonly live: boolean;
  private readonly realRoot: string;

  constructor(root: string) {
    this.root = path.resolve(root);
    this.live = this.root === '/';
    this.realRoot = this.live ? '/' : realpathOr(this.root, this.root);
    this.readFlags = fsc.O_RDONLY | fsc.O_NONBLOCK | (this.live ? 0 : fsc.O_NOFOLLOW);
  }

  p(...parts: string[]): string {
    return path.join(this.root, ...parts);
  }

  /** The resolved location of `p`, or null when it does not exist or leaves the tree. */
  realpath(p: string): string | null {
    return this.live ? realpathOr(p, null) : this.resolved(p);
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
    const real = this.realUnder(path.dirname(p));
    return real === null ? null : path.join(real, path.basename(p));
  }

  /**
   * realpath(3) of a path under the tree, remembering every resolved component: glibc's
   * realpath makes a readlink per component (a dozen per device directory, most of discovery's
   * syscalls), while devices share all but their last one or two. Null when the path is absent
   * or leads out of the tree. Like any realpath cache it can go stale when a tree's directory
   * is swapped for a link afterwards; that is a tree the user built, and every write resolves
   * its path afresh (writablePath).
   */
  private realUnder(p: string): string | null {
    if (p === this.root) return this.realRoot;
    if (!p.startsWith(`${this.root}/`)) return this.resolved(p);
    // Most paths asked for are entries of a directory asked for before (each device's entry in
    // /sys/bus/pci/devices): resolve only the last component then, through linkedDir when it
    // is a link to a folder a sibling's led to (4.5-9.5 ms off a 4096-function list --json).
    const cut = p.lastIndexOf('/');
    const above = this.realCache.get(p.slice(0, cut));
    if (above !== undefined) {
      const known = this.realCache.get(p);
      if (known !== undefined) return known;
      const real = this.linkedDir(p, above);
      return real !== undefined ? real : this.walk(above, [p.slice(cut + 1)], true);
    }
    const real = this.walk(
      this.realRoot,
      p
        .slice(this.root.length + 1)
        .split('/')
        .reverse(),
    );
    if (real !== null) this.remember(p, real);
    return real;
  }

  /**
   * Walks `names` (last first) from the real directory `from`, resolving links one component
   * at a time and remembering each. `entryIsLink`: the first name is most likely a link (a
   * device's entry in /sys/bus/pci/devices), so it is read as one straight away.
   */
  private walk(from: string, names: string[], entryIsLink = false): string | null {
    // Components still to walk, last first; a marker records a link's real location once its
    // target has been walked.
    const todo: (string | { resolves: string })[] = names;
    let cur = from;
    let links = 0;
    for (let c = todo.pop(); c !== undefined; c = todo.pop()) {
      if (typeof c !== 'string') {
        this.remember(c.resolves, cur);
        continue;
      }
      const likelyLink = entryIsLink;
      entryIsLink = false;
      if (c === '' || c === '.') continue;
      if (c === '..') {
        cur = path.dirname(cur);
        continue;
      }
      const at = cur === '/' ? `/${c}` : `${cur}/${c}`;
      const known = this.realCache.get(at);
      if (known !== undefined) {
        cur = known;
        continue;
      }
      const target = this.linkAt(at, likelyLink);
      if (target === undefined) return null;
      if (target === null) {
        // A directory others are reached through is kept; a path's last one (a device's own,
        // 4096 of them) is not: its link's entry, kept below, answers the next lookup.
        if (todo.some((t) => typeof t === 'string')) this.remember(at, at);
        cur = at;
        continue;
      }
      if (++links > MAX_LINKS) return null;
      todo.push({ resolves: at }, ...target.split('/').reverse());
      if (target.startsWith('/')) cur = '/';
    }
    return this.inside(cur) ? cur : null;
  }

  /**
   * A link's target; null when `at` is not a link; undefined when it is absent or unreadable.
   * lstat first, then readlink only for a link: a readlink of a directory fails, and a failed
   * sync call costs an exception, several times the price of the lstat. Unless `likelyLink`:
   * then the readlink goes first and the lstat only when it fails.
   */
  private linkAt(at: string, likelyLink: boolean): string | null | undefined {
    if (likelyLink)
      try {
        return fsSync.readlinkSync(at);
      } catch {
        // Not a link after all, or absent: the lstat tells which.
      }
    try {
      const st = fsSync.lstatSync(at, { throwIfNoEntry: false });
      if (st === undefined) return undefined;
      return st.isSymbolicLink() ? fsSync.readlinkSync(at) : null;
    } catch {
      return undefined;
    }
  }

  /**
   * Where the link `at` (in the real directory `dirReal`) leads, when it names a directory in a
   * folder other links of `dirReal` led to before: a device's entry in /sys/bus/pci/devices
   * names its directory beside its siblings' (`../../../devices/pci0000:00/0000:00:05.0/NAME`).
   * That folder is resolved once per distinct target text, then each device costs its
   * readlink and one lstat of its own directory (which must not be a link: the tree could lead
   * out through it). Undefined when this does not apply (not a link, a bare name, a last
   * component that is itself a link): the caller walks the path the long way.
   */
  private linkedDir(at: string, dirReal: string): string | null | undefined {
    let target: string;
    try {
      target = fsSync.readlinkSync(at);
    } catch {
      return undefined;
    }
    const cut = target.lastIndexOf('/');
    const name = target.slice(cut + 1);
    if (cut <= 0 || name === '' || name === '.' || name === '..') return undefined;
    const folderKey = `${dirReal}\0${target.slice(0, cut)}`;
    let folder = this.linkFolders.get(folderKey);
    if (folder === undefined) {
      const from = target.startsWith('/') ? '/' : dirReal;
      const found = this.walk(from, target.slice(0, cut).split('/').reverse());
      // A folder not there (yet: a bridge being hot-added) or outside the tree is not kept.
      if (found === null) return null;
      if (this.linkFolders.size > DIR_CACHE_MAX) this.linkFolders.clear();
      this.linkFolders.set(folderKey, (folder = found));
    }
    const real = `${folder}/${name}`;
    const st = fsSync.lstatSync(real, { throwIfNoEntry: false });
    if (st === undefined) return null;
    if (st.isSymbolicLink()) return undefined;
    this.remember(at, real);
    return real;
  }

  /** linkedDir's resolved folders, by the directory a link is in and its target's folder text. */
  private readonly linkFolders = new Map<string, string>();

  private remember(at: string, real: string): void {
    if (this.realCache.size > DIR_CACHE_MAX) this.realCache.clear();
    this.realCache.set(at, real);
  }

  private readonly realCache = new Map<string, string>();

  /** Read flags: never block on a FIFO; under a tree, never follow a final symlink blindly. */
  private readonly readFlags: number;

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
  readTextAsync(p: string, located?: LocatedDir): Promise<string | null> {
    return this.readPoolOnce(p, () => {
      // Opening and closing a sysfs attribute never takes device_lock; only the read does
      // (the attribute's show function). So open and close here, in place, and send just the
      // read to the pool: one pool round trip per attribute, and an absent attribute (no
      // sriov_numvfs on most devices) costs none.
      let at = located === undefined ? this.readPath(p) : p;
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
      // A located read skips the fstat: a FIFO answers a non-blocking read at once, and an
      // empty answer is checked after the read. Others refuse what is not a regular file here
      // (fstat, like open, is answered without device_lock).
      if (located !== undefined || isRegularFd(fd)) return fd;
      fsSync.closeSync(fd);
      return null;
    });
  }

  /**
   * Reads the file `open` opened in the thread pool, one request per path at a time. Every
   * opener opens non-blocking, so a FIFO swapped in after its check answers at once (empty or
   * EAGAIN), and the read is capped at a page.
   */
  private readPoolOnce(key: string, open: () => number | null): Promise<string | null> {
    const pending = this.inflight.get(key);
    if (pending !== undefined) return pending;
    let fd: number | null;
    try {
      fd = open();
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
    if (fd === null) return Promise.resolve(null);
    const opened = fd;
    // The lock-taking attributes (driver_override, sriov_numvfs, uevent) print a line or a
    // few: a page holds them. 64 KiB per read made a 4096-function discovery allocate 256 MiB
    // of buffers, which stayed in the agent's RSS. A plain callback, not an async function:
    // discovery makes one of these per device, and each promise layer cost microseconds.
    const buf = lockedReadBufs.pop() ?? Buffer.allocUnsafe(LOCKED_ATTR_MAX);
    const run = new Promise<string | null>((resolve, reject) => {
      fsSync.read(opened, buf, 0, LOCKED_ATTR_MAX, null, (err, n) => {
        this.inflight.delete(key);
        const text = err === null ? trimNewline(buf.toString('utf8', 0, n)) : '';
        if (lockedReadBufs.length < 64) lockedReadBufs.push(buf);
        // An empty answer from a FIFO is no attribute; sysfs attributes are never empty.
        const regular = n !== 0 || isRegularFd(opened);
        try {
          fsSync.closeSync(opened);
        } catch {
          // The read's outcome is what counts; a close error on sysfs says nothing more.
        }
        if (err === null) resolve(n === 0 && !regular ? null : text);
        else if (ABSENT.has(errnoOf(err) ?? '')) resolve(null);
        else reject(err);
      });
    });
    this.inflight.set(key, run);
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

  /**
   * Where the directory `p` really is, found once so that every read in it that follows costs
   * no path resolution of its own: under a tree its resolved location (realUnder); on the live
   * host where the link `p` is in sysfs points (one readlink: no directory under /sys/devices
   * is a link). Null when `p` is absent or leads out of the tree.
   */
  locateDir(p: string): LocatedDir | null {
    if (!this.live) {
      const real = this.realUnder(p);
      return real === null ? null : { at: real, real, upper: path.basename(path.dirname(real)) };
    }
    let target: string;
    try {
      target = fsSync.readlinkSync(p);
    } catch (e) {
      if (errnoOf(e) !== 'EINVAL') return null;
      // A directory, not a link: find where it is the long way.
      const real = this.resolved(p);
      return real === null ? null : { at: p, real: null, upper: path.basename(path.dirname(real)) };
    }
    // Open the device's entries at its real location: a path through the bus's link makes the
    // kernel follow that link again for every open.
    const at = path.resolve(path.dirname(p), target);
    return { at, real: null, upper: path.basename(path.dirname(at)) };
  }

  /** Whether `name` exists in a located directory: access(2), no exception when it does not. */
  hasIn(dir: LocatedDir, name: string): boolean {
    return fsSync.existsSync(`${dir.at}/${name}`);
  }

  /**
   * An attribute of a located directory, like readText but with no fstat on the way: every
   * open is non-blocking, so a FIFO answers at once, and the rare read that returns nothing or
   * fills the buffer is checked then (a FIFO or device reads as absent) and read whole.
   */
  readAttrIn(dir: LocatedDir, name: string): string | null {
    const at = `${dir.at}/${name}`;
    let fd: number;
    try {
      fd = fsSync.openSync(at, this.readFlags);
    } catch (e) {
      const inside = this.followInside(at, e);
      return inside === null ? absentOrThrow(e) : this.readTextAt(inside);
    }
    let n: number;
    try {
      n = fsSync.readSync(fd, scratch, 0, scratch.length, null);
      if (n > 0 && n < scratch.length) return trimNewline(scratch.toString('utf8', 0, n));
      if (!isRegularFd(fd)) return null;
      if (n === 0) return '';
    } catch (e) {
      return absentOrThrow(e);
    } finally {
      fsSync.closeSync(fd);
    }
    return this.readTextAt(at);
  }

  /** A lock-taking attribute of a located directory: readTextAsync without a fresh resolve. */
  readAttrAsyncIn(dir: LocatedDir, name: string): Promise<string | null> {
    return this.readTextAsync(`${dir.at}/${name}`, dir);
  }

  /**
   * The basename of a link's target in a located directory; null when absent or (under a tree)
   * leading out of it. Under a tree the target is judged by its text: only the name is used
   * here, and every write that follows a name (unbind through the driver link) resolves its own
   * path and is confined again (writablePath).
   */
  readLinkBaseIn(dir: LocatedDir, name: string): string | null {
    let target: string;
    try {
      target = fsSync.readlinkSync(`${dir.at}/${name}`);
    } catch {
      return null;
    }
    if (dir.real !== null && !this.targetInside(dir.real, target)) return null;
    return target.slice(target.lastIndexOf('/') + 1);
  }

  /**
   * Whether a link in the real directory `realDir` points inside the tree, judged by its text:
   * the `..` steps of a relative target must not climb above the tree's root. `realDir` has no
   * links in it, so counting steps is what the kernel would do.
   */
  private targetInside(realDir: string, target: string): boolean {
    if (target.startsWith('/')) return this.inside(path.resolve(target));
    // Counted in place, not split: discovery judges two links per device this way.
    let depth = segments(realDir, this.realRoot.length, () => false);
    const climbsOut = (up: boolean): boolean => (depth += up ? -1 : 1) < 0;
    return segments(target, 0, climbsOut) >= 0;
  }

  /** The entries of a located directory, or of a directory in it. */
  readdirIn(dir: LocatedDir, name?: string): string[] {
    try {
      return fsSync.readdirSync(name === undefined ? dir.at : `${dir.at}/${name}`);
    } catch {
      return [];
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
 * discovery) left ~4 MiB of malloc fragments in the agent's RSS after each full discovery.
 */
const lockedReadBufs: Buffer[] = [];
/** Reused by every synchronous attribute read (the text is copied out before the next). */
const scratch = Buffer.allocUnsafe(READ_CHUNK);
const DIR_CACHE_MAX = 50_000;
/** As the kernel's MAXSYMLINKS: more links than this in one path is a loop. */
const MAX_LINKS = 40;
/** procfs files the agent reads (/proc/modules, mounts) stay far below this. */
const MAX_TEXT = 16 * 1024 * 1024;

/**
 * Walks the `/`-separated segments of `p` from `from`, skipping empty ones and `.`, and calls
 * `each` with whether a segment is `..`; stops when `each` answers true. The number of
 * segments walked, or -1 when stopped.
 */
function segments(p: string, from: number, each: (up: boolean) => boolean): number {
  let n = 0;
  for (let i = from; i < p.length;) {
    let j = p.indexOf('/', i);
    if (j < 0) j = p.length;
    const len = j - i;
    const dot = len > 0 && p.charCodeAt(i) === 46;
    if (len > 0 && !(len === 1 && dot)) {
      n++;
      if (each(len === 2 && dot && p.charCodeAt(i + 1) === 46)) return -1;
    }
    i = j + 1;
  }
  return n;
}

function isRegularFd(fd: number): boolean {
  try {
    return fsSync.fstatSync(fd).isFile();
  } catch {
    return false;
  }
}

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
