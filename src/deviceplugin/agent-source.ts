import type { Agent } from '../agent/agent.js';
import type { HostPort } from '../host/port.js';
import type { PciAddress } from '../pci/address.js';
import { sysfsHex, sysfsInt } from '../pci/hex.js';
import { VFIO_PCI } from '../pci/model.js';
import { emptyPciIds, type PciIdNames } from '../pci/pciids.js';
import { perDeviceResourceName, pooledResourceName } from './resource-name.js';
import type { DeviceSource, PluginDevice } from './source.js';

/**
 * The adapter from the standalone agent to the device plugins. It reads only the agent's public
 * status and its event bus, plus the host port, so the engine can change shape behind it.
 */
export type AgentView = Pick<Agent, 'status' | 'bus'>;

export interface AgentSourceOptions {
  names?: PciIdNames;
  /** Per-device resource names `<vendor>/<node>-<address>` for this node, instead of pooled. */
  perDeviceNode?: string;
  /**
   * Which devices get per-device names when perDeviceNode is set (Harvester's per-claim
   * `disableResourcePooling`); all of them when absent.
   */
  perDevice?: (address: PciAddress) => boolean;
  /**
   * A name decided elsewhere wins (Kubernetes mode: the PCIDevice's status.resourceName, kept
   * from Harvester or per-device); undefined falls back to the rules here.
   */
  resourceNameOf?: (address: PciAddress) => string | undefined;
}

/**
 * Claim states whose devices are not advertised at all: refused, absent, or a different card
 * at the address. Every other state (pending, waiting, busy, error) lists the device Unhealthy.
 */
const UNLISTED = new Set(['refused', 'missing', 'changed']);

interface Fixed {
  resourceName: string;
  numaNode: number | null;
}

export class AgentDeviceSource implements DeviceSource {
  private readonly fixed = new Map<PciAddress, Fixed>();
  /**
   * Set by module.lost, cleared by recovery.completed; null until either is seen. The events
   * decide rather than the keeper's `recovering`, which clears only after recovery.completed
   * has been delivered (a snapshot taken on that event would still see it set).
   */
  private lost: boolean | null = null;

  constructor(
    private readonly agent: AgentView,
    private readonly host: Pick<
      HostPort,
      'readDeviceAttr' | 'readDeviceLinks' | 'vfioGroupNodeExists'
    >,
    private readonly opts: AgentSourceOptions = {},
  ) {}

  subscribe(fn: () => void): () => void {
    // Every domain event may change health (module.lost, device.drift, device.bound,
    // recovery.completed, claims added or removed): the snapshot decides.
    return this.agent.bus.subscribe((e) => {
      if (e.type === 'module.lost') this.lost = true;
      else if (e.type === 'recovery.completed') this.lost = false;
      fn();
    });
  }

  /** Resource name and NUMA node do not change while the device exists: read them once. */
  private async fixedInfo(address: PciAddress): Promise<Fixed> {
    const known = this.fixed.get(address);
    if (known) return known;
    const [vendor, device, numa] = await Promise.all([
      this.host.readDeviceAttr(address, 'vendor'),
      this.host.readDeviceAttr(address, 'device'),
      this.host.readDeviceAttr(address, 'numa_node'),
    ]);
    const names = this.opts.names ?? emptyPciIds;
    const v = sysfsHex(vendor, 4) ?? '0000';
    const d = sysfsHex(device, 4) ?? '0000';
    const n = sysfsInt(numa);
    const resourceName =
      this.opts.perDeviceNode !== undefined && (this.opts.perDevice?.(address) ?? true)
        ? perDeviceResourceName(names.vendor(v), this.opts.perDeviceNode, address)
        : pooledResourceName(names.vendor(v), names.device(v, d), d);
    const f: Fixed = { resourceName, numaNode: n === null || n < 0 ? null : n };
    if (vendor !== null) this.fixed.set(address, f);
    return f;
  }

  async snapshot(): Promise<PluginDevice[]> {
    const st = await this.agent.status(0);
    const recovering = this.lost ?? st.keeper.recovering;
    const modulesOk = st.keeper.healthy && !recovering;
    const out: PluginDevice[] = [];
    const seen = new Set<PciAddress>();
    for (const c of st.claims) {
      if (UNLISTED.has(c.state)) continue;
      for (const address of c.members) {
        if (seen.has(address)) continue;
        seen.add(address);
        const [f, links] = await Promise.all([
          this.fixedInfo(address),
          this.host.readDeviceLinks(address),
        ]);
        let reason: string | null = null;
        if (c.state !== 'ready') reason = `claim ${c.state}${c.message ? `: ${c.message}` : ''}`;
        else if (!modulesOk)
          reason = recovering
            ? 'vfio modules recovering'
            : `vfio modules not live${st.keeper.waiting ? `: ${st.keeper.waiting}` : ''}`;
        else if (links.driver !== VFIO_PCI) reason = `on ${links.driver ?? 'no driver'}`;
        else if (links.iommuGroup === null) reason = 'no IOMMU group';
        else if (!(await this.host.vfioGroupNodeExists(links.iommuGroup)))
          reason = `/dev/vfio/${links.iommuGroup} missing`;
        out.push({
          address,
          // Asked on every snapshot: a PCIDevice's name can change (disableResourcePooling).
          resourceName: this.opts.resourceNameOf?.(address) ?? f.resourceName,
          numaNode: f.numaNode,
          iommuGroup: links.iommuGroup,
          vfioDev: links.vfioDev,
          healthy: reason === null,
          reason,
        });
      }
    }
    for (const a of [...this.fixed.keys()]) if (!seen.has(a)) this.fixed.delete(a);
    return out;
  }
}
