import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { PtError, errnoOf } from '../errors.js';
import { writeFileAtomic } from './file-atomic.js';
import { emptyState, validateState, type State, type StateStore } from './model.js';

/**
 * The embedded store: one JSON file replaced atomically (write, fsync, rename, fsync dir).
 * A missing file is a fresh install; anything unreadable stops the agent and is left untouched.
 *
 * Each save checks that the file still holds the generation this store last loaded or saved:
 * a store never writes over a state it has not seen (another writer saved in between), and it
 * never goes back. The state lock keeps a second writer out; this check is what makes a second
 * writer harmless if one ever gets in (docs/adr/0007).
 */
export class FileStore implements StateStore {
  readonly location: string;
  /** The generation on disk as this store last saw it; 0 is "no file yet". */
  private seen: number | null = null;

  constructor(dir: string) {
    this.location = path.join(dir, 'state.json');
  }

  async load(): Promise<State> {
    const s = await this.read();
    this.seen = s.generation;
    return s;
  }

  async save(state: State): Promise<void> {
    const onDisk = (await this.read()).generation;
    const expected = this.seen ?? 0;
    if (onDisk !== expected || state.generation <= onDisk) {
      throw new PtError(
        'PT_ERR_STORE_CONFLICT',
        `state store ${this.location} is at generation ${onDisk}, this process loaded ${expected} and would write ${state.generation}: another writer saved in between; nothing was written`,
        { details: { onDisk, expected, writing: state.generation } },
      );
    }
    try {
      await writeFileAtomic(this.location, `${JSON.stringify(state, null, 1)}\n`, 0o600, 0o700);
    } catch (e) {
      // A failure after the rename (the folder's fsync) still left the new file in place.
      const now = await this.read().catch(() => null);
      if (now?.generation === state.generation) this.seen = state.generation;
      throw new PtError(
        'PT_ERR_STORE_IO',
        `cannot write ${this.location}: ${errnoOf(e) ?? String(e)}`,
        { cause: e },
      );
    }
    this.seen = state.generation;
  }

  private async read(): Promise<State> {
    let text: string;
    try {
      text = await fs.readFile(this.location, 'utf8');
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return emptyState();
      throw new PtError(
        'PT_ERR_STORE_IO',
        `cannot read ${this.location}: ${errnoOf(e) ?? String(e)}`,
        { cause: e },
      );
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new PtError(
        'PT_ERR_STORE_CORRUPT',
        `state store ${this.location} is corrupt: not JSON; it was left as it is`,
        { cause: e },
      );
    }
    return validateState(raw, this.location);
  }
}
