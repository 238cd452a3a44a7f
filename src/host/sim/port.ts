import type { PciAddress } from '../../pci/address.js';
import { SysError } from '../../errors.js';
import type { Clock } from '../clock.js';
import {
  canonicalModuleName,
  type DeviceAttr,
  type DeviceReading,
  type DeviceHolder,
  type DeviceLinks,
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
import type { SimKernel } from './kernel.js';

/**
 * A HostPort handle onto a SimKernel. After a simulated crash its calls never settle. A write
 * given a signal is abandoned when it fires (ECANCELED, as the Linux host does by killing its
 * writer process); the simulated kernel still completes it when it unblocks.
 */
export class SimHost implements HostPort {
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

  private write(fn: () => Promise<void>, opts: WriteOptions | undefined): Promise<void> {
    const signal = opts?.signal;
    if (signal === undefined) return this.run(fn);
    if (signal.aborted) return Promise.reject(abandoned());
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        reject(abandoned());
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.run(fn).then(
        () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        (e: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(e instanceof Error ? e : new Error(String(e)));
        },
      );
    });
  }

  listDevices(): Promise<PciAddress[]> {
    return this.run(() => this.k.listDevices());
  }
  readDeviceAttr(addr: PciAddress, attr: DeviceAttr): Promise<string | null> {
    return this.run(() => this.k.readAttr(addr, attr));
  }
  /** The simulated kernel's reads never block the event loop, in place or not. */
  readDevice(addr: PciAddress, attrs: readonly DeviceAttr[]): Promise<DeviceReading | null> {
    return this.run(() => this.k.readDevice(addr, attrs));
  }
  readConfigHeader(addr: PciAddress): Promise<Uint8Array | null> {
    return this.run(() => this.k.configHeader(addr));
  }
  readDeviceSerial(addr: PciAddress): Promise<string | null> {
    return this.run(() => this.k.deviceSerial(addr));
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
  writeDeviceAttr(
    addr: PciAddress,
    attr: WritableDeviceAttr,
    value: string,
    opts?: WriteOptions,
  ): Promise<void> {
    return this.write(() => this.k.write(attr, addr, value), opts);
  }
  unbindDevice(addr: PciAddress, opts?: WriteOptions): Promise<void> {
    return this.write(() => this.k.write('unbind', addr, addr), opts);
  }
  bindDevice(addr: PciAddress, driver: string, opts?: WriteOptions): Promise<void> {
    return this.write(() => this.k.write('bind', addr, driver), opts);
  }
  probeDevice(addr: PciAddress, opts?: WriteOptions): Promise<void> {
    return this.write(() => this.k.write('drivers_probe', addr, addr), opts);
  }
  rescanBus(opts?: WriteOptions): Promise<void> {
    return this.write(() => this.k.write('rescan', null, '1'), opts);
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
  classDevices(): Promise<ClassDevices> {
    // The simulated kernel models no class devices (docs/simulated-kernel.md).
    return this.run(() => ({ net: [], block: [], drm: [] }));
  }
  hostUses(): Promise<HostUses> {
    return this.run(() => this.k.hostUses());
  }
  watchUevents(onEvent: (e: Uevent) => void): (() => void) | null {
    return this.k.onUevent(onEvent);
  }
}

function abandoned(): SysError {
  return new SysError('ECANCELED', 'write abandoned; the kernel may still complete it');
}
