import { PtError } from '../errors.js';
import type { EventBus } from '../events/events.js';
import type { Clock } from '../host/clock.js';
import type { HostPort } from '../host/port.js';
import { compareAddresses, type PciAddress } from '../pci/address.js';
import type { PciIdNames } from '../pci/pciids.js';
import type { ClaimSpec, LedgerEntry } from '../state/model.js';
import type { ClaimStore, Claims, Ledger, LedgerStore } from '../state/stores.js';
import type { Logger } from '../util/logger.js';
import { Waker } from '../util/waker.js';
import { DesiredState } from './desired-state.js';
import { execute, type ActionResult, type ExecutorOptions, type ModuleLoader } from './executor.js';
import { InFlight } from './inflight.js';
import { HostObserver } from './observe.js';
import { claimStatus, ledgerStatus, type ClaimStatus, type LedgerStatus } from './status.js';
import {
  plan,
  type Action,
  type ModuleHealth,
  type Observed,
  type Plan,
  type WorkKey,
} from './plan.js';
import { WorkQueue } from './workqueue.js';

export interface EngineOptions extends ExecutorOptions {
  /** A look at every key even without triggers, with the bus listed and host uses read again. */
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

export type { ClaimStatus, ClaimStatusState, LedgerStatus } from './status.js';

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
  /**
   * Called after each full rediscovery (start, a device added or removed): the process adapter
   * collects the garbage it left, so the agent's memory at rest stays near its live size.
   */
  afterFullObservation?: () => void;
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
  private readonly state: DesiredState;
  private readonly observer: HostObserver;
  private modules: ModuleHealth = { ready: false, recovering: false, reason: null };
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
    this.state = new DesiredState(deps.claims, deps.ledger);
    this.observer = new HostObserver(
      deps.host,
      this.inflight,
      deps.names,
      deps.afterFullObservation,
    );
  }

  /** Loads both stores; a corrupt store throws PT_ERR_STORE_CORRUPT and nothing else happens. */
  async start(): Promise<void> {
    await this.state.load();
  }

  get claims(): Readonly<Claims> {
    this.mustBeLoaded();
    return this.state.claims;
  }

  get ledger(): Readonly<Ledger> {
    this.mustBeLoaded();
    return this.state.ledger;
  }

  private mustBeLoaded(): void {
    if (!this.state.isLoaded) throw new PtError('PT_ERR_INTERNAL', 'engine not started');
  }

  /** The keeper publishes module health here; a change of readiness looks at every claim. */
  setModuleHealth(h: ModuleHealth): void {
    const changed = h.ready !== this.modules.ready || h.recovering !== this.modules.recovering;
    const lost = this.modules.ready && !h.ready;
    this.modules = { ...h };
    // Nothing claimed is ready while vfio-pci is gone, whatever the last look said: say so now,
    // so that "ready again" is a change the next look reports (and recoveries are timed by).
    if (lost) this.markWaiting(h.reason ?? 'vfio modules lost');
    if (changed) this.enqueueAll();
  }

  private markWaiting(reason: string): void {
    const now = this.d.clock.now();
    for (const [addr, st] of this.statuses) {
      if (st.state !== 'ready') continue;
      const next: ClaimStatus = {
        ...st,
        state: 'waiting',
        code: 'PT_ERR_MODULE_UNAVAILABLE',
        message: `waiting for vfio-pci: ${reason}`,
        lastChange: now,
      };
      this.statuses.set(addr, next);
      this.d.bus.emit({
        type: 'claim.state',
        at: now,
        address: addr,
        state: next.state,
        members: next.members,
        code: 'PT_ERR_MODULE_UNAVAILABLE',
        message: next.message ?? '',
      });
    }
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
    this.enqueue(this.state.allKeys());
  }

  /** Something happened to a device (drift, a bind uevent): look at the keys that cover it. */
  enqueueDevice(addr: PciAddress): void {
    const keys = new Set<WorkKey>();
    if (this.state.claims[addr]) keys.add(addr);
    const l = this.state.ledger[addr];
    if (l) keys.add(l.claim !== undefined && this.state.claims[l.claim] ? l.claim : addr);
    for (const s of this.statuses.values()) if (s.members.includes(addr)) keys.add(s.address);
    this.enqueue(keys);
  }

  /**
   * A device was added or removed: the next look rediscovers the whole bus, and reads the
   * serial numbers of claimed devices again (a card may have been swapped).
   */
  rediscover(): void {
    this.observer.markStale({ reverify: true });
    this.enqueueAll();
  }

  /** Devices passthru owns now, with the claim keys they belong to. */
  isKnownDevice(addr: PciAddress): boolean {
    if (this.state.claims[addr] || this.state.ledger[addr]) return true;
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
          this.observer.markResync();
          this.enqueueAll();
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

  /** The devices a key touches, as far as the last view knows. */
  private devicesOf(key: WorkKey): Set<PciAddress> {
    const out = new Set<PciAddress>([key]);
    for (const m of this.statuses.get(key)?.members ?? []) out.add(m);
    const view = this.observer.last();
    const g = view?.bus.get(key);
    if (g != null) for (const m of view?.inv.groups.get(g)?.members ?? []) out.add(m);
    for (const l of Object.values(this.state.ledger)) if (l.claim === key) out.add(l.address);
    return out;
  }

  private async observe(keys: WorkKey[]): Promise<Observed> {
    const addrs = new Set<PciAddress>();
    for (const k of keys) for (const a of this.devicesOf(k)) addrs.add(a);
    // What a plan reads of every claim and ledger entry, not only of these keys' (asked for
    // only when the look becomes a full discovery).
    const keep = (): PciAddress[] => this.state.allKeys().flatMap((k) => [...this.devicesOf(k)]);
    const view = await this.observer.look(addrs, keep);
    return { ...view, modules: { ...this.modules }, busy: this.inflight.busy() };
  }

  /** The plan over everything, as of the last observation plus a fresh look at `keys`. */
  private async planFor(keys: WorkKey[], desired = this.desired()): Promise<Plan> {
    return plan(await this.observe(keys), desired, this.d.clock.now());
  }

  private desired(): { claims: Readonly<Claims>; ledger: Readonly<Ledger> } {
    return { claims: this.state.claims, ledger: this.state.ledger };
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
      const prev = this.state.claims[s.address];
      return !prev || prev.withGroup !== s.withGroup || prev.force !== s.force;
    });
    if (changed.length === 0) return { accepted: [], rejected: [] };
    const hypothetical: Claims = { ...this.state.claims };
    for (const c of changed)
      hypothetical[c.address] = { ...this.state.claims[c.address], ...c, createdAt: now };
    const preview = await this.planFor(
      changed.map((c) => c.address),
      { claims: hypothetical, ledger: this.state.ledger },
    );
    const rejected: ClaimStatus[] = [];
    const accepted: ClaimSpec[] = [];
    for (const c of changed) {
      const p = preview.claims.find((x) => x.address === c.address);
      if (p && (p.state === 'refused' || p.state === 'changed')) {
        const st = claimStatus(
          p,
          c,
          this.state.ledger,
          this.statuses.get(c.address),
          now,
          undefined,
        );
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
        createdAt: this.state.claims[c.address]?.createdAt ?? now,
      };
      if (!spec.identity && p?.observedIdentity) spec.identity = p.observedIdentity;
      accepted.push(spec);
    }
    if (accepted.length > 0) {
      await this.state.mutateClaims((next) => {
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
    const present = addrs.filter((a) => this.state.claims[a] !== undefined);
    if (present.length === 0) return [];
    await this.state.mutateClaims((next) => {
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
    const c = this.state.claims[addr];
    if (!c) throw new PtError('PT_ERR_NOT_CLAIMED', `not claimed: ${addr}`);
    const p = (await this.planFor([addr])).claims.find((x) => x.address === addr);
    if (p?.state !== 'changed' || !p.observedIdentity) return;
    const identity = p.observedIdentity;
    await this.state.mutateClaims((next) => {
      next[addr] = { ...c, identity };
    });
    const old = this.state.ledger[addr];
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
    const present = addrs.filter((a) => this.state.ledger[a] !== undefined);
    await this.dropLedger(present, why);
    return present;
  }

  private async dropLedger(addrs: PciAddress[], why: string): Promise<void> {
    const gone = await this.state.dropLedger(addrs);
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

  private recordLedger(a: Extract<Action, { kind: 'bind' }>): Promise<LedgerEntry> {
    return this.state.recordOriginal({
      address: a.address,
      originalDriver: a.currentDriver,
      vendorId: a.identity.vendorId,
      deviceId: a.identity.deviceId,
      subsystemVendorId: a.identity.subsystemVendorId,
      subsystemDeviceId: a.identity.subsystemDeviceId,
      ...(a.identity.serialNumber !== undefined ? { serialNumber: a.identity.serialNumber } : {}),
      recordedAt: this.d.clock.now(),
      claim: a.claim,
    });
  }

  /**
   * Claims without an identity take the one seen now; so does one recorded without a serial
   * number when the same card now shows one (a file from before serials were recorded).
   */
  private async recordIdentities(p: Plan, keys: WorkKey[]): Promise<void> {
    const missing = p.claims.filter((c) => {
      const had = this.state.claims[c.address]?.identity;
      return (
        keys.includes(c.address) &&
        c.observedIdentity !== undefined &&
        this.state.claims[c.address] !== undefined &&
        (had === undefined ||
          (had.serialNumber === undefined &&
            c.observedIdentity.serialNumber !== undefined &&
            c.state !== 'changed'))
      );
    });
    if (missing.length === 0) return;
    await this.state.mutateClaims((next) => {
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
      const skipped: { action: Action; after: PtError }[] = [];
      let results = await this.apply(
        p.actions.filter((a) => keys.includes(a.key)),
        skipped,
      );
      if (results.some((r) => r.ok && r.action.kind === 'ensure-modules')) {
        // The modules are there now: the binds they were waiting for can go in this look.
        p = await this.planFor(keys);
        results = [
          ...results,
          ...(await this.apply(
            p.actions.filter((a) => keys.includes(a.key)),
            skipped,
          )),
        ];
      }
      for (const r of results) {
        if (r.action.kind !== 'ensure-modules') this.lastResults.set(r.action.address, r);
        if (!r.ok) failed.set(r.action.key, r.error);
      }
      for (const { action, after } of skipped) {
        if (failed.has(action.key) || action.kind === 'ensure-modules') continue;
        failed.set(
          action.key,
          new PtError(
            after.code,
            `waiting for another device of its IOMMU group (${after.message})`,
          ),
        );
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
    // Still not where it should be, with no failure to show for it: look again with backoff
    // rather than wait for the resync.
    else if (c?.state === 'pending' || l?.state === 'releasing') this.queue.addRateLimited(key);
  }

  private wakeWaiters(): void {
    const still: typeof this.waiters = [];
    for (const w of this.waiters) {
      if ((this.completed.get(w.key) ?? 0) >= w.gen) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  private async apply(
    actions: Action[],
    skipped: { action: Action; after: PtError }[] = [],
  ): Promise<ActionResult[]> {
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
        for (const [i, a] of list.entries()) {
          const r = await execute(deps, a);
          out.push(r);
          if (!r.ok) {
            // The rest of the group waits for the retry, and backs off with it.
            for (const rest of list.slice(i + 1)) skipped.push({ action: rest, after: r.error });
            break;
          }
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
      await this.state.mutateLedger((next) => {
        for (const a of restored) Reflect.deleteProperty(next, a);
      });
      for (const a of restored) {
        this.ledgerStatuses.delete(a);
        this.queue.remove(a);
      }
    }
  }

  // ---- status ----

  private updateStatuses(p: Plan, keys: WorkKey[], failed: Map<WorkKey, PtError>): void {
    const now = this.d.clock.now();
    for (const cp of p.claims) {
      if (!keys.includes(cp.address)) continue;
      const spec = this.state.claims[cp.address];
      if (!spec) continue;
      const prev = this.statuses.get(cp.address);
      const st = claimStatus(cp, spec, this.state.ledger, prev, now, failed.get(cp.address));
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
      const entry = this.state.ledger[lp.address];
      if (!keys.includes(lp.address) && !keys.some((k) => entry?.claim === k)) continue;
      const st = ledgerStatus(lp, entry, failed.get(lp.address) ?? this.lastErrors.get(lp.address));
      if (st) this.ledgerStatuses.set(lp.address, st);
      else this.ledgerStatuses.delete(lp.address);
    }
  }

  /** Statuses as a pass would report them, without applying anything (read-only status). */
  async preview(): Promise<ClaimStatus[]> {
    const keys = [
      ...Object.keys(this.state.claims),
      ...Object.keys(this.state.ledger),
    ] as PciAddress[];
    const p = await this.planFor(keys);
    this.updateStatuses(p, keys, new Map());
    return this.claimStatuses();
  }

  claimStatuses(): ClaimStatus[] {
    return [...this.statuses.values()]
      .filter((s) => this.state.claims[s.address] !== undefined)
      .sort((a, b) => compareAddresses(a.address, b.address));
  }

  ledgerStatus(): LedgerStatus[] {
    return Object.values(this.state.ledger)
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
}
