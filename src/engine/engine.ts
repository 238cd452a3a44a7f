import { PtError, type ErrorCode } from '../errors.js';
import type { EventBus } from '../events/events.js';
import type { Clock } from '../host/clock.js';
import type { HostPort } from '../host/port.js';
import { compareAddresses, type PciAddress } from '../pci/address.js';
import { discover, readFunction } from '../pci/discovery.js';
import { makeInventory } from '../pci/model.js';
import type { PciIdNames } from '../pci/pciids.js';
import type { ClaimSpec, LedgerEntry } from '../state/model.js';
import type { ClaimStore, Claims, Ledger, LedgerStore } from '../state/stores.js';
import type { Logger } from '../util/logger.js';
import { Waker } from '../util/waker.js';
import { execute, type ActionResult, type ExecutorOptions, type ModuleLoader } from './executor.js';
import { InFlight } from './inflight.js';
import {
  plan,
  type Action,
  type ClaimPlan,
  type ClaimState,
  type LedgerPlan,
  type LedgerState,
  type ModuleHealth,
  type Observed,
  type Plan,
  type WorkKey,
} from './plan.js';
import { WorkQueue } from './workqueue.js';

export interface EngineOptions extends ExecutorOptions {
  /** Full rediscovery and a look at every key even without triggers. */
  resyncMs: number;
  /** Backoff of a failing key (any action kind): base doubling up to cap, with jitter. */
  retryBaseMs: number;
  retryCapMs: number;
  /** How often a release waiting for a VM to let go looks again. */
  inUseRecheckMs: number;
}

export const defaultEngineOptions: EngineOptions = {
  resyncMs: 30_000,
  retryBaseMs: 1_000,
  retryCapMs: 60_000,
  inUseRecheckMs: 250,
  unbindTimeoutMs: 10_000,
  verifyTimeoutMs: 2_000,
  pauseAfterUnbindMs: 0,
};

export type ClaimStatusState = ClaimState | 'error';

export interface ClaimStatus {
  address: PciAddress;
  state: ClaimStatusState;
  withGroup: boolean;
  force: boolean;
  members: PciAddress[];
  group: number | null;
  originalDrivers: Record<string, string | null>;
  code?: ErrorCode;
  message?: string;
  lastChange: number;
  /** When the last attempt failed: the next one is due in this many ms. */
  retryInMs?: number;
}

export interface LedgerStatus {
  address: PciAddress;
  originalDriver: string | null;
  /** The claim that bound it. */
  claim?: PciAddress;
  state: LedgerState;
  code?: ErrorCode;
  message?: string;
}

export interface EngineDeps {
  host: HostPort;
  claims: ClaimStore;
  ledger: LedgerStore;
  bus: EventBus;
  clock: Clock;
  logger: Logger;
  modules: ModuleLoader;
  names?: PciIdNames;
  options?: Partial<EngineOptions>;
  random?: () => number;
}

interface Snapshot {
  obs: Omit<Observed, 'modules' | 'busy'>;
  at: number;
}

/**
 * Level-triggered, keyed reconciler. Work is keyed by claim (or by the ledger entry a release
 * serves); a trigger enqueues keys, the queue de-duplicates them and backs each off on its own
 * when it fails. Processing a key observes what it touches afresh, plans against every claim
 * and the ledger (viability depends on the others), and applies only that key's actions.
 * Actions of one IOMMU group run in order; groups run in parallel.
 */
export class Engine {
  private readonly d: EngineDeps;
  private readonly log: Logger;
  private readonly opts: EngineOptions;
  readonly inflight: InFlight;
  private readonly queue: WorkQueue<WorkKey>;
  private readonly waker = new Waker();
  private claimSet: Claims = {};
  private ledgerSet: Ledger = {};
  private loaded = false;
  private modules: ModuleHealth = { ready: false, recovering: false, reason: null };
  private snapshot: Snapshot | null = null;
  private needFull = true;
  private statuses = new Map<PciAddress, ClaimStatus>();
  private ledgerStatuses = new Map<PciAddress, LedgerStatus>();
  private lastErrors = new Map<WorkKey, PtError>();
  private lastResults = new Map<PciAddress, ActionResult>();
  private requested = new Map<WorkKey, number>();
  private completed = new Map<WorkKey, number>();
  private waiters: { key: WorkKey; gen: number; resolve: () => void }[] = [];
  private looping = false;
  /** Aborts writes still pending in the kernel when the agent stops, so it can exit. */
  private stopSignal: AbortSignal | undefined;
  private processing: Promise<void> = Promise.resolve();

  constructor(deps: EngineDeps) {
    this.d = deps;
    this.log = deps.logger.child({ component: 'engine' });
    this.opts = { ...defaultEngineOptions, ...deps.options };
    this.inflight = new InFlight(deps.clock);
    this.queue = new WorkQueue<WorkKey>(
      deps.clock,
      { baseMs: this.opts.retryBaseMs, capMs: this.opts.retryCapMs },
      deps.random ?? Math.random,
    );
    this.queue.onAdd(() => {
      this.waker.wake();
    });
  }

  /** Loads both stores; a corrupt store throws PT_ERR_STORE_CORRUPT and nothing else happens. */
  async start(): Promise<void> {
    this.claimSet = await this.d.claims.loadClaims();
    this.ledgerSet = await this.d.ledger.loadLedger();
    this.loaded = true;
  }

  get claims(): Readonly<Claims> {
    this.mustBeLoaded();
    return this.claimSet;
  }

  get ledger(): Readonly<Ledger> {
    this.mustBeLoaded();
    return this.ledgerSet;
  }

  private mustBeLoaded(): void {
    if (!this.loaded) throw new PtError('PT_ERR_INTERNAL', 'engine not started');
  }

  /** The keeper publishes module health here; a change of readiness looks at every claim. */
  setModuleHealth(h: ModuleHealth): void {
    const changed = h.ready !== this.modules.ready || h.recovering !== this.modules.recovering;
    this.modules = { ...h };
    if (changed) this.enqueueAll();
  }

  moduleHealth(): ModuleHealth {
    return { ...this.modules };
  }

  // ---- triggers: they only say "look again" ----

  enqueue(keys: Iterable<WorkKey>): void {
    for (const k of keys) {
      this.requested.set(k, (this.requested.get(k) ?? 0) + 1);
      this.queue.add(k);
    }
  }

  /** Every claim and every ledger entry. */
  enqueueAll(): void {
    this.enqueue(
      new Set([...Object.keys(this.claimSet), ...Object.keys(this.ledgerSet)] as PciAddress[]),
    );
  }

  /** Something happened to a device (drift, a bind uevent): look at the keys that cover it. */
  enqueueDevice(addr: PciAddress): void {
    const keys = new Set<WorkKey>();
    if (this.claimSet[addr]) keys.add(addr);
    const l = this.ledgerSet[addr];
    if (l) keys.add(l.claim !== undefined && this.claimSet[l.claim] ? l.claim : addr);
    for (const s of this.statuses.values()) if (s.members.includes(addr)) keys.add(s.address);
    this.enqueue(keys);
  }

  /** A device was added or removed: the next look rediscovers the whole bus. */
  rediscover(): void {
    this.needFull = true;
    this.enqueueAll();
  }

  /** Devices passthru owns now, with the claim keys they belong to. */
  isKnownDevice(addr: PciAddress): boolean {
    if (this.claimSet[addr] || this.ledgerSet[addr]) return true;
    for (const s of this.statuses.values()) if (s.members.includes(addr)) return true;
    return false;
  }

  /**
   * Enqueue the keys and resolve once each has been looked at after this call, whichever pass
   * did it. Without a running loop (a one-shot CLI command) the keys are processed right here.
   */
  async reconcile(keys: WorkKey[]): Promise<void> {
    this.enqueue(keys);
    const gens = keys.map((k) => ({ key: k, gen: this.requested.get(k) ?? 0 }));
    if (!this.looping) {
      await this.drain();
    }
    await Promise.all(
      gens.map(
        ({ key, gen }) =>
          new Promise<void>((resolve) => {
            if ((this.completed.get(key) ?? 0) >= gen) resolve();
            else this.waiters.push({ key, gen, resolve });
          }),
      ),
    );
  }

  /** One-shot: process whatever is due now, once (backoffs are not waited for). */
  private async drain(): Promise<void> {
    const keys = this.queue.take();
    if (keys.length > 0) await this.serialProcess(keys);
  }

  private serialProcess(keys: WorkKey[]): Promise<void> {
    const run = (): Promise<void> => this.processKeys(keys);
    const p = this.processing.then(run, run);
    this.processing = p.catch(() => undefined);
    return p;
  }

  /** The loop: keys as they come due, a full resync every resyncMs. */
  async run(signal: AbortSignal): Promise<void> {
    this.looping = true;
    this.stopSignal = signal;
    let nextResync = this.d.clock.now() + this.opts.resyncMs;
    try {
      while (!signal.aborted) {
        const now = this.d.clock.now();
        if (now >= nextResync) {
          nextResync = now + this.opts.resyncMs;
          this.rediscover();
        }
        const keys = this.queue.take();
        if (keys.length > 0) {
          await this.serialProcess(keys);
          continue;
        }
        const due = this.queue.nextDueIn();
        const waitMs = Math.max(1, Math.min(due ?? Infinity, nextResync - now));
        await this.waker.sleep(this.d.clock, waitMs, signal);
      }
    } finally {
      // A clean stop waits for the work in flight, so nothing is left half-recorded.
      await this.processing;
      this.looping = false;
    }
  }

  // ---- observation ----

  private async fullObserve(): Promise<Snapshot> {
    const { host } = this.d;
    const skipLockedAttrs = new Set(this.inflight.busy().keys());
    const [inv, uses] = await Promise.all([
      discover(host, this.d.names, { skipLockedAttrs }),
      host.hostUses(),
    ]);
    const vfioNodes = new Set<number>();
    await Promise.all(
      [...inv.groups.keys()].map(async (g) => {
        if (await host.vfioGroupNodeExists(g)) vfioNodes.add(g);
      }),
    );
    this.needFull = false;
    return { obs: { inv, uses, vfioNodes }, at: this.d.clock.now() };
  }

  /** The devices a key touches, as far as the last snapshot knows. */
  private devicesOf(key: WorkKey, snap: Snapshot): Set<PciAddress> {
    const out = new Set<PciAddress>([key]);
    const st = this.statuses.get(key);
    for (const m of st?.members ?? []) out.add(m);
    const g = snap.obs.inv.byAddress.get(key)?.iommuGroup;
    if (g != null) for (const m of snap.obs.inv.groups.get(g)?.members ?? []) out.add(m);
    for (const l of Object.values(this.ledgerSet)) if (l.claim === key) out.add(l.address);
    return out;
  }

  /**
   * Re-reads only what the keys touch; a device that appeared or vanished means the bus changed
   * and everything is read again.
   */
  private async observe(keys: WorkKey[]): Promise<Observed> {
    let snap = this.snapshot;
    if (!snap || this.needFull) {
      snap = await this.fullObserve();
    } else {
      const addrs = new Set<PciAddress>();
      for (const k of keys) for (const a of this.devicesOf(k, snap)) addrs.add(a);
      const { inv } = snap.obs;
      const fresh = await Promise.all(
        [...addrs].map(
          async (a) =>
            [
              a,
              await readFunction(this.d.host, a, this.d.names, this.inflight.get(a) !== undefined),
            ] as const,
        ),
      );
      if (fresh.some(([a, f]) => (f === null) !== !inv.byAddress.has(a))) {
        snap = await this.fullObserve();
      } else {
        const byAddr = new Map(inv.byAddress);
        for (const [a, f] of fresh) if (f) byAddr.set(a, f);
        const inv2 = makeInventory(inv.devices.map((dv) => byAddr.get(dv.address) ?? dv));
        const vfioNodes = new Set(snap.obs.vfioNodes);
        const groups = new Set<number>();
        for (const [, f] of fresh) if (f?.iommuGroup != null) groups.add(f.iommuGroup);
        await Promise.all(
          [...groups].map(async (g) => {
            if (await this.d.host.vfioGroupNodeExists(g)) vfioNodes.add(g);
            else vfioNodes.delete(g);
          }),
        );
        snap = { obs: { inv: inv2, uses: snap.obs.uses, vfioNodes }, at: this.d.clock.now() };
      }
    }
    this.snapshot = snap;
    return { ...snap.obs, modules: { ...this.modules }, busy: this.inflight.busy() };
  }

  /** The plan over everything, as of the last observation plus a fresh look at `keys`. */
  private async planFor(keys: WorkKey[], desired = this.desired()): Promise<Plan> {
    return plan(await this.observe(keys), desired, this.d.clock.now());
  }

  private desired(): { claims: Claims; ledger: Ledger } {
    return { claims: this.claimSet, ledger: this.ledgerSet };
  }

  private ledgerChain: Promise<void> = Promise.resolve();
  private claimsChain: Promise<void> = Promise.resolve();

  /**
   * Serialised read-modify-write of the ledger: binds in different groups record their entries
   * concurrently, and each must see the others' writes. The in-memory copy changes only once
   * the store has it.
   */
  private mutateLedger(fn: (l: Ledger) => void): Promise<void> {
    const run = async (): Promise<void> => {
      const next = { ...this.ledgerSet };
      fn(next);
      await this.d.ledger.saveLedger(next);
      this.ledgerSet = next;
    };
    const p = this.ledgerChain.then(run, run);
    this.ledgerChain = p.catch(() => undefined);
    return p;
  }

  private mutateClaims(fn: (c: Claims) => void): Promise<void> {
    const run = async (): Promise<void> => {
      const next = { ...this.claimSet };
      fn(next);
      await this.d.claims.saveClaims(next);
      this.claimSet = next;
    };
    const p = this.claimsChain.then(run, run);
    this.claimsChain = p.catch(() => undefined);
    return p;
  }

  // ---- desired state ----

  /**
   * Stores new or changed claims. A claim that would be refused (host-critical, group not
   * viable, no group, a different card than claimed) is returned as rejected and not stored;
   * a claim of an absent device is stored and bound when the device appears.
   */
  async addClaims(
    specs: Omit<ClaimSpec, 'createdAt'>[],
  ): Promise<{ accepted: PciAddress[]; rejected: ClaimStatus[] }> {
    const now = this.d.clock.now();
    const changed = specs.filter((s) => {
      const prev = this.claimSet[s.address];
      return !prev || prev.withGroup !== s.withGroup || prev.force !== s.force;
    });
    if (changed.length === 0) return { accepted: [], rejected: [] };
    const hypothetical: Claims = { ...this.claimSet };
    for (const c of changed)
      hypothetical[c.address] = { ...this.claimSet[c.address], ...c, createdAt: now };
    const preview = await this.planFor(
      changed.map((c) => c.address),
      { claims: hypothetical, ledger: this.ledgerSet },
    );
    const rejected: ClaimStatus[] = [];
    const accepted: ClaimSpec[] = [];
    for (const c of changed) {
      const p = preview.claims.find((x) => x.address === c.address);
      if (p && (p.state === 'refused' || p.state === 'changed')) {
        const st = this.statusFrom(p, c, now, undefined);
        rejected.push(st);
        this.d.bus.emit({
          type: 'claim.refused',
          at: now,
          address: c.address,
          code: p.code ?? 'PT_ERR_INTERNAL',
          message: p.message ?? '',
        });
        continue;
      }
      const spec: ClaimSpec = {
        ...hypothetical[c.address],
        ...c,
        createdAt: this.claimSet[c.address]?.createdAt ?? now,
      };
      if (!spec.identity && p?.observedIdentity) spec.identity = p.observedIdentity;
      accepted.push(spec);
    }
    if (accepted.length > 0) {
      await this.mutateClaims((next) => {
        for (const c of accepted) next[c.address] = c;
      });
    }
    for (const c of accepted) {
      this.queue.forget(c.address);
      this.lastErrors.delete(c.address);
      this.d.bus.emit({
        type: 'claim.added',
        at: now,
        address: c.address,
        withGroup: c.withGroup,
        force: c.force,
        ...(c.source !== undefined ? { source: c.source } : {}),
      });
    }
    return { accepted: accepted.map((c) => c.address), rejected };
  }

  async removeClaims(addrs: PciAddress[]): Promise<PciAddress[]> {
    const present = addrs.filter((a) => this.claimSet[a] !== undefined);
    if (present.length === 0) return [];
    await this.mutateClaims((next) => {
      for (const a of present) Reflect.deleteProperty(next, a);
    });
    const now = this.d.clock.now();
    for (const a of present) {
      this.statuses.delete(a);
      this.lastErrors.delete(a);
      this.queue.forget(a);
      this.d.bus.emit({ type: 'claim.removed', at: now, address: a });
    }
    return present;
  }

  /**
   * The user confirms that the card now at `addr` is the one to claim: the claim takes its
   * identity, and a ledger entry recorded for the previous card there is dropped (that card is
   * gone; its original driver means nothing for the new one).
   */
  async acceptChange(addr: PciAddress): Promise<void> {
    const c = this.claimSet[addr];
    if (!c) throw new PtError('PT_ERR_NOT_CLAIMED', `not claimed: ${addr}`);
    const p = (await this.planFor([addr])).claims.find((x) => x.address === addr);
    if (p?.state !== 'changed' || !p.observedIdentity) return;
    const identity = p.observedIdentity;
    await this.mutateClaims((next) => {
      next[addr] = { ...c, identity };
    });
    const old = this.ledgerSet[addr];
    if (old) await this.dropLedger([addr], 'the card was replaced (claim --accept-change)');
    this.d.bus.emit({
      type: 'claim.accepted_change',
      at: this.d.clock.now(),
      address: addr,
      vendorId: p.observedIdentity.vendorId,
      deviceId: p.observedIdentity.deviceId,
    });
  }

  /** The user gives up on restoring these devices: their ledger entries go, recorded in history. */
  async abandon(addrs: PciAddress[], why: string): Promise<PciAddress[]> {
    const present = addrs.filter((a) => this.ledgerSet[a] !== undefined);
    await this.dropLedger(present, why);
    return present;
  }

  private async dropLedger(addrs: PciAddress[], why: string): Promise<void> {
    if (addrs.length === 0) return;
    const gone: LedgerEntry[] = [];
    await this.mutateLedger((next) => {
      for (const a of addrs) {
        const e = next[a];
        if (e) gone.push(e);
        Reflect.deleteProperty(next, a);
      }
    });
    const now = this.d.clock.now();
    for (const e of gone) {
      this.ledgerStatuses.delete(e.address);
      this.queue.remove(e.address);
      this.d.bus.emit({
        type: 'ledger.abandoned',
        at: now,
        address: e.address,
        originalDriver: e.originalDriver,
        reason: why,
      });
    }
  }

  private async recordLedger(a: Extract<Action, { kind: 'bind' }>): Promise<LedgerEntry> {
    const prev = this.ledgerSet[a.address];
    // Never overwrite: after a crash mid-bind or a module loss the device may be driverless,
    // and the ledger still knows what it was.
    if (prev) return prev;
    const entry: LedgerEntry = {
      address: a.address,
      originalDriver: a.currentDriver,
      vendorId: a.identity.vendorId,
      deviceId: a.identity.deviceId,
      subsystemVendorId: a.identity.subsystemVendorId,
      subsystemDeviceId: a.identity.subsystemDeviceId,
      recordedAt: this.d.clock.now(),
      claim: a.claim,
    };
    let kept: LedgerEntry = entry;
    await this.mutateLedger((next) => {
      const raced = next[a.address];
      if (raced) kept = raced;
      else next[a.address] = entry;
    });
    return kept;
  }

  private async recordIdentities(p: Plan, keys: WorkKey[]): Promise<void> {
    const missing = p.claims.filter(
      (c) =>
        keys.includes(c.address) &&
        c.observedIdentity !== undefined &&
        this.claimSet[c.address] !== undefined &&
        this.claimSet[c.address]?.identity === undefined,
    );
    if (missing.length === 0) return;
    await this.mutateClaims((next) => {
      for (const c of missing) {
        const spec = next[c.address];
        if (spec && c.observedIdentity) next[c.address] = { ...spec, identity: c.observedIdentity };
      }
    });
  }

  // ---- processing ----

  private async processKeys(keys: WorkKey[]): Promise<void> {
    const started = new Map(keys.map((k) => [k, this.requested.get(k) ?? 0]));
    const failed = new Map<WorkKey, PtError>();
    try {
      let p = await this.planFor(keys);
      await this.recordIdentities(p, keys);
      let results = await this.apply(p.actions.filter((a) => keys.includes(a.key)));
      if (results.some((r) => r.ok && r.action.kind === 'ensure-modules')) {
        // The modules are there now: the binds they were waiting for can go in this look.
        p = await this.planFor(keys);
        results = [
          ...results,
          ...(await this.apply(p.actions.filter((a) => keys.includes(a.key)))),
        ];
      }
      for (const r of results) {
        if (r.action.kind !== 'ensure-modules') this.lastResults.set(r.action.address, r);
        if (!r.ok) failed.set(r.action.key, r.error);
      }
      await this.afterActions(results);
      // Look again: statuses report the host as it is, not as we hoped to leave it.
      const after = results.length > 0 ? await this.planFor(keys) : p;
      this.updateStatuses(after, keys, failed);
      for (const k of keys) this.schedule(k, after, failed.get(k));
    } catch (e) {
      // A pass that cannot even observe the host (or save the ledger) backs off like any failure.
      this.log.error({ err: e, keys }, 'reconcile failed');
      for (const k of keys) this.queue.addRateLimited(k);
    } finally {
      for (const k of keys) {
        this.queue.done(k);
        this.completed.set(k, Math.max(this.completed.get(k) ?? 0, started.get(k) ?? 0));
      }
      this.wakeWaiters();
    }
  }

  private schedule(key: WorkKey, p: Plan, err: PtError | undefined): void {
    if (err) {
      this.lastErrors.set(key, err);
      // Waiting for a VM to let go is a cheap look at /proc, not a write: look again soon, so a
      // release completes within a second of the holder closing.
      if (err.code === 'PT_ERR_DEVICE_IN_USE') this.queue.addAfter(key, this.opts.inUseRecheckMs);
      else {
        const delay = this.queue.addRateLimited(key);
        this.log.warn({ key, code: err.code, err: err.message, retryInMs: delay }, 'retrying');
      }
      return;
    }
    this.lastErrors.delete(key);
    this.queue.forget(key);
    // A pending kernel operation or a pending bind: look again, it does not announce its end.
    const c = p.claims.find((x) => x.address === key);
    const l = p.ledger.find((x) => x.address === key);
    if (c?.state === 'busy' || l?.state === 'busy') this.queue.addAfter(key, 1_000);
    else if (c?.state === 'pending') this.queue.addRateLimited(key);
  }

  private wakeWaiters(): void {
    const still: typeof this.waiters = [];
    for (const w of this.waiters) {
      if ((this.completed.get(w.key) ?? 0) >= w.gen) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  private async apply(actions: Action[]): Promise<ActionResult[]> {
    const byGroup = new Map<string, Action[]>();
    for (const a of actions) {
      const group =
        a.kind === 'bind' || a.kind === 'pin-override' || a.kind === 'release' ? a.group : null;
      const key =
        a.kind === 'ensure-modules'
          ? 'modules'
          : group === null
            ? `addr:${a.address}`
            : `group:${String(group)}`;
      const list = byGroup.get(key) ?? [];
      list.push(a);
      byGroup.set(key, list);
    }
    const deps = {
      host: this.d.host,
      clock: this.d.clock,
      options: this.opts,
      inflight: this.inflight,
      modules: this.d.modules,
      ...(this.stopSignal ? { signal: this.stopSignal } : {}),
      recordLedger: (a: Extract<Action, { kind: 'bind' }>) => this.recordLedger(a),
    };
    const groupResults = await Promise.all(
      [...byGroup.values()].map(async (list) => {
        const out: ActionResult[] = [];
        for (const a of list) {
          const r = await execute(deps, a);
          out.push(r);
          if (!r.ok) break; // the rest of the group waits for the retry
        }
        return out;
      }),
    );
    return groupResults.flat();
  }

  private async afterActions(results: ActionResult[]): Promise<void> {
    const now = this.d.clock.now();
    const restored: PciAddress[] = [];
    for (const r of results) {
      const a = r.action;
      if (a.kind === 'bind') {
        if (r.ok) {
          this.d.bus.emit({
            type: 'device.bound',
            at: now,
            address: a.address,
            from: a.currentDriver,
            ms: r.ms,
          });
        } else {
          this.d.bus.emit({
            type: 'device.bind_failed',
            at: now,
            address: a.address,
            code: r.error.code,
            message: r.error.message,
            rolledBack: r.rolledBack,
          });
        }
      } else if (a.kind === 'release') {
        if (r.ok) {
          restored.push(a.address);
          this.d.bus.emit({
            type: 'device.released',
            at: now,
            address: a.address,
            driver: r.driver ?? null,
            expected: a.originalDriver,
          });
        } else {
          this.d.bus.emit({
            type: 'device.release_failed',
            at: now,
            address: a.address,
            code: r.error.code,
            message: r.error.message,
          });
        }
      } else if (a.kind === 'forget') {
        restored.push(a.address);
      }
    }
    if (restored.length > 0) {
      // Only a device verifiably back on its original driver leaves the ledger.
      await this.mutateLedger((next) => {
        for (const a of restored) Reflect.deleteProperty(next, a);
      });
      for (const a of restored) {
        this.ledgerStatuses.delete(a);
        this.queue.remove(a);
      }
    }
  }

  // ---- status ----

  private statusFrom(
    p: ClaimPlan,
    spec: Pick<ClaimSpec, 'withGroup' | 'force'>,
    now: number,
    err: PtError | undefined,
  ): ClaimStatus {
    let state: ClaimStatusState = p.state;
    let code = p.code;
    let message = p.message;
    if (p.state === 'pending' && err) {
      state = err.code === 'PT_ERR_MODULE_UNAVAILABLE' ? 'waiting' : 'error';
      code = err.code;
      message = state === 'waiting' ? `waiting for vfio-pci: ${err.message}` : err.message;
    } else if (p.state === 'busy' && err) {
      // Why it is busy: the write we stopped waiting for is still pending in the kernel.
      code = err.code;
      message = `${p.message ?? ''} (${err.message})`;
    }
    const prev = this.statuses.get(p.address);
    const originalDrivers: Record<string, string | null> = {};
    for (const m of p.members) {
      const l = this.ledgerSet[m];
      if (l) originalDrivers[m] = l.originalDriver;
    }
    const st: ClaimStatus = {
      address: p.address,
      state,
      withGroup: spec.withGroup,
      force: spec.force,
      members: p.members,
      group: p.group,
      originalDrivers,
      lastChange: prev && prev.state === state ? prev.lastChange : now,
    };
    if (code !== undefined) st.code = code;
    if (message !== undefined) st.message = message;
    return st;
  }

  private updateStatuses(p: Plan, keys: WorkKey[], failed: Map<WorkKey, PtError>): void {
    const now = this.d.clock.now();
    for (const cp of p.claims) {
      if (!keys.includes(cp.address)) continue;
      const spec = this.claimSet[cp.address];
      if (!spec) continue;
      const prev = this.statuses.get(cp.address);
      const st = this.statusFrom(cp, spec, now, failed.get(cp.address));
      if (st.state === 'error' || st.state === 'waiting') {
        const due = this.queue.nextDueIn();
        if (due !== null) st.retryInMs = due;
      }
      this.statuses.set(cp.address, st);
      if (prev?.state !== st.state) {
        this.d.bus.emit({
          type: 'claim.state',
          at: now,
          address: st.address,
          state: st.state,
          members: st.members,
          ...(st.code !== undefined ? { code: st.code } : {}),
          ...(st.message !== undefined ? { message: st.message } : {}),
        });
      }
    }
    for (const lp of p.ledger) {
      if (!keys.includes(lp.address) && !keys.some((k) => this.ledgerSet[lp.address]?.claim === k))
        continue;
      this.setLedgerStatus(lp, failed.get(lp.address));
    }
  }

  private setLedgerStatus(lp: LedgerPlan, err: PtError | undefined): void {
    const e = this.ledgerSet[lp.address];
    if (!e || lp.state === 'restored') {
      this.ledgerStatuses.delete(lp.address);
      return;
    }
    const st: LedgerStatus = {
      address: lp.address,
      originalDriver: e.originalDriver,
      state: lp.state,
    };
    if (e.claim !== undefined) st.claim = e.claim;
    const why = err ?? this.lastErrors.get(lp.address);
    if (lp.state === 'releasing' && why) {
      st.code = why.code;
      st.message =
        why.code === 'PT_ERR_DEVICE_IN_USE'
          ? `held by ${why.message.replace(/^.* is in use by /, '')}`
          : why.message;
    } else if (lp.message !== undefined) st.message = lp.message;
    this.ledgerStatuses.set(lp.address, st);
  }

  /** Statuses as a pass would report them, without applying anything (read-only status). */
  async preview(): Promise<ClaimStatus[]> {
    const keys = [...Object.keys(this.claimSet), ...Object.keys(this.ledgerSet)] as PciAddress[];
    const p = await this.planFor(keys);
    this.updateStatuses(p, keys, new Map());
    return this.claimStatuses();
  }

  claimStatuses(): ClaimStatus[] {
    return [...this.statuses.values()]
      .filter((s) => this.claimSet[s.address] !== undefined)
      .sort((a, b) => compareAddresses(a.address, b.address));
  }

  ledgerStatus(): LedgerStatus[] {
    return Object.values(this.ledgerSet)
      .map(
        (e): LedgerStatus =>
          this.ledgerStatuses.get(e.address) ?? {
            address: e.address,
            originalDriver: e.originalDriver,
            state: 'held',
            ...(e.claim !== undefined ? { claim: e.claim } : {}),
          },
      )
      .sort((a, b) => compareAddresses(a.address, b.address));
  }

  /** Devices verified on vfio-pci: the keeper watches their driver links. */
  readyDevices(): PciAddress[] {
    const out: PciAddress[] = [];
    for (const s of this.claimStatuses()) if (s.state === 'ready') out.push(...s.members);
    return out;
  }

  /** The last result of an action on a device (release outcome reporting). */
  lastResult(addr: PciAddress): ActionResult | undefined {
    return this.lastResults.get(addr);
  }

  lastError(key: WorkKey): PtError | undefined {
    return this.lastErrors.get(key);
  }

  busy(): { address: PciAddress; op: string; forMs: number }[] {
    const now = this.d.clock.now();
    return [...this.inflight.busy().values()].map((b) => ({
      address: b.address,
      op: b.op,
      forMs: now - b.since,
    }));
  }

  /** What the planner would do now (for dry runs and tests). */
  async planNow(): Promise<Plan> {
    return this.planFor([]);
  }
}
