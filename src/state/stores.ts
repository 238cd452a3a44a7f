import type { ClaimSpec, LedgerEntry, State, StateStore } from './model.js';

export type Claims = Record<string, ClaimSpec>;
export type Ledger = Record<string, LedgerEntry>;

/**
 * Desired state: what users asked for. A file on one host; in Kubernetes mode the claims come
 * from PCIDeviceClaim objects and this store is the node's cache of them.
 */
export interface ClaimStore {
  loadClaims(): Promise<Claims>;
  saveClaims(claims: Claims): Promise<void>;
}

/**
 * The node's own truth: what each device was bound to before passthru touched it. Always on the
 * node, whatever the source of claims: it must survive the API server, restarts and reboots.
 */
export interface LedgerStore {
  loadLedger(): Promise<Ledger>;
  saveLedger(ledger: Ledger): Promise<void>;
}

/**
 * Both stores over one state file (the standalone layout): each save writes the whole file with
 * the other half as last saved, one save at a time, so the halves never overwrite each other.
 */
export function stateFileStores(store: StateStore): {
  claims: ClaimStore;
  ledger: LedgerStore;
  location: string;
} {
  let current: State | null = null;
  let chain: Promise<void> = Promise.resolve();
  const load = async (): Promise<State> => {
    current ??= await store.load();
    return current;
  };
  const save = (mutate: (s: State) => void): Promise<void> => {
    const run = async (): Promise<void> => {
      const base = await load();
      const next: State = structuredClone(base);
      mutate(next);
      next.generation = base.generation + 1;
      await store.save(next);
      current = next;
    };
    const p = chain.then(run, run);
    chain = p.catch(() => undefined);
    return p;
  };
  return {
    location: store.location,
    claims: {
      loadClaims: async () => structuredClone((await load()).claims),
      saveClaims: (claims) =>
        save((s) => {
          s.claims = structuredClone(claims);
        }),
    },
    ledger: {
      loadLedger: async () => structuredClone((await load()).ledger),
      saveLedger: (ledger) =>
        save((s) => {
          s.ledger = structuredClone(ledger);
        }),
    },
  };
}
