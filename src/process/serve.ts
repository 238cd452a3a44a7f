import * as fs from 'node:fs/promises';
import { PtError } from '../errors.js';
import type { EngineOptions } from '../engine/engine.js';
import type { Clock } from '../host/clock.js';
import type { HostPort } from '../host/port.js';
import type { SimKernel } from '../host/sim/kernel.js';
import type { KeeperOptions } from '../keeper/keeper.js';
import type { PciIdNames, ReleasablePciIds } from '../pci/pciids.js';
import { FileHistory } from './file-history.js';
import { acquireStateLock } from './file-lock.js';
import { FileStore } from './file-store.js';
import type { Logger } from '../util/logger.js';
import { Agent } from '../agent/agent.js';
import { udevRulesSubscriber, type UdevRulesSync } from '../agent/udev-rules.js';
import type { PciAddress } from '../pci/address.js';
import { writeFileAtomic } from './file-atomic.js';
import { afterGarbageBurst, enableLeanHeap } from './lean-heap.js';
import { AgentLifecycle, type ApiContext, type PodUse } from '../agent/routes.js';
import { withTimeout } from '../engine/timeout.js';
import { requestAgent } from './socket-client.js';
import { buildApiServer, type TcpListener } from './socket-server.js';
import { HttpAuth } from '../http/auth.js';
import { AgentMetrics } from '../http/metrics.js';
import type { DevicePluginCounters } from '../deviceplugin/counters.js';
import { urlOf, type ListenAddress } from '../http/listen-address.js';
import { loadOrCreateToken } from './file-token.js';
import { packageVersion } from './package-root.js';
import { registerWebPage } from '../web/page.js';
import type { FastifyInstance } from 'fastify';

/**
 * How a passthru process builds and serves its agent on a state folder: the production
 * composition, shared by src/main.ts and the crash-consistency harness (test/crash), so the
 * harness kills exactly what runs on a host.
 */
export interface AgentProcessDeps {
  host: HostPort;
  stateDir: string;
  socket: string;
  /** Folder of the state lock (/run/passthru on the live host); the state folder when absent. */
  lockDir?: string | undefined;
  clock: Clock;
  logger: Logger;
  /** With releaseIfUnused, the running agent lets go of pci.ids while nobody looks names up. */
  names: PciIdNames & Partial<Pick<ReleasablePciIds, 'releaseIfUnused'>>;
  /** The simulated kernel behind `host`, for the /v1/sim routes; null on a real host. */
  sim: SimKernel | null;
  engine?: Partial<EngineOptions> | undefined;
  keeper?: Partial<KeeperOptions> | undefined;
  /** Serve kubelet device plugins from this folder once the agent runs. */
  devicePlugins?:
    { dir: string; resourceNameOf?: (address: string) => string | undefined } | undefined;
  /**
   * The udev rules `boot-config` wrote (70-passthru.rules under the host root): while the file
   * exists, the agent rewrites it whenever the claims change, so a claimed device stays off its
   * host driver at the next boot or hot re-add.
   */
  udevRules?: string | undefined;
  /** The HTTP API's TCP listener (`agent --listen`); none when absent. */
  listen?: ListenAddress | undefined;
  /** Where the listener's URL is announced for the operator (stdout); the log has it too. */
  announce?: ((text: string) => void) | undefined;
  /** Runs beside the agent's loops once it has started (Kubernetes mode), until the signal. */
  alongside?:
    | ((agent: Agent, signal: AbortSignal, pods: () => Promise<PodUse[]> | null) => Promise<void>)
    | undefined;
}

/** The FileHistory behind each agent, for its write failures in status. */
const histories = new WeakMap<Agent, FileHistory>();

function lock(d: AgentProcessDeps): () => void {
  return acquireStateLock(d.stateDir, d.lockDir !== undefined ? { lockDir: d.lockDir } : {});
}

/**
 * The agent on its file stores (state.json, history.jsonl). With `exclusive` (a direct-mode
 * claim or release) the state lock is taken first and held until the process exits, which for
 * a one-shot command is the end of that command.
 */
export function composeAgent(d: AgentProcessDeps, exclusive: boolean): Agent {
  if (exclusive) lock(d);
  const history = new FileHistory(d.stateDir, { logger: d.logger });
  const agent = new Agent({
    host: d.host,
    store: new FileStore(d.stateDir),
    history,
    clock: d.clock,
    logger: d.logger,
    names: d.names,
    // A no-op until serveAgent turns the lean heap on: one-shot commands exit instead.
    afterFullObservation: afterGarbageBurst,
    ...(d.engine ? { engine: d.engine } : {}),
    ...(d.keeper ? { keeper: d.keeper } : {}),
  });
  histories.set(agent, history);
  return agent;
}

/**
 * `passthru agent`: refuses when another agent answers on the socket, takes the state lock for
 * the process's lifetime, opens the control socket (status says `starting`), starts the agent
 * (loads the store, re-applies every claim) and runs until SIGTERM/SIGINT.
 */
export async function serveAgent(d: AgentProcessDeps, agent: Agent): Promise<void> {
  // Before the first discovery, so its garbage never grows the young generation.
  enableLeanHeap();
  const ac = new AbortController();
  const lifecycle = new AgentLifecycle();
  const stop = (): void => {
    d.logger.info('stopping');
    lifecycle.stopping();
    ac.abort();
  };
  // Before touching anything: a second agent would fight the first over the same devices.
  if ((await requestAgent(d.socket, 'GET', '/v1/health')) !== null) {
    throw new PtError('PT_ERR_INVALID_ARGUMENT', `an agent is already running on ${d.socket}`);
  }
  const unlock = lock(d);
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  try {
    const history = histories.get(agent);
    const pods: { lookup: (() => Promise<PodUse[]>) | null } = { lookup: null };
    // Made at the first start and kept: the operator's scripts and page sessions stay valid.
    const token = await loadOrCreateToken(d.stateDir);
    const pluginCounters: { current: DevicePluginCounters | null } = { current: null };
    const metrics = new AgentMetrics(agent, {
      version: packageVersion(),
      ...(d.devicePlugins ? { devicePlugins: () => pluginCounters.current } : {}),
    });
    const ctx: ApiContext = {
      pods,
      agent,
      sim: d.sim,
      lifecycle,
      logger: d.logger,
      ...(history ? { history } : {}),
    };
    const auth = new HttpAuth({ token, now: () => d.clock.now() });
    const metricsRoute = (app: FastifyInstance): void => {
      metrics.register(app);
    };
    const page = (app: FastifyInstance): void => {
      registerWebPage(app, { api: ctx, host: d.host, names: d.names, clock: d.clock, auth });
    };
    const api = await buildApiServer(ctx, {}, { auth, plugins: [metricsRoute, page] });
    // The socket opens before the first reconcile: status answers `starting` meanwhile, and
    // CLI calls reach the agent instead of falling back to direct mode and its lock.
    await api.listenUnix(d.socket);
    if (d.listen) announceListener(d, await api.listenTcp(d.listen));
    try {
      try {
        await agent.start({ loadModules: true });
      } catch (e) {
        lifecycle.failed(e);
        throw e;
      }
      if (lifecycle.phase === 'starting') lifecycle.running();
      const rules = await keepUdevRules(d, agent);
      d.logger.info(
        { host: d.host.description, stateDir: d.stateDir, socket: d.socket },
        'agent running',
      );
      const plugins = d.devicePlugins ? await startPlugins(d, d.devicePlugins, agent) : null;
      if (plugins) pluginCounters.current = plugins.counters;
      // Status shows which pod holds which device; the kubelet gets 300 ms to say.
      if (plugins)
        pods.lookup = () => withTimeout(d.clock, 300, 'pod-resources List', plugins.podDevices());
      try {
        await Promise.all([
          agent.run(ac.signal),
          d.alongside?.(agent, ac.signal, () => pods.lookup?.() ?? null),
          releaseUnusedNames(d, ac.signal),
        ]);
      } finally {
        // An intentional stop tells the kubelet "no devices" before the sockets go.
        await plugins?.stop();
        await rules?.settled();
      }
    } finally {
      await api.close();
      metrics.close();
    }
  } finally {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
    unlock();
  }
}

/** How often the agent asks whether pci.ids was used since it last asked. */
const NAMES_IDLE_MS = 15_000;

/**
 * pci.ids (1.3 MiB of text in the heap) serves the start's discovery and then only a page, a
 * listing or a device that appears: let go of it 15 to 30 s after the last lookup, and collect
 * it, so the agent at rest does not carry it (issue 11). The next lookup reads it again (a few
 * ms).
 */
async function releaseUnusedNames(d: AgentProcessDeps, signal: AbortSignal): Promise<void> {
  const release = d.names.releaseIfUnused;
  if (release === undefined) return;
  while (!signal.aborted) {
    try {
      await d.clock.sleep(NAMES_IDLE_MS, signal);
    } catch {
      return; // stopped
    }
    if (release()) afterGarbageBurst();
  }
}

function announceListener(d: AgentProcessDeps, l: TcpListener): void {
  const text = l.loopback
    ? `HTTP API on ${l.url} (reads open on loopback; writes need the token: passthru token)`
    : `HTTP API on ${l.url}: not a loopback address, so every request, reads included, needs the token (passthru token)`;
  if (!l.loopback)
    d.logger.warn(
      { url: urlOf(l.host, l.port) },
      'HTTP API on a non-loopback address: token required for everything',
    );
  d.announce?.(`${text}\n`);
}

/** Attaches the udev-rules keeper when boot-config was enabled (its rules file exists). */
async function keepUdevRules(d: AgentProcessDeps, agent: Agent): Promise<UdevRulesSync | null> {
  if (d.udevRules === undefined) return null;
  const file = d.udevRules;
  const st = await fs.lstat(file).catch(() => null);
  if (st === null || !st.isFile()) return null;
  const sync = udevRulesSubscriber({
    file,
    claimed: () => [
      ...new Set([
        ...(Object.keys(agent.engine.claims) as PciAddress[]),
        ...agent.engine.claimStatuses().flatMap((c) => c.members),
      ]),
    ],
    write: (f, content) => writeFileAtomic(f, content, 0o644),
    logger: d.logger,
  });
  agent.bus.subscribe(sync.listener);
  sync.sync();
  return sync;
}

/** Loaded only when asked for: gRPC and the protos cost memory an agent without them need not pay. */
async function startPlugins(
  d: AgentProcessDeps,
  dp: NonNullable<AgentProcessDeps['devicePlugins']>,
  agent: Agent,
) {
  const { startAgentDevicePlugins } = await import('../deviceplugin/start-for-agent.js');
  return startAgentDevicePlugins({
    agent,
    host: d.host,
    clock: d.clock,
    logger: d.logger,
    names: d.names,
    dir: dp.dir,
    ...(dp.resourceNameOf ? { resourceNameOf: dp.resourceNameOf } : {}),
  });
}
