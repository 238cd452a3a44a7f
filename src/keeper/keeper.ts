import { PtError } from '../errors.js';
import type { EventBus } from '../events/events.js';
import type { Clock } from '../host/clock.js';
import type { HostPort, ModuleStatus } from '../host/port.js';
import type { PciAddress } from '../pci/address.js';
import { VFIO_PCI } from '../pci/model.js';
import type { ModuleHealth } from '../engine/plan.js';
import { backoffDelay } from '../util/backoff.js';
import type { Logger } from '../util/logger.js';
import { Waker } from '../util/waker.js';
import { requiredVfioModules } from './modules.js';

export interface KeeperOptions {
  pollMs: number;
  backoffBaseMs: number;
  backoffCapMs: number;
}

export const defaultKeeperOptions: KeeperOptions = {
  pollMs: 250,
  backoffBaseMs: 200,
  backoffCapMs: 30_000,
};

export interface KeeperDeps {
  host: HostPort;
  clock: Clock;
  bus: EventBus;
  logger: Logger;
  /** Where the keeper publishes module health (the engine's observation). */
  publish: (h: ModuleHealth) => void;
  /** Jitter source in [0, 1); injected so tests are repeatable. */
  random?: () => number;
  options?: Partial<KeeperOptions>;
}

export interface ModuleState {
  name: string;
  state: ModuleStatus['state'] | 'missing';
}

export interface KeeperStatus {
  required: string[];
  modules: ModuleState[];
  healthy: boolean;
  /** Set while vfio-pci cannot be loaded: the reason, as modprobe gave it. */
  waiting: string | null;
  recovering: boolean;
  lastCheck: number | null;
  uevents: boolean;
}

/**
 * Keeps the vfio modules loaded. Polls /proc/modules + /sys/module and the driver links of the
 * devices it is told to watch (the ground truth: a device is driverless while /proc/modules
 * still says Unloading), looks at once when poked (uevents), reloads with capped exponential
 * backoff and jitter, and publishes module health; re-binding is the engine's business.
 */
export class ModuleKeeper {
  private readonly d: KeeperDeps;
  private readonly opts: KeeperOptions;
  private readonly log: Logger;
  private readonly random: () => number;
  private required: string[] = [];
  private health: ModuleState[] = [];
  private waitingReason: string | null = null;
  private recovery: Promise<void> | null = null;
  private lastCheck: number | null = null;
  private readonly waker = new Waker();
  /** Counts pokes, so the loop can tell one arrived while it was looking. */
  private pokes = 0;
  private lastLookedAt = 0;
  private ueventsActive = false;
  private watched: PciAddress[] = [];
  private signal: AbortSignal | undefined;

  constructor(deps: KeeperDeps) {
    this.d = deps;
    this.opts = { ...defaultKeeperOptions, ...deps.options };
    this.log = deps.logger.child({ component: 'keeper' });
    this.random = deps.random ?? Math.random;
  }

  async init(): Promise<void> {
    this.required = await requiredVfioModules(this.d.host);
    this.log.info({ modules: this.required }, 'vfio modules required on this kernel');
  }

  get requiredModules(): string[] {
    return [...this.required];
  }

  /** The devices that should stay on vfio-pci (the engine's ready claims). */
  watch(addresses: PciAddress[]): void {
    this.watched = [...addresses];
  }

  setUevents(active: boolean): void {
    this.ueventsActive = active;
  }

  private healthy(): boolean {
    return (
      this.health.length > 0 &&
      this.health.every((h) => h.state === 'live' || h.state === 'builtin')
    );
  }

  private publish(): void {
    this.d.publish({
      ready: this.healthy(),
      recovering: this.recovery !== null,
      reason: this.waitingReason,
    });
  }

  status(): KeeperStatus {
    return {
      required: [...this.required],
      modules: this.health.map((h) => ({ ...h })),
      healthy: this.healthy(),
      waiting: this.waitingReason,
      recovering: this.recovery !== null,
      lastCheck: this.lastCheck,
      uevents: this.ueventsActive,
    };
  }

  private async missingModules(): Promise<{ missing: string[]; states: Record<string, string> }> {
    const st = await this.d.host.moduleStatus(this.required);
    const missing: string[] = [];
    const states: Record<string, string> = {};
    this.health = this.required.map((name) => {
      const s = st.get(name) ?? null;
      // Anything but Live (Loading, Unloading) counts as lost: devices fall off before the
      // module leaves /proc/modules.
      const state = s === null ? 'missing' : s.state;
      states[name] = state;
      if (state !== 'live' && state !== 'builtin') missing.push(name);
      return { name, state };
    });
    return { missing, states };
  }

  /** Read the modules' state and publish it, without acting on it. */
  async refresh(): Promise<void> {
    this.lastCheck = this.d.clock.now();
    await this.missingModules();
    this.publish();
  }

  /**
   * Load whatever is missing, helpers first. One attempt; throws PT_ERR_MODULE_UNAVAILABLE
   * with modprobe's reason. The engine's ensure-modules action calls this when no recovery
   * owns the retries (a one-shot command).
   */
  async ensureLoaded(): Promise<void> {
    try {
      const { missing } = await this.missingModules();
      if (missing.length === 0) return;
      await this.loadMissing(missing);
      const after = await this.missingModules();
      if (after.missing.length > 0) {
        throw new PtError(
          'PT_ERR_MODULE_UNAVAILABLE',
          `still not loaded: ${after.missing.join(', ')}`,
        );
      }
    } finally {
      this.publish();
    }
  }

  private async loadMissing(missing: string[]): Promise<void> {
    // Top of the chain first: one `modprobe vfio_pci` brings its helpers along, and each
    // modprobe is a process spawn (50-170 ms in the QEMU guest). Skip what came with it.
    const order = [...this.required].reverse().filter((m) => missing.includes(m));
    for (const name of order) {
      const now = (await this.d.host.moduleStatus([name])).get(name);
      if (now?.state === 'live' || now?.state === 'builtin') continue;
      try {
        await this.d.host.loadModule(name);
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        this.waitingReason = msg;
        throw new PtError('PT_ERR_MODULE_UNAVAILABLE', msg, { cause: e });
      }
    }
    this.waitingReason = null;
  }

  /** One look: modules and watched devices. Starts a recovery when something is lost. */
  async check(via = 'poll'): Promise<void> {
    this.lastCheck = this.d.clock.now();
    const wasHealthy = this.healthy();
    const { missing, states } = await this.missingModules();
    if (missing.length > 0) {
      if (!this.recovery && this.signal) this.startRecovery(missing, states, via);
      else this.publish();
      return;
    }
    if (!wasHealthy && !this.recovery) this.publish();
    if (this.recovery) return;
    for (const a of this.watched) {
      const links = await this.d.host.readDeviceLinks(a);
      if (links.driver !== VFIO_PCI) {
        this.d.bus.emit({
          type: 'device.drift',
          at: this.d.clock.now(),
          address: a,
          driver: links.driver,
        });
      }
    }
  }

  private startRecovery(missing: string[], states: Record<string, string>, via: string): void {
    const detectedAt = this.d.clock.now();
    this.d.bus.emit({
      type: 'module.lost',
      at: detectedAt,
      modules: missing,
      states,
      via,
      devices: [...this.watched],
    });
    this.log.warn({ modules: missing, states, via }, 'vfio modules lost');
    this.recovery = this.recover(missing)
      .catch((e: unknown) => {
        // Aborted by a clean stop: not an error.
        if (this.signal?.aborted) return;
        this.log.error({ err: e }, 'recovery failed');
      })
      .finally(() => {
        this.recovery = null;
        this.publish();
      });
    this.publish();
  }

  private async recover(lost: string[]): Promise<void> {
    const { clock, bus } = this.d;
    let attempt = 0;
    for (;;) {
      if (this.signal?.aborted) return;
      attempt++;
      const { missing } = await this.missingModules();
      if (missing.length === 0) break;
      try {
        await this.loadMissing(missing);
        const again = await this.missingModules();
        if (again.missing.length === 0) break;
        throw new PtError(
          'PT_ERR_MODULE_UNAVAILABLE',
          `still not loaded: ${again.missing.join(', ')}`,
        );
      } catch (e) {
        if (!(e instanceof PtError)) throw e;
        const delay = this.backoff(attempt);
        this.waitingReason = e.message;
        bus.emit({
          type: 'module.reload_failed',
          at: clock.now(),
          module: missing.join(','),
          attempt,
          message: e.message,
          retryInMs: delay,
        });
        this.log.warn({ attempt, err: e.message, retryInMs: delay }, 'vfio module reload failed');
        this.publish();
        await clock.sleep(delay, this.signal);
      }
    }
    this.waitingReason = null;
    bus.emit({ type: 'module.reloaded', at: clock.now(), modules: lost, attempts: attempt });
  }

  /** Capped exponential backoff with jitter in [50%, 100%]: never a hot loop, never in lockstep. */
  backoff(attempt: number): number {
    return backoffDelay(
      { baseMs: this.opts.backoffBaseMs, capMs: this.opts.backoffCapMs },
      attempt,
      this.random,
    );
  }

  /** Look now (a uevent said something changed). */
  poke(): void {
    this.pokes++;
    this.waker.wake();
  }

  async run(signal: AbortSignal): Promise<void> {
    this.signal = signal;
    try {
      while (!signal.aborted) {
        const via = this.pokes !== this.lastLookedAt ? 'uevent' : 'poll';
        this.lastLookedAt = this.pokes;
        try {
          await this.check(via);
        } catch (e) {
          this.log.error({ err: e }, 'keeper check failed');
        }
        if (this.pokes !== this.lastLookedAt) continue;
        await this.waker.sleep(this.d.clock, this.opts.pollMs, signal);
      }
    } finally {
      await this.recovery;
    }
  }
}
