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
  | 'label'
  /**
   * `pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X`: vendor, device, subsystem ids and class in
   * one read. Its show function takes no lock (unlike `uevent`, which carries the same ids but
   * takes device_lock on 6.1 to print DRIVER=), so it is read in place like the ids themselves.
   */
  | 'modalias';

/**
 * Attributes whose read takes the driver core's device_lock (kernel 6.1: driver_override_show,
 * sriov_numvfs_show). While an unbind of the device is pending (vfio-pci waiting for a VM to let
 * go) such a read sleeps uninterruptibly until it completes: never read them for a device with
 * an operation in flight, and never on the event loop's thread.
 */
export const LOCK_TAKING_ATTRS: ReadonlySet<DeviceAttr> = new Set<DeviceAttr>([
  'driver_override',
  'sriov_numvfs',
]);

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

/** One device as discovery reads it (readDevice). */
/** The links of a device that is not there (or vanished while being read). */
export function noDeviceLinks(): DeviceLinks {
  return { driver: null, iommuGroup: null, physfn: null, virtfns: [], parent: null, vfioDev: null };
}

export interface ReadDeviceOptions {
  /**
   * For one-shot commands (`passthru list`), never the agent: read the lock-taking attributes
   * in place, not in the thread pool (a round trip there cost 15-40 µs a device, a third of a
   * 4096-function discovery), when the device's driver link names a driver that is not a vfio
   * driver and the device is not an SR-IOV PF. The driver core removes the driver link before
   * a driver's remove() runs, so such a device has no unbind pending, the one wait with no end
   * (vfio-pci waits for the VM). What can hold its lock then is a probe or a reset, which the
   * kernel bounds: the command may wait for it, as it would wait for the driver. A PF's lock is
   * held for as long as its VFs take to appear, so a PF goes to the pool. The agent reads in
   * the pool always: its poll and API must never wait on a device.
   */
  inPlaceWhenBound?: boolean;
  /**
   * For a pass over the whole bus: a host may leave `physfn` null rather than look for the link
   * on every device, because the pass reads each PF's `virtfnN` links, which the kernel makes
   * with the VFs' `physfn` links (pci_iov_sysfs_link), and fills it in from them (discover).
   */
  physfnFromPfs?: boolean;
}

export interface DeviceReading {
  /** The requested attributes the device has; absent ones are left out. */
  attrs: Partial<Record<DeviceAttr, string>>;
  links: DeviceLinks;
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

/** What backs one mounted filesystem or swap area, as far as it could be traced. */
export interface HostBacking {
  /** The mount point, or `swap` for a swap area. */
  target: string;
  /** The mount source or swap file/device as the kernel lists it. */
  source: string;
  /** Filesystem type; `swap` for swap areas. */
  fstype: string;
  /** pseudo: backed by no device; traced: devices found; untraced: passthru cannot tell. */
  status: 'pseudo' | 'traced' | 'untraced';
  /** What was followed, top down: block devices (dm-0, md0, nvme0n1), interfaces, shares. */
  via: string[];
  devices: PciAddress[];
  /** Why it could not be traced (status untraced). */
  problem?: string;
}

/**
 * Everything the host depends on. `unknown` lists what could not be traced or read: while it
 * is not empty, nobody can tell which storage or network device is safe to take.
 */
export interface HostUses {
  uses: HostUse[];
  unknown: string[];
  backing: HostBacking[];
}

/**
 * What a PCI function provides to the host as kernel class devices: its network interfaces,
 * block devices and DRM cards (by name, as /sys/class lists them). Unbinding its driver makes
 * them vanish: a dry run says which.
 */
export interface ClassDevices {
  net: string[];
  block: string[];
  drm: string[];
}

/** Names a holder for people: "pid 4242 (qemu-system-x86)". */
export function holderText(h: DeviceHolder): string {
  return h.pid === null
    ? 'a process not visible from here (the group node is busy)'
    : `pid ${String(h.pid)} (${h.comm ?? '?'})`;
}

/** A process that holds a device through vfio: a VM, usually. */
export interface DeviceHolder {
  /**
   * The holder's pid, or null when the device is known to be held but no visible process has
   * it open (another pid namespace, /proc mounted with hidepid): the Linux host then learns of
   * the holder only because a second open of /dev/vfio/<group> fails with EBUSY.
   */
  pid: number | null;
  /** The process name (/proc/<pid>/comm); null with pid. */
  comm: string | null;
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

/**
 * Options of every write. `signal` abandons the write: the promise rejects at once with errno
 * ECANCELED, and the kernel may still complete the write later (an unbind blocked on a VM
 * completes when the VM lets go), so the caller must re-read rather than assume either outcome.
 */
export interface WriteOptions {
  signal?: AbortSignal;
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
  /**
   * The PCIe Device Serial Number (extended capability 0x0003) as lspci prints it
   * (`52-54-00-ff-ff-12-34-56`), or null when the device has none or config space past 0x100
   * cannot be read (only root can). Each dword costs a config cycle and may wake a suspended
   * device: call it when a claim is made or its identity verified, never in discovery.
   */
  readDeviceSerial(addr: PciAddress): Promise<string | null>;
  readDeviceLinks(addr: PciAddress): Promise<DeviceLinks>;
  /**
   * The given attributes and the links of one device in one call, as readDeviceAttr and
   * readDeviceLinks one by one would give them; null when the device is absent. Discovery's
   * path: the Linux host finds the device's directory once and opens only what exists (an
   * absent file costs a throwing open otherwise). Lock-taking attributes asked for are read off
   * the event loop, as readDeviceAttr reads them (but see ReadDeviceOptions): leave them out
   * for a device with a pending operation.
   */
  readDevice(
    addr: PciAddress,
    attrs: readonly DeviceAttr[],
    opts?: ReadDeviceOptions,
  ): Promise<DeviceReading | null>;
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

  writeDeviceAttr(
    addr: PciAddress,
    attr: WritableDeviceAttr,
    value: string,
    opts?: WriteOptions,
  ): Promise<void>;
  /**
   * Write the address to <dev>/driver/unbind. ENODEV when the device has no driver. May block
   * for as long as a VM holds a device on vfio-pci: ask vfioHolders first, pass a signal.
   */
  unbindDevice(addr: PciAddress, opts?: WriteOptions): Promise<void>;
  /** Write the address to /sys/bus/pci/drivers/<driver>/bind. */
  bindDevice(addr: PciAddress, driver: string, opts?: WriteOptions): Promise<void>;
  /** Write the address to /sys/bus/pci/drivers_probe. */
  probeDevice(addr: PciAddress, opts?: WriteOptions): Promise<void>;
  rescanBus(opts?: WriteOptions): Promise<void>;

  /** Modules the kernel has: loadable ones from /proc/modules, built-in ones as 'builtin'. */
  moduleStatus(names: readonly string[]): Promise<Map<string, ModuleStatus | null>>;
  moduleAvailability(name: string): Promise<ModuleAvailability>;
  /** modprobe NAME (with its dependencies). */
  loadModule(name: string): Promise<void>;

  kernelInfo(): Promise<KernelInfo>;
  hostUses(): Promise<HostUses>;
  /** The network interfaces, block devices and DRM cards this function provides now. */
  classDevices(addr: PciAddress): Promise<ClassDevices>;

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

export const DRIVER_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;
export const MODULE_NAME_RE = /^[A-Za-z0-9_-]{1,64}$/;

export function isValidDriverName(name: string): boolean {
  return DRIVER_NAME_RE.test(name) && name !== '.' && name !== '..';
}

export function isValidModuleName(name: string): boolean {
  return MODULE_NAME_RE.test(name);
}
