import { constants as fsConstants } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { errnoOf } from '../errors.js';
import type { DomainEvent } from '../events/events.js';
import type { Logger } from '../util/logger.js';
import {
  DEFAULT_DIGEST_LIMITS,
  DIGEST_FORMAT,
  digestRead,
  emptyDigest,
  foldDigest,
  type DigestLimits,
  type History,
  type HistoryDigest,
  type HistoryHealth,
  type HistoryRead,
} from '../state/history.js';
import { writeFileAtomic } from './file-atomic.js';

export interface FileHistoryOptions {
  /** Rotate when the current file would pass this size. */
  maxBytes?: number;
  /** Rotated files kept (history.jsonl.1 .. .keep). */
  keep?: number;
  /** Events kept in memory for `recent`: status reads these, never the file. */
  window?: number;
  /** What the digest of rotated-out files keeps per device (history-devices.json). */
  digest?: DigestLimits;
  logger?: Logger;
}

/** A digest larger than this is not read (it cannot be one this code wrote within its limits). */
const DIGEST_MAX_BYTES = 64 * 1024 * 1024;

/**
 * O_NOFOLLOW: a symlink planted as history.jsonl is refused (ELOOP), never appended through.
 * O_APPEND: each line lands at the end even if something else appended meanwhile.
 */
const APPEND_FLAGS =
  fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT | fsConstants.O_NOFOLLOW;
const READ_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK;

/**
 * Append-only JSON lines; when the file passes maxBytes it becomes history.jsonl.1 (and older
 * ones shift up to `keep`). The oldest file is folded into history-devices.json (a per-device
 * digest, bounded: see foldDigest) before it is dropped, so `passthru why` can tell weeks of a
 * device's life while the history stays within (keep + 1) * maxBytes plus the digest. Appends are serialised so lines never interleave. The newest
 * `window` events stay in memory, read once from the files at the first use: a status request
 * costs no file read, however large the history is (adversarial finding 4).
 */
export class FileHistory implements History {
  private readonly file: string;
  private readonly digestFile: string;
  private readonly digestLimits: DigestLimits;
  private readonly maxBytes: number;
  private readonly keep: number;
  private readonly window: number;
  private readonly log: Logger | undefined;
  private chain: Promise<void> = Promise.resolve();
  private size = -1;
  /** The current file ended without a newline (a torn line after a crash). */
  private needsNewline = false;
  private ring: DomainEvent[] = [];
  private loaded: Promise<void> | null = null;
  private errors = 0;
  private lastError: string | null = null;
  /** A failure was logged and no write has succeeded since: the next ones are only counted. */
  private failing = false;

  constructor(dir: string, opts: FileHistoryOptions = {}) {
    this.file = path.join(dir, 'history.jsonl');
    this.digestFile = path.join(dir, 'history-devices.json');
    this.digestLimits = opts.digest ?? DEFAULT_DIGEST_LIMITS;
    this.maxBytes = opts.maxBytes ?? 1024 * 1024;
    this.keep = opts.keep ?? 3;
    this.window = opts.window ?? 200;
    this.log = opts.logger?.child({ component: 'history' });
  }

  append(e: DomainEvent): Promise<void> {
    const line = `${JSON.stringify(e)}\n`;
    // Registered on the same promise in call order, so the window keeps the order of appends.
    const remembered = this.ensureLoaded().then(() => {
      this.remember(e);
    });
    this.chain = this.chain
      .then(() => remembered)
      .then(() => this.write(line))
      .then(
        () => {
          this.succeeded();
        },
        (err: unknown) => {
          this.failed(err);
        },
      );
    return this.chain;
  }

  async recent(n: number): Promise<DomainEvent[]> {
    await this.ensureLoaded();
    return n > 0 ? this.ring.slice(-n) : [];
  }

  health(): HistoryHealth {
    return { writeErrors: this.errors, lastError: this.lastError };
  }

  /**
   * The digest, then every file oldest first; read-only (`passthru why` without an agent reads
   * another process's history this way). Appends already made are waited for.
   */
  async readAll(): Promise<HistoryRead> {
    await this.chain;
    const out = digestRead(await this.readDigest());
    for (let i = this.keep; i >= 0; i--) {
      const f = i === 0 ? this.file : `${this.file}.${i}`;
      out.events.push(...parseLines(await this.readTail(f)));
    }
    return out;
  }

  private async readDigest(): Promise<HistoryDigest> {
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(this.digestFile, READ_FLAGS);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return emptyDigest();
      throw e;
    }
    try {
      const st = await fh.stat();
      if (!st.isFile() || st.size > DIGEST_MAX_BYTES) return emptyDigest();
      const raw: unknown = JSON.parse((await fh.readFile()).toString('utf8'));
      if (
        typeof raw === 'object' &&
        raw !== null &&
        'format' in raw &&
        raw.format === DIGEST_FORMAT &&
        'devices' in raw &&
        typeof raw.devices === 'object' &&
        raw.devices !== null
      )
        return raw as HistoryDigest;
      throw new Error('not a history digest');
    } catch (e) {
      // A torn or foreign digest loses only the oldest detail: say so, start a new one.
      this.log?.error(
        { file: this.digestFile, err: e instanceof Error ? e.message : String(e) },
        'history digest unreadable; starting a new one',
      );
      return emptyDigest();
    } finally {
      await fh.close();
    }
  }

  /** The oldest rotated file, about to be dropped, goes into the digest first. */
  private async compact(oldest: string): Promise<void> {
    const events = parseLines(await this.readTail(oldest));
    if (events.length === 0) return;
    const next = foldDigest(await this.readDigest(), events, this.digestLimits);
    await writeFileAtomic(this.digestFile, `${JSON.stringify(next)}\n`, 0o600);
  }

  private remember(e: DomainEvent): void {
    this.ring.push(e);
    if (this.ring.length > this.window) this.ring.splice(0, this.ring.length - this.window);
  }

  private failed(err: unknown, count = true): void {
    if (count) this.errors++;
    const errno = errnoOf(err);
    this.lastError = `${errno ?? 'error'}: ${err instanceof Error ? err.message : String(err)}`;
    if (!this.failing) {
      this.failing = true;
      this.log?.error(
        { file: this.file, err: this.lastError },
        'cannot read or write history; events stay in memory (status shows the count)',
      );
    }
  }

  private succeeded(): void {
    if (!this.failing) return;
    this.failing = false;
    this.log?.warn({ file: this.file, failures: this.errors }, 'history writes work again');
  }

  private ensureLoaded(): Promise<void> {
    // An unreadable history is reported like a failed write, without counting as one.
    this.loaded ??= this.load().catch((err: unknown) => {
      this.failed(err, false);
    });
    return this.loaded;
  }

  /** Newest last: the current file, then back through the rotated ones as far as needed. */
  private async load(): Promise<void> {
    let lines: string[] = [];
    for (let i = 0; i <= this.keep && lines.length < this.window; i++) {
      const f = i === 0 ? this.file : `${this.file}.${i}`;
      const text = await this.readTail(f);
      if (i === 0 && text !== '' && !text.endsWith('\n')) this.needsNewline = true;
      lines = [...text.split('\n').filter(Boolean), ...lines];
    }
    this.ring.push(...parseLines(lines.slice(-this.window).join('\n')));
  }

  /** At most maxBytes from the end of a file: a file grown past rotation is not read whole. */
  private async readTail(f: string): Promise<string> {
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(f, READ_FLAGS);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return '';
      throw e;
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) return '';
      const len = Math.min(st.size, this.maxBytes);
      const buf = Buffer.alloc(len);
      const { bytesRead } = await fh.read(buf, 0, len, st.size - len);
      let text = buf.subarray(0, bytesRead).toString('utf8');
      // Started mid-line: the partial first line is not an event.
      if (len < st.size) text = text.slice(text.indexOf('\n') + 1);
      return text;
    } finally {
      await fh.close();
    }
  }

  private async write(line: string): Promise<void> {
    if (this.size < 0) {
      await fs.mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    }
    if (this.size > 0 && this.size + line.length > this.maxBytes) {
      await this.compact(`${this.file}.${String(Math.max(1, this.keep))}`);
      for (let i = this.keep - 1; i >= 1; i--) {
        await fs.rename(`${this.file}.${i}`, `${this.file}.${i + 1}`).catch(() => undefined);
      }
      await fs.rename(this.file, `${this.file}.1`);
      this.size = 0;
      this.needsNewline = false;
    }
    const fh = await fs.open(this.file, APPEND_FLAGS, 0o600);
    try {
      if (this.size < 0) this.size = (await fh.stat()).size;
      const text = this.needsNewline ? `\n${line}` : line;
      await fh.write(text);
      this.needsNewline = false;
      this.size += Buffer.byteLength(text);
    } finally {
      await fh.close();
    }
  }
}

function parseLines(text: string): DomainEvent[] {
  const out: DomainEvent[] = [];
  for (const l of text.split('\n')) {
    if (l === '') continue;
    try {
      out.push(JSON.parse(l) as DomainEvent);
    } catch {
      // A torn last line after a crash is skipped, not fatal.
    }
  }
  return out;
}
