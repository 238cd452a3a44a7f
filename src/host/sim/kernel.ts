import { SysError } from '../../errors.js';
import {
  addressParts,
  compareAddresses,
  fromRoutingId,
  routingId,
  type PciAddress,
} from '../../pci/address.js';
import { buildConfigHeader } from '../../pci/config.js';
import type { Topology } from '../../topology/format.js';
import { systemClock, type Clock } from '../clock.js';
import {
  LOCK_TAKING_ATTRS,
  canonicalModuleName,
  isValidDriverName,
  noDeviceLinks,
  type DeviceAttr,
  type DeviceReading,
  type DeviceHolder,
  type DeviceLinks,
  type HostPort,
  type HostUses,
  type KernelInfo,
  type ModuleAvailability,
  type ModuleStatus,
  type Uevent,
} from '../port.js';
import { DeviceLocks } from './device-lock.js';
import { SimFaults } from './faults.js';
import {
  SIM_VM_PID,
  VFIO_DRIVER,
  type SimCall,
  type SimDevice,
  type SimDriver,
  type SimState,
  type SimTiming,
  type SimWriteOp,
} from './model.js';
import { SimModules } from './modules.js';
import { SimHost } from './port.js';
import { stateFromTopology, stateToTopology } from './topology-io.js';
import { SimUevents } from './uevents.js';

export { VFIO_DRIVER, type SimCall, type SimTiming, type SimWriteOp } from './model.js';

interface PendingRelease {
  address: PciAddress;
  release: () => void;
}

/**
 * A simulated Linux PCI/driver/module core, precise enough to test bind and unbind logic without
 * hardware (in the spirit of libvirt's virpcimock). This file holds the device and driver
 * model and the pokes tests and `passthru sim` use; modules, device_lock, faults, uevents and
 * topology import/export live beside it. docs/simulated-kernel.md lists what it models and
 * what it does not.
 */
export class SimKernel {
  readonly clock: Clock;
  readonly name: string;
  /** Every write and module load, in order. */
  readonly calls: SimCall[] = [];

  private readonly s: SimState;
  private readonly timing: SimTiming;
  private readonly faults = new SimFaults();
  private readonly locks = new DeviceLocks();
  private readonly uevents: SimUevents;
  private readonly modules: SimModules;
  private readonly blockedUnbinds = new Set<PciAddress>();
  private pendingReleases: PendingRelease[] = [];

  constructor(
    topology: Topology,
    clock: Clock = systemClock,
    options: { timing?: SimTiming } = {},
  ) {
    this.timing = options.timing ?? {};
    this.s = stateFromTopology(topology);
    for (const d of [...this.s.devices.values()].sort((a, b) =>
      compareAddresses(a.address, b.address),
    ))
      if (d.driver === VFIO_DRIVER && this.hasDeviceCdev()) d.cdev = this.freeCdevMinor();
    this.clock = clock;
    this.name = this.s.name;
    this.uevents = new SimUevents(clock, this.timing.ueventMs ?? 0);
    this.modules = new SimModules(this.s, {
      emit: (e) => {
        this.uevents.emit(e);
      },
      attach: (d, drv) => {
        this.attach(d, drv);
      },
      detach: (d) => {
        this.detach(d);
      },
      matches: (d, drv) => this.matches(d, drv),
    });
  }

  /** A HostPort onto this kernel. Each call gives a fresh handle (a fresh "process"). */
  port(): HostPort {
    return new SimHost(this, this.faults.generation);
  }

  // ---------------------------------------------------------------- observation (for tests)

  /** The driver that owns the device, including one whose unbind is still pending. */
  driverOf(addr: PciAddress): string | null {
    return this.s.devices.get(addr)?.driver ?? null;
  }

  overrideOf(addr: PciAddress): string | null {
    return this.s.devices.get(addr)?.override ?? null;
  }

  hasDevice(addr: PciAddress): boolean {
    return this.s.devices.has(addr);
  }

  /** Whether an operation holds the device's device_lock (an unbind waiting for a VM). */
  deviceLocked(addr: PciAddress): boolean {
    return this.locks.isLocked(addr);
  }

  moduleState(name: string): 'live' | 'unloading' | 'absent' | 'builtin' | undefined {
    return this.modules.state(name);
  }

  vfioNode(group: number): boolean {
    for (const d of this.s.devices.values()) {
      if (d.group === group && d.driver === VFIO_DRIVER) return true;
    }
    return false;
  }

  groupOf(addr: PciAddress): number | null {
    return this.s.devices.get(addr)?.group ?? null;
  }

  refcount(name: string): number {
    return this.modules.refcount(name);
  }

  // ---------------------------------------------------------------- pokes from outside

  /** `rmmod NAME`. With `linger`, the module stays listed as Unloading until finishUnload. */
  rmmod(name: string, opts: { linger?: boolean } = {}): void {
    this.calls.push({ op: 'rmmod', value: canonicalModuleName(name) });
    this.modules.rmmod(name, opts);
  }

  finishUnload(name: string): void {
    this.modules.finishUnload(name);
  }

  /** `modprobe -r NAME`: the module, then each dependency nothing else uses any more. */
  modprobeRemove(name: string): string[] {
    return this.modules.modprobeRemove(name, (n) => {
      this.rmmod(n);
    });
  }

  /** `modprobe NAME` from outside (another component loading a module). */
  modprobe(name: string): void {
    this.modules.load(canonicalModuleName(name));
  }

  /** A VM opens the device (only possible through vfio-pci). */
  openDevice(addr: PciAddress): void {
    const d = this.s.devices.get(addr);
    if (d?.driver !== VFIO_DRIVER || d.unbinding)
      throw new SysError('ENODEV', `${addr} is not bound to vfio-pci`);
    d.openCount++;
  }

  /** The simulated VM processes holding the device open (one pid per open). */
  holders(addr: PciAddress, group: number | null): DeviceHolder[] {
    const d = this.s.devices.get(addr);
    if (!d || d.openCount === 0) return [];
    const path = group === null ? '/dev/vfio/devices/vfio0' : `/dev/vfio/${group}`;
    return Array.from({ length: d.openCount }, (_, i) => ({
      pid: SIM_VM_PID + i,
      comm: 'qemu-system-x86',
      path,
    }));
  }

  closeDevice(addr: PciAddress): void {
    const d = this.s.devices.get(addr);
    if (!d || d.openCount === 0) return;
    d.openCount--;
    if (d.openCount === 0) this.releasePending(addr);
  }

  /** The next `times` writes of `op` (to `address`, if given) fail with `errno`. */
  failWrites(
    op: SimWriteOp,
    errno: string,
    opts: { address?: PciAddress; times?: number } = {},
  ): void {
    this.faults.failWrites(op, errno, opts);
  }

  /** The next `times` loads of `name` fail (modprobe exits non-zero). */
  failModuleLoads(name: string, times: number, message = 'simulated modprobe failure'): void {
    this.faults.failModuleLoads(name, times, message);
  }

  /** The module is not on this kernel any more (or back again). */
  setModuleAvailable(name: string, available: boolean, blocked?: string): void {
    this.modules.setAvailable(name, available, blocked);
  }

  /**
   * Releasing this device's driver (unbind, remove) blocks until {@link releaseUnbind}, holding
   * device_lock, as vfio-pci does while a VM holds the device.
   */
  blockUnbind(addr: PciAddress): void {
    this.blockedUnbinds.add(addr);
  }

  releaseUnbind(addr: PciAddress): void {
    this.blockedUnbinds.delete(addr);
    this.releasePending(addr);
  }

  /** Surprise removal: the device vanishes (hot-unplug, a failing card). */
  unplug(addr: PciAddress): void {
    const d = this.s.devices.get(addr);
    if (!d) throw new SysError('ENODEV', `no device ${addr}`);
    this.removeDevice(d, false);
  }

  /**
   * Simulates a crash of the process using the current ports: after the next `op` (on
   * `address`, if given) completes, every port handed out so far stops answering (its calls
   * never settle). Ports made later work normally.
   */
  severAfter(op: SimWriteOp, address?: PciAddress): void {
    this.faults.severAfter(op, address);
  }

  isSevered(generation: number): boolean {
    return this.faults.isSevered(generation);
  }

  onUevent(fn: (e: Uevent) => void): () => void {
    return this.uevents.subscribe(fn);
  }

  // ---------------------------------------------------------------- port operations

  listDevices(): PciAddress[] {
    return this.sortedDevices().map((d) => d.address);
  }

  /** Lock-taking attributes wait for device_lock, like the kernel's show functions. */
  readAttr(addr: PciAddress, attr: DeviceAttr): Promise<string | null> {
    if (LOCK_TAKING_ATTRS.has(attr) && this.s.devices.has(addr)) {
      return this.locks.run(addr, () => this.attrNow(addr, attr));
    }
    return Promise.resolve(this.attrNow(addr, attr));
  }

  /** readDevice: like readAttr per attribute (lock-taking ones wait for the device lock). */
  async readDevice(addr: PciAddress, attrs: readonly DeviceAttr[]): Promise<DeviceReading | null> {
    if (!this.s.devices.has(addr)) return null;
    const texts = await Promise.all(attrs.map((a) => this.readAttr(addr, a)));
    const out: Partial<Record<DeviceAttr, string>> = {};
    attrs.forEach((a, i) => {
      const t = texts[i];
      if (t !== null && t !== undefined) out[a] = t;
    });
    // The device may have gone while a lock-taking read waited.
    if (!this.s.devices.has(addr)) return null;
    return { attrs: out, links: this.links(addr) };
  }

  private attrNow(addr: PciAddress, attr: DeviceAttr): string | null {
    const d = this.s.devices.get(addr);
    if (!d) return null;
    switch (attr) {
      case 'vendor':
        return `0x${d.vendor}`;
      case 'device':
        return `0x${d.device}`;
      case 'subsystem_vendor':
        return `0x${d.subsystemVendor}`;
      case 'subsystem_device':
        return `0x${d.subsystemDevice}`;
      case 'class':
        return `0x${d.classId}`;
      case 'revision':
        return `0x${d.revision}`;
      case 'numa_node':
        return String(d.numaNode);
      case 'driver_override':
        return d.override ?? '(null)';
      case 'boot_vga':
        return d.classId.startsWith('03') ? (d.bootVga ? '1' : '0') : null;
      case 'reset_method':
        return d.resetMethods.length > 0 ? d.resetMethods.join(' ') : null;
      case 'sriov_totalvfs':
        return d.sriov ? String(d.sriov.total) : null;
      case 'sriov_numvfs':
        return d.sriov ? String(d.sriov.num) : null;
      case 'sriov_vf_device':
        return d.sriov ? d.sriov.vfDevice : null;
      case 'label':
        return d.label;
      case 'modalias': {
        const id = (h: string): string => h.toUpperCase().padStart(8, '0');
        const c = d.classId.toUpperCase();
        return `pci:v${id(d.vendor)}d${id(d.device)}sv${id(d.subsystemVendor)}sd${id(d.subsystemDevice)}bc${c.slice(0, 2)}sc${c.slice(2, 4)}i${c.slice(4, 6)}`;
      }
    }
  }

  /** Reads of the Device Serial Number, by address: tests check discovery never reads it. */
  readonly serialReads: PciAddress[] = [];

  deviceSerial(addr: PciAddress): string | null {
    const d = this.s.devices.get(addr);
    if (!d) return null;
    this.serialReads.push(addr);
    return d.serialNumber;
  }

  configHeader(addr: PciAddress): Uint8Array | null {
    const d = this.s.devices.get(addr);
    if (!d) return null;
    return buildConfigHeader({
      vendor: d.vendor,
      device: d.device,
      classId: d.classId,
      revision: d.revision,
      subsystemVendor: d.subsystemVendor,
      subsystemDevice: d.subsystemDevice,
      bridge: d.classId.startsWith('0604'),
    });
  }

  links(addr: PciAddress): DeviceLinks {
    const d = this.s.devices.get(addr);
    if (!d) return noDeviceLinks();
    return {
      // The kernel removes the driver link before the driver's remove runs (and waits).
      driver: d.unbinding ? null : d.driver,
      iommuGroup: d.group,
      physfn: d.physfn,
      virtfns: [...d.virtfns],
      parent: d.parent,
      vfioDev: d.cdev === null ? null : `vfio${String(d.cdev)}`,
    };
  }

  registeredDrivers(): string[] {
    return [...this.s.drivers.values()]
      .filter((drv) => this.modules.driverRegistered(drv))
      .map((drv) => drv.name)
      .sort();
  }

  moduleStatusOf(name: string): ModuleStatus | null {
    return this.modules.status(name);
  }

  availability(name: string): ModuleAvailability {
    return this.modules.availability(name);
  }

  kernelInfo(): KernelInfo {
    const groups = new Set<number>();
    for (const d of this.s.devices.values()) if (d.group !== null) groups.add(d.group);
    return {
      release: this.s.release,
      cmdline: this.s.cmdline,
      iommus: [...this.s.iommus],
      iommuGroupCount: groups.size,
      interruptRemapping: this.s.interruptRemapping,
      modprobe: '/sbin/modprobe',
    };
  }

  hostUses(): HostUses {
    return {
      uses: this.s.uses.filter((u) => this.s.devices.has(u.address)),
      unknown: [...this.s.usesUnknown],
      backing: [],
    };
  }

  async write(op: SimWriteOp, addr: PciAddress | null, value: string): Promise<void> {
    this.calls.push(addr === null ? { op, value } : { op, address: addr, value });
    this.faults.checkWrite(op, addr);
    switch (op) {
      case 'driver_override': {
        const d = this.need(addr, 'ENOENT');
        await this.locks.run(d.address, () => {
          this.writeOverride(d, value);
        });
        break;
      }
      case 'sriov_numvfs': {
        const d = this.need(addr, 'ENOENT');
        await this.locks.run(d.address, () => this.writeNumVfs(d, value));
        break;
      }
      case 'remove': {
        const d = this.need(addr, 'ENOENT');
        await this.locks.run(d.address, () => this.removeWithDriver(d));
        break;
      }
      case 'unbind': {
        const d = this.need(addr, 'ENODEV');
        await this.locks.run(d.address, () => this.unbind(d));
        break;
      }
      case 'bind': {
        const d = this.need(addr, 'ENODEV');
        await this.locks.run(d.address, () => {
          this.bind(d, value);
        });
        break;
      }
      case 'drivers_probe': {
        const d = this.need(addr, 'ENODEV');
        await this.locks.run(d.address, () => {
          this.probe(d);
        });
        break;
      }
      case 'rescan':
        this.rescan();
        break;
    }
    this.faults.afterWrite(op, addr);
  }

  async loadModule(name: string): Promise<void> {
    const n = canonicalModuleName(name);
    this.calls.push({ op: 'modprobe', value: n });
    this.faults.checkLoad(n);
    if ((this.timing.modprobeMs ?? 0) > 0) await this.clock.sleep(this.timing.modprobeMs ?? 0);
    this.modules.load(n);
  }

  /** The current state as a topology, so a running simulation can be saved and reloaded. */
  toTopology(): Topology {
    return stateToTopology(this.s);
  }

  // ---------------------------------------------------------------- internals

  private sortedDevices(): SimDevice[] {
    return [...this.s.devices.values()].sort((a, b) => compareAddresses(a.address, b.address));
  }

  private need(addr: PciAddress | null, errno: string): SimDevice {
    const d = addr === null ? undefined : this.s.devices.get(addr);
    if (!d) throw new SysError(errno, `no such device ${addr ?? ''}`);
    return d;
  }

  private matches(d: SimDevice, drv: SimDriver): boolean {
    // driver_override: only the named driver may bind, and id tables are ignored.
    if (d.override !== null) return d.override === drv.name;
    return drv.ids.some((id) => {
      if (id.startsWith('class:')) return d.classId === id.slice(6);
      const [v, dev] = id.split(':');
      return v === d.vendor && (dev === '*' || dev === d.device);
    });
  }

  private attach(d: SimDevice, drv: SimDriver): void {
    d.driver = drv.name;
    if (drv.name === VFIO_DRIVER && this.hasDeviceCdev()) d.cdev = this.freeCdevMinor();
    this.uevents.emit({
      action: 'bind',
      devpath: this.devpath(d),
      subsystem: 'pci',
      driver: drv.name,
      props: {},
    });
  }

  /** VFIO_DEVICE_CDEV arrived in 6.6; Debian's 6.1 creates no /dev/vfio/devices nodes. */
  private hasDeviceCdev(): boolean {
    const m = /^(\d+)\.(\d+)/.exec(this.s.release);
    return m !== null && (Number(m[1]) > 6 || (Number(m[1]) === 6 && Number(m[2]) >= 6));
  }

  /** The kernel hands out the lowest free minor (an IDA), so numbers are reused. */
  private freeCdevMinor(): number {
    const used = new Set<number>();
    for (const d of this.s.devices.values()) if (d.cdev !== null) used.add(d.cdev);
    let n = 0;
    while (used.has(n)) n++;
    return n;
  }

  private detach(d: SimDevice): void {
    const drv = d.driver;
    d.driver = null;
    d.cdev = null;
    d.unbinding = false;
    this.uevents.emit({
      action: 'unbind',
      devpath: this.devpath(d),
      subsystem: 'pci',
      props: drv ? { DRIVER: drv } : {},
    });
  }

  private probe(d: SimDevice): void {
    if (d.driver !== null) return;
    for (const drv of [...this.s.drivers.values()].sort((a, b) => a.name.localeCompare(b.name))) {
      if (this.modules.driverRegistered(drv) && this.matches(d, drv)) {
        this.attach(d, drv);
        return;
      }
    }
    // No match: drivers_probe still succeeds, and the device stays driverless.
  }

  private bind(d: SimDevice, driverName: string): void {
    // The Linux host refuses a name that could leave /sys/bus/pci/drivers before any write.
    if (!isValidDriverName(driverName))
      throw new SysError('EINVAL', `bad driver name ${driverName}`);
    const drv = this.s.drivers.get(driverName);
    if (!drv || !this.modules.driverRegistered(drv))
      throw new SysError('ENOENT', `no driver ${driverName}`);
    if (d.driver !== null) throw new SysError('EBUSY', `${d.address} is bound to ${d.driver}`);
    if (!this.matches(d, drv))
      throw new SysError('ENODEV', `${driverName} does not match ${d.address}`);
    this.attach(d, drv);
  }

  private async unbind(d: SimDevice): Promise<void> {
    if (d.driver === null) throw new SysError('ENODEV', `${d.address} has no driver`);
    await this.releaseDriver(d);
  }

  /**
   * The driver core's device_release_driver, called with device_lock held: the driver link
   * goes first, then the driver's remove runs; vfio-pci's remove waits for every holder to
   * close the device ("blocked until released by user"), keeping the lock the whole time.
   */
  private async releaseDriver(d: SimDevice): Promise<void> {
    if (d.driver === null) return;
    if (this.mustWait(d)) {
      d.unbinding = true;
      await new Promise<void>((resolve) => {
        this.pendingReleases.push({ address: d.address, release: resolve });
      });
      if (this.driverOf(d.address) === null) return; // it went away meanwhile (surprise removal)
    }
    this.detach(d);
  }

  private mustWait(d: SimDevice): boolean {
    return this.blockedUnbinds.has(d.address) || (d.driver === VFIO_DRIVER && d.openCount > 0);
  }

  private releasePending(addr: PciAddress): void {
    const d = this.s.devices.get(addr);
    if (this.blockedUnbinds.has(addr) || (d && d.openCount > 0)) return;
    const ready = this.pendingReleases.filter((p) => p.address === addr);
    this.pendingReleases = this.pendingReleases.filter((p) => p.address !== addr);
    for (const p of ready) p.release();
  }

  private writeOverride(d: SimDevice, value: string): void {
    const v = value.replace(/\n$/, '');
    d.override = v === '' ? null : v;
  }

  private async writeNumVfs(pf: SimDevice, value: string): Promise<void> {
    if (!pf.sriov) throw new SysError('ENOENT', `${pf.address} has no SR-IOV capability`);
    const t = value.trim();
    if (!/^\d+$/.test(t)) throw new SysError('EINVAL', `bad number ${t}`);
    const n = Number(t);
    if (pf.driver === null)
      throw new SysError('ENOENT', `${pf.address} has no driver to enable VFs`);
    if (n > pf.sriov.total) throw new SysError('ERANGE', `${n} > sriov_totalvfs ${pf.sriov.total}`);
    if (n === pf.sriov.num) return;
    // The kernel refuses N -> M without passing through 0.
    if (n !== 0 && pf.sriov.num !== 0)
      throw new SysError('EBUSY', `${pf.sriov.num} VFs already enabled`);
    if (n === 0) {
      // pci_disable_sriov removes each VF as a device removal does: a VF a VM holds through
      // vfio-pci keeps the write (and the PF's device_lock) waiting until the VM lets go.
      for (const vf of [...pf.virtfns]) {
        const v = this.s.devices.get(vf);
        if (v) await this.locks.run(vf, () => this.removeWithDriver(v));
      }
      pf.virtfns = [];
      pf.sriov.num = 0;
      return;
    }
    this.createVfs(pf, n);
  }

  private createVfs(pf: SimDevice, n: number): void {
    if (!pf.sriov) return;
    const { domain } = addressParts(pf.address);
    let nextGroup = Math.max(-1, ...[...this.s.devices.values()].map((x) => x.group ?? -1)) + 1;
    const created: SimDevice[] = [];
    for (let i = 0; i < n; i++) {
      const addr = fromRoutingId(
        domain,
        routingId(pf.address) + pf.sriov.offset + i * pf.sriov.stride,
      );
      const vf: SimDevice = {
        ...pf,
        address: addr,
        device: pf.sriov.vfDevice,
        driver: null,
        unbinding: false,
        override: null,
        group: pf.group === null ? null : nextGroup++,
        bootVga: false,
        label: null,
        // VFs have no Device Serial Number capability of their own (PCIe: PF only).
        serialNumber: null,
        sriov: null,
        physfn: pf.address,
        virtfns: [],
        openCount: 0,
        cdev: null,
      };
      this.s.devices.set(addr, vf);
      pf.virtfns.push(addr);
      created.push(vf);
    }
    pf.sriov.num = n;
    // sriov_drivers_autoprobe defaults to 1: new VFs are probed at once.
    for (const vf of created) this.probe(vf);
  }

  /** Removal through the `remove` attribute (or of a VF): the driver is released first. */
  private async removeWithDriver(d: SimDevice): Promise<void> {
    for (const vf of [...d.virtfns]) {
      const v = this.s.devices.get(vf);
      if (v) await this.locks.run(vf, () => this.removeWithDriver(v));
    }
    await this.releaseDriver(d);
    if (this.s.devices.get(d.address) === d) this.removeDevice(d, d.physfn === null);
  }

  private removeDevice(d: SimDevice, keepForRescan: boolean): void {
    for (const vf of [...d.virtfns]) {
      const v = this.s.devices.get(vf);
      if (v) this.removeDevice(v, false);
    }
    if (d.driver !== null) this.detach(d);
    this.s.devices.delete(d.address);
    if (d.physfn) {
      const pf = this.s.devices.get(d.physfn);
      if (pf) pf.virtfns = pf.virtfns.filter((a) => a !== d.address);
    }
    if (keepForRescan && !d.physfn) this.s.removed.set(d.address, d);
    this.uevents.emit({ action: 'remove', devpath: this.devpath(d), subsystem: 'pci', props: {} });
    this.releasePending(d.address);
  }

  private rescan(): void {
    for (const [addr, d] of this.s.removed) {
      // A rescan creates a new device object: driver_override is gone.
      this.s.devices.set(addr, {
        ...d,
        driver: null,
        unbinding: false,
        override: null,
        openCount: 0,
        cdev: null,
        virtfns: [],
        sriov: d.sriov ? { ...d.sriov, num: 0 } : null,
      });
      this.s.removed.delete(addr);
      const nd = this.s.devices.get(addr);
      if (!nd) continue;
      this.uevents.emit({ action: 'add', devpath: this.devpath(nd), subsystem: 'pci', props: {} });
      this.probe(nd);
    }
  }

  private devpath(d: SimDevice): string {
    return `/devices/pci${d.address.slice(0, -8)}/${d.address}`;
  }
}
