import type { PciAddress } from '../pci/address.js';
import type { LedgerEntry } from '../state/model.js';
import type { ClaimStore, Claims, Ledger, LedgerStore } from '../state/stores.js';

/**
 * The engine's copy of the claims and the ledger. Every change is a serialised
 * read-modify-write of its store (binds in different groups record ledger entries
 * concurrently, and each must see the others'), and the copy changes only once the store has
 * it: nothing is ever believed that is not durable.
 */
export class DesiredState {
  private claimSet: Claims = {};
  private ledgerSet: Ledger = {};
  private loaded = false;
  private ledgerChain: Promise<void> = Promise.resolve();
  private claimsChain: Promise<void> = Promise.resolve();

  constructor(
    private readonly claimStore: ClaimStore,
    private readonly ledgerStore: LedgerStore,
  ) {}

  async load(): Promise<void> {
    this.claimSet = await this.claimStore.loadClaims();
    this.ledgerSet = await this.ledgerStore.loadLedger();
    this.loaded = true;
  }

  get isLoaded(): boolean {
    return this.loaded;
  }

  get claims(): Readonly<Claims> {
    return this.claimSet;
  }

  get ledger(): Readonly<Ledger> {
    return this.ledgerSet;
  }

  /** Every claim and every ledger entry: the keys of all work. */
  allKeys(): PciAddress[] {
    return [
      ...new Set([...Object.keys(this.claimSet), ...Object.keys(this.ledgerSet)]),
    ] as PciAddress[];
  }

  mutateClaims(fn: (c: Claims) => void): Promise<void> {
    const run = async (): Promise<void> => {
      const next = { ...this.claimSet };
      fn(next);
      await this.claimStore.saveClaims(next);
      this.claimSet = next;
    };
    const p = this.claimsChain.then(run, run);
    this.claimsChain = p.catch(() => undefined);
    return p;
  }

  mutateLedger(fn: (l: Ledger) => void): Promise<void> {
    const run = async (): Promise<void> => {
      const next = { ...this.ledgerSet };
      fn(next);
      await this.ledgerStore.saveLedger(next);
      this.ledgerSet = next;
    };
    const p = this.ledgerChain.then(run, run);
    this.ledgerChain = p.catch(() => undefined);
    return p;
  }

  /**
   * Records the original driver unless an entry exists (never overwritten: after a crash
   * mid-bind or a module loss the device may be driverless, and the entry still knows what it
   * was). Resolves with the entry in force once durable.
   */
  async recordOriginal(entry: LedgerEntry): Promise<LedgerEntry> {
    let kept = this.ledgerSet[entry.address] ?? entry;
    if (kept !== entry) return kept;
    await this.mutateLedger((next) => {
      const raced = next[entry.address];
      if (raced) kept = raced;
      else next[entry.address] = entry;
    });
    return kept;
  }

  /** Drops entries; returns the ones that were there. */
  async dropLedger(addrs: PciAddress[]): Promise<LedgerEntry[]> {
    const gone: LedgerEntry[] = [];
    if (addrs.length === 0) return gone;
    await this.mutateLedger((next) => {
      for (const a of addrs) {
        const e = next[a];
        if (e) gone.push(e);
        Reflect.deleteProperty(next, a);
      }
    });
    return gone;
  }
}
