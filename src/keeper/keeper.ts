import { PtError } from '../errors.js';
import type { EventBus, Recovery } from '../events/events.js';
import type { Clock } from '../host/clock.js';
import type { HostPort, ModuleStatus } from '../host/port.js';
import type { PciAddress } from '../pci/address.js';
import { VFIO_PCI } from '../pci/model.js';
import type { Logger } from '../util/logger.js';
import { Waker } from '../util/waker.js';
import { requiredVfioModules } from './modules.js';

export interface KeeperOptions {
  pollMs: number;
  backoffBaseMs: number;
  backoffCapMs: number;
  /** How many recoveries status keeps. */
  keepRecoveries: number;
}

export const defaultKeeperOptions: KeeperOptions = {
  pollMs: 250,
  backoffBaseMs: 200,
  backoffCapMs: 30_000,
  keepRecoveries: 20,
};

export interface KeeperDeps {
  host: HostPort;
  clock: Clock;
  bus: EventBus;
  logger: Logger;
  /** Devices that should be on vfio-pci now (the engine's verified claims). */
  expected: () => PciAddress[];
  /** Wake the engine and wait for its pass: re-binds what fell off. */
  reconcile: () => Promise<void>;
  /** Ask for a pass without waiting (drift of one device). */
  trigger: () => void;
  /** Jitter source in [0, 1); injected so tests are repeatable. */
  random?: () => number;
  options?: Partial<KeeperOptions>;
}

export interface ModuleHealth {
  name: string;
  state: ModuleStatus['state'] | 'missing';
}

export interface KeeperStatus {
  required: string[];
  modules: ModuleHealth[];
  healthy: boolean;
  /** Set while vfio-pci cannot be loaded: the reason, as modprobe gave it. */
  waiting: string | null;
  recovering: boolean;
  lastCheck: number | null;
  recoveries: Recovery[];
  losses: number;
  uevents: boolean;
}

/**
 * Keeps the vfio modules loaded. Polls /proc/modules + /sys/module and the driver links of
 * claimed devices (the ground truth: a device is driverless while /proc/modules still says
 * Unloading), wakes early on module uevents, reloads with capped exponential backoff and
 * jitter, then has the engine re-bind and records how long each step took.
 */
export class ModuleKeeper {
  private readonly d: KeeperDeps;
  private readonly opts: KeeperOptions;
  private readonly log: Logger;
  private readonly random: () => number;
  private required: string[] = [];
  private health: ModuleHealth[] = [];
  private waitingReason: string | null = null;
  private recovery: Promise<void> | null = null;
  private recoveries: Recovery[] = [];
  private losses = 0;
  private lastCheck: number | null = null;
  private readonly waker = new Waker();
  private poked = false;
  private ueventsActive = false;
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

  waiting(): string | null {
    return this.waitingReason;
  }

  status(): KeeperStatus {
    return {
      required: [...this.required],
      modules: this.health.map((h) => ({ ...h })),
      healthy:
        this.health.length > 0 &&
        this.health.every((h) => h.state === 'live' || h.state === 'builtin'),
      waiting: this.waitingReason,
      recovering: this.recovery !== null,
      lastCheck: this.lastCheck,
      recoveries: [...this.recoveries],
      losses: this.losses,
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

  /** Read the modules' state without acting on it (read-only status). */
  async refresh(): Promise<void> {
    this.lastCheck = this.d.clock.now();
    await this.missingModules();
  }

  /**
   * Load whatever is missing, helpers first. One attempt; throws PT_ERR_MODULE_UNAVAILABLE
   * with modprobe's reason. The engine calls this before binding.
   */
  async ensureLoaded(): Promise<void> {
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

  /** One look: modules and claimed devices. Starts a recovery when something is lost. */
  async check(via = 'poll'): Promise<void> {
    this.lastCheck = this.d.clock.now();
    const { missing, states } = await this.missingModules();
    if (missing.length > 0) {
      if (!this.recovery) this.startRecovery(missing, states, via);
      return;
    }
    if (this.recovery) return;
    const expected = this.d.expected();
    if (expected.length === 0) return;
    const fell: PciAddress[] = [];
    for (const a of expected) {
      const links = await this.d.host.readDeviceLinks(a);
      if (links.driver !== VFIO_PCI) {
        fell.push(a);
        this.d.bus.emit({
          type: 'device.drift',
          at: this.d.clock.now(),
          address: a,
          driver: links.driver,
        });
      }
    }
    if (fell.length > 0) {
      this.log.warn({ devices: fell }, 'claimed devices fell off vfio-pci');
      this.d.trigger();
    }
  }

  private startRecovery(missing: string[], states: Record<string, string>, via: string): void {
    const detectedAt = this.d.clock.now();
    this.losses++;
    const devices = this.d.expected();
    this.d.bus.emit({ type: 'module.lost', at: detectedAt, modules: missing, states, via });
    this.log.warn({ modules: missing, states, via }, 'vfio modules lost');
    const rec: Recovery = {
      detectedAt,
      modules: missing,
      via,
      reloadedAt: null,
      reboundAt: null,
      devices: devices.length,
      attempts: 0,
      detectToReloadMs: null,
      detectToReboundMs: null,
    };
    this.recovery = this.recover(rec, devices)
      .catch((e: unknown) => {
        this.log.error({ err: e }, 'recovery aborted');
      })
      .finally(() => {
        this.recovery = null;
      });
  }

  private async recover(rec: Recovery, devices: PciAddress[]): Promise<void> {
    const { clock, bus } = this.d;
    for (let attempt = 1; ; attempt++) {
      if (this.signal?.aborted) return;
      rec.attempts = attempt;
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
        const delay = this.backoff(attempt);
        const message = e instanceof Error ? e.message : String(e);
        this.waitingReason = message;
        bus.emit({
          type: 'module.reload_failed',
          at: clock.now(),
          module: missing.join(','),
          attempt,
          message,
          retryInMs: delay,
        });
        this.log.warn({ attempt, err: message, retryInMs: delay }, 'vfio module reload failed');
        // The engine should say "waiting for vfio-pci" while we back off.
        this.d.trigger();
        await clock.sleep(delay, this.signal);
      }
    }
    this.waitingReason = null;
    rec.reloadedAt = clock.now();
    rec.detectToReloadMs = rec.reloadedAt - rec.detectedAt;
    bus.emit({
      type: 'module.reloaded',
      at: rec.reloadedAt,
      modules: rec.modules,
      attempts: rec.attempts,
    });
    // The reload itself re-binds devices whose driver_override still names vfio-pci; the
    // engine verifies each and re-binds any that did not come back.
    for (let i = 0; i < 5; i++) {
      await this.d.reconcile();
      let all = true;
      for (const a of devices) {
        if ((await this.d.host.readDeviceLinks(a)).driver !== VFIO_PCI) all = false;
      }
      if (all) {
        rec.reboundAt = clock.now();
        rec.detectToReboundMs = rec.reboundAt - rec.detectedAt;
        break;
      }
      await clock.sleep(this.backoff(i + 1), this.signal);
    }
    this.recoveries.push(rec);
    if (this.recoveries.length > this.opts.keepRecoveries) this.recoveries.shift();
    bus.emit({ type: 'recovery.completed', at: clock.now(), recovery: rec });
    this.log.info({ ...rec }, 'vfio recovery completed');
  }

  /** Capped exponential backoff with jitter in [50%, 100%]: never a hot loop, never in lockstep. */
  backoff(attempt: number): number {
    const raw = Math.min(
      this.opts.backoffCapMs,
      this.opts.backoffBaseMs * 2 ** Math.max(0, attempt - 1),
    );
    return Math.round(raw * (0.5 + 0.5 * this.random()));
  }

  private pokedSinceCheck(): boolean {
    return this.poked;
  }

  /** Look now (a uevent said something changed). */
  poke(): void {
    this.poked = true;
    this.waker.wake();
  }

  async run(signal: AbortSignal): Promise<void> {
    this.signal = signal;
    const stopUevents = this.d.host.watchUevents(
      (e) => {
        // Module add/remove of the vfio set, or any driver unbinding: look now, not at the next poll.
        const mod = e.subsystem === 'module' && /^\/module\/(vfio|irqbypass)/.test(e.devpath);
        if (mod || e.action === 'unbind') this.poke();
      },
      (err) => {
        this.ueventsActive = false;
        this.log.warn({ err: err.message }, 'uevent source failed; polling only');
      },
    );
    this.ueventsActive = stopUevents !== null;
    try {
      while (!signal.aborted) {
        const via = this.poked ? 'uevent' : 'poll';
        this.poked = false;
        try {
          await this.check(via);
        } catch (e) {
          this.log.error({ err: e }, 'keeper check failed');
        }
        if (this.pokedSinceCheck()) continue;
        await this.waker.sleep(this.d.clock, this.opts.pollMs, signal);
      }
    } finally {
      stopUevents?.();
      await this.recovery;
    }
  }
}
