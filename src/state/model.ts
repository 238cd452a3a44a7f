import { PtError } from '../errors.js';
import { isPciAddress, type PciAddress } from '../pci/address.js';

export const STATE_FORMAT = 'passthru-state/1';

/** What sat at an address when it was claimed: a claim is for a card, not a slot. */
export interface DeviceIdentity {
  vendorId: string;
  deviceId: string;
  subsystemVendorId: string;
  subsystemDeviceId: string;
}

export interface ClaimSpec {
  address: PciAddress;
  /**
   * Recorded when the claim is first seen with its device present; a different card at the
   * address later makes the claim `changed` until re-confirmed. Absent for claims of devices
   * that were not present yet, and for claims stored before identities were recorded.
   */
  identity?: DeviceIdentity;
  /** Who asked: cli, api, kubernetes (for history and `why`). */
  source?: string;
  /** Also bind the other endpoints of the IOMMU group (a GPU's audio function). */
  withGroup: boolean;
  /** Skip the host-critical guard. */
  force: boolean;
  createdAt: number;
}

/** What a device was bound to before passthru first touched it. Written BEFORE any write. */
export interface LedgerEntry {
  address: PciAddress;
  originalDriver: string | null;
  vendorId: string;
  deviceId: string;
  subsystemVendorId?: string;
  subsystemDeviceId?: string;
  recordedAt: number;
  /** The claim that bound it (itself, or the claim whose --with-group pulled it in). */
  claim?: PciAddress;
}

export interface State {
  format: typeof STATE_FORMAT;
  /** Incremented on every save: a store never silently goes back. */
  generation: number;
  claims: Record<string, ClaimSpec>;
  ledger: Record<string, LedgerEntry>;
}

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

/** Checks parsed JSON; a state written by a newer format is refused rather than rewritten. */
export function validateState(raw: unknown, where: string): State {
  if (typeof raw !== 'object' || raw === null) corrupt(where, 'not an object');
  const r = raw as Record<string, unknown>;
  if (r.format !== STATE_FORMAT) corrupt(where, `unknown format ${JSON.stringify(r.format)}`);
  if (typeof r.generation !== 'number' || !Number.isInteger(r.generation))
    corrupt(where, 'generation');
  const claims = r.claims;
  const ledger = r.ledger;
  if (typeof claims !== 'object' || claims === null) corrupt(where, 'claims');
  if (typeof ledger !== 'object' || ledger === null) corrupt(where, 'ledger');
  for (const [k, v] of Object.entries(claims)) {
    const c = v as Record<string, unknown>;
    if (
      !isPciAddress(k) ||
      c.address !== k ||
      typeof c.withGroup !== 'boolean' ||
      typeof c.force !== 'boolean'
    ) {
      corrupt(where, `claim ${k}`);
    }
  }
  for (const [k, v] of Object.entries(ledger)) {
    const l = v as Record<string, unknown>;
    if (
      !isPciAddress(k) ||
      l.address !== k ||
      !(l.originalDriver === null || typeof l.originalDriver === 'string')
    ) {
      corrupt(where, `ledger entry ${k}`);
    }
  }
  return raw as State;
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
