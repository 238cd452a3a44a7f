import { PtError, SysError, errnoOf, errorCodes, isPtError } from '../errors.js';
import type { SimKernel, SimWriteOp } from '../host/sim/kernel.js';
import { parsePciAddress, type PciAddress } from '../pci/address.js';
import { parseAddresses, type Agent } from './agent.js';

export interface ApiResponse {
  status: number;
  body: unknown;
}

/**
 * The agent's API as plain request -> response, independent of the transport: the local
 * control socket serves it today, the HTTP API will serve the same routes. Documented in
 * docs/api.md.
 */
export async function handleRequest(
  agent: Agent,
  sim: SimKernel | null,
  method: string,
  url: string,
  body: unknown,
): Promise<ApiResponse> {
  try {
    return await route(agent, sim, method, url, body);
  } catch (e) {
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
}

function obj(body: unknown): Record<string, unknown> {
  if (body === undefined || body === null) return {};
  if (typeof body !== 'object' || Array.isArray(body))
    throw new PtError('PT_ERR_INVALID_ARGUMENT', 'request body must be a JSON object');
  return body as Record<string, unknown>;
}

function str(b: Record<string, unknown>, key: string): string {
  const v = b[key];
  if (typeof v !== 'string' || v === '')
    throw new PtError('PT_ERR_INVALID_ARGUMENT', `${key} must be a non-empty string`);
  return v;
}

const SIM_WRITE_OPS: readonly SimWriteOp[] = [
  'driver_override',
  'sriov_numvfs',
  'remove',
  'unbind',
  'bind',
  'drivers_probe',
  'rescan',
];

async function route(
  agent: Agent,
  sim: SimKernel | null,
  method: string,
  url: string,
  body: unknown,
): Promise<ApiResponse> {
  const path = url.split('?')[0] ?? '';
  if (method === 'GET' && path === '/v1/status') return { status: 200, body: await agent.status() };
  if (method === 'POST' && path === '/v1/claims') {
    const b = obj(body);
    const addresses = parseAddresses(b.addresses);
    const claims = await agent.claim(addresses, {
      withGroup: b.withGroup === true,
      force: b.force === true,
    });
    return { status: 200, body: { claims } };
  }
  if (method === 'POST' && path === '/v1/release') {
    const addresses = parseAddresses(obj(body).addresses);
    return { status: 200, body: { released: await agent.release(addresses) } };
  }
  if (path.startsWith('/v1/sim/')) {
    if (!sim)
      throw new PtError(
        'PT_ERR_INVALID_ARGUMENT',
        'the agent is not running on a simulated kernel (--sim)',
      );
    const op = path.slice('/v1/sim/'.length);
    if (method === 'GET' && op === 'state') return { status: 200, body: sim.toTopology() };
    if (method !== 'POST')
      throw new PtError('PT_ERR_INVALID_ARGUMENT', `no route ${method} ${path}`);
    const b = obj(body);
    switch (op) {
      case 'rmmod':
        sim.rmmod(str(b, 'module'), { linger: b.linger === true });
        return { status: 200, body: { removed: [str(b, 'module')] } };
      case 'modprobe-r':
        return { status: 200, body: { removed: sim.modprobeRemove(str(b, 'module')) } };
      case 'modprobe':
        sim.modprobe(str(b, 'module'));
        return { status: 200, body: { loaded: str(b, 'module') } };
      case 'available':
      case 'unavailable':
        sim.setModuleAvailable(str(b, 'module'), op === 'available');
        return { status: 200, body: {} };
      case 'fail-load':
        sim.failModuleLoads(str(b, 'module'), typeof b.times === 'number' ? b.times : 1);
        return { status: 200, body: {} };
      case 'fail-write': {
        const wop = str(b, 'op');
        if (!SIM_WRITE_OPS.includes(wop as SimWriteOp))
          throw new PtError(
            'PT_ERR_INVALID_ARGUMENT',
            `op must be one of ${SIM_WRITE_OPS.join(', ')}`,
          );
        const opts: { address?: ReturnType<typeof parsePciAddress>; times?: number } = {};
        if (b.address !== undefined) opts.address = parsePciAddress(b.address);
        if (typeof b.times === 'number') opts.times = b.times;
        sim.failWrites(wop as SimWriteOp, str(b, 'errno'), opts);
        return { status: 200, body: {} };
      }
      default: {
        // Pokes that act on one device.
        const onDevice: Record<string, (a: PciAddress) => void> = {
          unplug: (a) => {
            sim.unplug(a);
          },
          'vm-open': (a) => {
            sim.openDevice(a);
          },
          'vm-close': (a) => {
            sim.closeDevice(a);
          },
          'block-unbind': (a) => {
            sim.blockUnbind(a);
          },
          'release-unbind': (a) => {
            sim.releaseUnbind(a);
          },
        };
        const poke = onDevice[op];
        if (!poke) break;
        poke(parsePciAddress(b.address));
        return { status: 200, body: {} };
      }
    }
  }
  throw new PtError('PT_ERR_INVALID_ARGUMENT', `no route ${method} ${path}`);
}
