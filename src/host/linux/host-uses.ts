import * as fsSync from 'node:fs';
import * as path from 'node:path';
import { errnoOf } from '../../errors.js';
import { isPciAddress, type PciAddress } from '../../pci/address.js';
import type { HostBacking, HostUse, HostUses } from '../port.js';
import {
  ADDR_OPTION_FILESYSTEMS,
  cephMonitors,
  isPseudoFilesystem,
  parseUdevProperties,
} from './fs-kinds.js';
import {
  MountIndex,
  mountOptions,
  parseMountinfo,
  splitLowerdirs,
  type MountInfo,
} from './mountinfo.js';
import {
  formatIp,
  isGlobalIp,
  parseIfInet6,
  parseIp,
  parseIpv4Routes,
  parseIpv6Routes,
  routeFor,
  type IfAddress,
  type Route,
} from './proc-net.js';
import { parseSwaps } from './swaps.js';
import type { RootedFs } from './sysfs.js';

const PCI_ADDR_IN_PATH = /\b[0-9a-f]{4,5}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]\b/g;
const IFF_UP = 0x1;

/**
 * What the host under `root` ('/' for the live host) depends on: the devices under every
 * mount and swap area, under 9p/virtiofs shares, and under interfaces that are up with a
 * global address. Anything it cannot trace or read is listed in `unknown`: the guard then
 * refuses storage and network claims rather than guess.
 */
export function readHostUses(root: string, tree?: RootedFs): Promise<HostUses> {
  return Promise.resolve(new HostUseTracer(root, tree ?? null).run());
}

/** A read that failed for another reason than "not there": the answer is unknown. */
class ReadFailure extends Error {
  constructor(
    readonly file: string,
    readonly code: string,
  ) {
    super(`cannot read ${file} (${code})`);
  }
}

interface Trace {
  via: string[];
  devices: Set<PciAddress>;
  problems: string[];
}

function emptyTrace(): Trace {
  return { via: [], devices: new Set(), problems: [] };
}

function copyTrace(t: Trace): Trace {
  return { via: [...t.via], devices: new Set(t.devices), problems: [...t.problems] };
}

function merge(into: Trace, from: Trace): void {
  into.via.push(...from.via);
  for (const d of from.devices) into.devices.add(d);
  into.problems.push(...from.problems);
}

class HostUseTracer {
  private readonly uses: HostUse[] = [];
  private readonly unknown: string[] = [];
  private readonly backing: HostBacking[] = [];
  private mounts: MountInfo[] = [];
  private index = new MountIndex([]);
  /** Finished traces by mount id: container hosts stack thousands of overlays on one disk. */
  private readonly traced = new Map<number, Trace>();
  private routes: Route[] | null = null;
  private routeProblem: string | null = null;
  private udevByDev: Map<string, Map<string, string>> | null = null;

  /**
   * `tree`: under `--root TREE`, every read goes through the tree's confinement (RootedFs):
   * a link leading out of the tree, a FIFO or a device node reads as absent, so a planted
   * tree can neither hang the trace nor feed it files from elsewhere. On the live host the
   * reads are plain, and a read that fails for another reason than "not there" makes the use
   * unknown rather than absent.
   */
  constructor(
    private readonly root: string,
    private readonly tree: RootedFs | null,
  ) {}

  private p(...parts: string[]): string {
    return path.join(this.root, ...parts);
  }

  /** Host-absolute path for messages ('/sys/...'), whatever the root. */
  private shown(p: string): string {
    return `/${path.relative(this.root, p)}`;
  }

  /** File text without the trailing newline; null when absent; ReadFailure otherwise. */
  private read(p: string): string | null {
    try {
      if (this.tree !== null) return this.readInTree(this.tree, p);
      const t = fsSync.readFileSync(p, 'utf8');
      return t.endsWith('\n') ? t.slice(0, -1) : t;
    } catch (e) {
      if (e instanceof ReadFailure) throw e;
      const code = errnoOf(e) ?? 'EIO';
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw new ReadFailure(this.shown(p), code);
    }
  }

  /**
   * A confined read: what is there but reads as absent (a directory, a FIFO, a device node, a
   * link out of the tree) is a read failure, as an unreadable file is on the live host.
   */
  private readInTree(tree: RootedFs, p: string): string | null {
    const t = tree.readText(p);
    if (t !== null || !tree.exists(p)) return t;
    const dir = tree.readdirOrNull(p) !== null;
    throw new ReadFailure(this.shown(p), dir ? 'EISDIR' : 'not a regular file inside the tree');
  }

  private list(p: string): string[] {
    try {
      if (this.tree !== null) return (this.tree.readdirOrNull(p) ?? []).sort();
      return fsSync.readdirSync(p).sort();
    } catch (e) {
      const code = errnoOf(e) ?? 'EIO';
      if (code === 'ENOENT' || code === 'ENOTDIR') return [];
      throw new ReadFailure(this.shown(p), code);
    }
  }

  private real(p: string): string | null {
    try {
      if (this.tree !== null) return this.tree.realpath(p);
      return fsSync.realpathSync(p);
    } catch (e) {
      const code = errnoOf(e) ?? 'EIO';
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw new ReadFailure(this.shown(p), code);
    }
  }

  private exists(p: string): boolean {
    if (this.tree !== null) return this.tree.exists(p);
    try {
      fsSync.lstatSync(p);
      return true;
    } catch {
      return false;
    }
  }

  /** The last component of a link's target; null when it is not a link or not there. */
  private linkName(p: string): string | null {
    if (this.tree !== null) {
      const t = this.tree.readLink(p);
      return t === null ? null : path.basename(t);
    }
    try {
      return path.basename(fsSync.readlinkSync(p));
    } catch {
      return null;
    }
  }

  run(): HostUses {
    this.traceMounts();
    this.traceVirtioShares();
    this.traceSwaps();
    this.traceNetwork();
    const seen = new Set<string>();
    const uses = this.uses.filter((u) => {
      const k = `${u.address}\n${u.use}`;
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
    return { uses, unknown: [...new Set(this.unknown)], backing: this.backing };
  }

  private traceMounts(): void {
    let text: string | null;
    try {
      text = this.read(this.p('proc/self/mountinfo'));
      if (text === null) throw new ReadFailure('/proc/self/mountinfo', 'ENOENT');
    } catch (e) {
      const why = e instanceof ReadFailure ? e.message : String(e);
      this.unknown.push(`${why}: cannot tell what backs any mounted filesystem`);
      return;
    }
    const parsed = parseMountinfo(text);
    this.mounts = parsed.mounts;
    this.index = new MountIndex(parsed.mounts);
    for (const line of parsed.bad)
      this.unknown.push(`cannot parse /proc/self/mountinfo line "${line}"`);
    for (const m of this.mounts) {
      const t = this.safely(() => this.traceMount(m, new Set()));
      const pseudo = isPseudoFilesystem(m.fstype);
      this.record(
        { target: m.mountPoint, source: m.source, fstype: m.fstype, pseudo },
        t,
        m.fstype === '9p' || m.fstype === 'virtiofs'
          ? `${m.fstype} filesystem at ${m.mountPoint}`
          : `filesystem mounted at ${m.mountPoint}`,
      );
    }
  }

  private record(
    what: { target: string; source: string; fstype: string; pseudo: boolean },
    t: Trace,
    use: string,
  ): void {
    const devices = [...t.devices].sort();
    for (const address of devices) this.uses.push({ address, use });
    const b: HostBacking = {
      target: what.target,
      source: what.source,
      fstype: what.fstype,
      status: what.pseudo ? 'pseudo' : t.problems.length > 0 ? 'untraced' : 'traced',
      via: [...new Set(t.via)],
      devices,
    };
    if (t.problems.length > 0) {
      b.problem = [...new Set(t.problems)].join('; ');
      const name = what.target === 'swap' ? `swap ${what.source}` : what.target;
      this.unknown.push(`cannot tell what backs ${name}: ${b.problem}`);
    }
    this.backing.push(b);
  }

  /** Runs one trace; a failed read makes that trace unknown, never the whole report. */
  private safely(f: () => Trace): Trace {
    try {
      return f();
    } catch (e) {
      const t = emptyTrace();
      t.problems.push(e instanceof Error ? e.message : String(e));
      return t;
    }
  }

  private traceMount(m: MountInfo, visiting: Set<number>): Trace {
    const done = this.traced.get(m.id);
    if (done !== undefined) return copyTrace(done);
    if (visiting.has(m.id)) return emptyTrace();
    const t = this.traceMountOnce(m, visiting);
    this.traced.set(m.id, copyTrace(t));
    return t;
  }

  private traceMountOnce(m: MountInfo, visiting: Set<number>): Trace {
    const t = emptyTrace();
    if (isPseudoFilesystem(m.fstype)) return t;
    visiting.add(m.id);
    const opts = mountOptions(m.superOptions);
    if (m.fstype === 'overlay') {
      const dirs = [
        ...splitLowerdirs(opts.get('lowerdir') ?? ''),
        ...(opts.has('upperdir') ? [opts.get('upperdir') ?? ''] : []),
      ];
      let invisible: string | null = null;
      for (const dir of dirs) {
        const holder = this.index.holding(dir, new Set([m.id]));
        if (holder === null) invisible ??= dir;
        else
          merge(
            t,
            this.safely(() => this.traceMount(holder, visiting)),
          );
      }
      if (invisible !== null) {
        // After switch_root the share an overlay root sits on is no longer a visible mount
        // (the lab guest, virtme-style VMs): the shares no visible mount uses are its layers.
        const shares = this.unmountedShares();
        if (shares.via.length > 0) merge(t, shares);
        else
          t.problems.push(
            `overlay layer ${invisible} is on no mount visible in this mount namespace`,
          );
      }
      return t;
    }
    if (m.fstype === 'zfs') return this.traceZfs(m.source.split('/')[0] ?? m.source);
    if (m.fstype === 'btrfs') return this.traceBtrfs(m.source);
    if (ADDR_OPTION_FILESYSTEMS.includes(m.fstype)) {
      const addr = opts.get('addr');
      if (addr === undefined || addr === '') {
        t.problems.push(`${m.fstype} mount without addr= (server ${m.source})`);
        return t;
      }
      return this.traceIp(addr);
    }
    if (m.fstype === 'ceph') {
      for (const mon of cephMonitors(m.source)) merge(t, this.traceIp(mon));
      if (t.via.length === 0 && t.problems.length === 0)
        t.problems.push(`no ceph monitor address in ${m.source}`);
      return t;
    }
    if (m.fstype === '9p' && opts.has('trans') && opts.get('trans') !== 'virtio') {
      if (opts.get('trans') === 'tcp') return this.traceIp(m.source);
      t.problems.push(`9p over trans=${opts.get('trans') ?? '?'}`);
      return t;
    }
    if (m.fstype === '9p' || m.fstype === 'virtiofs') {
      const driver = m.fstype === '9p' ? '9pnet_virtio' : 'virtiofs';
      const shares = this.virtioShares().filter((s) => s.driver === driver);
      let devs = shares.filter((s) => s.tag === m.source);
      // Before 6.9 virtiofs shows its tag nowhere in sysfs: any untagged share may be this one.
      if (devs.length === 0) devs = shares.filter((s) => s.tag === '?');
      if (devs.length === 0) t.problems.push(`no virtio device carries the share "${m.source}"`);
      for (const s of devs) {
        t.via.push(`share "${s.tag}"`);
        this.addPci(t, s.path);
      }
      return t;
    }
    if (m.major === 0) {
      t.problems.push(
        `${m.fstype} (from ${m.source}) is not on a block device passthru can follow`,
      );
      return t;
    }
    return this.traceBlockDev(`${m.major}:${m.minor}`, visiting);
  }

  /**
   * The function that owns a device is the last PCI address in its sysfs path; the ports above
   * it are bridges, which no claim may take anyway.
   */
  private addPci(t: Trace, sysPath: string): void {
    const last = [...sysPath.matchAll(PCI_ADDR_IN_PATH)].pop()?.[0];
    if (last !== undefined && isPciAddress(last)) t.devices.add(last);
  }

  private traceBlockDev(majMin: string, visiting: Set<number>): Trace {
    const real = this.real(this.p('sys/dev/block', majMin));
    if (real === null) {
      const t = emptyTrace();
      t.problems.push(`no /sys/dev/block/${majMin}`);
      return t;
    }
    return this.walkBlock(real, visiting, 0);
  }

  private traceBlockName(name: string, visiting: Set<number>): Trace {
    const real = /^[\w.:-]+$/.test(name) ? this.real(this.p('sys/class/block', name)) : null;
    if (real === null) {
      const t = emptyTrace();
      t.problems.push(`no block device ${name} in /sys/class/block`);
      return t;
    }
    return this.walkBlock(real, visiting, 0);
  }

  /** Follows a block device down to the PCI functions under it. */
  private walkBlock(real: string, visiting: Set<number>, depth: number): Trace {
    const t = emptyTrace();
    const name = path.basename(real);
    t.via.push(name);
    if (depth > 16) {
      t.problems.push(`block device stack deeper than 16 at ${name}`);
      return t;
    }
    this.addPci(t, real);
    const disk = this.exists(path.join(real, 'partition')) ? path.dirname(real) : real;
    let below = 0;
    // dm (LVM, crypt, multipath), md and bcache list what they sit on in slaves/.
    for (const dir of new Set([real, disk])) {
      for (const s of this.list(path.join(dir, 'slaves'))) {
        const r = this.real(path.join(dir, 'slaves', s));
        below++;
        if (r === null) t.problems.push(`${name}: slave ${s} is gone`);
        else merge(t, this.walkBlock(r, visiting, depth + 1));
      }
      // A native NVMe multipath head (nvme-subsystem) lists its per-controller paths here.
      for (const s of this.list(path.join(dir, 'multipath'))) {
        const r = this.real(path.join(dir, 'multipath', s));
        below++;
        if (r === null) t.problems.push(`${name}: multipath path ${s} is gone`);
        else merge(t, this.walkBlock(r, visiting, depth + 1));
      }
    }
    const diskName = path.basename(disk);
    const backingFile = this.read(path.join(disk, 'loop', 'backing_file'));
    if (backingFile !== null) {
      below++;
      const file = backingFile.replace(/ \(deleted\)$/, '');
      const holder = this.index.holding(file);
      t.via.push(file);
      if (holder === null)
        t.problems.push(`${diskName}: backing file ${file} is on no visible mount`);
      else merge(t, this.traceMount(holder, visiting));
    }
    if (diskName.startsWith('zram')) {
      below++;
      const dev = this.read(path.join(disk, 'backing_dev'));
      if (dev !== null && dev !== 'none' && dev !== '')
        merge(t, this.traceBlockName(path.basename(dev), visiting));
    }
    const session = /\/session(\d+)\//.exec(real);
    if (session?.[1] !== undefined) {
      below++;
      merge(t, this.traceIscsi(session[1]));
    }
    if (below === 0 && t.devices.size === 0 && real.includes('/virtual/')) {
      t.problems.push(
        diskName.startsWith('nbd')
          ? `${diskName} is a network block device: its server is not visible in sysfs`
          : `${diskName} is a virtual block device with nothing below it passthru can follow`,
      );
    }
    return t;
  }

  private traceIscsi(session: string): Trace {
    const t = emptyTrace();
    const conns = this.list(this.p('sys/class/iscsi_connection')).filter((c) =>
      c.startsWith(`connection${session}:`),
    );
    for (const c of conns) {
      const base = this.p('sys/class/iscsi_connection', c);
      const addr =
        this.read(path.join(base, 'address')) ?? this.read(path.join(base, 'persistent_address'));
      if (addr !== null && addr !== '') merge(t, this.traceIp(addr));
    }
    if (t.via.length === 0 && t.problems.length === 0)
      t.problems.push(
        `iSCSI session${session}: no connection address in /sys/class/iscsi_connection`,
      );
    return t;
  }

  /** ZFS pool members: udev labels each member disk ID_FS_TYPE=zfs_member, LABEL=<pool>. */
  private traceZfs(pool: string): Trace {
    const t = emptyTrace();
    t.via.push(`zfs pool ${pool}`);
    const members: string[] = [];
    for (const [name, props] of this.udevBlockProps()) {
      if (props.get('ID_FS_TYPE') === 'zfs_member' && props.get('ID_FS_LABEL') === pool)
        members.push(name);
    }
    if (members.length === 0) {
      t.problems.push(
        `no member disk of zfs pool ${pool} (no zfs_member labelled ${pool} in /run/udev/data)`,
      );
      return t;
    }
    for (const n of members.sort()) merge(t, this.traceBlockName(n, new Set()));
    return t;
  }

  private udevBlockProps(): Map<string, Map<string, string>> {
    if (this.udevByDev !== null) return this.udevByDev;
    const out = new Map<string, Map<string, string>>();
    for (const name of this.list(this.p('sys/class/block'))) {
      const dev = this.read(this.p('sys/class/block', name, 'dev'));
      if (dev === null) continue;
      const db = this.read(this.p('run/udev/data', `b${dev.trim()}`));
      if (db !== null) out.set(name, parseUdevProperties(db));
    }
    this.udevByDev = out;
    return out;
  }

  /** A multi-device btrfs lists every member under /sys/fs/btrfs/<fsid>/devices. */
  private traceBtrfs(source: string): Trace {
    const t = emptyTrace();
    const srcReal = this.real(this.p(source));
    const srcName = path.basename(srcReal ?? source);
    const fsids = this.list(this.p('sys/fs/btrfs')).filter((f) =>
      this.exists(this.p('sys/fs/btrfs', f, 'devices')),
    );
    let chosen = fsids.filter((f) =>
      this.list(this.p('sys/fs/btrfs', f, 'devices')).includes(srcName),
    );
    // A source such as /dev/root names no member: take every btrfs, never fewer disks.
    if (chosen.length === 0) chosen = fsids;
    for (const f of chosen)
      for (const d of this.list(this.p('sys/fs/btrfs', f, 'devices')))
        merge(t, this.traceBlockName(d, new Set()));
    if (t.via.length === 0) t.problems.push(`no btrfs filesystem in /sys/fs/btrfs holds ${source}`);
    return t;
  }

  private loadRoutes(): Route[] {
    if (this.routes !== null) return this.routes;
    const routes: Route[] = [];
    try {
      const v4 = this.read(this.p('proc/net/route'));
      if (v4 === null) throw new ReadFailure('/proc/net/route', 'ENOENT');
      const p4 = parseIpv4Routes(v4);
      routes.push(...p4.routes);
      if (p4.bad.length > 0)
        this.routeProblem = `cannot parse /proc/net/route line "${p4.bad[0] ?? ''}"`;
      // No IPv6 in this kernel (or disabled): there are simply no IPv6 routes.
      const v6 = this.read(this.p('proc/net/ipv6_route'));
      if (v6 !== null) routes.push(...parseIpv6Routes(v6).routes);
    } catch (e) {
      this.routeProblem = e instanceof Error ? e.message : String(e);
    }
    this.routes = routes;
    return routes;
  }

  /** The interface the route to `ip` leaves through, and the NICs under it. */
  private traceIp(ipText: string): Trace {
    const t = emptyTrace();
    const ip = parseIp(ipText);
    if (ip === null) {
      t.problems.push(`server ${ipText} is not an IP address`);
      return t;
    }
    const routes = this.loadRoutes();
    if (this.routeProblem !== null) {
      t.problems.push(this.routeProblem);
      return t;
    }
    const r = routeFor(routes, ip);
    if (r === null) {
      // Addresses of this host sit in the local table, which procfs does not show by route.
      t.problems.push(`no route to ${formatIp(ip)}`);
      return t;
    }
    t.via.push(`${formatIp(ip)} via ${r.iface}`);
    merge(t, this.traceIface(r.iface, 0));
    return t;
  }

  /** The physical NICs under an interface: its device, or the ports of a bridge/bond/VLAN. */
  private traceIface(iface: string, depth: number): Trace {
    const t = emptyTrace();
    if (depth > 8 || !/^[\w.@:-]+$/.test(iface)) {
      t.problems.push(`interface ${iface} cannot be followed`);
      return t;
    }
    t.via.push(iface);
    if (iface === 'lo') return t;
    const base = this.p('sys/class/net', iface);
    const dev = this.real(path.join(base, 'device'));
    if (dev !== null) {
      this.addPci(t, dev);
      return t;
    }
    const lowers = this.list(base)
      .filter((e) => e.startsWith('lower_'))
      .map((e) => e.slice(6));
    const ports = this.list(path.join(base, 'brif'));
    for (const l of new Set([...lowers, ...ports])) merge(t, this.traceIface(l, depth + 1));
    if (lowers.length === 0 && ports.length === 0)
      t.problems.push(`interface ${iface} has no device and no lower interface (a tunnel?)`);
    return t;
  }

  private virtioShares(): { tag: string; driver: string; path: string }[] {
    const out: { tag: string; driver: string; path: string }[] = [];
    for (const v of this.list(this.p('sys/bus/virtio/devices'))) {
      const base = this.p('sys/bus/virtio/devices', v);
      const driver = this.linkName(path.join(base, 'driver'));
      if (driver !== '9pnet_virtio' && driver !== 'virtiofs') continue;
      // mount_tag may carry a trailing NUL; virtiofs names its tag `tag`.
      const tag = (
        this.read(path.join(base, 'mount_tag')) ??
        this.read(path.join(base, 'tag')) ??
        '?'
      ).replace(/\0+$/, '');
      const real = this.real(base);
      if (real !== null) out.push({ tag, driver, path: real });
    }
    return out;
  }

  /** Shares bound to their driver that no visible 9p/virtiofs mount uses. */
  private unmountedShares(): Trace {
    const t = emptyTrace();
    const mounted = new Set(
      this.mounts.filter((m) => m.fstype === '9p' || m.fstype === 'virtiofs').map((m) => m.source),
    );
    for (const s of this.virtioShares()) {
      if (mounted.has(s.tag)) continue;
      t.via.push(`share "${s.tag}"`);
      this.addPci(t, s.path);
    }
    return t;
  }

  /** A 9p or virtiofs share may back a mount this namespace cannot see: never free. */
  private traceVirtioShares(): void {
    try {
      for (const s of this.virtioShares()) {
        const t = emptyTrace();
        this.addPci(t, s.path);
        const kind = s.driver === 'virtiofs' ? 'virtiofs' : '9p';
        for (const a of t.devices)
          this.uses.push({
            address: a,
            use: `${kind} share ${s.tag === '?' ? '(tag not in sysfs)' : `"${s.tag}"`} (may back a mounted filesystem)`,
          });
      }
    } catch (e) {
      this.unknown.push(
        `${e instanceof Error ? e.message : String(e)}: cannot tell which virtio shares exist`,
      );
    }
  }

  private traceSwaps(): void {
    let text: string | null;
    try {
      text = this.read(this.p('proc/swaps'));
    } catch (e) {
      this.unknown.push(
        `${e instanceof Error ? e.message : String(e)}: cannot tell what backs swap`,
      );
      return;
    }
    // No /proc/swaps: a kernel without CONFIG_SWAP has no swap to trace.
    if (text === null) return;
    const parsed = parseSwaps(text);
    for (const line of parsed.bad) this.unknown.push(`cannot parse /proc/swaps line "${line}"`);
    for (const s of parsed.swaps) {
      const t = this.safely(() => {
        if (s.type === 'file') {
          const file = s.file.replace(/ \(deleted\)$/, '');
          const holder = this.index.holding(file);
          if (holder !== null) return this.traceMount(holder, new Set());
          const none = emptyTrace();
          none.problems.push(`swap file ${file} is on no visible mount`);
          return none;
        }
        const real = this.real(this.p(s.file));
        return this.traceBlockName(path.basename(real ?? s.file), new Set());
      });
      this.record(
        { target: 'swap', source: s.file, fstype: 'swap', pseudo: false },
        t,
        `swap on ${s.file}`,
      );
    }
  }

  private traceNetwork(): void {
    const routes = this.loadRoutes();
    if (this.routeProblem !== null) {
      this.unknown.push(`${this.routeProblem}: cannot tell which interfaces carry routes`);
    }
    for (const iface of new Set(
      routes.filter((r) => r.prefixLen === 0 && r.iface !== 'lo').map((r) => r.iface),
    )) {
      const t = this.safely(() => this.traceIface(iface, 0));
      for (const a of t.devices)
        this.uses.push({ address: a, use: `network interface ${iface} carries the default route` });
    }
    let addrs: IfAddress[] = [];
    let ifaces: string[] = [];
    try {
      const v6 = this.read(this.p('proc/net/if_inet6'));
      addrs = v6 === null ? [] : parseIfInet6(v6).addresses;
      ifaces = this.list(this.p('sys/class/net'));
    } catch (e) {
      this.unknown.push(
        `${e instanceof Error ? e.message : String(e)}: cannot tell which interfaces have addresses`,
      );
    }
    for (const iface of ifaces) {
      if (iface === 'lo') continue;
      let flags: string | null;
      try {
        flags = this.read(this.p('sys/class/net', iface, 'flags'));
      } catch (e) {
        this.unknown.push(
          `${e instanceof Error ? e.message : String(e)}: cannot tell whether ${iface} is up`,
        );
        continue;
      }
      if (flags === null || (parseInt(flags, 16) & IFF_UP) === 0) continue;
      // procfs lists IPv4 addresses per interface nowhere; a global IPv4 address shows as
      // the connected route it creates.
      const evidence = [
        ...addrs.filter((a) => a.iface === iface && a.scope === 0).map((a) => a.address),
        ...routes
          .filter(
            (r) =>
              r.iface === iface &&
              r.family === 4 &&
              !r.gateway &&
              r.prefixLen > 0 &&
              isGlobalIp(r.dest),
          )
          .map((r) => `${formatIp(r.dest)}/${r.prefixLen}`),
      ];
      if (evidence.length === 0) continue;
      const t = this.safely(() => this.traceIface(iface, 0));
      const shown = evidence.slice(0, 3).join(', ') + (evidence.length > 3 ? ', ...' : '');
      for (const a of t.devices)
        this.uses.push({
          address: a,
          use: `network interface ${iface} is up with a global address (${shown})`,
        });
    }
  }
}
