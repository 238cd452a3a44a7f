import type { HostUses } from '../host/port.js';
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

/** Why a claim of one function is refused. */
export interface GuardVerdict {
  /** Refusals --force does not override. */
  hard: string[];
  /** Refusals --force overrides: the host needs the device, or nobody can tell. */
  soft: string[];
}

const BRIDGE_CLASSES: Readonly<Record<string, string>> = {
  '0600': 'host bridge',
  '0604': 'PCI-PCI bridge',
  '0607': 'CardBus bridge',
};

/**
 * Bridges are never passed through: vfio-pci refuses header types 1 and 2, and unbinding
 * pcieport from a port drops hotplug and AER for everything behind it.
 */
export function bridgeKind(d: PciFunction): string | null {
  const k = BRIDGE_CLASSES[d.classId.slice(0, 4)];
  if (k !== undefined) return k;
  return d.isBridge ? 'bridge (header type 1/2)' : null;
}

/**
 * Functions of the platform itself rather than cards: the host's interrupt routing, IOMMU,
 * error reporting and performance monitoring live here, and a VM has no use for them.
 * - 08xx system peripherals (PIC/IOAPIC, DMA, timer, RTC, hotplug controller, IOMMU 0806,
 *   root-complex event collector 0807, other 0880 such as Xeon uncore and VT-d units), but
 *   not 0805 SD host controllers, which are ordinary card readers.
 * - 1101 performance counters.
 * - 1080 (other encryption, e.g. the AMD platform security processor) and 1180 (other signal
 *   processing, e.g. uncore and thermal functions) when integrated in the root complex (no
 *   parent bridge): the same classes on a card behind a port are accelerators.
 */
export function platformFunction(d: PciFunction): string | null {
  const cls = d.classId.slice(0, 4);
  if (cls.startsWith('08') && cls !== '0805') return `platform function (${d.subclassName})`;
  if (cls === '1101') return 'platform function (performance counters)';
  if ((cls === '1080' || cls === '1180') && d.parent === null)
    return `platform function (${d.subclassName}, integrated in the root complex)`;
  return null;
}

/** Storage (01xx) and network (02xx) functions: what an untraced mount or route may sit on. */
function mayCarryHostData(d: PciFunction): boolean {
  return d.classId.startsWith('01') || d.classId.startsWith('02');
}

/**
 * Pure: why a claim of `d` must not take it from the host. Hard refusals hold even with
 * --force; soft ones name what the host uses it for, or what passthru could not trace.
 */
export function claimGuards(d: PciFunction, host: HostUses): GuardVerdict {
  const hard: string[] = [];
  const soft: string[] = [];
  const bridge = bridgeKind(d);
  if (bridge !== null) hard.push(`${bridge}: bridges are never passed through`);
  else if (d.classId.startsWith('06')) soft.push(`chipset bridge (${d.subclassName})`);
  const platform = platformFunction(d);
  if (platform !== null) soft.push(platform);
  if (d.bootVga) soft.push('boot VGA device (the host console)');
  // A container host mounts thousands of overlays on one disk: name a few, count the rest.
  const uses = [...new Set(host.uses.filter((u) => u.address === d.address).map((u) => u.use))];
  soft.push(...uses.slice(0, 3));
  if (uses.length > 3) soft.push(`and ${uses.length - 3} more host uses (see passthru doctor)`);
  if (mayCarryHostData(d) && host.unknown.length > 0) {
    const shown = host.unknown.slice(0, 3);
    if (host.unknown.length > 3)
      shown.push(`and ${host.unknown.length - 3} more (see passthru doctor)`);
    soft.push(...shown);
  }
  return { hard: [...new Set(hard)], soft: [...new Set(soft)] };
}
