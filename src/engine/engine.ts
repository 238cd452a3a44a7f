import { PtError, type ErrorCode } from '../errors.js';
import type { EventBus } from '../events/events.js';
import type { Clock } from '../host/clock.js';
import type { HostPort } from '../host/port.js';
import type { PciAddress } from '../pci/address.js';
import { discover } from '../pci/discovery.js';
import type { PciIdNames } from '../pci/pciids.js';
import type { ClaimSpec, State, StateStore } from '../state/model.js';
import type { Logger } from '../util/logger.js';
import { Waker } from '../util/waker.js';
import { execute, type ActionResult, type ExecutorOptions } from './executor.js';
import { plan, type Action, type ClaimPlan, type Observed } from './plan.js';

export interface EngineOptions extends ExecutorOptions {
  /** Periodic resync even without triggers. */
  resyncMs: number;
  /** Retry backoff for a failing claim: base doubling up to cap. */
  retryBaseMs: number;
  retryCapMs: number;
}

export const defaultEngineOptions: EngineOptions = {
  resyncMs: 30_000,
  retryBaseMs: 1_000,
  retryCapMs: 60_000,
  unbindTimeoutMs: 10_000,
  verifyTimeoutMs: 2_000,
  pauseAfterUnbindMs: 0,
};

export type ClaimStatusState = 'ready' | 'pending' | 'waiting' | 'refused' | 'missing' | 'error';

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
}

export interface EngineDeps {
  host: HostPort;
  store: StateStore;
  bus: EventBus;
  clock: Clock;
  logger: Logger;
  names?: PciIdNames;
  options?: Partial<EngineOptions>;
  /** Make vfio-pci available; throws PT_ERR_MODULE_UNAVAILABLE (the keeper provides it). */
  ensureVfio: () => Promise<void>;
  /** Why vfio-pci is unavailable right now, if the keeper knows. */
  vfioWaitReason?: () => string | null;
}

export interface PassResult {
  at: number;
  claims: ClaimStatus[];
  results: ActionResult[];
}

/**
 * Level-triggered reconciler. Each pass observes the host afresh, plans against the desired
 * claims and the ledger, and applies the difference. Passes never overlap; within a pass the
 * actions of different IOMMU groups run in parallel and those of one group in order.
 */
export class Engine {
  private readonly host: HostPort;
  private readonly store: StateStore;
  private readonly bus: EventBus;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly names: PciIdNames | undefined;
  private readonly opts: EngineOptions;
  private readonly ensureVfioFn: () => Promise<void>;
  private readonly waitReason: () => string | null;
  private st: State | null = null;
  private persistChain: Promise<void> = Promise.resolve();
  private running: Promise<PassResult> | null = null;
  private queued: Promise<PassResult> | null = null;
  private readonly waker = new Waker();
  private dirty = false;
  private statuses = new Map<PciAddress, ClaimStatus>();
  private failures = new Map<PciAddress, { count: number; retryAt: number }>();
  private lastPass: PassResult | null = null;

  constructor(deps: EngineDeps) {
    this.host = deps.host;
    this.store = deps.store;
    this.bus = deps.bus;
    this.clock = deps.clock;
    this.log = deps.logger.child({ component: 'engine' });
    this.names = deps.names;
    this.opts = { ...defaultEngineOptions, ...deps.options };
    this.ensureVfioFn = deps.ensureVfio;
    this.waitReason = deps.vfioWaitReason ?? (() => null);
  }

  /** Loads the store; a corrupt store throws PT_ERR_STORE_CORRUPT and nothing else happens. */
  async start(): Promise<void> {
    this.st = await this.store.load();
  }

  get state(): State {
    if (!this.st) throw new PtError('PT_ERR_INTERNAL', 'engine not started');
    return this.st;
  }

  /**
   * Serialised read-modify-write of the store: binds in different groups record their ledger
   * entries concurrently, and each must see the others' writes.
   */
  private persist(mutate: (s: State) => void): Promise<void> {
    const run = async (): Promise<void> => {
      const next: State = structuredClone(this.state);
      mutate(next);
      next.generation = this.state.generation + 1;
      await this.store.save(next);
      this.st = next;
    };
    const p = this.persistChain.then(run, run);
    this.persistChain = p.catch(() => undefined);
    return p;
  }

  /**
   * Stores new claims. A claim that would be refused (host-critical, group not viable, no
   * group) or names an absent device is not stored: it is returned as rejected and nothing
   * changes.
   */
  async addClaims(specs: Omit<ClaimSpec, 'createdAt'>[]): Promise<{ rejected: ClaimStatus[] }> {
    const now = this.clock.now();
    const changed = specs.filter((s) => {
      const prev = this.state.claims[s.address];
      return !prev || prev.withGroup !== s.withGroup || prev.force !== s.force;
    });
    if (changed.length === 0) return { rejected: [] };
    const hypothetical: State = structuredClone(this.state);
    for (const c of changed) hypothetical.claims[c.address] = { ...c, createdAt: now };
    const preview = plan(await this.observe(), hypothetical);
    const rejected: ClaimStatus[] = [];
    const accepted = changed.filter((c) => {
      const p = preview.claims.find((x) => x.address === c.address);
      if (!p || (p.state !== 'refused' && p.state !== 'missing')) return true;
      const st: ClaimStatus = {
        address: c.address,
        state: p.state,
        withGroup: c.withGroup,
        force: c.force,
        members: p.members,
        group: p.group,
        originalDrivers: {},
        lastChange: now,
      };
      if (p.code !== undefined) st.code = p.code;
      if (p.message !== undefined) st.message = p.message;
      rejected.push(st);
      this.bus.emit({
        type: 'claim.refused',
        at: now,
        address: c.address,
        code: p.code ?? 'PT_ERR_INTERNAL',
        message: p.message ?? '',
      });
      return false;
    });
    if (accepted.length > 0) {
      await this.persist((s) => {
        for (const c of accepted)
          s.claims[c.address] = { ...c, createdAt: s.claims[c.address]?.createdAt ?? now };
      });
    }
    for (const c of accepted) {
      this.failures.delete(c.address);
      this.bus.emit({
        type: 'claim.added',
        at: now,
        address: c.address,
        withGroup: c.withGroup,
        force: c.force,
      });
    }
    return { rejected };
  }

  async removeClaims(addrs: PciAddress[]): Promise<PciAddress[]> {
    const present = addrs.filter((a) => this.state.claims[a] !== undefined);
    if (present.length === 0) return [];
    await this.persist((s) => {
      for (const a of present) Reflect.deleteProperty(s.claims, a);
    });
    const now = this.clock.now();
    for (const a of present) {
      this.statuses.delete(a);
      this.failures.delete(a);
      this.bus.emit({ type: 'claim.removed', at: now, address: a });
    }
    return present;
  }

  /** Ask for a pass soon (a claim change, a keeper event, a uevent). Coalesces. */
  trigger(): void {
    this.dirty = true;
    this.waker.wake();
  }

  /** Run a pass now; if one is running, run one more right after it (callers share it). */
  reconcile(): Promise<PassResult> {
    if (!this.running) return this.startPass();
    this.queued ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = null;
        return this.startPass();
      });
    return this.queued;
  }

  private startPass(): Promise<PassResult> {
    this.dirty = false;
    const p: Promise<PassResult> = this.pass().finally(() => {
      if (this.running === p) this.running = null;
    });
    this.running = p;
    return p;
  }

  /** The loop: passes on trigger, on retry deadlines and every resyncMs. */
  async run(signal: AbortSignal): Promise<void> {
    let nextResync = this.clock.now() + this.opts.resyncMs;
    while (!signal.aborted) {
      const now = this.clock.now();
      const due =
        this.dirty ||
        now >= nextResync ||
        [...this.failures.values()].some((f) => f.retryAt <= now);
      if (due) {
        if (now >= nextResync) nextResync = now + this.opts.resyncMs;
        try {
          await this.reconcile();
        } catch (e) {
          this.log.error({ err: e }, 'reconcile pass failed');
          // A pass that cannot even observe the host must not turn into a hot loop.
          await this.clock.sleep(this.opts.retryBaseMs, signal).catch(() => undefined);
        }
        continue;
      }
      const nextRetry = Math.min(...[...this.failures.values()].map((f) => f.retryAt));
      const waitMs = Math.max(1, Math.min(nextResync, nextRetry) - now);
      await this.waker.sleep(this.clock, waitMs, signal);
    }
  }

  async observe(): Promise<Observed> {
    const [inv, uses] = await Promise.all([discover(this.host, this.names), this.host.hostUses()]);
    const vfioNodes = new Set<number>();
    await Promise.all(
      [...inv.groups.keys()].map(async (g) => {
        if (await this.host.vfioGroupNodeExists(g)) vfioNodes.add(g);
      }),
    );
    return { inv, uses, vfioNodes };
  }

  private async pass(): Promise<PassResult> {
    const obs = await this.observe();
    const p = plan(obs, this.state);
    const results = await this.apply(p.actions);
    // Observe again: the statuses report the host as it is, not as we hoped to leave it.
    const after = results.length > 0 ? plan(await this.observe(), this.state) : p;
    const claims = this.updateStatuses(after.claims, results);
    // A retry that came due was made in this pass (or was not needed): forget it, so the loop
    // sleeps until the next trigger instead of spinning.
    const now = this.clock.now();
    for (const [a, f] of this.failures) if (f.retryAt <= now) this.failures.delete(a);
    const res: PassResult = { at: this.clock.now(), claims, results };
    this.lastPass = res;
    return res;
  }

  private async apply(actions: Action[]): Promise<ActionResult[]> {
    const now = this.clock.now();
    const byGroup = new Map<string, Action[]>();
    for (const a of actions) {
      if (a.kind === 'bind') {
        const f = this.failures.get(a.claim);
        if (f && f.retryAt > now) continue;
      }
      const key =
        a.kind === 'forget'
          ? `addr:${a.address}`
          : a.group === null
            ? `addr:${a.address}`
            : `group:${a.group}`;
      const list = byGroup.get(key) ?? [];
      list.push(a);
      byGroup.set(key, list);
    }
    const deps = {
      host: this.host,
      clock: this.clock,
      options: this.opts,
      ensureVfio: this.ensureVfioFn,
      recordLedger: (a: Extract<Action, { kind: 'bind' }>) => this.recordLedger(a),
    };
    const groupResults = await Promise.all(
      [...byGroup.values()].map(async (list) => {
        const out: ActionResult[] = [];
        for (const a of list) {
          const r = await execute(deps, a);
          out.push(r);
          if (!r.ok && a.kind === 'bind') break; // the rest of the group waits for the retry
        }
        return out;
      }),
    );
    const results = groupResults.flat();
    await this.afterActions(results);
    return results;
  }

  private async recordLedger(a: Extract<Action, { kind: 'bind' }>): Promise<void> {
    const prev = this.state.ledger[a.address];
    // Never overwrite: after a crash mid-bind the device may be driverless, and the ledger
    // still knows what it was.
    if (prev) return;
    await this.persist((s) => {
      s.ledger[a.address] = {
        address: a.address,
        originalDriver: a.currentDriver,
        vendorId: a.vendorId,
        deviceId: a.deviceId,
        recordedAt: this.clock.now(),
        claim: a.claim,
      };
    });
  }

  private async afterActions(results: ActionResult[]): Promise<void> {
    const now = this.clock.now();
    const forget: PciAddress[] = [];
    for (const r of results) {
      const a = r.action;
      if (a.kind === 'bind') {
        if (r.ok) {
          this.failures.delete(a.claim);
          this.bus.emit({
            type: 'device.bound',
            at: now,
            address: a.address,
            from: a.currentDriver,
            ms: r.ms,
          });
        } else {
          const f = this.failures.get(a.claim) ?? { count: 0, retryAt: 0 };
          f.count++;
          f.retryAt =
            now + Math.min(this.opts.retryCapMs, this.opts.retryBaseMs * 2 ** (f.count - 1));
          this.failures.set(a.claim, f);
          // Re-arm the loop's timer for the retry deadline (no pass now).
          this.waker.wake();
          this.bus.emit({
            type: 'device.bind_failed',
            at: now,
            address: a.address,
            code: r.error.code,
            message: r.error.message,
            rolledBack: r.rolledBack,
          });
          this.log.warn(
            {
              address: a.address,
              code: r.error.code,
              err: r.error.message,
              rolledBack: r.rolledBack,
              retryInMs: f.retryAt - now,
            },
            'bind failed',
          );
        }
      } else if (a.kind === 'release') {
        if (r.ok) {
          forget.push(a.address);
          const ev: Parameters<EventBus['emit']>[0] = {
            type: 'device.released',
            at: now,
            address: a.address,
            driver: r.driver ?? null,
            expected: a.originalDriver,
          };
          if (r.note !== undefined) ev.note = r.note;
          this.bus.emit(ev);
        } else {
          this.bus.emit({
            type: 'device.release_failed',
            at: now,
            address: a.address,
            code: r.error.code,
            message: r.error.message,
          });
          this.log.warn(
            { address: a.address, code: r.error.code, err: r.error.message },
            'release failed',
          );
        }
      } else if (a.kind === 'forget') {
        forget.push(a.address);
      }
    }
    if (forget.length > 0) {
      await this.persist((s) => {
        for (const a of forget) Reflect.deleteProperty(s.ledger, a);
      });
    }
  }

  private updateStatuses(plans: ClaimPlan[], results: ActionResult[]): ClaimStatus[] {
    const now = this.clock.now();
    const errors = new Map<PciAddress, PtError>();
    for (const r of results) {
      if (!r.ok && r.action.kind === 'bind') errors.set(r.action.claim, r.error);
    }
    const out: ClaimStatus[] = [];
    for (const p of plans) {
      const spec = this.state.claims[p.address];
      if (!spec) continue;
      let state: ClaimStatusState = p.state;
      let code = p.code;
      let message = p.message;
      const err = errors.get(p.address);
      if (p.state === 'pending') {
        const wait = this.waitReason();
        if (err?.code === 'PT_ERR_MODULE_UNAVAILABLE' || (wait !== null && err === undefined)) {
          state = 'waiting';
          code = 'PT_ERR_MODULE_UNAVAILABLE';
          message = `waiting for vfio-pci: ${err?.message ?? wait ?? 'not loaded'}`;
        } else if (err) {
          state = 'error';
          code = err.code;
          message = err.message;
        } else if (this.failures.has(p.address)) {
          const prev = this.statuses.get(p.address);
          state = prev?.state === 'error' ? 'error' : 'pending';
          code = prev?.code;
          message = prev?.message;
        }
      }
      const prev = this.statuses.get(p.address);
      const originalDrivers: Record<string, string | null> = {};
      for (const m of p.members) {
        const l = this.state.ledger[m];
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
      if (state === 'refused' && prev?.state !== 'refused') {
        this.bus.emit({
          type: 'claim.refused',
          at: now,
          address: p.address,
          code: code ?? 'PT_ERR_INTERNAL',
          message: message ?? '',
        });
      }
      this.statuses.set(p.address, st);
      out.push(st);
    }
    return out;
  }

  /** Statuses as a pass would report them, without applying anything (read-only status). */
  async preview(): Promise<ClaimStatus[]> {
    const p = plan(await this.observe(), this.state);
    return this.updateStatuses(p.claims, []);
  }

  claimStatuses(): ClaimStatus[] {
    return [...this.statuses.values()].sort((a, b) => (a.address < b.address ? -1 : 1));
  }

  /** Devices verified on vfio-pci at the last pass: the keeper watches their driver links. */
  expectedOnVfio(): PciAddress[] {
    const out: PciAddress[] = [];
    for (const s of this.statuses.values()) {
      if (s.state === 'ready') out.push(...s.members);
    }
    return out;
  }

  lastPassResult(): PassResult | null {
    return this.lastPass;
  }
}
