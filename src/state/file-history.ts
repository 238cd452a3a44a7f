import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { DomainEvent } from '../events/events.js';
import type { History } from './history.js';

/**
 * Append-only JSON lines; when the file passes maxBytes it becomes history.jsonl.1 (and older
 * ones shift up to `keep`). Appends are serialised so lines never interleave.
 */
export class FileHistory implements History {
  private readonly file: string;
  private chain: Promise<void> = Promise.resolve();
  private size = -1;

  constructor(
    dir: string,
    private readonly maxBytes = 1024 * 1024,
    private readonly keep = 3,
  ) {
    this.file = path.join(dir, 'history.jsonl');
  }

  append(e: DomainEvent): Promise<void> {
    const line = `${JSON.stringify(e)}\n`;
    this.chain = this.chain.then(() => this.write(line)).catch(() => undefined);
    return this.chain;
  }

  private async write(line: string): Promise<void> {
    if (this.size < 0) {
      await fs.mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
      this.size = await fs
        .stat(this.file)
        .then((s) => s.size)
        .catch(() => 0);
    }
    if (this.size + line.length > this.maxBytes && this.size > 0) {
      for (let i = this.keep - 1; i >= 1; i--) {
        await fs.rename(`${this.file}.${i}`, `${this.file}.${i + 1}`).catch(() => undefined);
      }
      await fs.rename(this.file, `${this.file}.1`);
      this.size = 0;
    }
    await fs.appendFile(this.file, line, { mode: 0o600 });
    this.size += Buffer.byteLength(line);
  }

  async recent(n: number): Promise<DomainEvent[]> {
    await this.chain;
    // Newest last: the current file, then back through the rotated ones as far as needed.
    let lines: string[] = [];
    for (let i = 0; i <= this.keep && lines.length < n; i++) {
      const f = i === 0 ? this.file : `${this.file}.${i}`;
      const text = await fs.readFile(f, 'utf8').catch(() => '');
      lines = [...text.split('\n').filter(Boolean), ...lines];
    }
    lines = lines.slice(-n);
    const out: DomainEvent[] = [];
    for (const l of lines) {
      try {
        out.push(JSON.parse(l) as DomainEvent);
      } catch {
        // A torn last line after a crash is skipped, not fatal.
      }
    }
    return out;
  }
}
