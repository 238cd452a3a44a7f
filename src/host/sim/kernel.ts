import { SysError } from '../../errors.js';
import {
  compareAddresses,
  fromRoutingId,
  addressParts,
  parsePciAddress,
  routingId,
  type PciAddress,
} from '../../pci/address.js';
import { buildConfigHeader } from '../../pci/config.js';
import { systemClock, type Clock } from '../clock.js';
import {
  canonicalModuleName,
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
} from '../port.js';
/** Simulated VMs get pids from here, so status and errors can name a holder. */
const SIM_VM_PID = 4242;

import { vfioModuleGraph, validateTopology, TOPOLOGY_FORMAT, type Topology } from './topology.js';

export const VFIO_DRIVER = 'vfio-pci';

interface SimDevice {
  address: PciAddress;
  vendor: string;
  device: string;
  subsystemVendor: string;
  subsystemDevice: string;
  classId: string;
  revision: string;
  driver: string | null;
  override: string | null;
  group: number | null;
  numaNode: number;
  parent: PciAddress | null;
  bootVga: boolean;
  resetMethods: string[];
  label: string | null;
  sriov: { total: number; num: number; vfDevice: string; offset: number; stride: number } | null;
  physfn: PciAddress | null;
  virtfns: PciAddress[];
  /** Open file descriptions held by userspace (a VM): vfio-pci's unbind blocks while > 0. */
  openCount: number;
  /** Minor of the vfio cdev (/dev/vfio/devices/vfioN) while on vfio-pci on 6.6+, else null. */
  cdev: number | null;
}

interface SimDriver {
  name: string;
  module: string | null;
  ids: string[];
}

interface SimModule {
  name: string;
  deps: string[];
  state: 'live' | 'unloading' | 'absent' | 'builtin';
  available: boolean;
  blocked: string | undefined;
}

/**
 * Optional delays (on the kernel's clock) so a simulation paces like a real host: the real-kernel
 * lab measured modprobe vfio-pci at 300-500 ms and module-removal uevents 233-279 ms after the
 * rmmod began. Zero (the default) keeps every operation instant.
 */
export interface SimTiming {
  modprobeMs?: number;
  ueventMs?: number;
}

export type SimWriteOp = WritableDeviceAttr | 'unbind' | 'bind' | 'drivers_probe' | 'rescan';

interface WriteFault {
  op: SimWriteOp;
  address: PciAddress | undefined;
  errno: string;
  remaining: number;
}

interface PendingUnbind {
  address: PciAddress;
  release: () => void;
}

/** What the sim records of each host-side call, for tests that check "no side effect". */
export interface SimCall {
  op: string;
  address?: PciAddress;
  value?: string;
}

/**
 * A simulated Linux PCI/driver/module core, precise enough to test bind and unbind logic without
 * hardware (in the spirit of libvirt's virpcimock). docs/simulated-kernel.md lists what it models
 * and what it does not.
 */
export class SimKernel {
  readonly clock: Clock;
  readonly name: string;
  private release: string;
  private cmdline: string;
  private iommus: string[];
  private interruptRemapping: KernelInfo['interruptRemapping'];
  private devices = new Map<PciAddress, SimDevice>();
  private removed = new Map<PciAddress, SimDevice>();
  private drivers = new Map<string, SimDriver>();
  private modules = new Map<string, SimModule>();
  private uses: HostUse[];
  private writeFaults: WriteFault[] = [];
  private loadFaults = new Map<string, { remaining: number; message: string }>();
  private blockedUnbinds = new Set<PciAddress>();
  private pendingUnbinds: PendingUnbind[] = [];
  private ueventListeners = new Set<(e: Uevent) => void>();
  private generation = 0;
  private severRule: { op: string; address: PciAddress | undefined } | null = null;
  private description: string | undefined;
  /** Every write and module load, in order. */
  readonly calls: SimCall[] = [];

  private readonly timing: SimTiming;

  constructor(
    topology: Topology,
    clock: Clock = systemClock,
    options: { timing?: SimTiming } = {},
  ) {
    this.timing = options.timing ?? {};
    const topo = validateTopology(topology);
    this.clock = clock;
    this.name = topo.name;
    this.description = topo.description;
    this.release = topo.kernel?.release ?? '6.1.0-sim-amd64';
    this.cmdline = topo.kernel?.cmdline ?? 'intel_iommu=on iommu=pt';
    this.iommus = topo.kernel?.iommus ?? ['dmar0'];
    this.interruptRemapping = topo.kernel?.interruptRemapping ?? 'enabled';
    this.uses = (topo.hostUses ?? []).map((u) => ({
      address: parsePciAddress(u.address),
      use: u.use,
    }));

    for (const d of topo.devices) {
      const address = parsePciAddress(d.address);
      this.devices.set(address, {
        address,
        vendor: d.vendor,
        device: d.device,
        subsystemVendor: d.subsystemVendor ?? '0000',
        subsystemDevice: d.subsystemDevice ?? '0000',
        classId: d.class,
        revision: d.revision ?? '00',
        driver: d.driver ?? null,
        override: d.driverOverride ?? null,
        group: d.iommuGroup ?? null,
        numaNode: d.numaNode ?? -1,
        parent: d.parent ? parsePciAddress(d.parent) : null,
        bootVga: d.bootVga ?? false,
        resetMethods: d.resetMethods ?? [],
        label: d.label ?? null,
        sriov: d.sriov
          ? {
              total: d.sriov.totalVfs,
              num: 0,
              vfDevice: d.sriov.vfDevice,
              offset: d.sriov.vfOffset ?? 1,
              stride: d.sriov.vfStride ?? 1,
            }
          : null,
        physfn: d.physfn ? parsePciAddress(d.physfn) : null,
        virtfns: [],
        openCount: 0,
        cdev: null,
      });
    }
    // VFs listed in the topology (a snapshot of a host with VFs enabled) link to their PF.
    for (const dev of this.devices.values()) {
      if (dev.physfn) {
        const pf = this.devices.get(dev.physfn);
        if (pf) pf.virtfns.push(dev.address);
      }
    }
    for (const pf of this.devices.values()) {
      if (pf.sriov) pf.sriov.num = pf.virtfns.length;
    }
    for (const d of this.sortedDevices()) {
      if (d.driver === VFIO_DRIVER && this.hasDeviceCdev()) d.cdev = this.freeCdevMinor();
    }

    const graph = vfioModuleGraph(this.release);
    const anyVfio = topo.devices.some((d) => d.driver === VFIO_DRIVER);
    for (const m of graph) {
      this.modules.set(m.name, {
        name: m.name,
        deps: m.deps,
        state: anyVfio ? 'live' : 'absent',
        available: true,
        blocked: undefined,
      });
    }
    this.drivers.set(VFIO_DRIVER, { name: VFIO_DRIVER, module: 'vfio_pci', ids: [] });
    for (const drv of topo.drivers ?? []) {
      this.drivers.set(drv.name, {
        name: drv.name,
        module: drv.module === undefined ? canonicalModuleName(drv.name) : drv.module,
        ids: drv.ids ?? [],
      });
    }
    // Drivers that appear only as a device's current driver: match what they are bound to.
    for (const dev of this.devices.values()) {
      if (dev.driver === null || dev.driver === VFIO_DRIVER) continue;
      let drv = this.drivers.get(dev.driver);
      if (!drv) {
        drv = { name: dev.driver, module: canonicalModuleName(dev.driver), ids: [] };
        this.drivers.set(drv.name, drv);
      }
      if (!(topo.drivers ?? []).some((d) => d.name === dev.driver && d.ids !== undefined)) {
        const id = `${dev.vendor}:${dev.device}`;
        if (!drv.ids.includes(id)) drv.ids.push(id);
      }
    }
    for (const drv of this.drivers.values()) {
      if (drv.module !== null && !this.modules.has(drv.module)) {
        this.modules.set(drv.module, {
          name: drv.module,
          deps: [],
          state: 'live',
          available: true,
          blocked: undefined,
        });
      }
    }
    for (const m of topo.modules ?? []) {
      const name = canonicalModuleName(m.name);
      const prev = this.modules.get(name);
      this.modules.set(name, {
        name,
        deps: (m.deps ?? prev?.deps ?? []).map(canonicalModuleName),
        state: m.state === 'live' ? 'live' : m.state === 'builtin' ? 'builtin' : 'absent',
        available: m.state !== 'missing',
        blocked: m.blocked,
      });
    }
  }

  /** A HostPort onto this kernel. Each call gives a fresh handle (a fresh "process"). */
  port(): HostPort {
    return new SimHost(this, this.generation);
  }

  // ---------------------------------------------------------------- observation (for tests)

  driverOf(addr: PciAddress): string | null {
    return this.devices.get(addr)?.driver ?? null;
  }

  overrideOf(addr: PciAddress): string | null {
    return this.devices.get(addr)?.override ?? null;
  }

  hasDevice(addr: PciAddress): boolean {
    return this.devices.has(addr);
  }

  moduleState(name: string): 'live' | 'unloading' | 'absent' | 'builtin' | undefined {
    return this.modules.get(canonicalModuleName(name))?.state;
  }

  vfioNode(group: number): boolean {
    for (const d of this.devices.values()) {
      if (d.group === group && d.driver === VFIO_DRIVER) return true;
    }
    return false;
  }

  groupOf(addr: PciAddress): number | null {
    return this.devices.get(addr)?.group ?? null;
  }

  refcount(name: string): number {
    const n = canonicalModuleName(name);
    let count = 0;
    for (const m of this.modules.values()) {
      if ((m.state === 'live' || m.state === 'unloading') && m.deps.includes(n)) count++;
    }
    for (const drv of this.drivers.values()) {
      if (drv.module !== n) continue;
      for (const d of this.devices.values()) if (d.driver === drv.name) count += d.openCount;
    }
    return count;
  }

  // ---------------------------------------------------------------- pokes from outside

  /** `rmmod NAME`. With `linger`, the module stays listed as Unloading until finishUnload. */
  rmmod(name: string, opts: { linger?: boolean } = {}): void {
    const n = canonicalModuleName(name);
    const m = this.modules.get(n);
    if (!m || m.state === 'absent')
      throw new SysError('ENOENT', `Module ${n} is not currently loaded`);
    if (m.state === 'builtin') throw new SysError('EPERM', `Module ${n} is builtin`);
    if (m.state === 'unloading') throw new SysError('EBUSY', `Module ${n} is unloading`);
    if (this.refcount(n) > 0) throw new SysError('EBUSY', `Module ${n} is in use`);
    this.calls.push({ op: 'rmmod', value: n });
    m.state = 'unloading';
    for (const drv of this.drivers.values()) {
      if (drv.module !== n) continue;
      for (const d of this.sortedDevices()) {
        if (d.driver === drv.name) this.detach(d);
      }
    }
    this.emit({ action: 'remove', devpath: `/module/${n}`, subsystem: 'module', props: {} });
    if (!opts.linger) m.state = 'absent';
  }

  finishUnload(name: string): void {
    const m = this.modules.get(canonicalModuleName(name));
    if (m?.state === 'unloading') m.state = 'absent';
  }

  /** `modprobe -r NAME`: the module, then each dependency nothing else uses any more. */
  modprobeRemove(name: string): string[] {
    const n = canonicalModuleName(name);
    const m = this.modules.get(n);
    this.rmmod(n);
    const removed = [n];
    const queue = [...(m?.deps ?? [])];
    while (queue.length > 0) {
      const dep = queue.shift();
      if (dep === undefined) break;
      const dm = this.modules.get(dep);
      if (!dm || dm.state !== 'live' || this.refcount(dep) > 0) continue;
      this.rmmod(dep);
      removed.push(dep);
      queue.push(...dm.deps);
    }
    return removed;
  }

  /** `modprobe NAME` from outside (another component loading a module). */
  modprobe(name: string): void {
    this.load(canonicalModuleName(name), new Set());
  }

  /** A VM opens the device (only possible through vfio-pci). */
  openDevice(addr: PciAddress): void {
    const d = this.devices.get(addr);
    if (d?.driver !== VFIO_DRIVER) throw new SysError('ENODEV', `${addr} is not bound to vfio-pci`);
    d.openCount++;
  }

  /** The simulated VM processes holding the device open (one pid per open). */
  holders(addr: PciAddress, group: number | null): DeviceHolder[] {
    const d = this.devices.get(addr);
    if (!d || d.openCount === 0) return [];
    const path = group === null ? '/dev/vfio/devices/vfio0' : `/dev/vfio/${group}`;
    return Array.from({ length: d.openCount }, (_, i) => ({
      pid: SIM_VM_PID + i,
      comm: 'qemu-system-x86',
      path,
    }));
  }

  closeDevice(addr: PciAddress): void {
    const d = this.devices.get(addr);
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
    this.writeFaults.push({ op, address: opts.address, errno, remaining: opts.times ?? 1 });
  }

  /** The next `times` loads of `name` fail (modprobe exits non-zero). */
  failModuleLoads(name: string, times: number, message = 'simulated modprobe failure'): void {
    this.loadFaults.set(canonicalModuleName(name), { remaining: times, message });
  }

  /** The module is not on this kernel any more (or back again). */
  setModuleAvailable(name: string, available: boolean, blocked?: string): void {
    const m = this.modules.get(canonicalModuleName(name));
    if (!m) throw new SysError('ENOENT', `unknown module ${name}`);
    m.available = available;
    m.blocked = blocked;
  }

  /** Unbinding this device blocks until {@link releaseUnbind} (as vfio-pci does for a busy VM). */
  blockUnbind(addr: PciAddress): void {
    this.blockedUnbinds.add(addr);
  }

  releaseUnbind(addr: PciAddress): void {
    this.blockedUnbinds.delete(addr);
    this.releasePending(addr);
  }

  /** Surprise removal: the device vanishes (hot-unplug, a failing card). */
  unplug(addr: PciAddress): void {
    const d = this.devices.get(addr);
    if (!d) throw new SysError('ENODEV', `no device ${addr}`);
    this.removeDevice(d, false);
  }

  /**
   * Simulates a crash of the process using the current ports: after the next `op` (on
   * `address`, if given) completes, every port handed out so far stops answering (its calls
   * never settle). Ports made later work normally.
   */
  severAfter(op: SimWriteOp, address?: PciAddress): void {
    this.severRule = { op, address };
  }

  isSevered(generation: number): boolean {
    return generation < this.generation;
  }

  onUevent(fn: (e: Uevent) => void): () => void {
    this.ueventListeners.add(fn);
    return () => this.ueventListeners.delete(fn);
  }

  // ---------------------------------------------------------------- port operations

  listDevices(): PciAddress[] {
    return this.sortedDevices().map((d) => d.address);
  }

  readAttr(addr: PciAddress, attr: DeviceAttr): string | null {
    const d = this.devices.get(addr);
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
    }
  }

  configHeader(addr: PciAddress): Uint8Array | null {
    const d = this.devices.get(addr);
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
    const d = this.devices.get(addr);
    if (!d)
      return {
        driver: null,
        iommuGroup: null,
        physfn: null,
        virtfns: [],
        parent: null,
        vfioDev: null,
      };
    return {
      driver: d.driver,
      iommuGroup: d.group,
      physfn: d.physfn,
      virtfns: [...d.virtfns],
      parent: d.parent,
      vfioDev: d.cdev === null ? null : `vfio${d.cdev}`,
    };
  }

  registeredDrivers(): string[] {
    return [...this.drivers.values()]
      .filter((drv) => this.driverRegistered(drv))
      .map((drv) => drv.name)
      .sort();
  }

  moduleStatusOf(name: string): ModuleStatus | null {
    const m = this.modules.get(canonicalModuleName(name));
    if (!m || m.state === 'absent') return null;
    if (m.state === 'builtin') return { name: m.name, state: 'builtin', refcount: null };
    return { name: m.name, state: m.state, refcount: this.refcount(m.name) };
  }

  availability(name: string): ModuleAvailability {
    const n = canonicalModuleName(name);
    const m = this.modules.get(n);
    if (!m || !m.available) return { name: n, kind: 'missing', deps: [] };
    const a: ModuleAvailability = {
      name: n,
      kind: m.state === 'builtin' ? 'builtin' : 'loadable',
      deps: [...m.deps],
    };
    if (m.blocked !== undefined) a.blocked = m.blocked;
    return a;
  }

  kernelInfo(): KernelInfo {
    const groups = new Set<number>();
    for (const d of this.devices.values()) if (d.group !== null) groups.add(d.group);
    return {
      release: this.release,
      cmdline: this.cmdline,
      iommus: [...this.iommus],
      iommuGroupCount: groups.size,
      interruptRemapping: this.interruptRemapping,
      modprobe: '/sbin/modprobe',
    };
  }

  hostUses(): HostUse[] {
    return this.uses.filter((u) => this.devices.has(u.address));
  }

  async write(op: SimWriteOp, addr: PciAddress | null, value: string): Promise<void> {
    this.calls.push(addr === null ? { op, value } : { op, address: addr, value });
    const fault = this.writeFaults.find(
      (f) => f.op === op && (f.address === undefined || f.address === addr) && f.remaining > 0,
    );
    if (fault) {
      fault.remaining--;
      this.writeFaults = this.writeFaults.filter((f) => f.remaining > 0);
      throw new SysError(fault.errno, `simulated ${op} failure`);
    }
    switch (op) {
      case 'driver_override':
        this.writeOverride(this.need(addr, 'ENOENT'), value);
        break;
      case 'sriov_numvfs':
        this.writeNumVfs(this.need(addr, 'ENOENT'), value);
        break;
      case 'remove':
        this.removeDevice(this.need(addr, 'ENOENT'), true);
        break;
      case 'unbind':
        await this.unbind(this.need(addr, 'ENODEV'));
        break;
      case 'bind':
        this.bind(this.need(addr, 'ENODEV'), value);
        break;
      case 'drivers_probe':
        this.probe(this.need(addr, 'ENODEV'));
        break;
      case 'rescan':
        this.rescan();
        break;
    }
    const rule = this.severRule;
    if (rule && rule.op === op && (rule.address === undefined || rule.address === addr)) {
      this.severRule = null;
      this.generation++;
    }
  }

  async loadModule(name: string): Promise<void> {
    const n = canonicalModuleName(name);
    this.calls.push({ op: 'modprobe', value: n });
    const fault = this.loadFaults.get(n);
    if (fault && fault.remaining > 0) {
      fault.remaining--;
      throw new SysError('EMODPROBE', `modprobe ${n}: ${fault.message}`);
    }
    if ((this.timing.modprobeMs ?? 0) > 0) await this.clock.sleep(this.timing.modprobeMs ?? 0);
    this.load(n, new Set());
  }

  /** The current state as a topology, so a running simulation can be saved and reloaded. */
  toTopology(): Topology {
    const devices = this.sortedDevices().map((d) => {
      const out: Topology['devices'][number] = {
        address: d.address,
        vendor: d.vendor,
        device: d.device,
        subsystemVendor: d.subsystemVendor,
        subsystemDevice: d.subsystemDevice,
        class: d.classId,
        revision: d.revision,
        driver: d.driver,
        iommuGroup: d.group,
        numaNode: d.numaNode,
        parent: d.parent,
      };
      if (d.override !== null) out.driverOverride = d.override;
      if (d.bootVga) out.bootVga = true;
      if (d.resetMethods.length > 0) out.resetMethods = d.resetMethods;
      if (d.label !== null) out.label = d.label;
      if (d.physfn) out.physfn = d.physfn;
      if (d.sriov) {
        out.sriov = {
          totalVfs: d.sriov.total,
          numVfs: d.sriov.num,
          vfDevice: d.sriov.vfDevice,
          vfOffset: d.sriov.offset,
          vfStride: d.sriov.stride,
        };
      }
      return out;
    });
    const t: Topology = {
      format: TOPOLOGY_FORMAT,
      name: this.name,
      kernel: {
        release: this.release,
        cmdline: this.cmdline,
        iommus: this.iommus,
        interruptRemapping: this.interruptRemapping,
      },
      modules: [...this.modules.values()].map((m) => {
        const tm: NonNullable<Topology['modules']>[number] = {
          name: m.name,
          deps: m.deps,
          state: !m.available
            ? 'missing'
            : m.state === 'live' || m.state === 'unloading'
              ? 'live'
              : m.state === 'builtin'
                ? 'builtin'
                : 'available',
        };
        if (m.blocked !== undefined) tm.blocked = m.blocked;
        return tm;
      }),
      drivers: [...this.drivers.values()].map((d) => ({
        name: d.name,
        module: d.module,
        ids: d.ids,
      })),
      devices,
      hostUses: this.uses,
    };
    if (this.description !== undefined) t.description = this.description;
    return t;
  }

  // ---------------------------------------------------------------- internals

  private sortedDevices(): SimDevice[] {
    return [...this.devices.values()].sort((a, b) => compareAddresses(a.address, b.address));
  }

  private need(addr: PciAddress | null, errno: string): SimDevice {
    const d = addr === null ? undefined : this.devices.get(addr);
    if (!d) throw new SysError(errno, `no such device ${addr ?? ''}`);
    return d;
  }

  private driverRegistered(drv: SimDriver): boolean {
    if (drv.module === null) return true;
    const m = this.modules.get(drv.module);
    return m !== undefined && (m.state === 'live' || m.state === 'builtin');
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
    this.emit({
      action: 'bind',
      devpath: this.devpath(d),
      subsystem: 'pci',
      driver: drv.name,
      props: {},
    });
  }

  private detach(d: SimDevice): void {
    const drv = d.driver;
    d.driver = null;
    d.cdev = null;
    this.emit({
      action: 'unbind',
      devpath: this.devpath(d),
      subsystem: 'pci',
      props: drv ? { DRIVER: drv } : {},
    });
  }

  /** VFIO_DEVICE_CDEV arrived in 6.6; Debian's 6.1 has no vfio-dev directory. */
  private hasDeviceCdev(): boolean {
    const m = /^(\d+)\.(\d+)/.exec(this.release);
    return m !== null && (Number(m[1]) > 6 || (Number(m[1]) === 6 && Number(m[2]) >= 6));
  }

  /** The kernel hands out the lowest free minor (an IDA), so numbers are reused. */
  private freeCdevMinor(): number {
    const used = new Set<number>();
    for (const x of this.devices.values()) if (x.cdev !== null) used.add(x.cdev);
    let n = 0;
    while (used.has(n)) n++;
    return n;
  }

  private probe(d: SimDevice): void {
    if (d.driver !== null) return;
    for (const drv of [...this.drivers.values()].sort((a, b) => a.name.localeCompare(b.name))) {
      if (this.driverRegistered(drv) && this.matches(d, drv)) {
        this.attach(d, drv);
        return;
      }
    }
    // No match: drivers_probe still succeeds, and the device stays driverless.
  }

  private bind(d: SimDevice, driverName: string): void {
    const drv = this.drivers.get(driverName);
    if (!drv || !this.driverRegistered(drv))
      throw new SysError('ENOENT', `no driver ${driverName}`);
    if (d.driver !== null) throw new SysError('EBUSY', `${d.address} is bound to ${d.driver}`);
    if (!this.matches(d, drv))
      throw new SysError('ENODEV', `${driverName} does not match ${d.address}`);
    this.attach(d, drv);
  }

  private async unbind(d: SimDevice): Promise<void> {
    if (d.driver === null) throw new SysError('ENODEV', `${d.address} has no driver`);
    if (this.blockedUnbinds.has(d.address) || (d.driver === VFIO_DRIVER && d.openCount > 0)) {
      // vfio-pci relays a release request to userspace and waits for it.
      await new Promise<void>((resolve) => {
        this.pendingUnbinds.push({ address: d.address, release: resolve });
      });
      if (this.driverOf(d.address) === null) return;
    }
    this.detach(d);
  }

  private releasePending(addr: PciAddress): void {
    const d = this.devices.get(addr);
    if (this.blockedUnbinds.has(addr) || (d && d.openCount > 0)) return;
    const ready = this.pendingUnbinds.filter((p) => p.address === addr);
    this.pendingUnbinds = this.pendingUnbinds.filter((p) => p.address !== addr);
    for (const p of ready) p.release();
  }

  private writeOverride(d: SimDevice, value: string): void {
    const v = value.replace(/\n$/, '');
    d.override = v === '' ? null : v;
  }

  private writeNumVfs(pf: SimDevice, value: string): void {
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
      for (const vf of pf.virtfns) {
        const v = this.devices.get(vf);
        if (v && v.openCount > 0) throw new SysError('EBUSY', `VF ${vf} is in use`);
      }
      for (const vf of [...pf.virtfns]) {
        const v = this.devices.get(vf);
        if (v) this.removeDevice(v, false);
      }
      pf.virtfns = [];
      pf.sriov.num = 0;
      return;
    }
    const { domain } = addressParts(pf.address);
    let nextGroup = Math.max(-1, ...[...this.devices.values()].map((x) => x.group ?? -1)) + 1;
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
        override: null,
        group: pf.group === null ? null : nextGroup++,
        bootVga: false,
        label: null,
        sriov: null,
        physfn: pf.address,
        virtfns: [],
        openCount: 0,
        cdev: null,
      };
      this.devices.set(addr, vf);
      pf.virtfns.push(addr);
      created.push(vf);
    }
    pf.sriov.num = n;
    // sriov_drivers_autoprobe defaults to 1: new VFs are probed at once.
    for (const vf of created) this.probe(vf);
  }

  private removeDevice(d: SimDevice, keepForRescan: boolean): void {
    for (const vf of [...d.virtfns]) {
      const v = this.devices.get(vf);
      if (v) this.removeDevice(v, false);
    }
    if (d.driver !== null) this.detach(d);
    this.devices.delete(d.address);
    if (d.physfn) {
      const pf = this.devices.get(d.physfn);
      if (pf) pf.virtfns = pf.virtfns.filter((a) => a !== d.address);
    }
    if (keepForRescan && !d.physfn) this.removed.set(d.address, d);
    this.emit({ action: 'remove', devpath: this.devpath(d), subsystem: 'pci', props: {} });
    this.releasePending(d.address);
  }

  private rescan(): void {
    for (const [addr, d] of this.removed) {
      // A rescan creates a new device object: driver_override is gone.
      this.devices.set(addr, {
        ...d,
        driver: null,
        override: null,
        openCount: 0,
        cdev: null,
        virtfns: [],
        sriov: d.sriov ? { ...d.sriov, num: 0 } : null,
      });
      this.removed.delete(addr);
      const nd = this.devices.get(addr);
      if (!nd) continue;
      this.emit({ action: 'add', devpath: this.devpath(nd), subsystem: 'pci', props: {} });
      this.probe(nd);
    }
  }

  private load(name: string, visiting: Set<string>): void {
    const m = this.modules.get(name);
    if (!m || !m.available) {
      throw new SysError(
        'ENOENT',
        `modprobe: FATAL: Module ${name} not found in directory /lib/modules/${this.release}`,
      );
    }
    if (m.state === 'live' || m.state === 'builtin') return;
    if (m.state === 'unloading') throw new SysError('EBUSY', `Module ${name} is unloading`);
    if (visiting.has(name)) return;
    visiting.add(name);
    for (const dep of m.deps) this.load(dep, visiting);
    m.state = 'live';
    this.emit({ action: 'add', devpath: `/module/${name}`, subsystem: 'module', props: {} });
    // A registering driver is matched against every unbound device, override included: this
    // is how `modprobe vfio-pci` re-binds devices whose driver_override still names it.
    for (const drv of this.drivers.values()) {
      if (drv.module !== name) continue;
      for (const d of this.sortedDevices()) {
        if (d.driver === null && this.matches(d, drv)) this.attach(d, drv);
      }
    }
  }

  private devpath(d: SimDevice): string {
    return `/devices/pci${d.address.slice(0, -8)}/${d.address}`;
  }

  private emit(e: Uevent): void {
    const props: Record<string, string> = { ...e.props, ACTION: e.action, DEVPATH: e.devpath };
    if (e.subsystem !== undefined) props.SUBSYSTEM = e.subsystem;
    if (e.driver !== undefined) props.DRIVER = e.driver;
    const ev: Uevent = { ...e, props };
    const deliver = (): void => {
      for (const fn of this.ueventListeners) fn(ev);
    };
    const delay = this.timing.ueventMs ?? 0;
    if (delay > 0) void this.clock.sleep(delay).then(deliver);
    else deliver();
  }
}

/** A HostPort handle onto a SimKernel. After a simulated crash its calls never settle. */
class SimHost implements HostPort {
  readonly clock: Clock;
  readonly description: string;

  constructor(
    private readonly k: SimKernel,
    private readonly generation: number,
  ) {
    this.clock = k.clock;
    this.description = `sim:${k.name}`;
  }

  private async run<T>(fn: () => T | Promise<T>): Promise<T> {
    if (this.k.isSevered(this.generation)) return new Promise<T>(() => undefined);
    // Yield once so callers see the same asynchrony as real I/O.
    await Promise.resolve();
    if (this.k.isSevered(this.generation)) return new Promise<T>(() => undefined);
    return fn();
  }

  listDevices(): Promise<PciAddress[]> {
    return this.run(() => this.k.listDevices());
  }
  readDeviceAttr(addr: PciAddress, attr: DeviceAttr): Promise<string | null> {
    return this.run(() => this.k.readAttr(addr, attr));
  }
  readConfigHeader(addr: PciAddress): Promise<Uint8Array | null> {
    return this.run(() => this.k.configHeader(addr));
  }
  readDeviceLinks(addr: PciAddress): Promise<DeviceLinks> {
    return this.run(() => this.k.links(addr));
  }
  deviceExists(addr: PciAddress): Promise<boolean> {
    return this.run(() => this.k.hasDevice(addr));
  }
  listDrivers(): Promise<string[]> {
    return this.run(() => this.k.registeredDrivers());
  }
  vfioGroupNodeExists(group: number): Promise<boolean> {
    return this.run(() => this.k.vfioNode(group));
  }
  vfioHolders(addr: PciAddress, group: number | null): Promise<DeviceHolder[]> {
    return this.run(() => this.k.holders(addr, group));
  }
  writeDeviceAttr(addr: PciAddress, attr: WritableDeviceAttr, value: string): Promise<void> {
    return this.run(() => this.k.write(attr, addr, value));
  }
  unbindDevice(addr: PciAddress): Promise<void> {
    return this.run(() => this.k.write('unbind', addr, addr));
  }
  bindDevice(addr: PciAddress, driver: string): Promise<void> {
    return this.run(() => this.k.write('bind', addr, driver));
  }
  probeDevice(addr: PciAddress): Promise<void> {
    return this.run(() => this.k.write('drivers_probe', addr, addr));
  }
  rescanBus(): Promise<void> {
    return this.run(() => this.k.write('rescan', null, '1'));
  }
  moduleStatus(names: readonly string[]): Promise<Map<string, ModuleStatus | null>> {
    return this.run(
      () => new Map(names.map((n) => [canonicalModuleName(n), this.k.moduleStatusOf(n)])),
    );
  }
  moduleAvailability(name: string): Promise<ModuleAvailability> {
    return this.run(() => this.k.availability(name));
  }
  loadModule(name: string): Promise<void> {
    return this.run(() => this.k.loadModule(name));
  }
  kernelInfo(): Promise<KernelInfo> {
    return this.run(() => this.k.kernelInfo());
  }
  hostUses(): Promise<HostUse[]> {
    return this.run(() => this.k.hostUses());
  }
  watchUevents(onEvent: (e: Uevent) => void): (() => void) | null {
    return this.k.onUevent(onEvent);
  }
}
