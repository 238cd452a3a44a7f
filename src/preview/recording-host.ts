import type { PciAddress } from '../pci/address.js';
import type {
  ClassDevices,
  DeviceAttr,
  DeviceHolder,
  DeviceLinks,
  DeviceReading,
  ReadDeviceOptions,
  HostPort,
  HostUses,
  KernelInfo,
  ModuleAvailability,
  ModuleStatus,
  WritableDeviceAttr,
  WriteOptions,
} from '../host/port.js';
import type { PlanStep } from './dry-run.js';

const DEV = '/sys/bus/pci/devices';

/**
 * A simulated copy of the host that records every write and module load as a plan step.
 * Everything is read from the copy except what the guards must see on the real host: its uses
 * (mounts, swap, routes; read once when the copy was taken) and the processes holding devices
 * through vfio (asked of the real host each time, as the real executor does).
 */
export class RecordingHost implements HostPort {
  readonly clock;
  readonly description: string;
  private steps: PlanStep[] = [];

  constructor(
    private readonly copy: HostPort,
    private readonly real: HostPort,
    private readonly uses: HostUses,
  ) {
    this.clock = copy.clock;
    this.description = `dry-run of ${real.description}`;
  }

  /** The steps recorded since the last take. */
  take(): PlanStep[] {
    const out = this.steps;
    this.steps = [];
    return out;
  }

  listDevices(): Promise<PciAddress[]> {
    return this.copy.listDevices();
  }
  readDeviceAttr(addr: PciAddress, attr: DeviceAttr): Promise<string | null> {
    return this.copy.readDeviceAttr(addr, attr);
  }
  readDevice(
    addr: PciAddress,
    attrs: readonly DeviceAttr[],
    opts?: ReadDeviceOptions,
  ): Promise<DeviceReading | null> {
    return this.copy.readDevice(addr, attrs, opts);
  }
  /** The identity check must see the card that is really there: the copy has no serial. */
  readDeviceSerial(addr: PciAddress): Promise<string | null> {
    return this.real.readDeviceSerial(addr);
  }
  readConfigHeader(addr: PciAddress): Promise<Uint8Array | null> {
    return this.copy.readConfigHeader(addr);
  }
  readDeviceLinks(addr: PciAddress): Promise<DeviceLinks> {
    return this.copy.readDeviceLinks(addr);
  }
  deviceExists(addr: PciAddress): Promise<boolean> {
    return this.copy.deviceExists(addr);
  }
  listDrivers(): Promise<string[]> {
    return this.copy.listDrivers();
  }
  vfioGroupNodeExists(group: number): Promise<boolean> {
    return this.copy.vfioGroupNodeExists(group);
  }
  vfioHolders(addr: PciAddress, group: number | null): Promise<DeviceHolder[]> {
    return this.real.vfioHolders(addr, group);
  }
  writeDeviceAttr(
    addr: PciAddress,
    attr: WritableDeviceAttr,
    value: string,
    opts?: WriteOptions,
  ): Promise<void> {
    this.steps.push({ op: attr, address: addr, value, path: `${DEV}/${addr}/${attr}` });
    return this.copy.writeDeviceAttr(addr, attr, value, opts);
  }
  async unbindDevice(addr: PciAddress, opts?: WriteOptions): Promise<void> {
    const from = (await this.copy.readDeviceLinks(addr)).driver;
    this.steps.push({
      op: 'unbind',
      address: addr,
      value: addr,
      path: `${DEV}/${addr}/driver/unbind`,
      from,
    });
    return this.copy.unbindDevice(addr, opts);
  }
  bindDevice(addr: PciAddress, driver: string, opts?: WriteOptions): Promise<void> {
    this.steps.push({
      op: 'bind',
      address: addr,
      value: addr,
      path: `/sys/bus/pci/drivers/${driver}/bind`,
    });
    return this.copy.bindDevice(addr, driver, opts);
  }
  probeDevice(addr: PciAddress, opts?: WriteOptions): Promise<void> {
    this.steps.push({
      op: 'drivers_probe',
      address: addr,
      value: addr,
      path: '/sys/bus/pci/drivers_probe',
    });
    return this.copy.probeDevice(addr, opts);
  }
  rescanBus(opts?: WriteOptions): Promise<void> {
    this.steps.push({ op: 'rescan', value: '1', path: '/sys/bus/pci/rescan' });
    return this.copy.rescanBus(opts);
  }
  moduleStatus(names: readonly string[]): Promise<Map<string, ModuleStatus | null>> {
    return this.copy.moduleStatus(names);
  }
  moduleAvailability(name: string): Promise<ModuleAvailability> {
    return this.copy.moduleAvailability(name);
  }
  loadModule(name: string): Promise<void> {
    this.steps.push({ op: 'modprobe', value: name, path: null });
    return this.copy.loadModule(name);
  }
  kernelInfo(): Promise<KernelInfo> {
    return this.copy.kernelInfo();
  }
  classDevices(addr: PciAddress): Promise<ClassDevices> {
    return this.real.classDevices(addr);
  }
  hostUses(): Promise<HostUses> {
    return Promise.resolve(structuredClone(this.uses));
  }
  watchUevents(): (() => void) | null {
    // A rehearsal is one pass: no uevent source, as a one-shot command would not wait for one.
    return null;
  }
}
