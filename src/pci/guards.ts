import type { HostUse } from '../host/port.js';
import type { PciAddress } from './address.js';
import { PASSTHROUGH_DRIVERS, type Inventory, type PciFunction } from './model.js';

export interface Blocker {
  address: PciAddress;
  driver: string;
}

export interface GroupViability {
  group: number;
  viable: boolean;
  members: PciAddress[];
  /** Endpoints on a host driver: the kernel refuses to hand the group to a VM while they are. */
  blockers: Blocker[];
  /** True when at least one member is on vfio-pci (then /dev/vfio/<group> exists). */
  anyOnVfio: boolean;
}

/**
 * The kernel's rule: a group is usable by a VM only when every endpoint in it is bound to
 * vfio-pci or pci-stub or has no driver. Bridges are exempt.
 */
export function groupViability(inv: Inventory, group: number): GroupViability {
  const members = inv.groups.get(group)?.members ?? [];
  const blockers: Blocker[] = [];
  let anyOnVfio = false;
  for (const a of members) {
    const d = inv.byAddress.get(a);
    if (!d) continue;
    if (d.driver === 'vfio-pci') anyOnVfio = true;
    if (d.isBridge || d.driver === null || PASSTHROUGH_DRIVERS.includes(d.driver)) continue;
    blockers.push({ address: a, driver: d.driver });
  }
  return { group, viable: blockers.length === 0, members: [...members], blockers, anyOnVfio };
}

export interface CriticalReason {
  address: PciAddress;
  reason: string;
}

/** Why the host needs this device; empty when passing it through would not hurt the host. */
export function hostCriticalReasons(d: PciFunction, uses: readonly HostUse[]): string[] {
  const reasons: string[] = [];
  if (d.classId.startsWith('0600')) reasons.push('host bridge');
  else if (d.isBridge) reasons.push('PCI bridge');
  else if (d.classId.startsWith('06')) reasons.push('bridge (chipset)');
  if (d.bootVga) reasons.push('boot VGA device (the host console)');
  for (const u of uses) if (u.address === d.address) reasons.push(u.use);
  return [...new Set(reasons)];
}
