/**
 * What a write costs in-process (thread pool) versus in an abandonable child process (dd), the
 * way LinuxHost issues them: driver_override, bind and drivers_probe in-process; unbind,
 * sriov_numvfs and remove in a child. On a sysfs tree written to a temp folder, so the figures
 * are the mechanism's own cost, not the kernel's. The real-kernel scenario vm-holds-device
 * measures the same inside the QEMU guest.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadTopology } from '../src/host/files.js';
import { LinuxHost } from '../src/host/linux/host.js';
import { writeSysfsTree } from '../src/host/sysfs-tree.js';
import { parsePciAddress } from '../src/pci/address.js';

const N = 50;
const root = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-bench-writes-'));
try {
  await writeSysfsTree(await loadTopology('qemu-guest'), root);
  const host = new LinuxHost({ root, uevents: false });
  const nic = parsePciAddress('0000:01:00.0');
  const time = async (fn: () => Promise<void>): Promise<number[]> => {
    const out: number[] = [];
    for (let i = 0; i < N; i++) {
      const t0 = performance.now();
      await fn();
      out.push(performance.now() - t0);
    }
    return out.sort((a, b) => a - b);
  };
  const inProcess = await time(() => host.writeDeviceAttr(nic, 'driver_override', 'vfio-pci'));
  const child = await time(() => host.writeDeviceAttr(nic, 'remove', '1'));
  const q = (xs: number[], p: number): string => (xs[Math.floor(xs.length * p)] ?? 0).toFixed(2);
  process.stdout.write(`host writes: ${N} each, ms (median / p90 / max)\n`);
  process.stdout.write(
    `in-process (driver_override)  ${q(inProcess, 0.5)} / ${q(inProcess, 0.9)} / ${q(inProcess, 0.999)}\n`,
  );
  process.stdout.write(
    `child dd (remove)             ${q(child, 0.5)} / ${q(child, 0.9)} / ${q(child, 0.999)}\n`,
  );
} finally {
  await fs.rm(root, { recursive: true, force: true });
}
