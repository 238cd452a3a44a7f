import type { PciAddress } from '../pci/address.js';
import type { Clock } from './clock.js';

/**
 * The one door to the operating system. Callers name devices by validated address and
 * attributes by name from closed sets; only implementations build paths. Implementations:
 * LinuxHost (a real host or an on-disk sysfs tree under a root prefix) and the simulated
 * kernel (host/sim).
 */

/** Device attributes discovery reads. */
export type DeviceAttr =
  | 'vendor'
  | 'device'
  | 'subsystem_vendor'
  | 'subsystem_device'
  | 'class'
  | 'revision'
  | 'numa_node'
  | 'driver_override'
  | 'boot_vga'
  | 'reset_method'
  | 'sriov_totalvfs'
  | 'sriov_numvfs'
  | 'sriov_vf_device'
  | 'label';

/** The only device attributes the agent may write. */
export type WritableDeviceAttr = 'driver_override' | 'sriov_numvfs' | 'remove';

export interface DeviceLinks {
  /** Name of the bound driver (basename of the `driver` link), or null. */
  driver: string | null;
  iommuGroup: number | null;
  /** For an SR-IOV VF: its physical function. */
  physfn: PciAddress | null;
  /** For an SR-IOV PF: its virtual functions, in virtfn index order. */
  virtfns: PciAddress[];
  /** The PCI function directly upstream (bridge or root port), or null at a root bus. */
  parent: PciAddress | null;
  /**
   * The vfio device cdev (`vfio3` for /dev/vfio/devices/vfio3) from `<dev>/vfio-dev/`, or
   * null. Present only while bound to vfio-pci on kernels built with VFIO_DEVICE_CDEV (6.6+).
   */
  vfioDev: string | null;
}

export type ModuleState = 'live' | 'loading' | 'unloading' | 'builtin';

export interface ModuleStatus {
  /** Canonical name with underscores, as /proc/modules spells it. */
  name: string;
  state: ModuleState;
  /** Users of the module; null for built-in modules. */
  refcount: number | null;
}

/** Whether the running kernel can provide a module at all. */
export interface ModuleAvailability {
  name: string;
  kind: 'loadable' | 'builtin' | 'missing';
  /** Hard dependencies from modules.dep (canonical names); empty when unknown. */
  deps: string[];
  /** Set when modprobe.d blacklists the module or installs it as /bin/false. */
  blocked?: string;
}

/** A device the host itself depends on, found from mounts, swap, routes and consoles. */
export interface HostUse {
  address: PciAddress;
  use: string;
}

/** A process that holds a device through vfio: a VM, usually. */
export interface DeviceHolder {
  pid: number;
  /** The process name (/proc/<pid>/comm). */
  comm: string;
  /** What it holds open: /dev/vfio/<group>, /dev/vfio/devices/vfioN. */
  path: string;
}

export interface Uevent {
  action: string;
  devpath: string;
  subsystem?: string;
  driver?: string;
  /** Every KEY=value property of the event. */
  props: Record<string, string>;
}

export interface KernelInfo {
  release: string;
  cmdline: string;
  /** Names under /sys/class/iommu (dmar0, ivhd0, ...): empty when no IOMMU is active. */
  iommus: string[];
  /** Number of entries in /sys/kernel/iommu_groups. */
  iommuGroupCount: number;
  /** Interrupt remapping as the kernel reported it, when it can be told. */
  interruptRemapping: 'enabled' | 'disabled' | 'unknown';
  /** Path of the modprobe binary the host would run, or null when there is none. */
  modprobe: string | null;
}

export interface HostPort {
  readonly clock: Clock;
  /** A short label for logs and status ("linux:/", "sim:qemu-guest"). */
  readonly description: string;

  listDevices(): Promise<PciAddress[]>;
  /** The attribute's text without the trailing newline, or null when the file is absent. */
  readDeviceAttr(addr: PciAddress, attr: DeviceAttr): Promise<string | null>;
  /** The first 64 bytes of config space, or null when unreadable. */
  readConfigHeader(addr: PciAddress): Promise<Uint8Array | null>;
  readDeviceLinks(addr: PciAddress): Promise<DeviceLinks>;
  deviceExists(addr: PciAddress): Promise<boolean>;
  /** The PCI drivers currently registered (/sys/bus/pci/drivers). */
  listDrivers(): Promise<string[]>;
  /** Whether /dev/vfio/<group> exists. */
  vfioGroupNodeExists(group: number): Promise<boolean>;
  /**
   * Processes holding this device's vfio group or device node open; empty when none does.
   * Unbinding vfio-pci from a held device blocks in the kernel (with device_lock held), so
   * callers ask this first.
   */
  vfioHolders(addr: PciAddress, group: number | null): Promise<DeviceHolder[]>;

  writeDeviceAttr(addr: PciAddress, attr: WritableDeviceAttr, value: string): Promise<void>;
  /** Write the address to <dev>/driver/unbind. ENODEV when the device has no driver. */
  unbindDevice(addr: PciAddress): Promise<void>;
  /** Write the address to /sys/bus/pci/drivers/<driver>/bind. */
  bindDevice(addr: PciAddress, driver: string): Promise<void>;
  /** Write the address to /sys/bus/pci/drivers_probe. */
  probeDevice(addr: PciAddress): Promise<void>;
  rescanBus(): Promise<void>;

  /** Modules the kernel has: loadable ones from /proc/modules, built-in ones as 'builtin'. */
  moduleStatus(names: readonly string[]): Promise<Map<string, ModuleStatus | null>>;
  moduleAvailability(name: string): Promise<ModuleAvailability>;
  /** modprobe NAME (with its dependencies). */
  loadModule(name: string): Promise<void>;

  kernelInfo(): Promise<KernelInfo>;
  hostUses(): Promise<HostUse[]>;

  /**
   * Subscribe to kernel uevents when a source exists. Returns a stop function, or null when
   * this host has no uevent source (then callers rely on polling alone).
   */
  watchUevents(onEvent: (e: Uevent) => void, onError: (e: Error) => void): (() => void) | null;
}

/** Module names: /proc/modules uses '_', modprobe accepts '-'; they are the same module. */
export function canonicalModuleName(name: string): string {
  return name.trim().replace(/-/g, '_');
}

const DRIVER_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;
const MODULE_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;

export function isValidDriverName(name: string): boolean {
  return DRIVER_NAME_RE.test(name) && name !== '.' && name !== '..';
}

export function isValidModuleName(name: string): boolean {
  return MODULE_NAME_RE.test(name);
}
