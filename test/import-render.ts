import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { configHeaderOf, writeSysfsTree } from '../src/host/sysfs-tree.js';
import type { Topology, TopologyDevice } from '../src/topology/format.js';

/**
 * Config space as a real kernel exposes it in `<dev>/config` (4096 bytes), holding what lspci -vv
 * decodes into the parts of a topology: bridge bus numbers, a PCI Express capability (its DevCap
 * says whether the function has FLR), Power Management (NoSoftRst- when the function has a pm
 * reset) and the SR-IOV extended capability. The sysfs tree writer only writes the 64-byte
 * header; these tests need what lspci reads on a real server.
 */
export function fullConfigSpace(d: TopologyDevice, topo: Topology): Uint8Array {
  const bridge = d.class.startsWith('0604');
  const cfg = new Uint8Array(4096);
  cfg.set(configHeaderOf(d));
  const dv = new DataView(cfg.buffer);
  const bus = (a: string): number => parseInt(a.slice(-7, -5), 16);
  if (bridge) {
    // Secondary: the bus of the functions right behind it; subordinate: the deepest below it.
    const below = (addr: string, depth = 0): number[] =>
      depth > 32
        ? []
        : topo.devices
            .filter((c) => c.parent === addr)
            .flatMap((c) => [bus(c.address), ...below(c.address, depth + 1)]);
    const direct = topo.devices.filter((c) => c.parent === d.address).map((c) => bus(c.address));
    const all = below(d.address);
    if (direct.length > 0) {
      dv.setUint8(0x18, bus(d.address));
      dv.setUint8(0x19, Math.min(...direct));
      dv.setUint8(0x1a, Math.max(...all));
    }
  }
  // Status: capability list present; the list starts at 0x40.
  dv.setUint16(0x06, 0x0010, true);
  dv.setUint8(0x34, 0x40);
  const resets = d.resetMethods ?? [];
  let at = 0x40;
  const caps: { id: number; fill: (o: number) => void }[] = [];
  if (resets.includes('pm'))
    caps.push({
      id: 0x01,
      fill: (o) => {
        dv.setUint16(o + 2, 0x0003, true);
      },
    });
  caps.push({
    id: 0x10,
    fill: (o) => {
      // Port type: root port when on a root bus as a bridge, downstream port behind one,
      // endpoint otherwise.
      const type = bridge ? (d.parent ? 6 : 4) : 0;
      dv.setUint16(o + 2, 0x0002 | (type << 4), true);
      if (resets.includes('flr')) dv.setUint32(o + 4, 1 << 28, true);
    },
  });
  caps.forEach((c, i) => {
    dv.setUint8(at, c.id);
    dv.setUint8(at + 1, i + 1 < caps.length ? at + 0x20 : 0);
    c.fill(at);
    // PMCSR NoSoftRst (bit 3) clear: the kernel's pm reset works.
    at += 0x20;
  });
  const s = d.sriov;
  if (s) {
    dv.setUint32(0x100, 0x0010 | (1 << 16), true);
    dv.setUint16(0x108, (s.numVfs ?? 0) > 0 ? 0x0009 : 0, true);
    dv.setUint16(0x10c, s.totalVfs, true);
    dv.setUint16(0x10e, s.totalVfs, true);
    dv.setUint16(0x110, s.numVfs ?? 0, true);
    dv.setUint16(0x114, s.vfOffset ?? 1, true);
    dv.setUint16(0x116, s.vfStride ?? 1, true);
    dv.setUint16(0x11a, parseInt(s.vfDevice, 16), true);
    dv.setUint32(0x11c, 0x553, true);
    dv.setUint32(0x120, 0x1, true);
  }
  return cfg;
}

/** The topology as a sysfs tree with full config spaces: what lspci on that server reads. */
export async function writeLspciTree(topo: Topology, root: string): Promise<string> {
  await writeSysfsTree(topo, root);
  const devices = path.join(root, 'sys/bus/pci/devices');
  for (const d of topo.devices)
    await fs.writeFile(path.join(devices, d.address, 'config'), fullConfigSpace(d, topo));
  return path.join(root, 'sys/bus/pci');
}
