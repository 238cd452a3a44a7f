import * as fsSync from 'node:fs';
import * as path from 'node:path';
import { errnoOf } from '../../errors.js';
import { isPciAddress } from '../../pci/address.js';
import type { HostUse } from '../port.js';

const PCI_ADDR_IN_PATH = /\b[0-9a-f]{4,5}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]\b/g;

/** What the host under `root` ('/' for the live host) depends on: mounts, swap, routes. */
export async function readHostUses(root: string): Promise<HostUse[]> {
  return new HostUseReader(root).read();
}

class HostUseReader {
  constructor(private readonly root: string) {}

  private p(...parts: string[]): string {
    return path.join(this.root, ...parts);
  }

  async read(): Promise<HostUse[]> {
    const uses: HostUse[] = [];
    const add = (sysPath: string, use: string): void => {
      for (const m of sysPath.matchAll(PCI_ADDR_IN_PATH)) {
        if (isPciAddress(m[0])) uses.push({ address: m[0], use });
      }
    };
    const mounts = (await readText(this.p('proc/mounts'))) ?? '';
    for (const line of mounts.split('\n')) {
      const [source, target, fstype] = line.split(' ');
      if (source === undefined || target === undefined || fstype === undefined) continue;
      const where = unescapeMount(target);
      if (source.startsWith('/dev/')) {
        for (const p of await this.blockDevicePaths(source))
          add(p, `filesystem mounted at ${where}`);
      } else if (fstype === '9p' || fstype === 'virtiofs') {
        for (const p of await this.virtioTagPaths(source))
          add(p, `${fstype} filesystem at ${where}`);
      }
    }
    // A 9p or virtiofs share may back a mount this namespace cannot see (an overlay's lower
    // layer after switch_root, a container's root): never treat such a device as free.
    for (const v of await readdirOrEmpty(this.p('sys/bus/virtio/devices'))) {
      const drv = await readLinkBase(this.p('sys/bus/virtio/devices', v, 'driver'));
      if (drv !== '9pnet_virtio' && drv !== 'virtiofs') continue;
      const tag = (
        (await readText(this.p('sys/bus/virtio/devices', v, 'mount_tag'))) ?? '?'
      ).replace(/\0+$/, '');
      const real = await realpathOrNull(this.p('sys/bus/virtio/devices', v));
      if (real !== null)
        add(
          real,
          `${drv === 'virtiofs' ? 'virtiofs' : '9p'} share "${tag}" (may back a mounted filesystem)`,
        );
    }
    const swaps = (await readText(this.p('proc/swaps'))) ?? '';
    for (const line of swaps.split('\n').slice(1)) {
      const file = line.split(/\s+/)[0];
      if (file?.startsWith('/dev/')) {
        for (const p of await this.blockDevicePaths(file)) add(p, `swap on ${file}`);
      }
    }
    for (const iface of await this.defaultRouteIfaces()) {
      for (const p of await this.netDevicePaths(iface, 0))
        add(p, `network interface ${iface} carries the default route`);
    }
    return uses;
  }

  private async blockDevicePaths(devPath: string): Promise<string[]> {
    let name = path.basename(devPath);
    const real = await realpathOrNull(this.p(devPath));
    if (real !== null && real.startsWith(this.p('dev'))) name = path.basename(real);
    return this.blockPaths(name, 0);
  }

  private async blockPaths(name: string, depth: number): Promise<string[]> {
    if (depth > 8 || !/^[\w.-]+$/.test(name)) return [];
    const real = await realpathOrNull(this.p('sys/class/block', name));
    if (real === null) return [];
    const out = [real];
    // device-mapper, md and partitions of them: follow the slaves down to real disks.
    for (const base of [real, path.dirname(real)]) {
      for (const s of await readdirOrEmpty(path.join(base, 'slaves'))) {
        out.push(...(await this.blockPaths(s, depth + 1)));
      }
    }
    return out;
  }

  private async virtioTagPaths(tag: string): Promise<string[]> {
    const out: string[] = [];
    for (const v of await readdirOrEmpty(this.p('sys/bus/virtio/devices'))) {
      const t = await readText(this.p('sys/bus/virtio/devices', v, 'mount_tag'));
      // mount_tag may carry a trailing NUL.
      if (t !== null && t.replace(/\0+$/, '') === tag) {
        const real = await realpathOrNull(this.p('sys/bus/virtio/devices', v));
        if (real !== null) out.push(real);
      }
    }
    return out;
  }

  private async defaultRouteIfaces(): Promise<string[]> {
    const ifaces = new Set<string>();
    const v4 = (await readText(this.p('proc/net/route'))) ?? '';
    for (const line of v4.split('\n').slice(1)) {
      const f = line.split(/\s+/);
      if (f[1] === '00000000' && f[7] === '00000000' && f[0]) ifaces.add(f[0]);
    }
    const v6 = (await readText(this.p('proc/net/ipv6_route'))) ?? '';
    for (const line of v6.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f[0] === '0'.repeat(32) && f[1] === '00' && f[9] && f[9] !== 'lo') ifaces.add(f[9]);
    }
    return [...ifaces];
  }

  private async netDevicePaths(iface: string, depth: number): Promise<string[]> {
    if (depth > 6 || !/^[\w.@:-]+$/.test(iface)) return [];
    const base = this.p('sys/class/net', iface);
    const dev = await realpathOrNull(path.join(base, 'device'));
    if (dev !== null) return [dev];
    // Bridges, bonds and VLANs: the devices underneath carry the traffic.
    const out: string[] = [];
    const lowers = (await readdirOrEmpty(base))
      .filter((e) => e.startsWith('lower_'))
      .map((e) => e.slice(6));
    const ports = await readdirOrEmpty(path.join(base, 'brif'));
    for (const l of [...lowers, ...ports]) out.push(...(await this.netDevicePaths(l, depth + 1)));
    return out;
  }
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

function readText(p: string): Promise<string | null> {
  try {
    const t = fsSync.readFileSync(p, 'utf8');
    return Promise.resolve(t.endsWith('\n') ? t.slice(0, -1) : t);
  } catch (e) {
    const code = errnoOf(e);
    if (
      code === 'ENOENT' ||
      code === 'ENOTDIR' ||
      code === 'EACCES' ||
      code === 'EINVAL' ||
      code === 'EIO' ||
      code === 'ENODEV' ||
      code === 'EISDIR'
    )
      return Promise.resolve(null);
    return Promise.reject(e instanceof Error ? e : new Error(String(e)));
  }
}

function realpathOrNull(p: string): Promise<string | null> {
  try {
    return Promise.resolve(fsSync.realpathSync(p));
  } catch {
    return Promise.resolve(null);
  }
}

function readdirOrEmpty(p: string): Promise<string[]> {
  try {
    return Promise.resolve(fsSync.readdirSync(p));
  } catch {
    return Promise.resolve([]);
  }
}

function readLinkBase(p: string): Promise<string | null> {
  try {
    return Promise.resolve(path.basename(fsSync.readlinkSync(p)));
  } catch {
    return Promise.resolve(null);
  }
}
