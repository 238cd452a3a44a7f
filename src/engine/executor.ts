import { PtError, errnoOf, isPtError, type ErrorCode } from '../errors.js';
import type { Clock } from '../host/clock.js';
import type { HostPort } from '../host/port.js';
import type { PciAddress } from '../pci/address.js';
import { VFIO_PCI } from '../pci/model.js';
import type { Action } from './plan.js';
import { TimeoutError, withTimeout } from './timeout.js';

export interface ExecutorOptions {
  /** vfio-pci's unbind blocks while a VM holds the device: give up after this long. */
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

export interface ExecutorDeps {
  host: HostPort;
  clock: Clock;
  options: ExecutorOptions;
  /** Persist the original driver; resolves only once it is durable. */
  recordLedger: (a: Extract<Action, { kind: 'bind' }>) => Promise<void>;
  /** Make sure vfio-pci is registered; throws PT_ERR_MODULE_UNAVAILABLE with the reason. */
  ensureVfio: () => Promise<void>;
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

export async function execute(deps: ExecutorDeps, action: Action): Promise<ActionResult> {
  const start = deps.clock.now();
  try {
    switch (action.kind) {
      case 'bind':
        return await bind(deps, action, start);
      case 'pin-override':
        await deps.host.writeDeviceAttr(action.address, 'driver_override', VFIO_PCI);
        return { ok: true, action, ms: deps.clock.now() - start };
      case 'release':
        return await release(deps, action, start);
      case 'forget':
        return { ok: true, action, ms: 0 };
    }
  } catch (e) {
    return {
      ok: false,
      action,
      ms: deps.clock.now() - start,
      error: sysfsError('PT_ERR_SYSFS_WRITE', action.address, e),
      rolledBack: false,
    };
  }
}

async function unbindWithTimeout(deps: ExecutorDeps, addr: PciAddress): Promise<void> {
  try {
    await withTimeout(
      deps.clock,
      deps.options.unbindTimeoutMs,
      `unbind of ${addr}`,
      deps.host.unbindDevice(addr),
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
  await deps.ensureVfio();
  await deps.recordLedger(a);
  let step = 'driver_override';
  try {
    await host.writeDeviceAttr(a.address, 'driver_override', VFIO_PCI);
    const links = await host.readDeviceLinks(a.address);
    if (links.driver !== null && links.driver !== VFIO_PCI) {
      step = 'unbind';
      await unbindWithTimeout(deps, a.address);
    }
    if (deps.options.pauseAfterUnbindMs > 0) await clock.sleep(deps.options.pauseAfterUnbindMs);
    step = 'drivers_probe';
    await host.probeDevice(a.address);
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
          `/dev/vfio/${group} did not appear after binding ${a.address}`,
        );
      await clock.sleep(20);
    }
    return { ok: true, action: a, ms: clock.now() - start, driver: VFIO_PCI };
  } catch (e) {
    const error = sysfsError(
      'PT_ERR_BIND_FAILED',
      `binding ${a.address} to vfio-pci failed at ${step}`,
      e,
    );
    const rolledBack = await rollback(deps, a);
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
  // An empty line clears driver_override; then the host's own driver may match again.
  await host.writeDeviceAttr(addr, 'driver_override', '\n');
  const links = await host.readDeviceLinks(addr);
  if (links.driver === driver) return;
  if (links.driver !== null) await unbindWithTimeout(deps, addr);
  if (driver !== null) await host.probeDevice(addr);
}

/** Back to the state recorded before the bind. */
async function rollback(
  deps: ExecutorDeps,
  a: Extract<Action, { kind: 'bind' }>,
): Promise<boolean> {
  try {
    await restoreDriver(deps, a.address, a.currentDriver);
    return (await deps.host.readDeviceLinks(a.address)).driver === a.currentDriver;
  } catch {
    return false;
  }
}

async function release(
  deps: ExecutorDeps,
  a: Extract<Action, { kind: 'release' }>,
  start: number,
): Promise<ActionResult> {
  const { host, clock } = deps;
  try {
    await restoreDriver(deps, a.address, a.originalDriver);
  } catch (e) {
    return {
      ok: false,
      action: a,
      ms: clock.now() - start,
      error: sysfsError('PT_ERR_RELEASE_FAILED', `releasing ${a.address}`, e),
      rolledBack: false,
    };
  }
  const now = (await host.readDeviceLinks(a.address)).driver;
  if (now === a.originalDriver)
    return { ok: true, action: a, ms: clock.now() - start, driver: now };
  if (now === null && a.originalDriver !== null) {
    const drivers = await host.listDrivers();
    const note = drivers.includes(a.originalDriver)
      ? `${a.originalDriver} did not take the device back; it stays without a driver`
      : `${a.originalDriver} is not loaded; the device stays without a driver until it is`;
    return { ok: true, action: a, ms: clock.now() - start, driver: null, note };
  }
  return {
    ok: true,
    action: a,
    ms: clock.now() - start,
    driver: now,
    note: `now on ${now ?? 'no driver'}, was ${a.originalDriver ?? 'no driver'} before it was claimed`,
  };
}
