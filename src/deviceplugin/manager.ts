import type { Clock } from '../host/clock.js';
import type { Logger } from '../util/logger.js';
import { DevicePluginCounters } from './counters.js';
import type { PluginDirPort } from '../process/plugin-dir.js';
import { listPodDevices, type PodDeviceUse } from './pod-resources.js';
import { ResourcePlugin, type PluginHost, type SentList } from './plugin.js';
import { isExtendedResourceName } from './resource-name.js';
import type { DeviceSource, PluginDevice } from './source.js';

export interface DevicePluginOptions {
  /** How often the folder is checked even without a watch event (socket there, kubelet.sock same). */
  pollMs: number;
  /** How often devices are re-read even without a change signal. */
  resyncMs: number;
  /** Deadline of a Register call (the kubelet dials back inside it). */
  registerTimeoutMs: number;
  /** Ask the kubelet for PreStartContainer before each container start. */
  preStartRequired: boolean;
}

export const defaultDevicePluginOptions: DevicePluginOptions = {
  pollMs: 500,
  resyncMs: 1_000,
  registerTimeoutMs: 5_000,
  preStartRequired: true,
};

export interface DevicePluginDeps {
  source: DeviceSource;
  /** Host checks for Allocate and PreStartContainer (driver link, /dev/vfio/<group>). */
  host: PluginHost;
  dir: PluginDirPort;
  clock: Clock;
  logger: Logger;
  counters?: DevicePluginCounters;
  options?: Partial<DevicePluginOptions>;
  /** The kubelet's pod-resources socket, for podDevices(); none when absent. */
  podResourcesSocket?: string;
}

export interface ResourceView {
  resourceName: string;
  endpoint: string;
  registered: boolean;
  devices: PluginDevice[];
}

export interface DevicePlugins {
  /** Stops every plugin (each sends an empty list first) and the loops. */
  stop(): Promise<void>;
  readonly counters: DevicePluginCounters;
  resources(): ResourceView[];
  /** What a resource's plugin last sent on ListAndWatch. */
  lastSent(resourceName: string): SentList | null;
  /** Resolves once no device refresh and no kubelet check is running (for tests and benches). */
  settled(): Promise<void>;
  /** Look again now (devices and the kubelet), as a change signal or a watch event would. */
  poke(): void;
  /** Which pod holds which of our devices, from the kubelet's pod-resources API. */
  podDevices(): Promise<PodDeviceUse[]>;
}

/** A serialized job: requests while it runs coalesce into one more run. */
class Serial {
  private running: Promise<void> | null = null;
  private again = false;

  constructor(
    private readonly job: () => Promise<void>,
    private readonly onError: (e: unknown) => void,
  ) {}

  request(): void {
    this.again = true;
    if (this.running) return;
    this.running = (async () => {
      while (this.again) {
        this.again = false;
        try {
          await this.job();
        } catch (e) {
          // Nobody awaits this loop: an escaped error would be an unhandled rejection.
          this.onError(e);
        }
      }
    })().finally(() => {
      this.running = null;
    });
  }

  async idle(): Promise<void> {
    while (this.running) await this.running;
  }
}

/**
 * One device plugin per resource name with claimed devices. Devices come from the source on
 * every change signal and on a resync; the kubelet is watched through the plugin folder (a
 * restart deletes our socket and re-creates kubelet.sock) and polled, because either can be
 * missed; a plugin re-serves and re-registers when its socket is gone or kubelet.sock changed.
 */
export async function startDevicePlugins(deps: DevicePluginDeps): Promise<DevicePlugins> {
  const opts = { ...defaultDevicePluginOptions, ...deps.options };
  const log = deps.logger.child({ component: 'deviceplugins' });
  const counters = deps.counters ?? new DevicePluginCounters();
  const plugins = new Map<string, ResourcePlugin>();
  const invalid = new Set<string>();
  const ac = new AbortController();
  let kubeletId: string | null = null;
  let stopping = false;
  // A function, so the check is re-read after each await.
  const halted = (): boolean => stopping;

  const logFailure =
    (msg: string) =>
    (e: unknown): void => {
      log.error({ err: e instanceof Error ? e.message : String(e) }, msg);
    };

  const refresh = new Serial(async () => {
    if (stopping) return;
    let devices: PluginDevice[];
    try {
      devices = await deps.source.snapshot();
    } catch (e) {
      log.warn({ err: e instanceof Error ? e.message : String(e) }, 'device snapshot failed');
      return;
    }
    const byResource = new Map<string, PluginDevice[]>();
    for (const d of devices) {
      if (!isExtendedResourceName(d.resourceName)) {
        if (!invalid.has(d.resourceName)) {
          invalid.add(d.resourceName);
          log.error(
            { resource: d.resourceName, address: d.address },
            'not a valid extended resource name; the kubelet would refuse it',
          );
        }
        continue;
      }
      const list = byResource.get(d.resourceName) ?? [];
      list.push(d);
      byResource.set(d.resourceName, list);
    }
    let added = false;
    for (const [name, list] of byResource) {
      let p = plugins.get(name);
      if (!p) {
        p = new ResourcePlugin({
          resourceName: name,
          dir: deps.dir,
          host: deps.host,
          clock: deps.clock,
          logger: deps.logger,
          counters,
          preStartRequired: opts.preStartRequired,
          registerTimeoutMs: opts.registerTimeoutMs,
        });
        p.update(list);
        try {
          // Serve before registering: the kubelet dials back inside Register.
          await p.serve();
        } catch (e) {
          log.error(
            { resource: name, err: e instanceof Error ? e.message : String(e) },
            'cannot serve device plugin',
          );
          continue;
        }
        plugins.set(name, p);
        added = true;
      } else {
        p.update(list);
      }
    }
    for (const [name, p] of plugins) {
      if (byResource.has(name)) continue;
      plugins.delete(name);
      log.info({ resource: name }, 'no claimed devices left: stopping its plugin');
      await p.stop();
    }
    if (added) check.request();
  }, logFailure('device refresh failed'));

  const check = new Serial(async () => {
    if (stopping) return;
    const id = deps.dir.kubeletIdentity();
    if (id === null) {
      // The kubelet is down or restarting: wait for kubelet.sock to come back.
      kubeletId = null;
      return;
    }
    if (kubeletId !== null && id !== kubeletId) log.info('kubelet.sock re-created');
    kubeletId = id;
    for (const p of [...plugins.values()]) {
      if (halted() || p.isStopped()) continue;
      try {
        const before = p.registeredWith;
        if (!deps.dir.socketExists(p.endpoint)) {
          log.info({ resource: p.resourceName }, 'plugin socket removed: serving again');
          await p.serve();
          p.registeredWith = null;
        }
        if (p.registeredWith === id) continue;
        if (before !== null) counters.inc(p.resourceName, 'kubelet_restarts');
        await p.register(id);
      } catch (e) {
        // The next poll tries again.
        log.warn(
          { resource: p.resourceName, err: e instanceof Error ? e.message : String(e) },
          'device plugin registration failed',
        );
      }
    }
  }, logFailure('kubelet check failed'));

  const unsubscribe = deps.source.subscribe(() => {
    refresh.request();
  });
  const unwatch = deps.dir.watch(() => {
    check.request();
  });

  const loop = async (ms: number, fn: () => void): Promise<void> => {
    for (;;) {
      try {
        await deps.clock.sleep(ms, ac.signal);
      } catch {
        return; // aborted
      }
      fn();
    }
  };

  refresh.request();
  await refresh.idle();
  await check.idle();
  const loops = Promise.all([
    loop(opts.resyncMs, () => {
      refresh.request();
    }),
    loop(opts.pollMs, () => {
      check.request();
    }),
  ]);

  return {
    counters,
    resources: () =>
      [...plugins.values()].map((p) => ({
        resourceName: p.resourceName,
        endpoint: p.endpoint,
        registered: p.registeredWith !== null && p.registeredWith === kubeletId,
        devices: p.currentDevices(),
      })),
    lastSent: (name) => plugins.get(name)?.lastSent() ?? null,
    settled: async () => {
      // A refresh can start a check and a check can follow a refresh: wait until both rest.
      for (let i = 0; i < 3; i++) {
        await refresh.idle();
        await check.idle();
      }
    },
    podDevices: async () => {
      if (deps.podResourcesSocket === undefined) return [];
      return listPodDevices(deps.podResourcesSocket, new Set(plugins.keys()));
    },
    poke: () => {
      refresh.request();
      check.request();
    },
    stop: async () => {
      stopping = true;
      ac.abort();
      unsubscribe();
      unwatch?.();
      await loops;
      await refresh.idle();
      await check.idle();
      for (const p of plugins.values()) await p.stop();
      plugins.clear();
    },
  };
}
