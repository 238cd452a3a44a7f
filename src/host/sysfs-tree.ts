import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { addressParts, type PciAddress } from '../pci/address.js';
import { buildConfigHeader } from '../pci/config.js';
import type { Topology, TopologyDevice } from '../topology/format.js';

/**
 * Writes a topology as a sysfs tree on disk (the layout the kernel exposes under /sys), so the
 * Linux host adapter and pciutils (`lspci -O sysfs.path=DIR/sys`) read the same fixture.
 */
export async function writeSysfsTree(topo: Topology, root: string): Promise<void> {
  const sys = path.join(root, 'sys');
  const byAddr = new Map(topo.devices.map((d) => [d.address, d]));
  const dirOf = new Map<string, string>();
  const resolveDir = (d: TopologyDevice, depth = 0): string => {
    const known = dirOf.get(d.address);
    if (known !== undefined) return known;
    const parent = d.parent ? byAddr.get(d.parent) : undefined;
    let dir: string;
    if (parent && depth < 32) {
      dir = path.join(resolveDir(parent, depth + 1), d.address);
    } else {
      const p = addressParts(d.address as PciAddress);
      const dom = p.domain.toString(16).padStart(4, '0');
      const bus = p.bus.toString(16).padStart(2, '0');
      dir = path.join(sys, 'devices', `pci${dom}:${bus}`, d.address);
    }
    dirOf.set(d.address, dir);
    return dir;
  };
  await fs.mkdir(path.join(sys, 'bus/pci/devices'), { recursive: true });
  await fs.mkdir(path.join(sys, 'bus/pci/drivers'), { recursive: true });
  await fs.mkdir(path.join(sys, 'kernel/iommu_groups'), { recursive: true });
  await fs.writeFile(path.join(sys, 'bus/pci/drivers_probe'), '');
  await fs.writeFile(path.join(sys, 'bus/pci/rescan'), '');
  const rel = (from: string, to: string): string => path.relative(path.dirname(from), to);
  const link = async (target: string, at: string): Promise<void> => {
    await fs.mkdir(path.dirname(at), { recursive: true });
    await fs.symlink(rel(at, target), at);
  };
  for (const d of topo.devices) {
    const dir = resolveDir(d);
    await fs.mkdir(dir, { recursive: true });
    const hex = (v: string): string => `0x${v}\n`;
    const sv = d.subsystemVendor ?? '0000';
    const sd = d.subsystemDevice ?? '0000';
    const files: Record<string, string> = {
      vendor: hex(d.vendor),
      device: hex(d.device),
      subsystem_vendor: hex(sv),
      subsystem_device: hex(sd),
      class: hex(d.class),
      revision: hex(d.revision ?? '00'),
      numa_node: `${d.numaNode ?? -1}\n`,
      driver_override: `${d.driverOverride ?? '(null)'}\n`,
      irq: '0\n',
      resource: '0x0000000000000000 0x0000000000000000 0x0000000000000000\n'.repeat(13),
      remove: '',
      modalias: `${modalias(d.vendor, d.device, sv, sd, d.class)}\n`,
      // The kernel's dev_uevent and pci_uevent lines (DRIVER= only while bound).
      uevent: [
        ...(d.driver ? [`DRIVER=${d.driver}`] : []),
        `PCI_CLASS=${d.class.replace(/^0+(?=.)/, '').toUpperCase()}`,
        `PCI_ID=${d.vendor.toUpperCase()}:${d.device.toUpperCase()}`,
        `PCI_SUBSYS_ID=${sv.toUpperCase()}:${sd.toUpperCase()}`,
        `PCI_SLOT_NAME=${d.address}`,
        `MODALIAS=${modalias(d.vendor, d.device, sv, sd, d.class)}`,
        '',
      ].join('\n'),
    };
    if (d.class.startsWith('03')) files.boot_vga = d.bootVga ? '1\n' : '0\n';
    if (d.resetMethods && d.resetMethods.length > 0)
      files.reset_method = `${d.resetMethods.join(' ')}\n`;
    if (d.sriov) {
      files.sriov_totalvfs = `${d.sriov.totalVfs}\n`;
      files.sriov_numvfs = `${d.sriov.numVfs ?? 0}\n`;
      files.sriov_vf_device = `${d.sriov.vfDevice}\n`;
    }
    for (const [name, text] of Object.entries(files))
      await fs.writeFile(path.join(dir, name), text);
    const cfg = new Uint8Array(256);
    cfg.set(configHeaderOf(d));
    await fs.writeFile(path.join(dir, 'config'), cfg);
    await link(dir, path.join(sys, 'bus/pci/devices', d.address));
    if (d.driver) {
      const drvDir = path.join(sys, 'bus/pci/drivers', d.driver);
      await fs.mkdir(drvDir, { recursive: true });
      for (const f of ['bind', 'unbind']) await fs.writeFile(path.join(drvDir, f), '');
      await link(drvDir, path.join(dir, 'driver'));
      await link(dir, path.join(drvDir, d.address));
    }
    if (d.iommuGroup !== undefined && d.iommuGroup !== null) {
      const gdir = path.join(sys, 'kernel/iommu_groups', String(d.iommuGroup));
      await fs.mkdir(path.join(gdir, 'devices'), { recursive: true });
      await link(gdir, path.join(dir, 'iommu_group'));
      await link(dir, path.join(gdir, 'devices', d.address));
    }
  }
  for (const d of topo.devices) {
    if (!d.physfn) continue;
    const pf = dirOf.get(d.physfn);
    const vf = dirOf.get(d.address);
    if (pf === undefined || vf === undefined) continue;
    await link(pf, path.join(vf, 'physfn'));
    const idx = (await fs.readdir(pf)).filter((e) => e.startsWith('virtfn')).length;
    await link(vf, path.join(pf, `virtfn${idx}`));
  }
  const k = topo.kernel ?? {};
  await fs.mkdir(path.join(root, 'proc/sys/kernel'), { recursive: true });
  await fs.writeFile(
    path.join(root, 'proc/sys/kernel/osrelease'),
    `${k.release ?? '6.1.0-sim-amd64'}\n`,
  );
  await fs.writeFile(path.join(root, 'proc/cmdline'), `${k.cmdline ?? ''}\n`);
  for (const i of k.iommus ?? [])
    await fs.mkdir(path.join(sys, 'class/iommu', i), { recursive: true });
}

/** The `modalias` attribute as the kernel's modalias_show prints it. */
/** The 64-byte config header a topology device has in its `config` file. */
export function configHeaderOf(d: TopologyDevice): Uint8Array {
  return buildConfigHeader({
    vendor: d.vendor,
    device: d.device,
    classId: d.class,
    revision: d.revision ?? '00',
    subsystemVendor: d.subsystemVendor ?? '0000',
    subsystemDevice: d.subsystemDevice ?? '0000',
    bridge: d.class.startsWith('0604'),
  });
}

function modalias(vendor: string, device: string, sv: string, sd: string, cls: string): string {
  const id = (h: string): string => h.toUpperCase().padStart(8, '0');
  const c = cls.toUpperCase();
  return `pci:v${id(vendor)}d${id(device)}sv${id(sv)}sd${id(sd)}bc${c.slice(0, 2)}sc${c.slice(2, 4)}i${c.slice(4, 6)}`;
}
