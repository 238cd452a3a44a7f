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
 * The engine's view of the host, read incrementally: a full discovery on start, on resync and
 * when the bus changed (a device appeared or vanished, a PCI add/remove uevent); otherwise only
 * the devices a piece of work touches are read again. Devices with a kernel operation pending
 * are read without their lock-taking attributes.
 */
export class HostObserver {
  private view: HostView | null = null;
  private stale = true;
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
    const vfioNodes = new Set<number>();
    await Promise.all(
      [...inv.groups.keys()].map(async (g) => {
        if (await this.host.vfioGroupNodeExists(g)) vfioNodes.add(g);
      }),
    );
    this.stale = false;
    return { inv, uses, vfioNodes };
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
    this.view = { inv, uses: prev.uses, vfioNodes, serials: await this.readSerials(inv, addrs) };
    return this.view;
  }
}
