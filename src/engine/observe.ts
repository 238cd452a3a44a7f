import type { HostPort } from '../host/port.js';
import type { PciAddress } from '../pci/address.js';
import { discover, readFunction } from '../pci/discovery.js';
import { makeInventory } from '../pci/model.js';
import type { PciIdNames } from '../pci/pciids.js';
import type { InFlight } from './inflight.js';
import type { Observed } from './plan.js';

/** What the host looked like: everything of Observed but what the engine itself knows. */
export type HostView = Omit<Observed, 'modules' | 'busy'>;

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
    inv: HostView['inv'],
    addrs: ReadonlySet<PciAddress>,
  ): Promise<ReadonlyMap<PciAddress, string | null>> {
    for (const a of [...this.serials.keys()]) if (!inv.byAddress.has(a)) this.serials.delete(a);
    await Promise.all(
      [...addrs]
        .filter((a) => inv.byAddress.has(a) && !this.serials.has(a))
        .map(async (a) => {
          this.serials.set(a, await this.host.readDeviceSerial(a));
        }),
    );
    return new Map(this.serials);
  }

  last(): HostView | null {
    return this.view;
  }

  private async full(): Promise<HostView> {
    const skipLockedAttrs = new Set(this.inflight.busy().keys());
    const [inv, uses] = await Promise.all([
      discover(this.host, this.names, { skipLockedAttrs }),
      this.host.hostUses(),
    ]);
    // vfio makes a group's node when a member binds to a vfio driver, and a plan asks only
    // whether a group whose members are all on vfio-pci has one: 16 checks, not 4096.
    const vfioGroups = new Set<number>();
    for (const dv of inv.devices)
      if (dv.iommuGroup !== null && dv.driver?.includes('vfio') === true)
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

  /** Whether the bus lists exactly the devices of `inv`. */
  private async sameBus(inv: HostView['inv']): Promise<boolean> {
    const listed = await this.host.listDevices();
    return listed.length === inv.byAddress.size && listed.every((a) => inv.byAddress.has(a));
  }

  /**
   * A full discovery becomes the view. Only now is the previous view garbage too, so this is
   * when the discovery's garbage is reported.
   */
  private async replace(v: Omit<HostView, 'serials'>, addrs: ReadonlySet<PciAddress>) {
    this.view = { ...v, serials: await this.readSerials(v.inv, addrs) };
    this.afterFull?.();
    return this.view;
  }

  /** Re-reads `addrs` into the last view (or everything, when stale or the bus changed). */
  async look(addrs: ReadonlySet<PciAddress>): Promise<HostView> {
    const prev = this.view;
    if (!prev || this.stale) return this.replace(await this.full(), addrs);
    let uses = prev.uses;
    if (this.resync) {
      this.resync = false;
      const [same, fresh] = await Promise.all([this.sameBus(prev.inv), this.host.hostUses()]);
      if (!same) return this.replace(await this.full(), addrs);
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
    if (fresh.some(([a, f]) => (f === null) !== !prev.inv.byAddress.has(a)))
      return this.replace(await this.full(), addrs);
    const byAddr = new Map(prev.inv.byAddress);
    for (const [a, f] of fresh) if (f) byAddr.set(a, f);
    const inv = makeInventory(prev.inv.devices.map((dv) => byAddr.get(dv.address) ?? dv));
    const vfioNodes = new Set(prev.vfioNodes);
    const groups = new Set<number>();
    for (const [, f] of fresh) if (f?.iommuGroup != null) groups.add(f.iommuGroup);
    await Promise.all(
      [...groups].map(async (g) => {
        if (await this.host.vfioGroupNodeExists(g)) vfioNodes.add(g);
        else vfioNodes.delete(g);
      }),
    );
    this.view = { inv, uses, vfioNodes, serials: await this.readSerials(inv, addrs) };
    return this.view;
  }
}
