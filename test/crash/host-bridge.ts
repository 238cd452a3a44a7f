// A HostPort split across two processes: the simulated kernel lives in the test process (the
// "machine"), the agent in a child process talks to it over a unix socket. SIGKILL of the child
// then leaves the kernel exactly as a real one would be: writes already issued are done, nothing
// is rolled back, uevents keep coming.
import * as net from 'node:net';
import { SysError, PtError, isPtError, type ErrorCode } from '../../src/errors.js';
import { systemClock, type Clock } from '../../src/host/clock.js';
import type {
  DeviceAttr,
  DeviceHolder,
  DeviceLinks,
  DeviceReading,
  HostPort,
  ClassDevices,
  HostUses,
  KernelInfo,
  ModuleAvailability,
  ModuleStatus,
  Uevent,
  WritableDeviceAttr,
  WriteOptions,
} from '../../src/host/port.js';
import type { PciAddress } from '../../src/pci/address.js';

/** The calls that change the machine: the harness may kill the agent around them. */
export const WRITE_CALLS: ReadonlySet<string> = new Set([
  'writeDeviceAttr',
  'unbindDevice',
  'bindDevice',
  'probeDevice',
  'rescanBus',
  'loadModule',
]);

interface Request {
  id: number;
  m: string;
  a: unknown[];
}

interface WireError {
  name: string;
  code?: string;
  message: string;
}

/** Whether to kill the agent at this call: before the machine sees it, or after it is done. */
export type CallHook = (method: string, args: unknown[]) => 'kill-before' | 'kill-after' | null;

function wireError(e: unknown): WireError {
  if (e instanceof SysError) return { name: 'SysError', code: e.code, message: e.message };
  if (isPtError(e)) return { name: 'PtError', code: e.code, message: e.message };
  return { name: 'Error', message: e instanceof Error ? e.message : String(e) };
}

function fromWire(w: WireError): Error {
  if (w.name === 'SysError' && w.code !== undefined) {
    return new SysError(w.code, w.message.replace(`${w.code}: `, ''));
  }
  if (w.name === 'PtError' && w.code !== undefined)
    return new PtError(w.code as ErrorCode, w.message);
  return new Error(w.message);
}

function encode(v: unknown): unknown {
  if (v instanceof Uint8Array) return { $bytes: [...v] };
  if (v instanceof Map) return { $map: [...(v as Map<unknown, unknown>).entries()] };
  return v === undefined ? null : v;
}

/**
 * Serves `port` on a unix socket. `hook` sees every call first; `kill` is what the hook's
 * verdict runs (SIGKILL of the agent's process).
 */
export function serveHostBridge(
  port: HostPort,
  socketPath: string,
  hook: CallHook,
  kill: () => void,
): Promise<net.Server> {
  const server = net.createServer((conn) => {
    let buf = '';
    let dead = false;
    let unwatch: (() => void) | null = null;
    const send = (o: unknown): void => {
      if (!dead) conn.write(`${JSON.stringify(o)}\n`);
    };
    const call = async (r: Request): Promise<void> => {
      const verdict = hook(r.m, r.a);
      if (verdict === 'kill-before') {
        dead = true;
        kill();
        return;
      }
      if (r.m === 'watchUevents') {
        unwatch =
          port.watchUevents(
            (e) => {
              send({ u: e });
            },
            () => undefined,
          ) ?? null;
        send({ id: r.id, v: unwatch !== null });
        return;
      }
      if (r.m === 'unwatchUevents') {
        unwatch?.();
        unwatch = null;
        send({ id: r.id, v: null });
        return;
      }
      try {
        const fn = (port as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[r.m];
        if (typeof fn !== 'function') throw new Error(`no host call ${r.m}`);
        const v = await fn.apply(port, r.a);
        if (verdict === 'kill-after') {
          dead = true;
          kill();
          return;
        }
        send({ id: r.id, v: encode(v) });
      } catch (e) {
        if (verdict === 'kill-after') {
          dead = true;
          kill();
          return;
        }
        send({ id: r.id, e: wireError(e) });
      }
    };
    conn.on('data', (c: Buffer) => {
      buf += c.toString('utf8');
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (!dead) void call(JSON.parse(line) as Request);
      }
    });
    const end = (): void => {
      dead = true;
      unwatch?.();
      unwatch = null;
    };
    conn.on('close', end);
    conn.on('error', end);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      resolve(server);
    });
  });
}

/** The agent's side: every HostPort call goes over the socket to the machine. */
export class RemoteHost implements HostPort {
  readonly clock: Clock = systemClock;
  readonly description: string;
  private next = 1;
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  private readonly listeners = new Set<(e: Uevent) => void>();

  private constructor(
    private readonly conn: net.Socket,
    description: string,
  ) {
    this.description = `remote:${description}`;
    let buf = '';
    conn.on('data', (c: Buffer) => {
      buf += c.toString('utf8');
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl)) as {
          id?: number;
          v?: unknown;
          e?: WireError;
          u?: Uevent;
        };
        buf = buf.slice(nl + 1);
        if (msg.u !== undefined) {
          for (const l of this.listeners) l(msg.u);
          continue;
        }
        const p = msg.id !== undefined ? this.pending.get(msg.id) : undefined;
        if (!p || msg.id === undefined) continue;
        this.pending.delete(msg.id);
        if (msg.e !== undefined) p.reject(fromWire(msg.e));
        else p.resolve(msg.v);
      }
    });
    // The machine going away is the end of this process's world.
    conn.on('close', () => process.exit(99));
  }

  static connect(socketPath: string, description: string): Promise<RemoteHost> {
    return new Promise((resolve, reject) => {
      const conn = net.connect(socketPath, () => {
        resolve(new RemoteHost(conn, description));
      });
      conn.once('error', reject);
    });
  }

  private call<T>(m: string, ...a: unknown[]): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.conn.write(`${JSON.stringify({ id, m, a })}\n`);
    });
  }

  /**
   * A write the caller may abandon: the promise rejects with ECANCELED at once and the machine
   * still completes the write, as the port's contract says a kernel may.
   */
  private write(opts: WriteOptions | undefined, m: string, ...a: unknown[]): Promise<void> {
    const signal = opts?.signal;
    const done = this.call<unknown>(m, ...a).then(() => undefined);
    if (signal === undefined) return done;
    return new Promise<void>((resolve, reject) => {
      const abort = (): void => {
        reject(new SysError('ECANCELED', `${m} abandoned`));
      };
      if (signal.aborted) {
        abort();
        return;
      }
      signal.addEventListener('abort', abort, { once: true });
      done.then(resolve, reject).finally(() => {
        signal.removeEventListener('abort', abort);
      });
    });
  }

  listDevices(): Promise<PciAddress[]> {
    return this.call('listDevices');
  }
  readDeviceAttr(addr: PciAddress, attr: DeviceAttr): Promise<string | null> {
    return this.call('readDeviceAttr', addr, attr);
  }
  async readConfigHeader(addr: PciAddress): Promise<Uint8Array | null> {
    const v = await this.call<{ $bytes: number[] } | null>('readConfigHeader', addr);
    return v === null ? null : Uint8Array.from(v.$bytes);
  }
  readDeviceSerial(addr: PciAddress): Promise<string | null> {
    return this.call('readDeviceSerial', addr);
  }
  readDeviceLinks(addr: PciAddress): Promise<DeviceLinks> {
    return this.call('readDeviceLinks', addr);
  }
  readDevice(addr: PciAddress, attrs: readonly DeviceAttr[]): Promise<DeviceReading | null> {
    return this.call('readDevice', addr, attrs);
  }
  deviceExists(addr: PciAddress): Promise<boolean> {
    return this.call('deviceExists', addr);
  }
  listDrivers(): Promise<string[]> {
    return this.call('listDrivers');
  }
  vfioGroupNodeExists(group: number): Promise<boolean> {
    return this.call('vfioGroupNodeExists', group);
  }
  vfioHolders(addr: PciAddress, group: number | null): Promise<DeviceHolder[]> {
    return this.call('vfioHolders', addr, group);
  }
  writeDeviceAttr(
    addr: PciAddress,
    attr: WritableDeviceAttr,
    value: string,
    opts?: WriteOptions,
  ): Promise<void> {
    return this.write(opts, 'writeDeviceAttr', addr, attr, value);
  }
  unbindDevice(addr: PciAddress, opts?: WriteOptions): Promise<void> {
    return this.write(opts, 'unbindDevice', addr);
  }
  bindDevice(addr: PciAddress, driver: string, opts?: WriteOptions): Promise<void> {
    return this.write(opts, 'bindDevice', addr, driver);
  }
  probeDevice(addr: PciAddress, opts?: WriteOptions): Promise<void> {
    return this.write(opts, 'probeDevice', addr);
  }
  rescanBus(opts?: WriteOptions): Promise<void> {
    return this.write(opts, 'rescanBus');
  }
  async moduleStatus(names: readonly string[]): Promise<Map<string, ModuleStatus | null>> {
    const v = await this.call<{ $map: [string, ModuleStatus | null][] }>('moduleStatus', names);
    return new Map(v.$map);
  }
  moduleAvailability(name: string): Promise<ModuleAvailability> {
    return this.call('moduleAvailability', name);
  }
  async loadModule(name: string): Promise<void> {
    await this.call('loadModule', name);
  }
  kernelInfo(): Promise<KernelInfo> {
    return this.call('kernelInfo');
  }
  hostUses(): Promise<HostUses> {
    return this.call('hostUses');
  }
  classDevices(addr: PciAddress): Promise<ClassDevices> {
    return this.call('classDevices', addr);
  }
  watchUevents(onEvent: (e: Uevent) => void): (() => void) | null {
    if (this.listeners.size === 0) void this.call('watchUevents');
    this.listeners.add(onEvent);
    return () => {
      this.listeners.delete(onEvent);
      if (this.listeners.size === 0) void this.call('unwatchUevents');
    };
  }
}
