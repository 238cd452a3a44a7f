import * as fsSync from 'node:fs';
import { constants as fsc } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { execFile, spawn } from 'node:child_process';
import { SysError, errnoOf } from '../errors.js';
import { isPciAddress, type PciAddress } from '../pci/address.js';
import { systemClock, type Clock } from './clock.js';
import {
  canonicalModuleName,
  isValidDriverName,
  isValidModuleName,
  type DeviceAttr,
  type DeviceHolder,
  type DeviceLinks,
  type HostPort,
  type HostUse,
  type KernelInfo,
  type ModuleAvailability,
  type ModuleStatus,
  type Uevent,
  type WritableDeviceAttr,
} from './port.js';
import { parseUeventStream } from './uevent.js';

export interface LinuxHostOptions {
  /** Root prefix: '/' for the live host, or a directory holding a sysfs/procfs tree. */
  root?: string;
  modprobePath?: string;
  udevadmPath?: string;
  /** Use `udevadm monitor` as a uevent source (live host only). Default true. */
  uevents?: boolean;
  clock?: Clock;
  modprobeTimeoutMs?: number;
}

const PCI_ADDR_IN_PATH = /\b[0-9a-f]{4,5}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]\b/g;

export class LinuxHost implements HostPort {
  readonly clock: Clock;
  readonly description: string;
  private readonly root: string;
  private readonly live: boolean;
  private readonly modprobePath: string;
  private readonly udevadmPath: string;
  private readonly useUevents: boolean;
  private readonly modprobeTimeoutMs: number;

  constructor(opts: LinuxHostOptions = {}) {
    this.root = path.resolve(opts.root ?? '/');
    this.live = this.root === '/';
    this.clock = opts.clock ?? systemClock;
    this.modprobePath = opts.modprobePath ?? 'modprobe';
    this.udevadmPath = opts.udevadmPath ?? 'udevadm';
    this.useUevents = opts.uevents ?? true;
    this.modprobeTimeoutMs = opts.modprobeTimeoutMs ?? 60_000;
    this.description = `linux:${this.root}`;
  }

  private p(...parts: string[]): string {
    return path.join(this.root, ...parts);
  }

  private dev(addr: PciAddress, ...rest: string[]): string {
    return this.p('sys/bus/pci/devices', addr, ...rest);
  }

  async listDevices(): Promise<PciAddress[]> {
    const names = await readdirOrEmpty(this.p('sys/bus/pci/devices'));
    return names.filter(isPciAddress).sort();
  }

  async readDeviceAttr(addr: PciAddress, attr: DeviceAttr): Promise<string | null> {
    return readText(this.dev(addr, attr));
  }

  async readConfigHeader(addr: PciAddress): Promise<Uint8Array | null> {
    let fh: fs.FileHandle | undefined;
    try {
      fh = await fs.open(this.dev(addr, 'config'), 'r');
      const buf = Buffer.alloc(64);
      const { bytesRead } = await fh.read(buf, 0, 64, 0);
      return bytesRead >= 64 ? new Uint8Array(buf) : null;
    } catch {
      return null;
    } finally {
      await fh?.close();
    }
  }

  async readDeviceLinks(addr: PciAddress): Promise<DeviceLinks> {
    const [driver, group, physfn, entries, real] = await Promise.all([
      readLinkBase(this.dev(addr, 'driver')),
      readLinkBase(this.dev(addr, 'iommu_group')),
      readLinkBase(this.dev(addr, 'physfn')),
      readdirOrEmpty(this.dev(addr)),
      realpathOrNull(this.dev(addr)),
    ]);
    const virtfnNames = entries
      .filter((e) => /^virtfn\d+$/.test(e))
      .sort((a, b) => Number(a.slice(6)) - Number(b.slice(6)));
    const virtfns: PciAddress[] = [];
    for (const v of virtfnNames) {
      const target = await readLinkBase(this.dev(addr, v));
      if (target !== null && isPciAddress(target)) virtfns.push(target);
    }
    const parentName = real === null ? null : path.basename(path.dirname(real));
    const vfioDev = entries.includes('vfio-dev')
      ? ((await readdirOrEmpty(this.dev(addr, 'vfio-dev'))).find((n) => /^vfio\d+$/.test(n)) ??
        null)
      : null;
    return {
      driver,
      iommuGroup: group !== null && /^\d+$/.test(group) ? Number(group) : null,
      physfn: physfn !== null && isPciAddress(physfn) ? physfn : null,
      virtfns,
      parent: parentName !== null && isPciAddress(parentName) ? parentName : null,
      vfioDev,
    };
  }

  async deviceExists(addr: PciAddress): Promise<boolean> {
    return exists(this.dev(addr));
  }

  async listDrivers(): Promise<string[]> {
    return (await readdirOrEmpty(this.p('sys/bus/pci/drivers'))).sort();
  }

  async vfioGroupNodeExists(group: number): Promise<boolean> {
    return exists(this.p('dev/vfio', String(group)));
  }

  /**
   * Scans /proc/<pid>/fd for the group node and the device's cdev node. On 6.1 a VM holds
   * /dev/vfio/<group> plus an anon_inode:[vfio-device] fd that names no device, so the group
   * node is what identifies the holder (real-kernel-lab.md).
   */
  async vfioHolders(addr: PciAddress, group: number | null): Promise<DeviceHolder[]> {
    const wanted = new Set<string>();
    if (group !== null) wanted.add(`/dev/vfio/${group}`);
    for (const n of await readdirOrEmpty(this.dev(addr, 'vfio-dev')))
      if (/^vfio\d+$/.test(n)) wanted.add(`/dev/vfio/devices/${n}`);
    if (wanted.size === 0) return [];
    const out: DeviceHolder[] = [];
    for (const pid of await readdirOrEmpty(this.p('proc'))) {
      if (!/^\d+$/.test(pid)) continue;
      const fdDir = this.p('proc', pid, 'fd');
      for (const fd of await readdirOrEmpty(fdDir)) {
        let target: string;
        try {
          target = fsSync.readlinkSync(path.join(fdDir, fd));
        } catch {
          continue; // the process or the fd went away while we looked
        }
        if (!wanted.has(target)) continue;
        const comm = (await readText(this.p('proc', pid, 'comm'))) ?? '?';
        out.push({ pid: Number(pid), comm, path: target });
        break;
      }
    }
    return out;
  }

  async writeDeviceAttr(addr: PciAddress, attr: WritableDeviceAttr, value: string): Promise<void> {
    await writeExisting(this.dev(addr, attr), value);
  }

  async unbindDevice(addr: PciAddress): Promise<void> {
    try {
      await writeExisting(this.dev(addr, 'driver', 'unbind'), addr);
    } catch (e) {
      // No driver link means nothing is bound: say it the way the kernel does for bind/unbind.
      if (errnoOf(e) === 'ENOENT') throw new SysError('ENODEV', `${addr} has no driver`);
      throw e;
    }
  }

  async bindDevice(addr: PciAddress, driver: string): Promise<void> {
    if (!isValidDriverName(driver)) throw new SysError('EINVAL', `bad driver name ${driver}`);
    await writeExisting(this.p('sys/bus/pci/drivers', driver, 'bind'), addr);
  }

  async probeDevice(addr: PciAddress): Promise<void> {
    await writeExisting(this.p('sys/bus/pci/drivers_probe'), addr);
  }

  async rescanBus(): Promise<void> {
    await writeExisting(this.p('sys/bus/pci/rescan'), '1');
  }

  async moduleStatus(names: readonly string[]): Promise<Map<string, ModuleStatus | null>> {
    const proc = parseProcModules((await readText(this.p('proc/modules'))) ?? '');
    const out = new Map<string, ModuleStatus | null>();
    for (const raw of names) {
      const name = canonicalModuleName(raw);
      const listed = proc.get(name);
      if (listed) {
        out.set(name, listed);
        continue;
      }
      if (!isValidModuleName(name) || !(await exists(this.p('sys/module', name)))) {
        out.set(name, null);
        continue;
      }
      // /sys/module/<name> without initstate is a built-in module; with it, a loadable one
      // caught between /proc/modules and sysfs.
      const init = await readText(this.p('sys/module', name, 'initstate'));
      if (init === null) {
        // Parameters-only entries exist for some modules that are not built in; a built-in
        // module shows up in modules.builtin as well.
        const builtin = await this.isBuiltin(name);
        out.set(name, builtin ? { name, state: 'builtin', refcount: null } : null);
      } else {
        const state = init === 'live' ? 'live' : init === 'going' ? 'unloading' : 'loading';
        out.set(name, { name, state, refcount: null });
      }
    }
    return out;
  }

  private async kernelRelease(): Promise<string> {
    return (await readText(this.p('proc/sys/kernel/osrelease'))) ?? 'unknown';
  }

  private async isBuiltin(name: string): Promise<boolean> {
    const rel = await this.kernelRelease();
    const builtin = (await readText(this.p('lib/modules', rel, 'modules.builtin'))) ?? '';
    return builtin.split('\n').some((l) => moduleNameFromPath(l) === name);
  }

  async moduleAvailability(raw: string): Promise<ModuleAvailability> {
    const name = canonicalModuleName(raw);
    if (!isValidModuleName(name)) return { name, kind: 'missing', deps: [] };
    const rel = await this.kernelRelease();
    const dir = this.p('lib/modules', rel);
    const blocked = await this.modprobeBlock(name);
    const withBlock = (a: ModuleAvailability): ModuleAvailability =>
      blocked === undefined ? a : { ...a, blocked };
    const dep = (await readText(path.join(dir, 'modules.dep'))) ?? '';
    for (const line of dep.split('\n')) {
      const colon = line.indexOf(':');
      if (colon < 0 || moduleNameFromPath(line.slice(0, colon)) !== name) continue;
      const deps = line
        .slice(colon + 1)
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(moduleNameFromPath);
      return withBlock({ name, kind: 'loadable', deps });
    }
    if (await this.isBuiltin(name)) return withBlock({ name, kind: 'builtin', deps: [] });
    return withBlock({ name, kind: 'missing', deps: [] });
  }

  private async modprobeBlock(name: string): Promise<string | undefined> {
    const dirs = ['etc/modprobe.d', 'run/modprobe.d', 'lib/modprobe.d', 'usr/lib/modprobe.d'];
    for (const d of dirs) {
      for (const f of await readdirOrEmpty(this.p(d))) {
        if (!f.endsWith('.conf')) continue;
        const text = (await readText(this.p(d, f))) ?? '';
        for (const line of text.split('\n')) {
          const w = line.trim().split(/\s+/);
          if (w.length < 2 || canonicalModuleName(w[1] ?? '') !== name) continue;
          if (w[0] === 'blacklist') return `blacklisted in /${d}/${f}`;
          if (w[0] === 'install' && /\/(false|true)$/.test(w[2] ?? '')) {
            return `install ${w.slice(2).join(' ')} in /${d}/${f}`;
          }
        }
      }
    }
    return undefined;
  }

  async loadModule(raw: string): Promise<void> {
    const name = canonicalModuleName(raw);
    if (!isValidModuleName(name)) throw new SysError('EINVAL', `bad module name ${raw}`);
    if (!this.live) throw new SysError('EPERM', `cannot load modules into a tree at ${this.root}`);
    await new Promise<void>((resolve, reject) => {
      execFile(
        this.modprobePath,
        ['--', name],
        { timeout: this.modprobeTimeoutMs },
        (err, _stdout, stderr) => {
          if (!err) {
            resolve();
            return;
          }
          const code = errnoOf(err) === 'ENOENT' ? 'ENOENT' : 'EMODPROBE';
          reject(new SysError(code, `modprobe ${name}: ${stderr.trim() || err.message}`));
        },
      );
    });
  }

  async kernelInfo(): Promise<KernelInfo> {
    const [release, cmdline, iommus, groups, interrupts] = await Promise.all([
      this.kernelRelease(),
      readText(this.p('proc/cmdline')),
      readdirOrEmpty(this.p('sys/class/iommu')),
      readdirOrEmpty(this.p('sys/kernel/iommu_groups')),
      readText(this.p('proc/interrupts')),
    ]);
    // Remapped MSI chips are named IR-PCI-MSI / IR-IO-APIC (Intel) or AMD-IR-*.
    const remap =
      interrupts === null || iommus.length === 0
        ? 'unknown'
        : /\bIR-|AMD-IR/.test(interrupts)
          ? 'enabled'
          : 'disabled';
    return {
      release,
      cmdline: cmdline ?? '',
      iommus: iommus.sort(),
      iommuGroupCount: groups.length,
      interruptRemapping: remap,
      modprobe: this.live ? await findExecutable(this.modprobePath) : null,
    };
  }

  async hostUses(): Promise<HostUse[]> {
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
      const real = await fs.realpath(this.p('sys/bus/virtio/devices', v)).catch(() => null);
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
    const real = await fs.realpath(this.p(devPath)).catch(() => null);
    if (real !== null && real.startsWith(this.p('dev'))) name = path.basename(real);
    return this.blockPaths(name, 0);
  }

  private async blockPaths(name: string, depth: number): Promise<string[]> {
    if (depth > 8 || !/^[\w.-]+$/.test(name)) return [];
    const real = await fs.realpath(this.p('sys/class/block', name)).catch(() => null);
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
        const real = await fs.realpath(this.p('sys/bus/virtio/devices', v)).catch(() => null);
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
    const dev = await fs.realpath(path.join(base, 'device')).catch(() => null);
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

  watchUevents(onEvent: (e: Uevent) => void, onError: (e: Error) => void): (() => void) | null {
    if (!this.live || !this.useUevents) return null;
    const child = spawn(this.udevadmPath, ['monitor', '--kernel', '--property'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const parser = parseUeventStream(onEvent);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      parser(chunk);
    });
    child.on('error', (e) => {
      onError(e);
    });
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGTERM') onError(new Error(`udevadm monitor exited (${code ?? signal})`));
    });
    return () => {
      child.kill('SIGTERM');
    };
  }
}

export function parseProcModules(text: string): Map<string, ModuleStatus> {
  const out = new Map<string, ModuleStatus>();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5 || !f[0]) continue;
    const name = canonicalModuleName(f[0]);
    const st = f[4];
    const state = st === 'Live' ? 'live' : st === 'Unloading' ? 'unloading' : 'loading';
    out.set(name, { name, state, refcount: Number(f[2] ?? 0) });
  }
  return out;
}

function moduleNameFromPath(p: string): string {
  return canonicalModuleName(path.basename(p.trim()).replace(/\.ko(\.(xz|zst|gz))?$/, ''));
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

async function findExecutable(name: string): Promise<string | null> {
  const dirs = name.includes('/')
    ? ['']
    : (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin')
        .split(':')
        .concat(['/usr/sbin', '/sbin']);
  for (const d of dirs) {
    const p = d === '' ? name : path.join(d, name);
    try {
      await fs.access(p, fsc.X_OK);
      return p;
    } catch {
      // keep looking
    }
  }
  return null;
}

// Reads are synchronous on purpose: sysfs and procfs attributes come from kernel memory in
// microseconds, and the thread-pool round trip of fs.promises made discovery 4x slower
// (bench/discovery.ts). Writes stay asynchronous: an unbind can block in the kernel.
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

function exists(p: string): Promise<boolean> {
  try {
    fsSync.lstatSync(p);
    return Promise.resolve(true);
  } catch {
    return Promise.resolve(false);
  }
}

/** sysfs attributes must exist already: open without O_CREAT, write once. */
async function writeExisting(p: string, value: string): Promise<void> {
  const fh = await fs.open(p, fsc.O_WRONLY);
  try {
    await fh.write(value.endsWith('\n') ? value : `${value}\n`);
  } finally {
    await fh.close();
  }
}
