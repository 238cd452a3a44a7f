import { PtError } from '../errors.js';
import type { HostUses } from '../host/port.js';
import { bridgeKind, claimGuards, groupViability } from '../pci/guards.js';
import type { Inventory, PciFunction } from '../pci/model.js';
import { printable, table } from './table.js';

/** The `passthru list --json` object: stable field names, documented in docs/cli.md. */
export function deviceJson(d: PciFunction): Record<string, unknown> {
  return {
    address: d.address,
    vendorId: d.vendorId,
    deviceId: d.deviceId,
    subsystemVendorId: d.subsystemVendorId,
    subsystemDeviceId: d.subsystemDeviceId,
    classId: d.classId,
    revision: d.revision,
    driver: d.driver,
    driverOverride: d.driverOverride,
    iommuGroup: d.iommuGroup,
    numaNode: d.numaNode,
    vendorName: d.vendorName,
    deviceName: d.deviceName,
    subsystemVendorName: d.subsystemVendorName,
    subsystemDeviceName: d.subsystemDeviceName,
    className: d.subclassName,
    progIfName: d.progIfName,
    isBridge: d.isBridge,
    bootVga: d.bootVga,
    parent: d.parent,
    resetMethods: d.resetMethods,
    sriovTotalVfs: d.sriovTotalVfs,
    sriovNumVfs: d.sriovNumVfs,
    physfn: d.physfn,
    virtfns: d.virtfns,
  };
}

export interface ListFilter {
  class?: string;
  vendor?: string;
  driver?: string;
  group?: string;
}

export function filterDevices(inv: Inventory, f: ListFilter): PciFunction[] {
  let out = inv.devices;
  if (f.class !== undefined) {
    const c = f.class.toLowerCase().replace(/^0x/, '');
    if (!/^[0-9a-f]{2,6}$/.test(c))
      throw new PtError(
        'PT_ERR_INVALID_ARGUMENT',
        `--class takes 2-6 hex digits (02, 0200, 030000), not ${f.class}`,
      );
    out = out.filter((d) => d.classId.startsWith(c));
  }
  if (f.vendor !== undefined) {
    const m = /^([0-9a-f]{4})(?::([0-9a-f]{4}))?$/i.exec(f.vendor);
    if (!m)
      throw new PtError(
        'PT_ERR_INVALID_ARGUMENT',
        `--vendor takes vvvv or vvvv:dddd, not ${f.vendor}`,
      );
    const v = (m[1] ?? '').toLowerCase();
    const dv = m[2]?.toLowerCase();
    out = out.filter((d) => d.vendorId === v && (dv === undefined || d.deviceId === dv));
  }
  if (f.driver !== undefined) {
    const want = f.driver === 'none' ? null : f.driver;
    out = out.filter((d) => d.driver === want);
  }
  if (f.group !== undefined) {
    if (!/^\d+$/.test(f.group))
      throw new PtError('PT_ERR_INVALID_ARGUMENT', `--group takes a number, not ${f.group}`);
    const g = Number(f.group);
    out = out.filter((d) => d.iommuGroup === g);
  }
  return out;
}

export function listTable(devices: PciFunction[]): string {
  return table(
    ['ADDRESS', 'CLASS', 'IDS', 'GROUP', 'NUMA', 'DRIVER', 'DEVICE'],
    devices.map((d) => [
      d.address,
      `${d.subclassName} [${d.classId.slice(0, 4)}]`,
      `${d.vendorId}:${d.deviceId}`,
      d.iommuGroup === null ? '-' : String(d.iommuGroup),
      d.numaNode === null ? '-' : String(d.numaNode),
      d.driver ?? '-',
      `${d.vendorName} ${d.deviceName}`,
    ]),
  );
}

export interface GroupView {
  group: number;
  /** A VM could open the group right now (every endpoint on vfio-pci/pci-stub or driverless). */
  viable: boolean;
  blockers: { address: string; driver: string }[];
  /** passthru could claim the whole group (--with-group): no member is needed by the host. */
  claimable: boolean;
  critical: { address: string; reasons: string[] }[];
  members: {
    address: string;
    class: string;
    ids: string;
    driver: string | null;
    bridge: boolean;
    name: string;
  }[];
}

export function groupViews(inv: Inventory, uses: HostUses): GroupView[] {
  return [...inv.groups.keys()]
    .sort((a, b) => a - b)
    .map((g) => {
      const v = groupViability(inv, g);
      const critical: GroupView['critical'] = [];
      const members: GroupView['members'] = [];
      for (const a of v.members) {
        const d = inv.byAddress.get(a);
        if (!d) continue;
        members.push({
          address: d.address,
          class: d.subclassName,
          ids: `${d.vendorId}:${d.deviceId}`,
          driver: d.driver,
          bridge: bridgeKind(d) !== null,
          name: `${d.vendorName} ${d.deviceName}`,
        });
        // Bridges (host bridges too) are exempt members: never bound, not in the way.
        const verdict = bridgeKind(d) !== null ? { hard: [], soft: [] } : claimGuards(d, uses);
        const reasons = [...verdict.hard, ...verdict.soft];
        if (reasons.length > 0) critical.push({ address: d.address, reasons });
      }
      const endpoints = members.filter((m) => !m.bridge).length;
      return {
        group: g,
        viable: v.viable,
        blockers: v.blockers,
        claimable: critical.length === 0 && endpoints > 0,
        critical,
        members,
      };
    });
}

export function groupsText(views: GroupView[]): string {
  const out: string[] = [];
  for (const g of views) {
    const now = g.viable
      ? 'yes'
      : `no: ${g.blockers.map((b) => `${b.address} is on ${b.driver}`).join(', ')}`;
    const claim = g.claimable
      ? 'yes'
      : g.critical.length > 0
        ? `no: ${g.critical.map((c) => `${c.address} (${c.reasons.join('; ')})`).join(', ')}`
        : 'no: only bridges';
    out.push(`IOMMU group ${g.group}`);
    out.push(`  passthrough now: ${now}`);
    out.push(`  claimable:       ${claim}`);
    for (const m of g.members) {
      out.push(
        `  ${m.address}  ${m.ids}  ${(m.driver ?? '-').padEnd(14)}  ${m.class}${m.bridge ? ' (bridge, exempt)' : ''}: ${m.name}`,
      );
    }
    out.push('');
  }
  return out.map(printable).join('\n');
}
