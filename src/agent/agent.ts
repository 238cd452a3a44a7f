import { PtError } from '../errors.js';
import {
  EventBus,
  logSubscriberErrors,
  type DomainEvent,
  type Recovery,
} from '../events/events.js';
import { RecoveryTracker } from '../events/recoveries.js';
import type { Clock } from '../host/clock.js';
import { holderText, type DeviceHolder, type HostPort, type Uevent } from '../host/port.js';
import {
  compareAddresses,
  isPciAddress,
  parsePciAddress,
  type PciAddress,
} from '../pci/address.js';
import { VFIO_PCI } from '../pci/model.js';
import type { PciIdNames } from '../pci/pciids.js';
import {
  Engine,
  type ClaimStatus,
  type EngineOptions,
  type LedgerStatus,
} from '../engine/engine.js';
import { ModuleKeeper, type KeeperOptions, type KeeperStatus } from '../keeper/keeper.js';
import type { History } from '../state/history.js';
import type { StateStore } from '../state/model.js';
import { stateFileStores, type ClaimStore, type LedgerStore } from '../state/stores.js';
import type { Logger } from '../util/logger.js';

export interface AgentDeps {
  host: HostPort;
  /** The standalone layout: claims and ledger in one state file. */
  store?: StateStore;
  /** Or the two stores apart (Kubernetes mode keeps the ledger on the node). */
  claims?: ClaimStore;
  ledger?: LedgerStore;
  history: History;
  clock: Clock;
  logger: Logger;
  names?: PciIdNames;
  engine?: Partial<EngineOptions>;
  keeper?: Partial<KeeperOptions>;
  random?: () => number;
  /** See EngineDeps.afterFullObservation. */
  afterFullObservation?: () => void;
}

export type ReleaseState = 'released' | 'pending' | 'in-use' | 'failed' | 'abandoned';

export interface ReleaseOutcome {
  address: PciAddress;
  state: ReleaseState;
  /** The driver the device is on now (as far as passthru saw it). */
  driver: string | null;
  /** The original driver from the ledger. */
  expected: string | null;
  ok: boolean;
  code?: string;
  message?: string;
  holders?: DeviceHolder[];
}

export interface AgentStatus {
  host: string;
  /** `starting` until the first reconcile of every claim has finished. */
  phase: 'starting' | 'running' | 'stopping';
  claims: ClaimStatus[];
  keeper: KeeperStatus & { recoveries: Recovery[]; losses: number };
  ledger: LedgerStatus[];
  /** Devices with a kernel operation still pending, and for how long. */
  busy: { address: PciAddress; op: string; forMs: number }[];
  recent: DomainEvent[];
}

export interface ClaimOptions {
  withGroup: boolean;
  force: boolean;
  /** Take the card that now sits at a claimed address (after a swap). */
  acceptChange?: boolean;
  source?: string;
}

export interface ReleaseOptions {
  /** Keep the release pending while a VM holds the device, instead of refusing. */
  wait?: boolean;
  /** Give up restoring: drop the ledger entries, write nothing. */
  abandon?: boolean;
}

/** Parses every address first: one bad address and nothing happens at all. */
export function parseAddresses(input: unknown): PciAddress[] {
  if (!Array.isArray(input) || input.length === 0) {
    throw new PtError('PT_ERR_INVALID_ARGUMENT', 'give at least one PCI address');
  }
  return [...new Set(input.map((a) => parsePciAddress(a)))];
}

/** The PCI address a uevent's devpath ends in, if it is a PCI function's. */
function pciAddressOf(e: Uevent): PciAddress | null {
  if (e.subsystem !== 'pci') return null;
  const last = e.devpath.split('/').pop() ?? '';
  return isPciAddress(last) ? last : null;
}

/**
 * The standalone agent: engine + keeper on one host, desired state in the store, events into
 * the history and the log. The CLI uses the same object for one-shot commands without a
 * running agent. This is the only place engine and keeper meet: the keeper publishes module
 * health into the engine's observation, the engine's ready devices become the keeper's watch
 * list, and drift and uevents become keys to look at.
 */
export class Agent {
  readonly bus: EventBus;
  readonly engine: Engine;
  readonly keeper: ModuleKeeper;
  readonly recoveries: RecoveryTracker;
  private readonly d: AgentDeps;
  private readonly log: Logger;
  private phase: AgentStatus['phase'] = 'starting';
  /** An inspected agent is a read-only look: what it sees is not history (see inspect). */
  private recording = true;

  constructor(deps: AgentDeps) {
    this.d = deps;
    this.log = deps.logger.child({ component: 'agent' });
    this.bus = new EventBus({ onError: logSubscriberErrors(this.log) });
    let claims = deps.claims;
    let ledger = deps.ledger;
    if (!claims || !ledger) {
      if (!deps.store) throw new PtError('PT_ERR_INTERNAL', 'agent needs a state store');
      const split = stateFileStores(deps.store);
      claims ??= split.claims;
      ledger ??= split.ledger;
    }
    this.keeper = new ModuleKeeper({
      host: deps.host,
      clock: deps.clock,
      bus: this.bus,
      logger: deps.logger,
      publish: (h) => {
        this.engine.setModuleHealth(h);
      },
      ...(deps.random ? { random: deps.random } : {}),
      ...(deps.keeper ? { options: deps.keeper } : {}),
    });
    this.engine = new Engine({
      host: deps.host,
      claims,
      ledger,
      bus: this.bus,
      clock: deps.clock,
      logger: deps.logger,
      modules: this.keeper,
      ...(deps.names ? { names: deps.names } : {}),
      ...(deps.engine ? { options: deps.engine } : {}),
      ...(deps.random ? { random: deps.random } : {}),
      ...(deps.afterFullObservation ? { afterFullObservation: deps.afterFullObservation } : {}),
    });
    this.recoveries = new RecoveryTracker(this.bus);
    this.bus.subscribe((e) => {
      if (this.recording) void deps.history.append(e);
      this.log.info({ event: e }, e.type);
      if (e.type === 'claim.state' || e.type === 'claim.removed') {
        this.keeper.watch(this.engine.readyDevices());
      } else if (e.type === 'device.drift') {
        this.engine.enqueueDevice(e.address);
      }
    });
  }

  /**
   * Loads the store (a corrupt store throws and changes nothing), reads module health, then
   * looks at every claim and ledger entry: a crash or a reboot heals here, recorded as a
   * recovery. `loadModules` is for the long-running agent; a one-shot command loads them only
   * for a bind that will happen.
   */
  async start(opts: { loadModules?: boolean } = {}): Promise<void> {
    await this.engine.start();
    await this.keeper.init();
    await this.keeper.refresh();
    if (opts.loadModules === true) {
      // A long-running agent keeps the modules loaded whether or not anything is claimed yet.
      try {
        await this.keeper.ensureLoaded();
      } catch (e) {
        // Not fatal: claims say "waiting for vfio-pci" and the keeper keeps retrying.
        this.log.warn(
          { err: e instanceof Error ? e.message : String(e) },
          'vfio modules not loadable at start',
        );
      }
    }
    const keys = this.allKeys();
    const before = await this.engine.preview();
    const off = before.filter((c) => c.state !== 'ready').flatMap((c) => c.members);
    this.recoveries.startRepair(this.d.clock.now(), off);
    await this.engine.reconcile(keys);
    this.phase = 'running';
  }

  /** The host this agent acts on and its clock: a dry run takes its copy from them. */
  get host(): HostPort {
    return this.d.host;
  }

  get clock(): Clock {
    return this.d.clock;
  }

  /** Where this agent's events go: `passthru why` reads them back. */
  get history(): History {
    return this.d.history;
  }

  private allKeys(): PciAddress[] {
    return [
      ...new Set([...Object.keys(this.engine.claims), ...Object.keys(this.engine.ledger)]),
    ] as PciAddress[];
  }

  /** Engine and keeper loops, and the uevent source, until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const stop = this.d.host.watchUevents(
      (e) => {
        this.onUevent(e);
      },
      (err) => {
        this.keeper.setUevents(false);
        if (!signal.aborted)
          this.log.warn({ err: err.message }, 'uevent source failed; polling only');
      },
    );
    this.keeper.setUevents(stop !== null);
    try {
      await Promise.all([this.engine.run(signal), this.keeper.run(signal)]);
    } finally {
      stop?.();
    }
  }

  /**
   * Module add/remove of the vfio set, or a driver unbinding: the keeper looks now. A claimed
   * or ledger device added, bound or removed (rescan, hot re-add, a host driver taking it) is
   * looked at now, not at the next resync.
   */
  private onUevent(e: Uevent): void {
    const mod = e.subsystem === 'module' && /^\/module\/(vfio|irqbypass)/.test(e.devpath);
    if (mod || e.action === 'unbind') this.keeper.poke();
    const addr = pciAddressOf(e);
    if (addr === null) return;
    if (e.action === 'add' || e.action === 'remove') {
      if (this.engine.isKnownDevice(addr)) this.engine.rediscover();
    } else if (e.action === 'bind' || e.action === 'unbind') {
      if (this.engine.isKnownDevice(addr)) this.engine.enqueueDevice(addr);
    }
  }

  async claim(addresses: PciAddress[], opts: ClaimOptions): Promise<ClaimStatus[]> {
    if (opts.acceptChange === true) {
      for (const a of addresses) await this.engine.acceptChange(a);
    }
    const { rejected } = await this.engine.addClaims(
      addresses.map((address) => ({
        address,
        withGroup: opts.withGroup,
        force: opts.force,
        ...(opts.source !== undefined ? { source: opts.source } : {}),
      })),
    );
    const rejectedSet = new Set(rejected.map((r) => r.address));
    const keys = addresses.filter((a) => !rejectedSet.has(a));
    await this.engine.reconcile(keys);
    const statuses = this.engine.claimStatuses().filter((c) => keys.includes(c.address));
    return [...statuses, ...rejected].sort((a, b) => compareAddresses(a.address, b.address));
  }

  /** The devices a release of these claims gives back: members and ledger companions. */
  private releaseMembers(addresses: PciAddress[]): PciAddress[] {
    const members = new Set<PciAddress>();
    for (const a of addresses) if (this.engine.ledger[a]) members.add(a);
    for (const s of this.engine.claimStatuses())
      if (addresses.includes(s.address))
        for (const m of s.members) if (this.engine.ledger[m]) members.add(m);
    for (const l of Object.values(this.engine.ledger))
      if (l.claim !== undefined && addresses.includes(l.claim)) members.add(l.address);
    return [...members].sort(compareAddresses);
  }

  async release(addresses: PciAddress[], opts: ReleaseOptions = {}): Promise<ReleaseOutcome[]> {
    const unknown = addresses.filter(
      (a) => this.engine.claims[a] === undefined && this.engine.ledger[a] === undefined,
    );
    if (unknown.length > 0) {
      throw new PtError('PT_ERR_NOT_CLAIMED', `not claimed: ${unknown.join(', ')}`, {
        details: { addresses: unknown },
      });
    }
    const members = this.releaseMembers(addresses);
    const expected = new Map(
      members.map((m) => [m, this.engine.ledger[m]?.originalDriver ?? null]),
    );
    if (opts.abandon === true) {
      await this.engine.removeClaims(addresses);
      const gone = await this.engine.abandon(members, 'release --abandon');
      return gone.map((m) => ({
        address: m,
        state: 'abandoned',
        driver: null,
        expected: expected.get(m) ?? null,
        ok: true,
        message: 'the ledger entry was dropped; the device was left as it is',
      }));
    }
    if (opts.wait !== true) {
      // A VM holds it: unbinding would hang in the kernel. Refuse and keep the claim.
      const held: { address: PciAddress; holders: DeviceHolder[] }[] = [];
      for (const m of members) {
        const links = await this.d.host.readDeviceLinks(m);
        if (links.driver !== VFIO_PCI) continue;
        const holders = await this.d.host.vfioHolders(m, links.iommuGroup);
        if (holders.length > 0) held.push({ address: m, holders });
      }
      if (held.length > 0) {
        const text = held
          .map((h) => `${h.address} by ${h.holders.map(holderText).join(', ')}`)
          .join('; ');
        throw new PtError(
          'PT_ERR_DEVICE_IN_USE',
          `in use: ${text}; the claim stays (release --wait releases it when the VM lets go)`,
          { details: { held } },
        );
      }
    }
    await this.engine.removeClaims(addresses);
    await this.engine.reconcile(members);
    return members.map((m) => this.releaseOutcome(m, expected.get(m) ?? null));
  }

  private releaseOutcome(m: PciAddress, expected: string | null): ReleaseOutcome {
    const entry = this.engine.ledger[m];
    const r = this.engine.lastResult(m);
    if (!entry) {
      const driver = r?.ok === true ? (r.driver ?? expected) : expected;
      return { address: m, state: 'released', driver, expected, ok: true };
    }
    const st = this.engine.ledgerStatus().find((l) => l.address === m);
    const err = this.engine.lastError(m);
    const out: ReleaseOutcome = {
      address: m,
      state: err?.code === 'PT_ERR_DEVICE_IN_USE' ? 'in-use' : err ? 'failed' : 'pending',
      driver: null,
      expected,
      ok: false,
    };
    if (err) {
      out.code = err.code;
      out.message = err.message;
      const holders = err.details.holders;
      if (Array.isArray(holders)) out.holders = holders as DeviceHolder[];
    } else if (st?.message !== undefined) out.message = st.message;
    return out;
  }

  /** Status without a running agent: reads the store and the host, changes nothing. */
  async inspect(recent = 20): Promise<AgentStatus> {
    this.recording = false;
    await this.engine.start();
    await this.keeper.init();
    await this.keeper.refresh();
    await this.engine.preview();
    this.phase = 'running';
    return this.status(recent);
  }

  async status(recent = 20): Promise<AgentStatus> {
    return {
      host: this.d.host.description,
      phase: this.phase,
      claims: this.engine.claimStatuses(),
      keeper: {
        ...this.keeper.status(),
        recovering: this.keeper.status().recovering || this.recoveries.recovering(),
        recoveries: this.recoveries.recoveries(),
        losses: this.recoveries.losses(),
      },
      ledger: this.engine.ledgerStatus(),
      busy: this.engine.busy(),
      recent: await this.d.history.recent(recent),
    };
  }
}
