import type { HostPort, HostUses } from '../host/port.js';
import { TOPOLOGY_FORMAT, type Topology, type TopologyDevice } from '../topology/format.js';
import { isPciAddress } from './address.js';
import type { Inventory } from './model.js';

/** Everything a snapshot needs, read through the host port. */
export async function takeSnapshot(
  host: HostPort,
  inv: Inventory,
  name: string,
): Promise<Topology> {
  const [kernel, uses] = await Promise.all([host.kernelInfo(), host.hostUses()]);
  return inventoryToTopology(inv, name, kernel, uses);
}

export function inventoryToTopology(
  inv: Inventory,
  name: string,
  kernel: {
    release: string;
    cmdline: string;
    iommus: string[];
    interruptRemapping: 'enabled' | 'disabled' | 'unknown';
  },
  uses: HostUses,
): Topology {
  const devices: TopologyDevice[] = inv.devices.map((d) => {
    const t: TopologyDevice = {
      address: d.address,
      vendor: d.vendorId,
      device: d.deviceId,
      subsystemVendor: d.subsystemVendorId,
      subsystemDevice: d.subsystemDeviceId,
      class: d.classId,
      revision: d.revision,
      driver: d.driver,
      iommuGroup: d.iommuGroup,
      numaNode: d.numaNode ?? -1,
      parent: d.parent,
    };
    if (d.driverOverride !== null) t.driverOverride = d.driverOverride;
    if (d.bootVga) t.bootVga = true;
    if (d.resetMethods.length > 0) t.resetMethods = d.resetMethods;
    if (d.physfn !== null) t.physfn = d.physfn;
    if (d.sriovTotalVfs !== null && d.sriovTotalVfs > 0) {
      const firstVf = d.virtfns[0] ? inv.byAddress.get(d.virtfns[0]) : undefined;
      t.sriov = {
        totalVfs: d.sriovTotalVfs,
        numVfs: d.sriovNumVfs ?? 0,
        vfDevice: firstVf?.deviceId ?? d.deviceId,
      };
    }
    return t;
  });
  // Keep parents that are part of the snapshot only (a partial tree stays loadable).
  for (const t of devices)
    if (t.parent && !(isPciAddress(t.parent) && inv.byAddress.has(t.parent))) t.parent = null;
  const topo: Topology = {
    format: TOPOLOGY_FORMAT,
    name,
    description: `snapshot of ${name}`,
    kernel: {
      release: kernel.release,
      cmdline: kernel.cmdline,
      iommus: kernel.iommus,
      interruptRemapping: kernel.interruptRemapping,
    },
    devices,
    hostUses: uses.uses.filter((u) => isPciAddress(u.address) && inv.byAddress.has(u.address)),
  };
  if (uses.unknown.length > 0) topo.hostUnknown = [...uses.unknown];
  return topo;
}
