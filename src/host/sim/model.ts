import type { PciAddress } from '../../pci/address.js';
import type { HostUse, KernelInfo, WritableDeviceAttr } from '../port.js';

/** The driver that makes a device usable by VMs. */
export const VFIO_DRIVER = 'vfio-pci';

/** Simulated VMs get pids from here, so status and errors can name a holder. */
export const SIM_VM_PID = 4242;

export interface SimDevice {
  address: PciAddress;
  vendor: string;
  device: string;
  subsystemVendor: string;
  subsystemDevice: string;
  classId: string;
  revision: string;
  driver: string | null;
  /**
   * An unbind is under way: the kernel has removed the `driver` link already and waits in the
   * driver's remove (vfio-pci waits for the VM), holding device_lock.
   */
  unbinding: boolean;
  override: string | null;
  group: number | null;
  numaNode: number;
  parent: PciAddress | null;
  bootVga: boolean;
  resetMethods: string[];
  label: string | null;
  /** PCIe Device Serial Number as lspci prints it, or null when the card has none. */
  serialNumber: string | null;
  sriov: { total: number; num: number; vfDevice: string; offset: number; stride: number } | null;
  physfn: PciAddress | null;
  virtfns: PciAddress[];
  /** Open file descriptions held by userspace (a VM): vfio-pci's unbind blocks while > 0. */
  openCount: number;
  /** Minor of the vfio cdev (/dev/vfio/devices/vfioN) while on vfio-pci on 6.6+, else null. */
  cdev: number | null;
}

export interface SimDriver {
  name: string;
  module: string | null;
  ids: string[];
}

export interface SimModule {
  name: string;
  deps: string[];
  state: 'live' | 'unloading' | 'absent' | 'builtin';
  available: boolean;
  blocked: string | undefined;
}

/** Everything the simulated kernel knows; the pieces of host/sim operate on one of these. */
export interface SimState {
  name: string;
  description: string | undefined;
  release: string;
  cmdline: string;
  iommus: string[];
  interruptRemapping: KernelInfo['interruptRemapping'];
  devices: Map<PciAddress, SimDevice>;
  /** Devices removed through their `remove` attribute: a rescan brings them back. */
  removed: Map<PciAddress, SimDevice>;
  drivers: Map<string, SimDriver>;
  modules: Map<string, SimModule>;
  uses: HostUse[];
  /** What the simulated host cannot trace: storage and network claims are refused unless forced. */
  usesUnknown: string[];
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

/** What the sim records of each host-side call, for tests that check "no side effect". */
export interface SimCall {
  op: string;
  address?: PciAddress;
  value?: string;
}
