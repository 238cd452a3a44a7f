import { PtError } from '../errors.js';
import { DEVICE_SERIAL_RE } from '../pci/device-serial.js';
import { fromRoutingId, routingId, addressParts, type PciAddress } from '../pci/address.js';
import {
  TOPOLOGY_FORMAT,
  validateTopology,
  type Topology,
  type TopologyDevice,
  type TopologyDriver,
} from '../topology/format.js';
import type { ParseResult, ParsedFunction } from './lspci-parse.js';

export interface ImportOptions {
  /** Topology name (`sim:<name>`): `^[A-Za-z0-9._-]+$`. */
  name: string;
}

export interface ImportResult {
  topology: Topology;
  /** What the input lacked and what was assumed instead, one sentence each. */
  assumed: string[];
  /** What the input held that the topology leaves out on purpose. */
  dropped: string[];
  counts: {
    functions: number;
    groups: number;
    bridges: number;
    pfs: number;
    vfs: number;
    numaNodes: number;
  };
}

/** pcieport comes from CONFIG_PCIEPORTBUS, a bool: it is never a module. */
const BUILT_IN_DRIVERS = new Set(['pcieport']);

const DSN_RE = DEVICE_SERIAL_RE;

const norm = (s: string): string => s.replace(/-/g, '_');

function isBridgeFn(f: ParsedFunction): boolean {
  return f.classId === '0604' || f.classId === '0609' || f.busRange !== undefined;
}

/**
 * Maps parsed dumps to a topology (docs/topology.md, "Importing lspci output"). Pure: the same
 * dumps give the same topology. Every gap in the input is filled with a stated assumption.
 */
export function dumpsToTopology(parsed: ParseResult, opts: ImportOptions): ImportResult {
  const assumed: string[] = [];
  const dropped: string[] = [];
  const all = [...parsed.functions.values()];
  const onlyGroups = all.filter((f) => !f.seenIn.has('lspci-vv') && !f.seenIn.has('lspci-vmm'));
  if (onlyGroups.length > 0)
    dropped.push(
      `${onlyGroups.length} function(s) only in the IOMMU group listing, not in lspci output (${onlyGroups
        .slice(0, 3)
        .map((f) => f.address)
        .join(', ')}${onlyGroups.length > 3 ? ', ...' : ''}): left out`,
    );
  const fns = all
    .filter((f) => f.seenIn.has('lspci-vv') || f.seenIn.has('lspci-vmm'))
    .sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  if (fns.length === 0)
    throw new PtError(
      'PT_ERR_IMPORT_INVALID',
      'no PCI functions in the input: give the output of `lspci -vvnn -k -D` (and optionally `lspci -vmm -nnk -D`)',
    );
  for (const f of fns) {
    for (const k of ['classId', 'vendor', 'device'] as const)
      if (f[k] === undefined)
        throw new PtError(
          'PT_ERR_IMPORT_INVALID',
          `${f.at.file}:${f.at.line}: ${f.address} has no ${k} (truncated record?)`,
          { details: { file: f.at.file, line: f.at.line } },
        );
  }
  const byAddr = new Map(fns.map((f) => [f.address, f]));
  const hasVv = parsed.kinds.has('lspci-vv');
  if (!hasVv)
    assumed.push(
      'no `lspci -vvnn -k -D` output: bridges, SR-IOV and reset methods unknown (every function on a root bus, no VFs, no resets)',
    );
  const capsDenied = fns.filter((f) => f.capsDenied === true).length;
  if (hasVv && capsDenied > 0)
    assumed.push(
      `capabilities of ${capsDenied} function(s) unreadable (lspci ran without root): SR-IOV and reset methods unknown for them; run it with sudo`,
    );

  // Parents: the bridge whose secondary bus is the function's bus. VFs hang where their PF does.
  const bridgeFor = new Map<string, ParsedFunction>();
  let unnumbered = 0;
  for (const f of fns) {
    const r = f.busRange;
    if (r === undefined) continue;
    // A bridge the firmware left unconfigured (secondary 0) has nothing behind it.
    if (r.secondary === 0 || r.secondary <= r.primary) {
      unnumbered++;
      continue;
    }
    const key = `${addressParts(f.address as PciAddress).domain}:${r.secondary}`;
    if (!bridgeFor.has(key)) bridgeFor.set(key, f);
  }
  // A bus inside a bridge's range that no listed bridge has as its secondary sits behind a
  // bridge the dump does not show: the narrowest listed bridge above it is its nearest ancestor.
  const nearestAbove = (domain: number, bus: number, self: string): ParsedFunction | undefined => {
    let best: ParsedFunction | undefined;
    for (const b of bridgeFor.values()) {
      const r = b.busRange;
      if (r === undefined || b.address === self) continue;
      if (addressParts(b.address as PciAddress).domain !== domain) continue;
      if (bus < r.secondary || bus > r.subordinate) continue;
      const width = r.subordinate - r.secondary;
      const bw = best?.busRange;
      if (bw === undefined || width < bw.subordinate - bw.secondary) best = b;
    }
    return best;
  };
  if (unnumbered > 0)
    assumed.push(
      `${unnumbered} bridge(s) without a secondary bus number: nothing placed behind them`,
    );
  if (hasVv && fns.some((f) => f.classId === '0604' && f.busRange === undefined))
    assumed.push('bridges without a `Bus:` line: functions behind them placed on a root bus');

  // SR-IOV: a PF's VFs are at routing ids offset + i * stride from it.
  const physfn = new Map<string, string>();
  const sriovOf = new Map<string, NonNullable<TopologyDevice['sriov']>>();
  let missingVfs = 0;
  for (const f of fns) {
    const s = f.sriov;
    if (s === undefined) continue;
    if (s.totalVfs === undefined || s.vfDevice === undefined) {
      assumed.push(
        `${f.address}: SR-IOV capability without VF counts or VF device id (truncated?): treated as not SR-IOV`,
      );
      continue;
    }
    const numVfs = s.numVfs ?? 0;
    const sriov: NonNullable<TopologyDevice['sriov']> = {
      totalVfs: s.totalVfs,
      numVfs,
      vfDevice: s.vfDevice,
    };
    if (s.vfOffset !== undefined) sriov.vfOffset = s.vfOffset;
    if (s.vfStride !== undefined) sriov.vfStride = s.vfStride;
    sriovOf.set(f.address, sriov);
    if (numVfs > 0 && s.vfOffset !== undefined && s.vfStride !== undefined) {
      const p = addressParts(f.address as PciAddress);
      const rid = routingId(f.address as PciAddress);
      for (let i = 0; i < numVfs; i++) {
        const vrid = rid + s.vfOffset + i * s.vfStride;
        const vf = vrid <= 0xffff ? fromRoutingId(p.domain, vrid) : null;
        if (vf !== null && byAddr.has(vf)) physfn.set(vf, f.address);
        else missingVfs++;
      }
    }
  }
  if (missingVfs > 0)
    assumed.push(
      `${missingVfs} enabled VF(s) not in the lspci output: left out (the PFs keep their VF counts)`,
    );

  const parentOf = (f: ParsedFunction): string | null => {
    const pf = physfn.get(f.address);
    if (pf !== undefined) {
      const pff = byAddr.get(pf);
      return pff === undefined ? null : parentOf(pff);
    }
    const p = addressParts(f.address as PciAddress);
    const b = bridgeFor.get(`${p.domain}:${p.bus}`) ?? nearestAbove(p.domain, p.bus, f.address);
    return b !== undefined && b.address !== f.address ? b.address : null;
  };

  // IOMMU groups.
  const withGroup = fns.filter((f) => f.iommuGroup !== undefined).length;
  const groupOf = new Map<string, number | null>();
  if (withGroup > 0) {
    for (const f of fns) groupOf.set(f.address, f.iommuGroup ?? null);
    if (withGroup < fns.length)
      assumed.push(
        `${fns.length - withGroup} function(s) without an IOMMU group in the input: left without one (claims of them are refused)`,
      );
  } else {
    // Functions of one slot usually share a group (no ACS between functions); bridges stand alone.
    const slotGroup = new Map<string, number>();
    let next = 0;
    for (const f of fns) {
      const slot = isBridgeFn(f) ? f.address : f.address.slice(0, -2);
      let g = slotGroup.get(slot);
      if (g === undefined) {
        g = next++;
        slotGroup.set(slot, g);
      }
      groupOf.set(f.address, g);
    }
    assumed.push(
      'no IOMMU groups in the input: assumed the IOMMU is on with one group per slot (the functions of a device together, each bridge alone). Add the output of `find /sys/kernel/iommu_groups -type l` for the real groups; if it prints nothing, the IOMMU is off',
    );
  }

  const withNuma = fns.filter((f) => f.numaNode !== undefined).length;
  if (withNuma === 0)
    assumed.push('no NUMA node in the input (one node, or firmware without SRAT): numaNode -1');

  // Reset methods, as the kernel decides them at enumeration (drivers/pci/pci.c,
  // pci_init_reset_methods): flr, af_flr, pm from the capabilities; bus when the function sits
  // behind a bridge and no function was enumerated before it on that bus (VFs come later).
  const firstOnBus = new Map<string, string>();
  for (const f of fns) {
    if (physfn.has(f.address)) continue;
    const bus = f.address.slice(0, -5);
    if (!firstOnBus.has(bus)) firstOnBus.set(bus, f.address);
  }
  const resetMethods = (f: ParsedFunction, parent: string | null): string[] | undefined => {
    if (f.capsRead !== true) return undefined;
    const m: string[] = [];
    if (f.express === true && f.flr === true) m.push('flr');
    if (f.afFlr === true) m.push('af_flr');
    if (f.pmReset === true) m.push('pm');
    if (
      parent !== null &&
      !isBridgeFn(f) &&
      !physfn.has(f.address) &&
      firstOnBus.get(f.address.slice(0, -5)) === f.address
    )
      m.push('bus');
    return m;
  };
  if (hasVv && fns.some((f) => f.capsRead === true))
    assumed.push(
      'reset methods derived from the capabilities as the kernel does (flr, af_flr, pm, bus); device-specific and ACPI resets are not visible in lspci',
    );

  // Boot VGA: lspci does not show boot_vga; the one VGA-compatible controller is the console.
  const vgas = fns.filter((f) => f.classId === '0300' && (f.progIf ?? '00') === '00');
  const bootVga = vgas[0]?.address;
  if (vgas.length > 1)
    assumed.push(
      `${vgas.length} VGA controllers: assumed ${bootVga ?? ''} (the first) is the boot console`,
    );

  // Serial numbers are how a claim recognises its card (PT_ERR_DEVICE_CHANGED): kept, so the
  // simulated claims behave as on the server. Anything not shaped like lspci's print is dropped.
  const badDsn = fns.filter((f) => f.dsn !== undefined && !DSN_RE.test(f.dsn)).length;
  if (badDsn > 0)
    dropped.push(`${badDsn} device serial number(s) not shaped xx-xx-xx-xx-xx-xx-xx-xx: left out`);

  const devices: TopologyDevice[] = fns.map((f) => {
    const parent = parentOf(f);
    const d: TopologyDevice = {
      address: f.address,
      vendor: f.vendor ?? '',
      device: f.device ?? '',
      subsystemVendor: f.subsystemVendor ?? '0000',
      subsystemDevice: f.subsystemDevice ?? '0000',
      class: `${f.classId ?? ''}${f.progIf ?? '00'}`,
      revision: f.revision ?? '00',
      driver: f.driver ?? null,
      iommuGroup: groupOf.get(f.address) ?? null,
      numaNode: f.numaNode ?? -1,
      parent,
    };
    if (f.address === bootVga) d.bootVga = true;
    const rm = resetMethods(f, parent);
    if (rm !== undefined && rm.length > 0) d.resetMethods = rm;
    if (f.label !== undefined && f.label !== '') d.label = f.label;
    if (f.dsn !== undefined && DSN_RE.test(f.dsn)) d.serialNumber = f.dsn;
    const s = sriovOf.get(f.address);
    if (s !== undefined) d.sriov = s;
    const pf = physfn.get(f.address);
    if (pf !== undefined) d.physfn = pf;
    return d;
  });

  // Drivers: the module of each bound driver, from "Kernel modules" when lspci could say.
  const drivers = new Map<string, TopologyDriver>();
  let modulesKnown = false;
  for (const f of fns) {
    if (f.modules !== undefined) modulesKnown = true;
    if (f.driver === undefined || drivers.has(f.driver)) continue;
    const mods = f.modules ?? [];
    const same = mods.find((m) => norm(m) === norm(f.driver ?? ''));
    const entry: TopologyDriver = { name: f.driver };
    if (BUILT_IN_DRIVERS.has(f.driver)) entry.module = null;
    else if (same !== undefined) entry.module = norm(same);
    else if (mods.length === 1 && mods[0] !== undefined) entry.module = norm(mods[0]);
    else if (f.modules !== undefined && mods.length === 0) entry.module = null;
    drivers.set(f.driver, entry);
  }
  if (!modulesKnown && drivers.size > 0)
    assumed.push(
      'no "Kernel modules" lines (lspci without -k, or without libkmod): each driver assumed to be a module of the same name, pcieport built in',
    );

  const amd = fns.some((f) => f.vendor === '1022' && f.classId === '0600');
  const groups = new Set([...groupOf.values()].filter((g) => g !== null));
  assumed.push(
    `kernel release, command line and interrupt remapping are not in lspci output: assumed the simulator's default kernel with ${amd ? 'amd_iommu=on' : 'intel_iommu=on'} iommu=pt, remapping unknown`,
  );
  assumed.push(
    'what the host itself uses (root filesystem, default route) is not in lspci output: recorded as unknown, so storage and network claims are refused unless forced, as on a host passthru cannot trace',
  );
  const description = `Imported from ${[...parsed.kinds].sort().join(', ')} output. Assumed: ${assumed.length}, see \`passthru import\` output.`;
  const topology = validateTopology({
    format: TOPOLOGY_FORMAT,
    name: opts.name,
    description,
    kernel: {
      cmdline: amd ? 'amd_iommu=on iommu=pt' : 'intel_iommu=on iommu=pt',
      iommus: groups.size > 0 ? [amd ? 'ivhd0' : 'dmar0'] : [],
      interruptRemapping: 'unknown',
    },
    drivers: [...drivers.values()],
    devices,
    hostUnknown: [
      'imported from lspci output: what the host uses (root filesystem, swap, default route) was not recorded',
    ],
  } satisfies Topology);
  return {
    topology,
    assumed,
    dropped,
    counts: {
      functions: devices.length,
      groups: groups.size,
      bridges: fns.filter(isBridgeFn).length,
      pfs: sriovOf.size,
      vfs: physfn.size,
      numaNodes: new Set(devices.map((d) => d.numaNode).filter((n) => n !== undefined && n >= 0))
        .size,
    },
  };
}
