import type { PciAddress } from './address.js';

export const VFIO_PCI = 'vfio-pci';

/**
 * vfio-pci and its variant drivers (mlx5_vfio_pci, hisi_acc_vfio_pci, ...): they register the
 * vfio device (its group node, <dev>/vfio-dev), and unbinding one waits for the VM that holds
 * the device, for as long as it holds it.
 */
export function isVfioDriver(name: string): boolean {
  return name.includes('vfio');
}
/** Drivers under which a group member does not stop the group from being used by a VM. */
export const PASSTHROUGH_DRIVERS: readonly string[] = [VFIO_PCI, 'pci-stub'];

export interface PciFunction {
  address: PciAddress;
  vendorId: string;
  deviceId: string;
  subsystemVendorId: string;
  subsystemDeviceId: string;
  /** class, subclass and prog-if: 6 hex digits. */
  classId: string;
  revision: string;
  vendorName: string;
  deviceName: string;
  subsystemVendorName: string;
  subsystemDeviceName: string;
  className: string;
  subclassName: string;
  progIfName: string | null;
  driver: string | null;
  driverOverride: string | null;
  iommuGroup: number | null;
  numaNode: number | null;
  parent: PciAddress | null;
  /** PCI-to-PCI or CardBus bridge (header type 1 or 2, or class 0604/0607). */
  isBridge: boolean;
  bootVga: boolean;
  resetMethods: string[];
  sriovTotalVfs: number | null;
  sriovNumVfs: number | null;
  physfn: PciAddress | null;
  virtfns: PciAddress[];
}

export interface IommuGroup {
  id: number;
  members: PciAddress[];
}

export interface Inventory {
  devices: PciFunction[];
  byAddress: Map<PciAddress, PciFunction>;
  groups: Map<number, IommuGroup>;
}

export function makeInventory(devices: PciFunction[]): Inventory {
  const byAddress = new Map<PciAddress, PciFunction>();
  const groups = new Map<number, IommuGroup>();
  for (const d of devices) {
    byAddress.set(d.address, d);
    if (d.iommuGroup === null) continue;
    let g = groups.get(d.iommuGroup);
    if (!g) {
      g = { id: d.iommuGroup, members: [] };
      groups.set(d.iommuGroup, g);
    }
    g.members.push(d.address);
  }
  return { devices, byAddress, groups };
}
