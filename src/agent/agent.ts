import { PtError } from '../errors.js';
import { EventBus, type DomainEvent } from '../events/events.js';
import type { Clock } from '../host/clock.js';
import type { HostPort } from '../host/port.js';
import { parsePciAddress, type PciAddress } from '../pci/address.js';
import type { PciIdNames } from '../pci/pciids.js';
import { Engine, type ClaimStatus, type EngineOptions } from '../engine/engine.js';
import { ModuleKeeper, type KeeperOptions, type KeeperStatus } from '../keeper/keeper.js';
import type { History } from '../state/history.js';
import type { StateStore } from '../state/model.js';
import type { Logger } from '../util/logger.js';

export interface AgentDeps {
  host: HostPort;
  store: StateStore;
  history: History;
  clock: Clock;
  logger: Logger;
  names?: PciIdNames;
  engine?: Partial<EngineOptions>;
  keeper?: Partial<KeeperOptions>;
  random?: () => number;
}

export interface ReleaseOutcome {
  address: PciAddress;
  driver: string | null;
  expected: string | null;
  note?: string;
  ok: boolean;
  code?: string;
  message?: string;
}

export interface AgentStatus {
  host: string;
  claims: ClaimStatus[];
  keeper: KeeperStatus;
  ledger: { address: string; originalDriver: string | null }[];
  recent: DomainEvent[];
}

/** Parses every address first: one bad address and nothing happens at all. */
export function parseAddresses(input: unknown): PciAddress[] {
  if (!Array.isArray(input) || input.length === 0) {
    throw new PtError('PT_ERR_INVALID_ARGUMENT', 'give at least one PCI address');
  }
  return [...new Set(input.map((a) => parsePciAddress(a)))];
}

/**
 * The standalone agent: engine + keeper on one host, desired state in the store, events into
 * the history and the log. The CLI uses the same object for one-shot commands without a
 * running agent.
 */
export class Agent {
  readonly bus = new EventBus();
  readonly engine: Engine;
  readonly keeper: ModuleKeeper;
  private readonly d: AgentDeps;
  private readonly log: Logger;

  constructor(deps: AgentDeps) {
    this.d = deps;
    this.log = deps.logger.child({ component: 'agent' });
    this.keeper = new ModuleKeeper({
      host: deps.host,
      clock: deps.clock,
      bus: this.bus,
      logger: deps.logger,
      expected: () => this.engine.expectedOnVfio(),
      reconcile: async () => {
        await this.engine.reconcile();
      },
      trigger: () => {
        this.engine.trigger();
      },
      ...(deps.random ? { random: deps.random } : {}),
      ...(deps.keeper ? { options: deps.keeper } : {}),
    });
    this.engine = new Engine({
      host: deps.host,
      store: deps.store,
      bus: this.bus,
      clock: deps.clock,
      logger: deps.logger,
      ...(deps.names ? { names: deps.names } : {}),
      ...(deps.engine ? { options: deps.engine } : {}),
      ensureVfio: () => this.keeper.ensureLoaded(),
      vfioWaitReason: () => this.keeper.waiting(),
    });
    this.bus.subscribe((e) => {
      void deps.history.append(e);
      this.log.info({ event: e }, e.type);
    });
  }

  /**
   * Loads the store (a corrupt store throws and changes nothing), then re-applies every claim
   * before anything else: a crash or a reboot heals here.
   */
  async start(): Promise<void> {
    await this.engine.start();
    await this.keeper.init();
    try {
      await this.keeper.ensureLoaded();
    } catch (e) {
      // Not fatal: claims report "waiting for vfio-pci" and the keeper keeps retrying.
      this.log.warn(
        { err: e instanceof Error ? e.message : String(e) },
        'vfio modules not loadable at start',
      );
    }
    await this.engine.reconcile();
    await this.keeper.check('start');
  }

  /** Engine and keeper loops until the signal aborts. */
  async run(signal: AbortSignal): Promise<void> {
    await Promise.all([this.engine.run(signal), this.keeper.run(signal)]);
  }

  async claim(
    addresses: PciAddress[],
    opts: { withGroup: boolean; force: boolean },
  ): Promise<ClaimStatus[]> {
    const { rejected } = await this.engine.addClaims(
      addresses.map((address) => ({ address, withGroup: opts.withGroup, force: opts.force })),
    );
    const pass = await this.engine.reconcile();
    return [...pass.claims.filter((c) => addresses.includes(c.address)), ...rejected].sort(
      (a, b) => (a.address < b.address ? -1 : 1),
    );
  }

  async release(addresses: PciAddress[]): Promise<ReleaseOutcome[]> {
    const unknown = addresses.filter((a) => this.engine.state.claims[a] === undefined);
    if (unknown.length > 0) {
      throw new PtError('PT_ERR_NOT_CLAIMED', `not claimed: ${unknown.join(', ')}`, {
        details: { addresses: unknown },
      });
    }
    const members = new Set<PciAddress>(addresses);
    for (const s of this.engine.claimStatuses())
      if (addresses.includes(s.address)) for (const m of s.members) members.add(m);
    for (const l of Object.values(this.engine.state.ledger))
      if (l.claim !== undefined && addresses.includes(l.claim)) members.add(l.address);
    await this.engine.removeClaims(addresses);
    const pass = await this.engine.reconcile();
    const out: ReleaseOutcome[] = [];
    for (const r of pass.results) {
      if (r.action.kind !== 'release' || !members.has(r.action.address)) continue;
      const o: ReleaseOutcome = {
        address: r.action.address,
        driver: r.ok ? (r.driver ?? null) : null,
        expected: r.action.originalDriver,
        ok: r.ok,
      };
      if (r.ok && r.note !== undefined) o.note = r.note;
      if (!r.ok) {
        o.code = r.error.code;
        o.message = r.error.message;
      }
      out.push(o);
    }
    return out;
  }

  /** Status without a running agent: reads the store and the host, changes nothing. */
  async inspect(recent = 20): Promise<AgentStatus> {
    await this.engine.start();
    await this.keeper.init();
    await this.keeper.refresh();
    await this.engine.preview();
    return this.status(recent);
  }

  async status(recent = 20): Promise<AgentStatus> {
    return {
      host: this.d.host.description,
      claims: this.engine.claimStatuses(),
      keeper: this.keeper.status(),
      ledger: Object.values(this.engine.state.ledger).map((l) => ({
        address: l.address,
        originalDriver: l.originalDriver,
      })),
      recent: await this.d.history.recent(recent),
    };
  }
}
