import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { PtError, errnoOf } from '../errors.js';
import { writeFileAtomic } from '../host/files.js';
import { emptyState, validateState, type State, type StateStore } from './model.js';

/**
 * The embedded store: one JSON file replaced atomically (write, fsync, rename, fsync dir).
 * A missing file is a fresh install; anything unreadable stops the agent and is left untouched.
 */
export class FileStore implements StateStore {
  readonly location: string;

  constructor(dir: string) {
    this.location = path.join(dir, 'state.json');
  }

  async load(): Promise<State> {
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

  async save(state: State): Promise<void> {
    try {
      await writeFileAtomic(this.location, `${JSON.stringify(state, null, 1)}\n`);
    } catch (e) {
      throw new PtError(
        'PT_ERR_STORE_IO',
        `cannot write ${this.location}: ${errnoOf(e) ?? String(e)}`,
        { cause: e },
      );
    }
  }
}
