import { PtError, errnoOf, isPtError, type ErrorCode } from '../errors.js';
import type { Clock } from '../host/clock.js';
import { holderText, type DeviceHolder, type HostPort } from '../host/port.js';
import type { PciAddress } from '../pci/address.js';
import { VFIO_PCI } from '../pci/model.js';
import type { LedgerEntry } from '../state/model.js';
import type { InFlight } from './inflight.js';
import type { Action } from './plan.js';
import { TimeoutError, withTimeout } from './timeout.js';

export interface ExecutorOptions {
  /** vfio-pci's unbind blocks while a VM holds the device: stop waiting after this long. */
  unbindTimeoutMs: number;
  /** How long to wait for /dev/vfio/<group> after a bind. */
  verifyTimeoutMs: number;
  /** Test/lab fault hook: sleep this long between unbind and probe (0: off). */
  pauseAfterUnbindMs: number;
}

export const defaultExecutorOptions: ExecutorOptions = {
  unbindTimeoutMs: 10_000,
  verifyTimeoutMs: 2_000,
  pauseAfterUnbindMs: 0,
};

/** Loads the vfio modules once; throws PT_ERR_MODULE_UNAVAILABLE with modprobe's reason. */
export interface ModuleLoader {
  ensureLoaded(): Promise<void>;
}

export interface ExecutorDeps {
  host: HostPort;
  clock: Clock;
  options: ExecutorOptions;
  inflight: InFlight;
  modules: ModuleLoader;
  /**
   * The agent is stopping: writes still pending in the kernel are abandoned so the process can
   * exit. A timeout does not abandon: the device stays busy until the kernel lets the write go.
   */
  signal?: AbortSignal;
  /**
   * Persist the original driver before the first write, unless an entry exists; resolves with
   * the entry in force once it is durable. Rollback targets that entry, never what a pass saw.
   */
  recordLedger: (a: Extract<Action, { kind: 'bind' }>) => Promise<LedgerEntry>;
}

export type ActionResult =
  | { ok: true; action: Action; ms: number; note?: string; driver?: string | null }
  | { ok: false; action: Action; ms: number; error: PtError; rolledBack: boolean };

function sysfsError(code: ErrorCode, what: string, e: unknown): PtError {
  if (isPtError(e)) return e;
  if (e instanceof TimeoutError)
    return new PtError(
      'PT_ERR_UNBIND_TIMEOUT',
      `${what}: ${e.message} (is a VM still using the device?)`,
      { cause: e },
    );
  const errno = errnoOf(e);
  const msg = e instanceof Error ? e.message : String(e);
  return new PtError(code, `${what}: ${msg}`, {
    cause: e,
    details: errno === undefined ? {} : { errno },
  });
}

/** A kernel's or host's refusal carries an errno; anything else is a bug of ours, not a write failure. */
function isHostError(e: unknown): boolean {
  return isPtError(e) || e instanceof TimeoutError || errnoOf(e) !== undefined;
}

export async function execute(deps: ExecutorDeps, action: Action): Promise<ActionResult> {
  const start = deps.clock.now();
  try {
    switch (action.kind) {
      case 'ensure-modules':
        await deps.modules.ensureLoaded();
        return { ok: true, action, ms: deps.clock.now() - start };
      case 'bind':
        return await bind(deps, action, start);
      case 'pin-override':
        await write(deps, action.address, 'driver_override', () =>
          deps.host.writeDeviceAttr(action.address, 'driver_override', VFIO_PCI),
        );
        return { ok: true, action, ms: deps.clock.now() - start };
      case 'release':
        return await release(deps, action, start);
      case 'forget':
        return { ok: true, action, ms: 0 };
    }
  } catch (e) {
    if (!isHostError(e)) throw e;
    return {
      ok: false,
      action,
      ms: deps.clock.now() - start,
      error: sysfsError(
        'PT_ERR_SYSFS_WRITE',
        action.kind === 'ensure-modules' ? 'vfio modules' : action.address,
        e,
      ),
      rolledBack: false,
    };
  }
}

/** Every write to a device is a tracked operation: nothing else goes to it while it is pending. */
function write(
  deps: ExecutorDeps,
  addr: PciAddress,
  op: string,
  fn: () => Promise<void>,
): Promise<void> {
  return deps.inflight.track(addr, op, fn);
}

function holdersText(h: DeviceHolder[]): string {
  return h.map(holderText).join(', ');
}

/**
 * vfio-pci's remove waits for the holder inside the kernel with device_lock held: ask first,
 * and refuse rather than issue an unbind that would hang.
 */
async function refuseIfHeld(deps: ExecutorDeps, addr: PciAddress): Promise<void> {
  const links = await deps.host.readDeviceLinks(addr);
  if (links.driver !== VFIO_PCI) return;
  const holders = await deps.host.vfioHolders(addr, links.iommuGroup);
  if (holders.length > 0) {
    throw new PtError('PT_ERR_DEVICE_IN_USE', `${addr} is in use by ${holdersText(holders)}`, {
      details: { address: addr, holders },
    });
  }
}

async function unbindWithTimeout(
  deps: ExecutorDeps,
  addr: PciAddress,
  from: string,
): Promise<void> {
  try {
    await withTimeout(
      deps.clock,
      deps.options.unbindTimeoutMs,
      `unbind of ${addr}`,
      write(deps, addr, `unbind (${from})`, () =>
        deps.host.unbindDevice(addr, deps.signal ? { signal: deps.signal } : {}),
      ),
    );
  } catch (e) {
    // Unbound in the meantime (someone else, or a module removal): that is what we wanted.
    if (errnoOf(e) === 'ENODEV') return;
    throw e;
  }
}

/**
 * Bind as libvirt and driverctl do: override, unbind, drivers_probe, then verify, because
 * drivers_probe succeeds even when nothing binds. Never new_id: it is global.
 */
async function bind(
  deps: ExecutorDeps,
  a: Extract<Action, { kind: 'bind' }>,
  start: number,
): Promise<ActionResult> {
  const { host, clock } = deps;
  // Nothing to bind to: fail before the first write rather than leave a driverless device.
  if (!(await host.listDrivers()).includes(VFIO_PCI)) {
    throw new PtError('PT_ERR_MODULE_UNAVAILABLE', 'vfio-pci is not registered');
  }
  const entry = await deps.recordLedger(a);
  let step = 'driver_override';
  try {
    await write(deps, a.address, 'driver_override', () =>
      host.writeDeviceAttr(a.address, 'driver_override', VFIO_PCI),
    );
    const links = await host.readDeviceLinks(a.address);
    if (links.driver !== null && links.driver !== VFIO_PCI) {
      step = 'unbind';
      await unbindWithTimeout(deps, a.address, links.driver);
    }
    if (deps.options.pauseAfterUnbindMs > 0) await clock.sleep(deps.options.pauseAfterUnbindMs);
    step = 'drivers_probe';
    await write(deps, a.address, 'drivers_probe', () => host.probeDevice(a.address));
    step = 'verify';
    const after = await host.readDeviceLinks(a.address);
    if (after.driver !== VFIO_PCI) {
      throw new PtError(
        'PT_ERR_BIND_FAILED',
        `${a.address} is on ${after.driver ?? 'no driver'} after drivers_probe, not vfio-pci`,
      );
    }
    const group = after.iommuGroup ?? a.group;
    const deadline = clock.now() + deps.options.verifyTimeoutMs;
    while (!(await host.vfioGroupNodeExists(group))) {
      if (clock.now() >= deadline)
        throw new PtError(
          'PT_ERR_BIND_FAILED',
          `/dev/vfio/${String(group)} did not appear after binding ${a.address}`,
        );
      await clock.sleep(20);
    }
    return { ok: true, action: a, ms: clock.now() - start, driver: VFIO_PCI };
  } catch (e) {
    if (!isHostError(e)) throw e;
    const error = sysfsError(
      'PT_ERR_BIND_FAILED',
      `binding ${a.address} to vfio-pci failed at ${step}`,
      e,
    );
    // A stuck unbind is still pending in the kernel: touching the device again would block.
    const rolledBack =
      deps.inflight.get(a.address) === undefined && (await rollback(deps, a, entry));
    return { ok: false, action: a, ms: clock.now() - start, error, rolledBack };
  }
}

/**
 * Clear driver_override and give the device back to `driver`. A device that had no driver
 * stays without one: probing could hand it to a host driver that had not taken it before, as
 * the real kernel did with nvme VFs.
 */
async function restoreDriver(
  deps: ExecutorDeps,
  addr: PciAddress,
  driver: string | null,
): Promise<void> {
  const { host } = deps;
  await refuseIfHeld(deps, addr);
  // An empty line clears driver_override; then the host's own driver may match again.
  await write(deps, addr, 'driver_override', () =>
    host.writeDeviceAttr(addr, 'driver_override', '\n'),
  );
  const links = await host.readDeviceLinks(addr);
  if (links.driver === driver) return;
  if (links.driver !== null) await unbindWithTimeout(deps, addr, links.driver);
  if (deps.options.pauseAfterUnbindMs > 0) await deps.clock.sleep(deps.options.pauseAfterUnbindMs);
  if (driver !== null) await write(deps, addr, 'drivers_probe', () => host.probeDevice(addr));
}

/** Back to the ledger's original driver: the one the host had before passthru touched it. */
async function rollback(
  deps: ExecutorDeps,
  a: Extract<Action, { kind: 'bind' }>,
  entry: LedgerEntry,
): Promise<boolean> {
  try {
    await restoreDriver(deps, a.address, entry.originalDriver);
    return (await deps.host.readDeviceLinks(a.address)).driver === entry.originalDriver;
  } catch (e) {
    if (!isHostError(e)) throw e;
    return false;
  }
}

/**
 * Succeeds only when the device is verifiably back on its original driver; anything else is a
 * failure the engine retries with backoff, keeping the ledger entry.
 */
async function release(
  deps: ExecutorDeps,
  a: Extract<Action, { kind: 'release' }>,
  start: number,
): Promise<ActionResult> {
  const { host, clock } = deps;
  try {
    await restoreDriver(deps, a.address, a.originalDriver);
  } catch (e) {
    if (!isHostError(e)) throw e;
    const error =
      isPtError(e) && e.code === 'PT_ERR_DEVICE_IN_USE'
        ? e
        : sysfsError('PT_ERR_RELEASE_FAILED', `releasing ${a.address}`, e);
    return { ok: false, action: a, ms: clock.now() - start, error, rolledBack: false };
  }
  const now = (await host.readDeviceLinks(a.address)).driver;
  if (now === a.originalDriver)
    return { ok: true, action: a, ms: clock.now() - start, driver: now };
  let message: string;
  if (now === null && a.originalDriver !== null) {
    const drivers = await host.listDrivers();
    message = drivers.includes(a.originalDriver)
      ? `${a.originalDriver} did not take ${a.address} back; it has no driver for now`
      : `${a.originalDriver} is not loaded; ${a.address} has no driver until it is`;
  } else {
    message = `${a.address} is on ${now ?? 'no driver'}, not its original ${a.originalDriver ?? 'no driver'}`;
  }
  return {
    ok: false,
    action: a,
    ms: clock.now() - start,
    error: new PtError('PT_ERR_RELEASE_FAILED', `${message}; retrying`),
    rolledBack: false,
  };
}
