import { PtError } from '../errors.js';
import type { PciAddress } from '../pci/address.js';

import { checker, describeIssues } from '../schema/validate.js';
import {
  STATE_FORMAT,
  StateSchema,
  type ClaimSpec,
  type DeviceIdentity,
  type LedgerEntry,
  type State,
} from '../schema/state.js';

export { STATE_FORMAT };
export type { ClaimSpec, DeviceIdentity, LedgerEntry, State };

export function emptyState(): State {
  return { format: STATE_FORMAT, generation: 0, claims: {}, ledger: {} };
}

function corrupt(where: string, why: string): never {
  throw new PtError(
    'PT_ERR_STORE_CORRUPT',
    `state store ${where} is corrupt: ${why}; it was left as it is`,
    {
      details: { where },
    },
  );
}

const stateChecker = checker(StateSchema);

/**
 * Checks parsed JSON against the state schema (src/schema/state.ts), then what a schema cannot
 * say: every entry sits under its own address. A state written by a newer format is refused
 * rather than rewritten.
 */
export function validateState(raw: unknown, where: string): State {
  if (typeof raw === 'object' && raw !== null && 'format' in raw && raw.format !== STATE_FORMAT) {
    corrupt(where, `unknown format ${JSON.stringify(raw.format)}`);
  }
  if (!stateChecker.check(raw)) corrupt(where, describeIssues(stateChecker.issues(raw)));
  for (const [k, c] of Object.entries(raw.claims)) {
    if (c.address !== k) corrupt(where, `claim ${k} names ${c.address}`);
  }
  for (const [k, l] of Object.entries(raw.ledger)) {
    if (l.address !== k) corrupt(where, `ledger entry ${k} names ${l.address}`);
  }
  return raw;
}

/** Where desired state lives: a file on one host, custom resources in Kubernetes (later). */
export interface StateStore {
  readonly location: string;
  load(): Promise<State>;
  save(state: State): Promise<void>;
}

/** In-memory store for tests and the demo; `failSaves` injects store I/O errors. */
export class MemoryStore implements StateStore {
  readonly location = 'memory';
  private data: string = JSON.stringify(emptyState());
  failSaves = 0;

  load(): Promise<State> {
    return Promise.resolve(validateState(JSON.parse(this.data), this.location));
  }

  save(state: State): Promise<void> {
    if (this.failSaves > 0) {
      this.failSaves--;
      return Promise.reject(new PtError('PT_ERR_STORE_IO', 'simulated store write failure'));
    }
    this.data = JSON.stringify(state);
    return Promise.resolve();
  }

  /** For tests: replace the stored bytes. */
  setRaw(text: string): void {
    this.data = text;
  }

  raw(): string {
    return this.data;
  }
}

export function claimList(s: State): ClaimSpec[] {
  return Object.values(s.claims).sort((a, b) => (a.address < b.address ? -1 : 1));
}

export function ledgerOf(s: State, a: PciAddress): LedgerEntry | undefined {
  return s.ledger[a];
}
