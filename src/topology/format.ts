import { PtError } from '../errors.js';
import { isPciAddress } from '../pci/address.js';
import { isHexId } from '../pci/hex.js';

/**
 * The topology format (docs/topology.md): a host's PCI functions, drivers and modules as JSON.
 * `passthru snapshot` writes it; `--sim FILE` loads it into the simulated kernel.
 */
export const TOPOLOGY_FORMAT = 'passthru-topology/1';

export interface TopologySriov {
  totalVfs: number;
  numVfs?: number;
  /** Device id of the VFs (4 hex digits). */
  vfDevice: string;
  /** Routing-id offset of the first VF and stride between VFs, as in the SR-IOV capability. */
  vfOffset?: number;
  vfStride?: number;
}

export interface TopologyDevice {
  address: string;
  vendor: string;
  device: string;
  subsystemVendor?: string;
  subsystemDevice?: string;
  class: string;
  revision?: string;
  driver?: string | null;
  driverOverride?: string | null;
  iommuGroup?: number | null;
  numaNode?: number;
  parent?: string | null;
  bootVga?: boolean;
  resetMethods?: string[];
  label?: string;
  sriov?: TopologySriov;
  physfn?: string;
}

export interface TopologyDriver {
  name: string;
  /** Module providing the driver; null for drivers built into the kernel. */
  module?: string | null;
  /** `vvvv:dddd`, `vvvv:*` or `class:cccccc` match entries. */
  ids?: string[];
}

export interface TopologyModule {
  name: string;
  deps?: string[];
  /** live: loaded; available: loadable but not loaded; builtin; missing: not on this kernel. */
  state: 'live' | 'available' | 'builtin' | 'missing';
  blocked?: string;
}

export interface Topology {
  format: typeof TOPOLOGY_FORMAT;
  name: string;
  description?: string;
  kernel?: {
    release?: string;
    cmdline?: string;
    iommus?: string[];
    interruptRemapping?: 'enabled' | 'disabled' | 'unknown';
  };
  modules?: TopologyModule[];
  drivers?: TopologyDriver[];
  devices: TopologyDevice[];
  hostUses?: { address: string; use: string }[];
  /**
   * What the simulated host could not trace ("cannot tell what backs /srv: ..."): storage and
   * network claims are then refused unless forced, as on a real host.
   */
  hostUnknown?: string[];
}

function bad(msg: string): never {
  throw new PtError('PT_ERR_TOPOLOGY_INVALID', `invalid topology: ${msg}`);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Checks the shape of parsed JSON; returns it typed or throws PT_ERR_TOPOLOGY_INVALID. */
export function validateTopology(raw: unknown): Topology {
  if (!isRecord(raw)) bad('not an object');
  if (raw.format !== TOPOLOGY_FORMAT) bad(`format must be "${TOPOLOGY_FORMAT}"`);
  if (typeof raw.name !== 'string' || raw.name === '') bad('name missing');
  if (!Array.isArray(raw.devices)) bad('devices must be an array');
  const seen = new Set<string>();
  raw.devices.forEach((d: unknown, i) => {
    if (!isRecord(d)) bad(`devices[${i}] is not an object`);
    const where = `devices[${i}]`;
    if (typeof d.address !== 'string' || !isPciAddress(d.address)) bad(`${where}.address`);
    if (seen.has(d.address)) bad(`${where}: duplicate address ${d.address}`);
    seen.add(d.address);
    for (const k of ['vendor', 'device'] as const) {
      if (typeof d[k] !== 'string' || !isHexId(d[k], 4)) bad(`${where}.${k} must be 4 hex digits`);
    }
    for (const k of ['subsystemVendor', 'subsystemDevice'] as const) {
      const v = d[k];
      if (v !== undefined && (typeof v !== 'string' || !isHexId(v, 4))) bad(`${where}.${k}`);
    }
    if (typeof d.class !== 'string' || !isHexId(d.class, 6))
      bad(`${where}.class must be 6 hex digits`);
    if (d.revision !== undefined && (typeof d.revision !== 'string' || !isHexId(d.revision, 2))) {
      bad(`${where}.revision`);
    }
    if (d.iommuGroup !== undefined && d.iommuGroup !== null && !Number.isInteger(d.iommuGroup)) {
      bad(`${where}.iommuGroup`);
    }
    if (
      d.parent !== undefined &&
      d.parent !== null &&
      (typeof d.parent !== 'string' || !isPciAddress(d.parent))
    ) {
      bad(`${where}.parent`);
    }
    if (d.sriov !== undefined) {
      const s = d.sriov;
      if (!isRecord(s) || !Number.isInteger(s.totalVfs) || typeof s.vfDevice !== 'string') {
        bad(`${where}.sriov`);
      }
    }
  });
  for (const d of raw.devices as Record<string, unknown>[]) {
    for (const k of ['parent', 'physfn']) {
      const v = d[k];
      if (typeof v === 'string' && !seen.has(v))
        bad(`${String(d.address)}.${k} names unknown device ${v}`);
    }
  }
  if (raw.drivers !== undefined && !Array.isArray(raw.drivers)) bad('drivers must be an array');
  if (raw.modules !== undefined && !Array.isArray(raw.modules)) bad('modules must be an array');
  if (
    raw.hostUnknown !== undefined &&
    !(Array.isArray(raw.hostUnknown) && raw.hostUnknown.every((u) => typeof u === 'string'))
  )
    bad('hostUnknown must be an array of strings');
  return raw as unknown as Topology;
}
