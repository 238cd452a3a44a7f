import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { PtError, SysError, errnoOf, errorCodes, isPtError } from '../errors.js';
import type { BusHealth } from '../events/events.js';
import type { SimKernel } from '../host/sim/kernel.js';
import { parsePciAddress, type PciAddress } from '../pci/address.js';
import type { HistoryHealth } from '../state/history.js';
import type { Logger } from '../util/logger.js';
import { parseAddresses, type Agent, type AgentStatus } from './agent.js';
import { dryRunClaim, dryRunDeps, dryRunRelease } from '../preview/dry-run.js';
import { deviceStory } from './story-source.js';
import {
  ClaimBodySchema,
  ReleaseBodySchema,
  SimAvailableBodySchema,
  SimDeviceBodySchema,
  SimFailLoadBodySchema,
  SimFailWriteBodySchema,
  SimModuleBodySchema,
  SimRmmodBodySchema,
  type ClaimBody,
  type ReleaseBody,
  type SimDeviceBody,
  type SimFailLoadBody,
  type SimFailWriteBody,
  type SimModuleBody,
  type SimRmmodBody,
} from '../schema/api.js';

/**
 * Where the agent is in its life: `starting` from the moment the socket opens until the first
 * reconcile (Agent.start) has finished, `running` after, `stopping` once a signal came.
 */
export type AgentPhase = 'starting' | 'running' | 'stopping';

/** Tracks the phase; writes that arrive while starting wait for the start to finish. */
export class AgentLifecycle {
  private current: AgentPhase = 'starting';
  private resolveReady!: () => void;
  private rejectReady!: (e: unknown) => void;
  readonly ready: Promise<void>;

  constructor() {
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    // A failed start ends the process; no request should see an unhandled rejection meanwhile.
    this.ready.catch(() => undefined);
  }

  get phase(): AgentPhase {
    return this.current;
  }

  running(): void {
    this.current = 'running';
    this.resolveReady();
  }

  failed(e: unknown): void {
    this.current = 'stopping';
    this.rejectReady(e);
  }

  stopping(): void {
    this.current = 'stopping';
    this.resolveReady();
  }
}

/** A pod holding a claimed device, as the kubelet's pod-resources API tells it. */
export interface PodUse {
  address: string;
  resourceName: string;
  namespace: string;
  pod: string;
  container: string;
}

export interface ApiContext {
  agent: Agent;
  /**
   * Which pod holds which device (device plugins running); set once they start. The lookup is
   * bounded in time by whoever sets it; on failure status leaves `pods` out.
   */
  pods?: { lookup: (() => Promise<PodUse[]>) | null };
  /** The simulated kernel under an agent started with --sim: only then /v1/sim/* exist. */
  sim: SimKernel | null;
  lifecycle: AgentLifecycle;
  /** The history the agent writes to, for its write failures in status. */
  history?: { health(): HistoryHealth };
  logger: Logger;
}

/** `GET /v1/status`: the agent's status plus its phase and the failures it did not hide. */
export type ApiStatus = { phase: AgentPhase; problems: ApiProblems; pods?: PodUse[] } & Omit<
  Partial<AgentStatus>,
  'phase'
>;

export interface ApiProblems {
  history: HistoryHealth;
  events: BusHealth;
}

/** The error body every route answers with, and its HTTP status (docs/errors.md). */
export function errorReply(e: unknown): { status: number; body: { error: unknown } } {
  if (isPtError(e)) return { status: errorCodes[e.code].http, body: { error: e.toJSON() } };
  const errno = errnoOf(e);
  if (e instanceof SysError && errno !== undefined) {
    // The (simulated) kernel said no, as rmmod of a module in use does: not a bug of ours.
    const refused = new PtError('PT_ERR_KERNEL_REFUSED', e.message, { details: { errno } });
    return { status: errorCodes[refused.code].http, body: { error: refused.toJSON() } };
  }
  const message = e instanceof Error ? e.message : String(e);
  return {
    status: 500,
    body: { error: { code: 'PT_ERR_INTERNAL', message, ...(errno ? { errno } : {}) } },
  };
}

/** fastify's own refusals (body limit, bad JSON, schema) in the project's error shape. */
function frameworkError(e: FastifyError): PtError | null {
  if (e.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || e.statusCode === 413)
    return new PtError('PT_ERR_REQUEST_TOO_LARGE', 'request body is over the 64 KiB limit');
  if (e.validation !== undefined)
    return new PtError('PT_ERR_INVALID_ARGUMENT', `request ${e.message}`);
  if (e.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500)
    return new PtError('PT_ERR_INVALID_ARGUMENT', e.message);
  return null;
}

/**
 * The agent's API as fastify routes, independent of the transport: the control socket serves
 * it, and the same app can listen on TCP for the HTTP API. Only the routes below exist;
 * anything else is 404 PT_ERR_NO_ROUTE. Documented in docs/api.md.
 */
export function registerRoutes(app: FastifyInstance, ctx: ApiContext): void {
  const { agent, sim, lifecycle } = ctx;

  app.setErrorHandler((e: FastifyError, _req: FastifyRequest, reply: FastifyReply) => {
    const mapped = frameworkError(e);
    const r = errorReply(mapped ?? e);
    if (r.status >= 500 && !isPtError(e))
      ctx.logger.error({ err: e.message, stack: e.stack }, 'request failed');
    return reply.code(r.status).send(r.body);
  });

  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0] ?? '';
    const hint =
      path.startsWith('/v1/sim/') && sim === null
        ? ': the agent is not running on a simulated kernel (--sim)'
        : '';
    const r = errorReply(new PtError('PT_ERR_NO_ROUTE', `no route ${req.method} ${path}${hint}`));
    return reply.code(r.status).send(r.body);
  });

  app.get('/v1/health', () => ({ phase: lifecycle.phase }));

  app.get('/v1/status', async (): Promise<ApiStatus> => {
    const problems: ApiProblems = {
      history: ctx.history?.health() ?? { writeErrors: 0, lastError: null },
      events: agent.bus.health(),
    };
    if (lifecycle.phase === 'starting') {
      // The store may not be loaded yet: report what is known without waiting for the start.
      try {
        return { ...(await agent.status()), phase: 'starting', problems };
      } catch {
        return { phase: 'starting', problems };
      }
    }
    const pods = await lookupPods(ctx);
    return {
      ...(await agent.status()),
      phase: lifecycle.phase,
      problems,
      ...(pods ? { pods } : {}),
    };
  });

  app.post('/v1/claims', { schema: { body: ClaimBodySchema } }, async (req) => {
    const b = req.body as ClaimBody;
    const addresses = parseAddresses(b.addresses);
    await lifecycle.ready;
    const claims = await agent.claim(addresses, {
      withGroup: b.withGroup === true,
      force: b.force === true,
      acceptChange: b.acceptChange === true,
      source: b.source ?? 'api',
    });
    return { claims };
  });

  app.post('/v1/release', { schema: { body: ReleaseBodySchema } }, async (req) => {
    const b = req.body as ReleaseBody;
    const addresses = parseAddresses(b.addresses);
    await lifecycle.ready;
    return {
      released: await agent.release(addresses, {
        wait: b.wait === true,
        abandon: b.abandon === true,
      }),
    };
  });

  // Dry runs: the same bodies as the requests they preview; nothing is written, no lock taken.
  app.post('/v1/claims/dry-run', { schema: { body: ClaimBodySchema } }, async (req) => {
    const b = req.body as ClaimBody;
    const addresses = parseAddresses(b.addresses);
    await lifecycle.ready;
    return dryRunClaim(dryRunDeps(agent), addresses, {
      withGroup: b.withGroup === true,
      force: b.force === true,
      acceptChange: b.acceptChange === true,
    });
  });

  app.post('/v1/release/dry-run', { schema: { body: ReleaseBodySchema } }, async (req) => {
    const b = req.body as ReleaseBody;
    const addresses = parseAddresses(b.addresses);
    await lifecycle.ready;
    return dryRunRelease(dryRunDeps(agent), addresses, { wait: b.wait === true });
  });

  app.get('/v1/devices/:address/story', async (req) => {
    const address = parsePciAddress((req.params as { address: string }).address);
    const raw = (req.query as { since?: unknown }).since;
    if (raw !== undefined && (typeof raw !== 'string' || !/^\d{1,15}$/.test(raw)))
      throw new PtError('PT_ERR_INVALID_ARGUMENT', 'since must be ms since the epoch');
    await lifecycle.ready;
    return deviceStory(agent, address, raw === undefined ? null : Number(raw), true);
  });

  if (sim !== null) registerSimRoutes(app, sim);
}

/** Pokes of the simulated kernel: registered only on agents started with --sim. */
function registerSimRoutes(app: FastifyInstance, sim: SimKernel): void {
  app.get('/v1/sim/state', () => sim.toTopology());

  app.post('/v1/sim/rmmod', { schema: { body: SimRmmodBodySchema } }, (req) => {
    const b = req.body as SimRmmodBody;
    sim.rmmod(b.module, { linger: b.linger === true });
    return { removed: [b.module] };
  });
  app.post('/v1/sim/modprobe-r', { schema: { body: SimModuleBodySchema } }, (req) => ({
    removed: sim.modprobeRemove((req.body as SimModuleBody).module),
  }));
  app.post('/v1/sim/modprobe', { schema: { body: SimModuleBodySchema } }, (req) => {
    const m = (req.body as SimModuleBody).module;
    sim.modprobe(m);
    return { loaded: m };
  });
  for (const op of ['available', 'unavailable'] as const) {
    app.post(`/v1/sim/${op}`, { schema: { body: SimAvailableBodySchema } }, (req) => {
      sim.setModuleAvailable((req.body as SimModuleBody).module, op === 'available');
      return {};
    });
  }
  app.post('/v1/sim/fail-load', { schema: { body: SimFailLoadBodySchema } }, (req) => {
    const b = req.body as SimFailLoadBody;
    sim.failModuleLoads(b.module, b.times ?? 1);
    return {};
  });
  app.post('/v1/sim/fail-write', { schema: { body: SimFailWriteBodySchema } }, (req) => {
    const b = req.body as SimFailWriteBody;
    const opts: { address?: PciAddress; times?: number } = {};
    if (b.address !== undefined) opts.address = parsePciAddress(b.address);
    if (b.times !== undefined) opts.times = b.times;
    sim.failWrites(b.op, b.errno, opts);
    return {};
  });
  // Pokes that act on one device.
  const onDevice: [string, (a: PciAddress) => void][] = [
    [
      'unplug',
      (a) => {
        sim.unplug(a);
      },
    ],
    [
      'vm-open',
      (a) => {
        sim.openDevice(a);
      },
    ],
    [
      'vm-close',
      (a) => {
        sim.closeDevice(a);
      },
    ],
    [
      'block-unbind',
      (a) => {
        sim.blockUnbind(a);
      },
    ],
    [
      'release-unbind',
      (a) => {
        sim.releaseUnbind(a);
      },
    ],
  ];
  for (const [name, poke] of onDevice) {
    app.post(`/v1/sim/${name}`, { schema: { body: SimDeviceBodySchema } }, (req) => {
      poke(parsePciAddress((req.body as SimDeviceBody).address));
      return {};
    });
  }
}

async function lookupPods(ctx: ApiContext): Promise<PodUse[] | null> {
  const lookup = ctx.pods?.lookup;
  if (!lookup) return null;
  try {
    return await lookup();
  } catch {
    return null; // the kubelet may be restarting, or slow: status answers without it
  }
}
