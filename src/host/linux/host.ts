import { constants as fsc } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { SysError, errnoOf } from '../../errors.js';
import { isPciAddress, type PciAddress } from '../../pci/address.js';
import { isVfioDriver } from '../../pci/model.js';
import { systemClock, type Clock } from '../clock.js';
import {
  LOCK_TAKING_ATTRS,
  noDeviceLinks,
  isValidDriverName,
  type DeviceAttr,
  type DeviceHolder,
  type DeviceLinks,
  type DeviceReading,
  type ReadDeviceOptions,
  type HostPort,
  type ClassDevices,
  type HostUses,
  type KernelInfo,
  type ModuleAvailability,
  type ModuleStatus,
  type Uevent,
  type WritableDeviceAttr,
  type WriteOptions,
} from '../port.js';
import { LinuxModules } from './modules.js';
import { RootedFs, type LocatedDir } from './sysfs.js';
import { monitorUevents } from './uevents.js';

export interface LinuxHostOptions {
  /** Root prefix: '/' for the live host, or a directory holding a sysfs/procfs tree. */
  root?: string;
  modprobePath?: string;
  udevadmPath?: string;
  /** The dd that runs writes that may block (see child-write.ts). */
  ddPath?: string;
  /** Use `udevadm monitor` as a uevent source (live host only). Default true. */
  uevents?: boolean;
  clock?: Clock;
  modprobeTimeoutMs?: number;
}

/**
 * Attributes the PCI core gives every device on the kernels passthru supports (modalias since
 * 2.6.x, driver_override since 3.16): opened by name. Any other may be absent (boot_vga only on
 * VGA devices, sriov_* only on PFs, reset_method only with a reset method) and is looked for
 * first.
 */
const EVERY_DEVICE: ReadonlySet<DeviceAttr> = new Set<DeviceAttr>([
  'vendor',
  'device',
  'subsystem_vendor',
  'subsystem_device',
  'class',
  'modalias',
  'revision',
  'numa_node',
  'driver_override',
]);

/** The SR-IOV PF attributes: present together, on PFs only (sriov_pf_dev_attr_group). */
const SRIOV_PF: ReadonlySet<DeviceAttr> = new Set<DeviceAttr>([
  'sriov_totalvfs',
  'sriov_numvfs',
  'sriov_vf_device',
]);

/**
 * Writes that can sleep on a held device run in a child process that can be abandoned
 * (child-write.ts); the others run in-process, where a spawn's 50-170 ms (under QEMU) would be
 * wasted: driver_override and bind/drivers_probe on an idle device return at once, and the
 * engine never writes to a device with an operation pending. An unbind waits for a VM holding
 * the device; removing a device or its VFs goes through the same wait.
 */
const MAY_BLOCK: ReadonlySet<WritableDeviceAttr> = new Set<WritableDeviceAttr>([
  'sriov_numvfs',
  'remove',
]);

/**
 * The Linux host. What only claims, releases and the agent use (holders, host uses, child
 * writes, serial numbers) is imported when first used: `passthru list` loads none of it
 * (issue 11: start-up).
 */
export class LinuxHost implements HostPort {
  readonly clock: Clock;
  readonly description: string;
  private readonly root: string;
  private readonly live: boolean;
  private readonly rfs: RootedFs;
  private readonly modules: LinuxModules;
  private readonly modprobePath: string;
  private readonly udevadmPath: string;
  private readonly ddPath: string;
  private readonly useUevents: boolean;

  constructor(opts: LinuxHostOptions = {}) {
    this.rfs = new RootedFs(opts.root ?? '/');
    this.root = this.rfs.root;
    this.live = this.rfs.live;
    this.clock = opts.clock ?? systemClock;
    this.modprobePath = opts.modprobePath ?? 'modprobe';
    this.udevadmPath = opts.udevadmPath ?? 'udevadm';
    this.ddPath = opts.ddPath ?? 'dd';
    this.useUevents = opts.uevents ?? true;
    this.modules = new LinuxModules(this.rfs, this.modprobePath, opts.modprobeTimeoutMs ?? 60_000);
    this.description = `linux:${this.root}`;
    this.devicesDir = this.p('sys/bus/pci/devices');
  }

  private p(...parts: string[]): string {
    return path.join(this.root, ...parts);
  }

  /** A validated address joins a resolved root: no path.join (it was a cost per device). */
  private dev(addr: PciAddress, ...rest: string[]): string {
    const d = `${this.devicesDir}/${addr}`;
    return rest.length === 0 ? d : path.join(d, ...rest);
  }

  private readonly devicesDir: string;

  listDevices(): Promise<PciAddress[]> {
    return Promise.resolve(
      this.rfs.readdir(this.p('sys/bus/pci/devices')).filter(isPciAddress).sort(),
    );
  }

  readDeviceAttr(addr: PciAddress, attr: DeviceAttr): Promise<string | null> {
    const file = this.dev(addr, attr);
    // Lock-taking attributes go through the thread pool; the rest are read in place (fast).
    if (LOCK_TAKING_ATTRS.has(attr)) return this.rfs.readTextAsync(file);
    return Promise.resolve(this.rfs.readText(file));
  }

  readConfigHeader(addr: PciAddress): Promise<Uint8Array | null> {
    return Promise.resolve(this.rfs.readBytes(this.dev(addr, 'config'), 64));
  }

  async readDeviceSerial(addr: PciAddress): Promise<string | null> {
    const { findDeviceSerial } = await import('../../pci/device-serial.js');
    return this.rfs.readAtOffsets(this.dev(addr, 'config'), findDeviceSerial);
  }

  readDeviceLinks(addr: PciAddress): Promise<DeviceLinks> {
    const dir = this.rfs.locateDir(this.dev(addr));
    return Promise.resolve(dir === null ? noDeviceLinks() : this.linksOf(dir));
  }

  /**
   * The device's directory is found once; then the attributes every device has are opened by
   * name, and the ones only some devices have are looked for first (access(2): a failed open
   * costs an exception, several times more). A listing of the directory cost more than all of
   * those lookups together. About 19 syscalls per function (18 on the live host); it was ~59
   * (bench/discovery.ts, docs/adr/0009).
   */
  async readDevice(
    addr: PciAddress,
    attrs: readonly DeviceAttr[],
    opts: ReadDeviceOptions = {},
  ): Promise<DeviceReading | null> {
    const r = this.rfs;
    const dir = r.locateDir(this.dev(addr));
    if (dir === null) return null;
    const out: Partial<Record<DeviceAttr, string>> = {};
    // Only a PF has the sriov_* attributes, and then all of them: one lookup answers for all.
    let pf: boolean | undefined;
    const present = (a: DeviceAttr): boolean => {
      if (EVERY_DEVICE.has(a)) return true;
      if (SRIOV_PF.has(a)) return (pf ??= r.hasIn(dir, 'sriov_totalvfs'));
      // boot_vga is made only for VGA-class devices (pci_dev_attrs_are_visible).
      if (a === 'boot_vga' && out.modalias !== undefined && !/bc0[03]sc/i.test(out.modalias))
        return false;
      return r.hasIn(dir, a);
    };
    const locking: DeviceAttr[] = [];
    for (const a of attrs) {
      if (!present(a)) continue;
      if (LOCK_TAKING_ATTRS.has(a)) locking.push(a);
      else {
        const t = r.readAttrIn(dir, a);
        if (t !== null) out[a] = t;
      }
    }
    const links = this.linksOf(dir, pf, opts.physfnFromPfs === true);
    const inPlace =
      opts.inPlaceWhenBound === true &&
      links.driver !== null &&
      !isVfioDriver(links.driver) &&
      !(pf ?? r.hasIn(dir, 'sriov_totalvfs'));
    const texts = inPlace
      ? locking.map((a) => r.readAttrIn(dir, a))
      : await Promise.all(locking.map((a) => r.readAttrAsyncIn(dir, a)));
    locking.forEach((a, i) => {
      const t = texts[i];
      if (t !== null && t !== undefined) out[a] = t;
    });
    return { attrs: out, links };
  }

  /**
   * `pf`: whether the device is an SR-IOV PF, when the caller has looked already.
   * `noPhysfn`: the caller fills `physfn` in from the PFs' links (physfnFromPfs).
   */
  private linksOf(dir: LocatedDir, pf?: boolean, noPhysfn = false): DeviceLinks {
    const r = this.rfs;
    const driver = r.readLinkBaseIn(dir, 'driver');
    const group = r.readLinkBaseIn(dir, 'iommu_group');
    const isPf = pf ?? r.hasIn(dir, 'sriov_totalvfs');
    // A PF is never a VF; a PF's VF links are numbered from 0, so only a PF with VFs enabled
    // has virtfn0, and only then is the directory listed.
    const physfn =
      !isPf && !noPhysfn && r.hasIn(dir, 'physfn') ? r.readLinkBaseIn(dir, 'physfn') : null;
    const virtfns =
      isPf && r.hasIn(dir, 'virtfn0')
        ? r
            .readdirIn(dir)
            .filter((e) => /^virtfn\d+$/.test(e))
            .sort((a, b) => Number(a.slice(6)) - Number(b.slice(6)))
            .map((v) => r.readLinkBaseIn(dir, v))
            .filter((t): t is PciAddress => t !== null && isPciAddress(t))
        : [];
    // Only a device a vfio driver holds has vfio-dev (vfio_device registration).
    const vfioDev =
      driver !== null && isVfioDriver(driver) && r.hasIn(dir, 'vfio-dev')
        ? (r.readdirIn(dir, 'vfio-dev').find((n) => /^vfio\d+$/.test(n)) ?? null)
        : null;
    return {
      driver,
      iommuGroup: group !== null && /^\d+$/.test(group) ? Number(group) : null,
      physfn: physfn !== null && isPciAddress(physfn) ? physfn : null,
      virtfns,
      parent: dir.upper !== null && isPciAddress(dir.upper) ? dir.upper : null,
      vfioDev,
    };
  }

  deviceExists(addr: PciAddress): Promise<boolean> {
    return Promise.resolve(this.rfs.exists(this.dev(addr)));
  }

  listDrivers(): Promise<string[]> {
    return Promise.resolve(this.rfs.readdir(this.p('sys/bus/pci/drivers')).sort());
  }

  vfioGroupNodeExists(group: number): Promise<boolean> {
    return Promise.resolve(this.rfs.exists(this.p('dev/vfio', String(group))));
  }

  async vfioHolders(addr: PciAddress, group: number | null): Promise<DeviceHolder[]> {
    const { findVfioHolders } = await import('./vfio-holders.js');
    return findVfioHolders(this.rfs, addr, group);
  }

  async writeDeviceAttr(
    addr: PciAddress,
    attr: WritableDeviceAttr,
    value: string,
    opts: WriteOptions = {},
  ): Promise<void> {
    const file = this.dev(addr, attr);
    if (MAY_BLOCK.has(attr)) await this.writeAbandonable(file, value, opts.signal);
    else await this.rfs.writeExisting(file, value, opts.signal);
  }

  async unbindDevice(addr: PciAddress, opts: WriteOptions = {}): Promise<void> {
    if (this.rfs.readLink(this.dev(addr, 'driver')) === null) {
      // No driver link means nothing is bound: say it the way the kernel does for bind/unbind.
      throw new SysError('ENODEV', `${addr} has no driver`);
    }
    try {
      await this.writeAbandonable(this.dev(addr, 'driver', 'unbind'), addr, opts.signal);
    } catch (e) {
      // The driver went away between the check and the write.
      if (errnoOf(e) === 'ENOENT') throw new SysError('ENODEV', `${addr} has no driver`);
      throw e;
    }
  }

  async bindDevice(addr: PciAddress, driver: string, opts: WriteOptions = {}): Promise<void> {
    if (!isValidDriverName(driver)) throw new SysError('EINVAL', `bad driver name ${driver}`);
    await this.rfs.writeExisting(this.p('sys/bus/pci/drivers', driver, 'bind'), addr, opts.signal);
  }

  async probeDevice(addr: PciAddress, opts: WriteOptions = {}): Promise<void> {
    await this.rfs.writeExisting(this.p('sys/bus/pci/drivers_probe'), addr, opts.signal);
  }

  async rescanBus(opts: WriteOptions = {}): Promise<void> {
    await this.rfs.writeExisting(this.p('sys/bus/pci/rescan'), '1', opts.signal);
  }

  /** A write in a child process the signal can abandon; confined to the tree like any other. */
  private async writeAbandonable(file: string, value: string, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const { writeInChild } = await import('./child-write.js');
    return writeInChild(this.ddPath, this.rfs.writablePath(file), value, signal);
  }

  moduleStatus(names: readonly string[]): Promise<Map<string, ModuleStatus | null>> {
    return Promise.resolve(this.modules.status(names));
  }

  moduleAvailability(name: string): Promise<ModuleAvailability> {
    return Promise.resolve(this.modules.availability(name));
  }

  loadModule(name: string): Promise<void> {
    return this.modules.load(name);
  }

  async kernelInfo(): Promise<KernelInfo> {
    const release = this.modules.kernelRelease();
    const cmdline = this.rfs.readText(this.p('proc/cmdline'));
    const iommus = this.rfs.readdir(this.p('sys/class/iommu'));
    const groups = this.rfs.readdir(this.p('sys/kernel/iommu_groups'));
    const interrupts = this.rfs.readText(this.p('proc/interrupts'));
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

  classDevices(addr: PciAddress): Promise<ClassDevices> {
    // A class device lives below the function that provides it: /sys/class/net/eth0 links to
    // ../../devices/pci0000:00/0000:00:03.0/virtio2/net/eth0 (seen on this project's VM; nvme0n1
    // to .../0000:04:00.0/nvme/nvme0/nvme0n1). The link text is enough: no resolving.
    const below = (cls: string, keep: (n: string) => boolean): string[] =>
      this.rfs
        .readdir(this.p('sys/class', cls))
        .filter(
          (n) =>
            keep(n) && (this.rfs.readLink(this.p('sys/class', cls, n)) ?? '').includes(`/${addr}/`),
        )
        .sort();
    return Promise.resolve({
      net: below('net', () => true),
      block: below('block', () => true),
      drm: below('drm', (n) => /^card\d+$/.test(n)),
    });
  }

  async hostUses(): Promise<HostUses> {
    const { readHostUses } = await import('./host-uses.js');
    return readHostUses(this.root, this.live ? undefined : this.rfs);
  }

  watchUevents(onEvent: (e: Uevent) => void, onError: (e: Error) => void): (() => void) | null {
    if (!this.live || !this.useUevents) return null;
    return monitorUevents({ udevadmPath: this.udevadmPath, clock: this.clock }, onEvent, onError);
  }
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
