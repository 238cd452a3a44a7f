import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PtError, errnoOf } from '../errors.js';
import { PCI_IDS_PATHS, emptyPciIds, parsePciIds, type PciIdNames } from '../pci/pciids.js';
import { LinuxHost } from './linux/host.js';
import { validateTopology, type Topology } from '../topology/format.js';
import { discover } from '../pci/discovery.js';
import { inventoryToTopology } from '../pci/snapshot.js';

/** Loads pci.ids from the given path or the first standard location; hex ids without one. */
export async function loadPciIds(
  explicit?: string,
): Promise<{ names: PciIdNames; path: string | null }> {
  const candidates = explicit !== undefined ? [explicit] : PCI_IDS_PATHS;
  for (const p of candidates) {
    try {
      return { names: parsePciIds(await fs.readFile(p, 'utf8')), path: p };
    } catch (e) {
      if (explicit !== undefined) {
        throw new PtError(
          'PT_ERR_INVALID_ARGUMENT',
          `cannot read pci.ids at ${p}: ${errnoOf(e) ?? String(e)}`,
        );
      }
    }
  }
  return { names: emptyPciIds, path: null };
}

/** The topologies shipped with passthru (topologies/*.json beside the package). */
export function shippedTopologyDir(): string {
  // dist/src/host/files.js -> package root
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../topologies');
}

export async function listShippedTopologies(): Promise<string[]> {
  try {
    return (await fs.readdir(shippedTopologyDir()))
      .filter((f) => f.endsWith('.json'))
      .map((f) => f.slice(0, -5))
      .sort();
  } catch {
    return [];
  }
}

/**
 * A topology from a JSON file, a sysfs tree on disk (a directory holding sys/bus/pci), or the
 * name of a shipped topology.
 */
export async function loadTopology(spec: string): Promise<Topology> {
  let p = spec;
  if (!spec.includes('/') && !spec.endsWith('.json')) {
    p = path.join(shippedTopologyDir(), `${spec}.json`);
  }
  let st;
  try {
    st = await fs.stat(p);
  } catch {
    const shipped = await listShippedTopologies();
    throw new PtError(
      'PT_ERR_TOPOLOGY_INVALID',
      `no topology at ${spec} (shipped topologies: ${shipped.join(', ') || 'none'})`,
    );
  }
  if (st.isDirectory()) {
    const host = new LinuxHost({ root: p, uevents: false });
    const inv = await discover(host);
    if (inv.devices.length === 0) {
      throw new PtError('PT_ERR_TOPOLOGY_INVALID', `no PCI devices under ${p}/sys/bus/pci/devices`);
    }
    const topo = inventoryToTopology(
      inv,
      path.basename(p),
      await host.kernelInfo(),
      await host.hostUses(),
    );
    return validateTopology(topo);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(await fs.readFile(p, 'utf8'));
  } catch (e) {
    throw new PtError(
      'PT_ERR_TOPOLOGY_INVALID',
      `cannot parse ${p}: ${e instanceof Error ? e.message : String(e)}`,
    );
  }
  return validateTopology(raw);
}
