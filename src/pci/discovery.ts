import type { HostPort } from '../host/port.js';
import type { PciAddress } from './address.js';
import { headerType } from './config.js';
import { sysfsHex, sysfsInt } from './hex.js';
import { makeInventory, type Inventory, type PciFunction } from './model.js';
import { emptyPciIds, type PciIdNames } from './pciids.js';

/** How many devices are read at once: bounded so a 4096-function host does not exhaust fds. */
const CONCURRENCY = 64;
const YIELD_EVERY = 32;

export interface DiscoverOptions {
  /**
   * Devices with a kernel operation pending: their driver_override and sriov_numvfs are not
   * read (reported unknown), because on 6.1 both reads take device_lock and would sleep,
   * uninterruptibly, behind the pending unbind.
   */
  skipLockedAttrs?: ReadonlySet<PciAddress>;
}

export async function discover(
  host: HostPort,
  names: PciIdNames = emptyPciIds,
  opts: DiscoverOptions = {},
): Promise<Inventory> {
  const addrs = await host.listDevices();
  const out: (PciFunction | null)[] = new Array<PciFunction | null>(addrs.length).fill(null);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < addrs.length) {
      const i = next++;
      const a = addrs[i];
      if (a !== undefined)
        out[i] = await readFunction(host, a, names, opts.skipLockedAttrs?.has(a) === true);
      // The Linux adapter reads sysfs synchronously: let timers and sockets run now and then,
      // so a 4096-function scan does not stall the keeper's poll for half a second.
      if (i % YIELD_EVERY === YIELD_EVERY - 1)
        // eslint-disable-next-line no-restricted-globals -- a yield to the event loop, not a timer: the ManualClock cannot stand in for it (tests would never resume)
        await new Promise<void>((r) => setImmediate(r));
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, addrs.length) }, worker));
  return makeInventory(out.filter((d): d is PciFunction => d !== null));
}

/** Reads one function; null when it vanished while being read (hot-unplug). */
export async function readFunction(
  host: HostPort,
  address: PciAddress,
  names: PciIdNames = emptyPciIds,
  skipLockedAttrs = false,
): Promise<PciFunction | null> {
  const locked = (attr: 'driver_override' | 'sriov_numvfs'): Promise<string | null> =>
    skipLockedAttrs ? Promise.resolve(null) : host.readDeviceAttr(address, attr);
  const [vendor, device, sv, sd, cls, rev, numa, override, bootVga, reset, total, num, links] =
    await Promise.all([
      host.readDeviceAttr(address, 'vendor'),
      host.readDeviceAttr(address, 'device'),
      host.readDeviceAttr(address, 'subsystem_vendor'),
      host.readDeviceAttr(address, 'subsystem_device'),
      host.readDeviceAttr(address, 'class'),
      host.readDeviceAttr(address, 'revision'),
      host.readDeviceAttr(address, 'numa_node'),
      locked('driver_override'),
      host.readDeviceAttr(address, 'boot_vga'),
      host.readDeviceAttr(address, 'reset_method'),
      host.readDeviceAttr(address, 'sriov_totalvfs'),
      locked('sriov_numvfs'),
      host.readDeviceLinks(address),
    ]);
  const vendorId = sysfsHex(vendor, 4);
  const deviceId = sysfsHex(device, 4);
  const classId = sysfsHex(cls, 6);
  if (vendorId === null || deviceId === null || classId === null) return null;
  // Older kernels lack the revision attribute; config space has it at 0x08.
  let revision = sysfsHex(rev, 2);
  let bridge = classId.startsWith('0604') || classId.startsWith('0607');
  if (revision === null) {
    const cfg = await host.readConfigHeader(address);
    revision = cfg ? (cfg[8] ?? 0).toString(16).padStart(2, '0') : '00';
    if (cfg) bridge ||= headerType(cfg) === 1 || headerType(cfg) === 2;
  }
  const subsystemVendorId = sysfsHex(sv, 4) ?? '0000';
  const subsystemDeviceId = sysfsHex(sd, 4) ?? '0000';
  const c = classId.slice(0, 2);
  const s = classId.slice(2, 4);
  const p = classId.slice(4, 6);
  const numaNode = sysfsInt(numa);
  const ov = override === null || override === '(null)' || override === '' ? null : override;
  return {
    address,
    vendorId,
    deviceId,
    subsystemVendorId,
    subsystemDeviceId,
    classId,
    revision,
    vendorName: names.vendor(vendorId) ?? `Vendor ${vendorId}`,
    deviceName: names.device(vendorId, deviceId) ?? `Device ${deviceId}`,
    subsystemVendorName: names.vendor(subsystemVendorId) ?? `Vendor ${subsystemVendorId}`,
    // pciutils' id_lookup_subsys: a subsystem that is the device itself is named as the device.
    subsystemDeviceName:
      names.subsystem(vendorId, deviceId, subsystemVendorId, subsystemDeviceId) ??
      (subsystemVendorId === vendorId && subsystemDeviceId === deviceId
        ? names.device(vendorId, deviceId)
        : undefined) ??
      `Device ${subsystemDeviceId}`,
    className: names.className(c) ?? `Class ${c}`,
    // lspci falls back from the subclass name to the class name, then to the number.
    subclassName: names.subclassName(c, s) ?? names.className(c) ?? `Class ${c}${s}`,
    progIfName: names.progIfName(c, s, p) ?? null,
    driver: links.driver,
    driverOverride: ov,
    iommuGroup: links.iommuGroup,
    // -1 means "no NUMA information", which is null here.
    numaNode: numaNode === null || numaNode < 0 ? null : numaNode,
    parent: links.parent,
    isBridge: bridge,
    bootVga: bootVga === '1',
    resetMethods: reset === null ? [] : reset.split(/\s+/).filter(Boolean),
    sriovTotalVfs: sysfsInt(total),
    sriovNumVfs: sysfsInt(num),
    physfn: links.physfn,
    virtfns: links.virtfns,
  };
}
