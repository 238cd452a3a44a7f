import type { HostPort } from '../host/port.js';
import type { PciAddress } from '../pci/address.js';
import { discover, readFunction } from '../pci/discovery.js';
import { isVfioDriver, type Inventory, type PciFunction } from '../pci/model.js';
import type { PciIdNames } from '../pci/pciids.js';
import type { InFlight } from './inflight.js';
import type { Observed } from './plan.js';

/**
 * What the host looked like: everything of Observed but what the engine itself knows. `inv`
 * holds the devices work covers (claimed and ledger devices and every member of their IOMMU
 * groups) and every group's membership; `bus` every function present, with its group.
 */
export interface HostView extends Omit<Observed, 'modules' | 'busy'> {
  bus: ReadonlyMap<PciAddress, number | null>;
}

/** A full discovery, before the view keeps only what work covers. */
interface FullLook {
  inv: Inventory;
  uses: HostView['uses'];
  vfioNodes: Set<number>;
}

/**
 * The engine's view of the host, read incrementally: a full discovery on start and when the bus
 * changed (a device appeared or vanished, a PCI add/remove uevent); otherwise only the devices a
 * piece of work touches are read again. Devices with a kernel operation pending are read
 * without their lock-taking attributes.
 *
 * A resync lists the bus rather than rediscovering it: a plan reads only claimed and ledger
 * devices and their IOMMU groups' members, which the resync's work reads afresh anyway, and a
 * group's membership changes only by devices coming or going, which the listing shows. On a
 * 4096-function host a full discovery costs ~250 ms of CPU; the listing ~3 ms (issue 11).
 *
 * For the same reason the view keeps full records only of the devices work covers, and of the
 * others their address and group: 4096 records held for good were ~3 MiB of the agent's heap.
 */
export class HostObserver {
  private view: HostView | null = null;
  private stale = true;
  /** The next look lists the bus and reads host uses again (the resync's look). */
  private resync = false;
  /**
   * Device Serial Numbers of the devices work was looked at for, by address. Read once per
   * device presence: a device that vanished, or any add/remove (`reverify`), forgets them.
   */
  private readonly serials = new Map<PciAddress, string | null>();

  constructor(
    private readonly host: HostPort,
    private readonly inflight: InFlight,
    private readonly names?: PciIdNames,
    /** Told after each full discovery: its garbage is dead now (the agent collects it). */
    private readonly afterFull?: () => void,
  ) {}

  /** The next look reads everything; with `reverify`, the serial numbers too. */
  markStale(opts: { reverify?: boolean } = {}): void {
    this.stale = true;
    if (opts.reverify === true) this.serials.clear();
  }

  /**
   * The next look checks the bus listing (a difference makes it a full discovery) and reads
   * what the host uses again. Devices present all along keep the serials read for them.
   */
  markResync(): void {
    this.resync = true;
  }

  /**
   * The serials of `addrs` that are present, read where not known yet. Only these devices'
   * (the ones a piece of work covers): config space past 0x100 is slow to read on real
   * hardware, so discovery never reads it.
   */
  private async readSerials(
    bus: HostView['bus'],
    addrs: ReadonlySet<PciAddress>,
  ): Promise<ReadonlyMap<PciAddress, string | null>> {
    for (const a of [...this.serials.keys()]) if (!bus.has(a)) this.serials.delete(a);
    await Promise.all(
      [...addrs]
        .filter((a) => bus.has(a) && !this.serials.has(a))
        .map(async (a) => {
          this.serials.set(a, await this.host.readDeviceSerial(a));
        }),
    );
    return new Map(this.serials);
  }

  last(): HostView | null {
    return this.view;
  }

  private async full(): Promise<FullLook> {
    const skipLockedAttrs = new Set(this.inflight.busy().keys());
    const [inv, uses] = await Promise.all([
      discover(this.host, this.names, { skipLockedAttrs }),
      this.host.hostUses(),
    ]);
    // vfio makes a group's node when a member binds to a vfio driver, and a plan asks only
    // whether a group whose members are all on vfio-pci has one: 16 checks, not 4096.
    const vfioGroups = new Set<number>();
    for (const dv of inv.devices)
      if (dv.iommuGroup !== null && dv.driver !== null && isVfioDriver(dv.driver))
        vfioGroups.add(dv.iommuGroup);
    const vfioNodes = new Set<number>();
    await Promise.all(
      [...vfioGroups].map(async (g) => {
        if (await this.host.vfioGroupNodeExists(g)) vfioNodes.add(g);
      }),
    );
    this.stale = false;
    this.resync = false;
    return { inv, uses, vfioNodes };
  }

  /** Whether the bus lists exactly the devices of `bus`. */
  private async sameBus(bus: HostView['bus']): Promise<boolean> {
    const listed = await this.host.listDevices();
    return listed.length === bus.size && listed.every((a) => bus.has(a));
  }

  /**
   * A full discovery becomes the view, keeping the records of `addrs` and `keep` and of every
   * member of their groups as the discovery found them (a device that joined a claimed group is
   * kept). Only now is the previous view garbage too, so this is when the discovery's garbage is
   * reported.
   */
  private async replace(
    f: FullLook,
    addrs: ReadonlySet<PciAddress>,
    keep: () => Iterable<PciAddress>,
  ) {
    const bus = new Map<PciAddress, number | null>();
    for (const dv of f.inv.devices) bus.set(dv.address, dv.iommuGroup);
    const kept = new Set<PciAddress>();
    for (const a of [...addrs, ...keep()]) {
      const g = bus.get(a);
      if (g === undefined) continue;
      kept.add(a);
      if (g !== null) for (const m of f.inv.groups.get(g)?.members ?? []) kept.add(m);
    }
    const devices = f.inv.devices.filter((dv) => kept.has(dv.address));
    this.view = {
      inv: withGroups(devices, f.inv.groups),
      uses: f.uses,
      vfioNodes: f.vfioNodes,
      bus,
      serials: await this.readSerials(bus, addrs),
    };
    this.afterFull?.();
    return this.view;
  }

  /**
   * Re-reads `addrs` into the last view (or everything, when stale or the bus changed). `keep`:
   * the devices every other piece of work covers, whose records a full discovery keeps in the
   * view beside those of `addrs`; asked for only then.
   */
  async look(
    addrs: ReadonlySet<PciAddress>,
    keep: () => Iterable<PciAddress> = () => [],
  ): Promise<HostView> {
    const prev = this.view;
    if (!prev || this.stale) return this.replace(await this.full(), addrs, keep);
    let uses = prev.uses;
    if (this.resync) {
      this.resync = false;
      const [same, fresh] = await Promise.all([this.sameBus(prev.bus), this.host.hostUses()]);
      if (!same) return this.replace(await this.full(), addrs, keep);
      uses = fresh;
    }
    const fresh = await Promise.all(
      [...addrs].map(
        async (a) =>
          [
            a,
            await readFunction(this.host, a, this.names, this.inflight.get(a) !== undefined),
          ] as const,
      ),
    );
    // Gone, come, or back in another group (removed and added between two looks): the groups
    // the view knows are no longer the host's.
    if (fresh.some(([a, f]) => (f === null ? prev.bus.has(a) : prev.bus.get(a) !== f.iommuGroup)))
      return this.replace(await this.full(), addrs, keep);
    const byAddr = new Map(prev.inv.byAddress);
    for (const [a, f] of fresh) if (f) byAddr.set(a, f);
    const inv = withGroups([...byAddr.values()], prev.inv.groups);
    const vfioNodes = new Set(prev.vfioNodes);
    const groups = new Set<number>();
    for (const [, f] of fresh) if (f?.iommuGroup != null) groups.add(f.iommuGroup);
    await Promise.all(
      [...groups].map(async (g) => {
        if (await this.host.vfioGroupNodeExists(g)) vfioNodes.add(g);
        else vfioNodes.delete(g);
      }),
    );
    this.view = {
      inv,
      uses,
      vfioNodes,
      bus: prev.bus,
      serials: await this.readSerials(prev.bus, addrs),
    };
    return this.view;
  }
}

/** An inventory of some devices, with every group's membership (not only theirs). */
function withGroups(devices: PciFunction[], groups: Inventory['groups']): Inventory {
  return { devices, byAddress: new Map(devices.map((dv) => [dv.address, dv])), groups };
}
