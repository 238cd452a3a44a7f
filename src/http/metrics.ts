import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Agent } from '../agent/agent.js';
import type { DevicePluginCounters } from '../deviceplugin/counters.js';
import { COUNTER_NAMES } from '../deviceplugin/counters.js';
import type { DomainEvent } from '../events/events.js';

/** Every state a claim can report (ClaimStatus.state), pre-created so a scrape shows zeros. */
export const CLAIM_STATES = [
  'ready',
  'pending',
  'waiting',
  'busy',
  'error',
  'refused',
  'missing',
  'changed',
] as const;

/** Every state the keeper reports for a module (KeeperStatus.modules[].state). */
export const MODULE_STATES = ['live', 'builtin', 'loading', 'unloading', 'missing'] as const;

/** How a loss was noticed, and `start` for a restart that repaired claimed devices. */
export const RECOVERY_VIA = ['uevent', 'poll', 'start'] as const;

/**
 * Loss to devices back, in seconds. Under QEMU the real kernel takes 0.5 to 1.5 s
 * (real-kernel-lab.md); a reload that keeps failing lands in the upper buckets.
 */
const RECOVERY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30, 60, 300];
const BIND_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface AgentMetricsOptions {
  /** The process collectors (CPU, memory, event loop, GC): on in the agent, optional in tests. */
  processMetrics?: boolean;
  /** The device plugins' counters once they run (`agent --device-plugin`). */
  devicePlugins?: () => DevicePluginCounters | null;
  /** passthru's version for `passthru_build_info` (the process reads it from package.json). */
  version?: string;
}

/**
 * The agent's Prometheus metrics, in a registry of its own (never prom-client's global one, so
 * several agents in one process keep apart). Events feed the counters and histograms as the
 * core emits them (recoveries come from the RecoveryTracker's `recovery.completed`, not a
 * second computation); gauges are read from the agent at scrape time.
 */
export class AgentMetrics {
  readonly registry = new Registry();
  private readonly unsubscribe: () => void;
  private processMetricsPending: boolean;

  constructor(agent: Agent, opts: AgentMetricsOptions = {}) {
    const registers = [this.registry];
    new Gauge({
      name: 'passthru_build_info',
      help: 'Always 1; the version label says which passthru runs.',
      labelNames: ['version'],
      registers,
    }).set({ version: opts.version ?? 'unknown' }, 1);

    new Gauge({
      name: 'passthru_vfio_module_state',
      help: 'Per vfio module this kernel needs: 1 for its current state (live, builtin, loading, unloading, missing), 0 for the others.',
      labelNames: ['module', 'state'],
      registers,
      collect() {
        this.reset();
        for (const m of agent.keeper.status().modules)
          for (const s of MODULE_STATES)
            this.set({ module: m.name, state: s }, m.state === s ? 1 : 0);
      },
    });
    new Gauge({
      name: 'passthru_vfio_modules_healthy',
      help: '1 when every required vfio module is live or built in, else 0.',
      registers,
      collect() {
        this.set(agent.keeper.status().healthy ? 1 : 0);
      },
    });
    new Counter({
      name: 'passthru_vfio_module_losses_total',
      help: 'Times the vfio modules were found removed or unloading (module.lost events).',
      registers,
      // The RecoveryTracker's count, the one status shows: no second tally that misses the
      // losses seen before these metrics subscribed.
      collect() {
        this.reset();
        this.inc(agent.recoveries.losses());
      },
    });
    const recoveries = new Counter({
      name: 'passthru_recoveries_total',
      help: 'Recoveries completed: every device that was ready at the loss verified on vfio-pci again; via says how the loss was noticed (start: claimed devices repaired at agent start).',
      labelNames: ['via'],
      registers,
    });
    const recoverySeconds = new Histogram({
      name: 'passthru_recovery_duration_seconds',
      help: 'From a vfio module loss being noticed to every device of it verified on vfio-pci again (recoveries at agent start are not counted here).',
      buckets: RECOVERY_BUCKETS,
      registers,
    });
    new Gauge({
      name: 'passthru_recovery_in_progress',
      help: '1 while a loss is being recovered from, else 0.',
      registers,
      collect() {
        this.set(agent.recoveries.recovering() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'passthru_claims',
      help: 'Claims by state, at scrape time.',
      labelNames: ['state'],
      registers,
      collect() {
        const counts = new Map<string, number>(CLAIM_STATES.map((s) => [s, 0]));
        for (const c of agent.engine.claimStatuses())
          counts.set(c.state, (counts.get(c.state) ?? 0) + 1);
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'passthru_ledger_entries',
      help: 'Devices passthru changed and has not given back yet (the ledger).',
      registers,
      collect() {
        this.set(agent.engine.ledgerStatus().length);
      },
    });
    const binds = new Counter({
      name: 'passthru_device_binds_total',
      help: 'Binds of a device to vfio-pci by outcome: ok, failed (rolled back to its driver where possible).',
      labelNames: ['outcome'],
      registers,
    });
    const bindSeconds = new Histogram({
      name: 'passthru_device_bind_duration_seconds',
      help: 'Time a successful bind took, from the first sysfs write to vfio-pci verified.',
      buckets: BIND_BUCKETS,
      registers,
    });
    const releases = new Counter({
      name: 'passthru_device_releases_total',
      help: 'Releases of a device to its original driver by outcome: ok (back on its original driver), other_driver (released, but the original driver did not take it: driverless or elsewhere), failed (retried).',
      labelNames: ['outcome'],
      registers,
    });
    new Gauge({
      name: 'passthru_kernel_operations_in_flight',
      help: 'Kernel operations (sysfs writes) still pending on a device; nothing else is issued to such a device.',
      registers,
      collect() {
        this.set(agent.engine.inflight.busy().size);
      },
    });
    for (const via of RECOVERY_VIA) recoveries.inc({ via }, 0);
    for (const outcome of ['ok', 'failed']) binds.inc({ outcome }, 0);
    for (const outcome of ['ok', 'other_driver', 'failed']) releases.inc({ outcome }, 0);

    const plugins = opts.devicePlugins;
    if (plugins) {
      for (const name of COUNTER_NAMES) {
        new Counter({
          // Kept by the device plugins; read as they stand at scrape time.
          name: `passthru_deviceplugin_${name}_total`,
          help: `Device plugin ${name.replaceAll('_', ' ')}, per resource name.`,
          labelNames: ['resource'],
          registers,
          collect() {
            this.reset();
            const c = plugins();
            if (c === null) return;
            for (const [resource, values] of Object.entries(c.snapshot()))
              this.inc({ resource }, values[name]);
          },
        });
      }
    }

    this.processMetricsPending = opts.processMetrics !== false;

    const on = (e: DomainEvent): void => {
      switch (e.type) {
        case 'recovery.completed': {
          const r = e.recovery;
          recoveries.inc({ via: r.via });
          if (r.via !== 'start' && r.detectToReboundMs !== null)
            recoverySeconds.observe(r.detectToReboundMs / 1000);
          break;
        }
        case 'device.bound':
          binds.inc({ outcome: 'ok' });
          bindSeconds.observe(e.ms / 1000);
          break;
        case 'device.bind_failed':
          binds.inc({ outcome: 'failed' });
          break;
        case 'device.released':
          releases.inc({ outcome: e.driver === e.expected ? 'ok' : 'other_driver' });
          break;
        case 'device.release_failed':
          releases.inc({ outcome: 'failed' });
          break;
        default:
          break;
      }
    };
    this.unsubscribe = agent.bus.subscribe(on);
  }

  /**
   * The process collectors start at the first scrape: their event-loop monitor wakes the
   * process every 10 ms, ~0.2% of a core, which an agent nobody scrapes need not pay (issue 11:
   * CPU at rest). Event-loop lag and GC figures therefore cover the time since the first scrape;
   * the CPU counters are the process's totals.
   */
  private startProcessMetrics(): void {
    if (!this.processMetricsPending) return;
    this.processMetricsPending = false;
    const before = process.cpuUsage();
    collectDefaultMetrics({ register: this.registry });
    // prom-client counts CPU from when its collector is made: add what the process used before,
    // so the counters are the process's totals as if they had been made at start.
    const add = (name: string, micros: number): void => {
      const c = this.registry.getSingleMetric(name);
      if (c instanceof Counter) c.inc(micros / 1e6);
    };
    add('process_cpu_user_seconds_total', before.user);
    add('process_cpu_system_seconds_total', before.system);
    add('process_cpu_seconds_total', before.user + before.system);
    // Gauges named like counters: `promtool check metrics` refuses them (prom-client#568).
    for (const n of ['nodejs_active_handles', 'nodejs_active_requests', 'nodejs_active_resources'])
      this.registry.removeSingleMetric(`${n}_total`);
  }

  /** The exposition text (Prometheus text format 0.0.4). */
  text(): Promise<string> {
    this.startProcessMetrics();
    return this.registry.metrics();
  }

  /** `GET /metrics` on the app (a read: open on loopback, behind the token elsewhere). */
  register(app: FastifyInstance): void {
    app.get('/metrics', async (_req, reply) => {
      const body = await this.text();
      return reply.type(this.registry.contentType).send(body);
    });
  }

  /** Stops listening to the agent's events (the registry keeps what it has). */
  close(): void {
    this.unsubscribe();
  }
}
