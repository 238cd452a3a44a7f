import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeSysfsTree } from '../src/host/sysfs-tree.js';
import { TOPOLOGY_FORMAT, type Topology, type TopologyDevice } from '../src/topology/format.js';

/**
 * n functions shaped like a server: root ports on bus 0 of several domains, each with an
 * 8-function endpoint (an SR-IOV-sized NIC) behind it. `vfio` of them (spread out) are already
 * bound to vfio-pci, for an agent that holds claims on a tree that no kernel can bind in.
 */
export function synthetic(n: number, vfio = 0): Topology {
  const devices: TopologyDevice[] = [];
  let group = 0;
  for (let port = 0; devices.length < n; port++) {
    const dom = Math.floor(port / 24);
    const slot = port % 24;
    const hex = (v: number, w: number): string => v.toString(16).padStart(w, '0');
    const rp = `${hex(dom, 4)}:00:${hex(slot + 1, 2)}.0`;
    devices.push({
      address: rp,
      vendor: '8086',
      device: '347a',
      class: '060400',
      driver: 'pcieport',
      iommuGroup: group++,
      numaNode: dom % 2,
      parent: null,
    });
    for (let fn = 0; fn < 8 && devices.length < n; fn++) {
      devices.push({
        address: `${hex(dom, 4)}:${hex(slot + 1, 2)}:00.${String(fn)}`,
        vendor: '8086',
        device: '1592',
        subsystemVendor: '8086',
        subsystemDevice: '0002',
        class: '020000',
        revision: '02',
        driver: 'ice',
        // One group per function (ACS): each can be claimed alone.
        iommuGroup: group++,
        numaNode: dom % 2,
        parent: rp,
      });
    }
  }
  const out = devices.slice(0, n);
  const endpoints = out.filter((d) => d.class === '020000');
  const step = Math.max(1, Math.floor(endpoints.length / Math.max(1, vfio)));
  for (let i = 0; i < vfio && i * step < endpoints.length; i++) {
    const d = endpoints[i * step];
    if (d === undefined) break;
    d.driver = 'vfio-pci';
    d.driverOverride = 'vfio-pci';
  }
  return { format: TOPOLOGY_FORMAT, name: `synthetic-${String(n)}`, devices: out };
}

/** Writes the topology as a sysfs tree in a fresh temporary folder; the caller removes it. */
export async function syntheticTree(
  n: number,
  vfio = 0,
): Promise<{ root: string; topo: Topology }> {
  const topo = synthetic(n, vfio);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `pt-bench-${String(n)}-`));
  await writeSysfsTree(topo, root);
  return { root, topo };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

export function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
}
