import { Agent } from '../agent/agent.js';
import type { Clock } from '../host/clock.js';
import type { HostPort } from '../host/port.js';
import { SimKernel, type SimCall } from '../host/sim/kernel.js';
import type { PciAddress } from '../pci/address.js';
import { discover } from '../pci/discovery.js';
import { requiredVfioModules } from '../keeper/modules.js';
import { VFIO_PCI } from '../pci/model.js';
import { takeSnapshot } from '../pci/snapshot.js';
import { MemoryHistory } from '../state/history.js';
import { MemoryStore, emptyState, type State } from '../state/model.js';
import type { Topology } from '../topology/format.js';
import { silentLogger } from '../util/logger.js';

/** One write (or module load) an action would make, as the kernel would see it. */
export interface PlannedWrite {
  /** The sysfs file written, or `modprobe` for a module load. */
  file: string;
  /** The bytes written (the value; sysfs writes end with a newline). */
  value: string;
  address?: PciAddress;
}

export interface Preview {
  writes: PlannedWrite[];
  /** What the throwaway run ended in, per claim or released device: the action's outcome. */
  outcome: { address: PciAddress; state: string; message?: string }[];
}

export interface PreviewSource {
  host: HostPort;
  /** The simulated kernel behind host, when there is one: its exact state is copied. */
  sim: SimKernel | null;
  clock: Clock;
  /** The agent's claims and ledger now. */
  state: () => Pick<State, 'claims' | 'ledger'>;
}

/**
 * A dry run: the action runs against a throwaway simulated kernel holding a copy of the host's
 * current state, and the writes that copy received are what the real host would receive. The
 * engine's own code decides them (same plan, same executor), so the preview cannot drift from
 * what claim and release do.
 */
export async function previewClaim(
  src: PreviewSource,
  addresses: PciAddress[],
  opts: { withGroup: boolean },
): Promise<Preview> {
  const { copy, agent } = await throwaway(src);
  const claims = await agent.claim(addresses, { withGroup: opts.withGroup, force: false });
  return {
    writes: copy.calls.map((c) => planned(c, copy)),
    outcome: claims.map((c) => ({
      address: c.address,
      state: c.state,
      ...(c.message !== undefined ? { message: c.message } : {}),
    })),
  };
}

export async function previewRelease(
  src: PreviewSource,
  addresses: PciAddress[],
): Promise<Preview> {
  const { copy, agent } = await throwaway(src);
  const released = await agent.release(addresses, { wait: true });
  return {
    writes: copy.calls.map((c) => planned(c, copy)),
    outcome: released.map((r) => ({
      address: r.address,
      state: r.state,
      ...(r.message !== undefined ? { message: r.message } : {}),
    })),
  };
}

async function throwaway(src: PreviewSource): Promise<{ copy: RecordingKernel; agent: Agent }> {
  const topo = src.sim ? src.sim.toTopology() : await snapshotOf(src);
  const copy = new RecordingKernel(topo, src.clock);
  if (!src.sim) {
    // A snapshot does not say which modules are loaded: load in the copy what the host has.
    const mods = await requiredVfioModules(src.host);
    const st = await src.host.moduleStatus(mods);
    for (const m of mods) if (st.get(m)?.state === 'live') copy.modprobe(m);
  }
  const store = new MemoryStore();
  const now = src.state();
  await store.save({ ...emptyState(), claims: { ...now.claims }, ledger: { ...now.ledger } });
  const agent = new Agent({
    host: copy.port(),
    store,
    history: new MemoryHistory(),
    clock: src.clock,
    logger: silentLogger(),
  });
  // Brings the copy's claims to where the real ones are; only what follows is the action's.
  await agent.start();
  copy.calls.length = 0;
  return { copy, agent };
}

/**
 * A real host seen as a topology. A snapshot names the drivers devices are on now; the drivers
 * the ledger would give devices back to are added with those devices' ids, so a release in
 * the copy finds its driver as it would on the host.
 */
async function snapshotOf(src: PreviewSource): Promise<Topology> {
  const inv = await discover(src.host);
  const topo = await takeSnapshot(src.host, inv, 'preview');
  const ids = new Map<string, Set<string>>();
  const add = (driver: string | null, a: string): void => {
    const d = inv.byAddress.get(a as PciAddress);
    if (driver === null || driver === VFIO_PCI || !d) return;
    const set = ids.get(driver) ?? new Set<string>();
    set.add(`${d.vendorId}:${d.deviceId}`);
    ids.set(driver, set);
  };
  for (const d of inv.devices) add(d.driver, d.address);
  for (const l of Object.values(src.state().ledger)) add(l.originalDriver, l.address);
  topo.drivers = [...ids].map(([name, s]) => ({ name, ids: [...s] }));
  const kernel = await src.host.kernelInfo();
  topo.kernel = { ...topo.kernel, release: kernel.release };
  return topo;
}

/** The simulated kernel, remembering each device's driver at the moment of every write. */
class RecordingKernel extends SimKernel {
  readonly driverAt = new Map<SimCall, string | null>();

  override async write(
    op: Parameters<SimKernel['write']>[0],
    addr: PciAddress | null,
    value: string,
  ): Promise<void> {
    const driver = addr === null ? null : this.driverOf(addr);
    const before = this.calls.length;
    try {
      await super.write(op, addr, value);
    } finally {
      const call = this.calls[before];
      if (call) this.driverAt.set(call, driver);
    }
  }
}

/** The file a recorded call writes on Linux (DESIGN.md's bind and release sequences). */
function planned(c: SimCall, k: RecordingKernel): PlannedWrite {
  const a = c.address;
  const value = c.value ?? '';
  const dev = (attr: string): string => `/sys/bus/pci/devices/${a ?? '?'}/${attr}`;
  const at = a !== undefined ? { address: a } : {};
  switch (c.op) {
    case 'modprobe':
      return { file: 'modprobe', value };
    case 'unbind': {
      const drv = k.driverAt.get(c) ?? null;
      return {
        file: drv !== null ? `/sys/bus/pci/drivers/${drv}/unbind` : dev('driver/unbind'),
        value: a ?? value,
        ...at,
      };
    }
    case 'bind':
      return { file: `/sys/bus/pci/drivers/${value}/bind`, value: a ?? '', ...at };
    case 'drivers_probe':
      return { file: '/sys/bus/pci/drivers_probe', value: a ?? value, ...at };
    case 'rescan':
      return { file: '/sys/bus/pci/rescan', value: '1' };
    default:
      return { file: dev(c.op), value, ...at };
  }
}
