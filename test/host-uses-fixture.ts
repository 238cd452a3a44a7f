import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadTopology } from '../src/host/files.js';
import { writeSysfsTree } from '../src/host/sysfs-tree.js';

/** The qemu-guest topology as a sysfs tree, plus the block, net and proc files a host has. */
export class HostTree {
  private constructor(readonly root: string) {}

  static async create(): Promise<HostTree> {
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-uses-'));
    await writeSysfsTree(await loadTopology('qemu-guest'), root);
    const t = new HostTree(root);
    await t.file('proc/swaps', 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n');
    await t.file('proc/net/route', ROUTE_HEADER);
    return t;
  }

  async remove(): Promise<void> {
    await fs.rm(this.root, { recursive: true, force: true });
  }

  async file(rel: string, text: string): Promise<void> {
    await fs.mkdir(path.dirname(path.join(this.root, rel)), { recursive: true });
    await fs.writeFile(path.join(this.root, rel), text);
  }

  async dir(rel: string): Promise<void> {
    await fs.mkdir(path.join(this.root, rel), { recursive: true });
  }

  async link(target: string, at: string): Promise<void> {
    const abs = path.join(this.root, at);
    await fs.mkdir(path.dirname(abs), { recursive: true });
    await fs.symlink(path.relative(path.dirname(abs), path.join(this.root, target)), abs);
  }

  /**
   * A block device at sysfs path `dev` (relative to sys/devices), listed in /sys/class/block
   * and /sys/dev/block; a partition when its parent directory is a disk.
   */
  async block(dev: string, majMin: string, opts: { partition?: boolean } = {}): Promise<string> {
    const p = `sys/devices/${dev}`;
    await this.file(`${p}/dev`, `${majMin}\n`);
    if (opts.partition === true) await this.file(`${p}/partition`, '1\n');
    await this.link(p, `sys/class/block/${path.basename(dev)}`);
    await this.link(p, `sys/dev/block/${majMin}`);
    return p;
  }

  /** `upper` (a sysfs path from block()) sits on `lower` through the named link dir. */
  async below(
    upper: string,
    lower: string,
    kind: 'slaves' | 'multipath' = 'slaves',
  ): Promise<void> {
    await this.link(lower, `${upper}/${kind}/${path.basename(lower)}`);
  }

  async mountinfo(lines: string[]): Promise<void> {
    await this.file(
      'proc/self/mountinfo',
      lines.map((l, i) => `${20 + i} 1 ${l}`).join('\n') + '\n',
    );
  }

  /** A network interface; `device` is a PCI function's sysfs dir (sys/devices/...). */
  async iface(
    name: string,
    opts: { device?: string; up?: boolean; lowers?: string[] },
  ): Promise<void> {
    const base = `sys/class/net/${name}`;
    await this.file(`${base}/flags`, opts.up === false ? '0x1002\n' : '0x1003\n');
    await this.file(`${base}/operstate`, opts.up === false ? 'down\n' : 'up\n');
    if (opts.device !== undefined) await this.link(opts.device, `${base}/device`);
    for (const l of opts.lowers ?? []) await this.dir(`${base}/lower_${l}`);
  }

  async routes(lines: string[]): Promise<void> {
    await this.file('proc/net/route', ROUTE_HEADER + lines.join('\n') + '\n');
  }
}

const ROUTE_HEADER =
  'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n';

/** A /proc/net/route line (little-endian words, as on x86). */
export function route(
  iface: string,
  dest: string,
  prefix: number,
  gateway = '0.0.0.0',
  metric = 0,
): string {
  const word = (ip: string): string =>
    ip
      .split('.')
      .map((b) => Number(b).toString(16).padStart(2, '0').toUpperCase())
      .reverse()
      .join('');
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const maskIp = [24, 16, 8, 0].map((s) => (mask >>> s) & 0xff).join('.');
  const flags = gateway === '0.0.0.0' ? '0001' : '0003';
  return [iface, word(dest), word(gateway), flags, 0, 0, metric, word(maskIp), 0, 0, 0].join('\t');
}

/** sysfs dirs of the qemu-guest topology's functions. */
export const PCI = {
  rootfs9p: 'sys/devices/pci0000:00/0000:00:02.0',
  ahci: 'sys/devices/pci0000:00/0000:00:1f.2',
  nic1: 'sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0',
  nic2: 'sys/devices/pci0000:00/0000:00:01.1/0000:02:00.0',
  nic3: 'sys/devices/pci0000:00/0000:00:01.2/0000:03:00.0',
  nvme: 'sys/devices/pci0000:00/0000:00:01.3/0000:04:00.0',
};
