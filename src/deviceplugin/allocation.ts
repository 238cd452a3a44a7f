import { compareAddresses, type PciAddress } from '../pci/address.js';
import { pciResourceEnvVar } from './resource-name.js';

/** What allocation decisions need to know of a device. */
export interface Placement {
  address: PciAddress;
  numaNode: number | null;
  iommuGroup: number | null;
}

const byAddress = (a: string, b: string): number =>
  compareAddresses(a as PciAddress, b as PciAddress);

/**
 * Picks `size` groups' worth of devices from `pool`: whole IOMMU groups first (an exact fit,
 * else the largest group that fits), splitting a group only when nothing else is left, and then
 * the smallest one. Devices without a group count as groups of one.
 */
function pickByGroups(pool: Placement[], need: number, touched: Set<string>): string[] {
  const groups = new Map<string, string[]>();
  for (const d of [...pool].sort((a, b) => byAddress(a.address, b.address))) {
    const key = d.iommuGroup === null ? `a:${d.address}` : `g:${d.iommuGroup}`;
    const list = groups.get(key) ?? [];
    list.push(d.address);
    groups.set(key, list);
  }
  const out: string[] = [];
  // Groups must-include already opened are completed first: the rest of them is useless to
  // anyone else (a VM needs the whole group).
  for (const key of [...groups.keys()]) {
    if (!touched.has(key)) continue;
    const members = groups.get(key) ?? [];
    out.push(...members.slice(0, need - out.length));
    groups.delete(key);
    if (out.length >= need) return out;
  }
  const order = [...groups.entries()].sort(
    (a, b) => byAddress(a[1][0] ?? '', b[1][0] ?? '') || a[0].localeCompare(b[0]),
  );
  const left = new Map(order);
  while (out.length < need && left.size > 0) {
    const want = need - out.length;
    const entries = [...left.entries()];
    const exact = entries.find(([, m]) => m.length === want);
    const fitting = entries.filter(([, m]) => m.length < want);
    const largestFit = fitting.sort((a, b) => b[1].length - a[1].length)[0];
    const smallest = entries.sort((a, b) => a[1].length - b[1].length)[0];
    const [key, members] = exact ?? largestFit ?? smallest ?? ['', []];
    out.push(...members.slice(0, want));
    left.delete(key);
  }
  return out;
}

function groupKey(d: Placement): string {
  return d.iommuGroup === null ? `a:${d.address}` : `g:${d.iommuGroup}`;
}

/**
 * GetPreferredAllocation for one container: every must-include device, then devices from one
 * NUMA node (the must-include devices' node when they share one, else the node that can supply
 * the rest alone, else the one with the most), whole IOMMU groups first. Unknown or duplicate
 * IDs are ignored; the result never exceeds `size` unless must-include alone does.
 */
export function preferredAllocation(
  devices: ReadonlyMap<string, Placement>,
  available: readonly string[],
  mustInclude: readonly string[],
  size: number,
): string[] {
  const chosen: string[] = [];
  for (const id of mustInclude) if (!chosen.includes(id)) chosen.push(id);
  if (chosen.length >= size) return chosen;
  const pool: Placement[] = [];
  for (const id of new Set(available)) {
    const d = devices.get(id);
    if (d && !chosen.includes(id)) pool.push(d);
  }
  const need = size - chosen.length;
  const touched = new Set<string>();
  const mustNodes = new Set<number | null>();
  for (const id of chosen) {
    const d = devices.get(id);
    if (!d) continue;
    touched.add(groupKey(d));
    mustNodes.add(d.numaNode);
  }
  const byNode = new Map<number | null, Placement[]>();
  for (const d of pool) {
    const list = byNode.get(d.numaNode) ?? [];
    list.push(d);
    byNode.set(d.numaNode, list);
  }
  const mustNode = mustNodes.size === 1 ? [...mustNodes][0] : undefined;
  const nodes = [...byNode.entries()].sort((a, b) => {
    const [na, la] = a;
    const [nb, lb] = b;
    const score = (n: number | null, l: Placement[]): number =>
      (n === mustNode ? 4 : 0) + (l.length >= need ? 2 : 0) + (n !== null ? 1 : 0);
    return (
      score(nb, lb) - score(na, la) ||
      (la.length >= need ? 0 : lb.length - la.length) ||
      (na ?? Infinity) - (nb ?? Infinity)
    );
  });
  for (const [, list] of nodes) {
    if (chosen.length >= size) break;
    chosen.push(...pickByGroups(list, size - chosen.length, touched));
  }
  return chosen;
}

export interface DeviceSpecOut {
  container_path: string;
  host_path: string;
  permissions: string;
}

export interface ContainerAllocation {
  envs: Record<string, string>;
  devices: DeviceSpecOut[];
}

/**
 * The response for one container request, built fresh each time (Harvester and KubeVirt shared
 * one object between containers). The variable holds exactly the requested addresses in request
 * order: virt-launcher pops them in order for the VM's hostDevices, so an extra or reordered
 * address gives a VM the wrong card.
 */
export function containerAllocation(
  resourceName: string,
  requested: readonly { address: PciAddress; iommuGroup: number; vfioDev: string | null }[],
): ContainerAllocation {
  const devices: DeviceSpecOut[] = [];
  const seen = new Set<string>();
  const add = (p: string): void => {
    if (seen.has(p)) return;
    seen.add(p);
    devices.push({ container_path: p, host_path: p, permissions: 'mrw' });
  };
  add('/dev/vfio/vfio');
  for (const d of requested) {
    add(`/dev/vfio/${d.iommuGroup}`);
    if (d.vfioDev !== null) add(`/dev/vfio/devices/${d.vfioDev}`);
  }
  return {
    envs: { [pciResourceEnvVar(resourceName)]: requested.map((d) => d.address).join(',') },
    devices,
  };
}
