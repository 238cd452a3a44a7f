import { LOCK_TAKING_ATTRS, type DeviceAttr, type HostPort } from '../host/port.js';
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
  /** One-shot commands only: see ReadDeviceOptions.inPlaceWhenBound. */
  inPlaceWhenBound?: boolean;
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
        out[i] = await readFunction(
          host,
          a,
          names,
          opts.skipLockedAttrs?.has(a) === true,
          opts.inPlaceWhenBound === true,
          true,
        );
      // The Linux adapter reads sysfs synchronously: let timers and sockets run now and then,
      // so a 4096-function scan does not stall the keeper's poll for half a second.
      if (i % YIELD_EVERY === YIELD_EVERY - 1)
        // eslint-disable-next-line no-restricted-globals -- a yield to the event loop, not a timer: the ManualClock cannot stand in for it (tests would never resume)
        await new Promise<void>((r) => setImmediate(r));
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, addrs.length) }, worker));
  return makeInventory(withPhysfns(out.filter((d): d is PciFunction => d !== null)));
}

/**
 * Every VF's `physfn`, from its PF's `virtfns` (ReadDeviceOptions.physfnFromPfs): one lookup
 * fewer on every device of a pass over the bus.
 */
function withPhysfns(devices: PciFunction[]): PciFunction[] {
  const pfOf = new Map<PciAddress, PciAddress>();
  for (const d of devices) for (const vf of d.virtfns) pfOf.set(vf, d.address);
  if (pfOf.size === 0) return devices;
  return devices.map((d) => {
    // A PF is never a VF: a link to it from another PF's virtfnN (a planted tree) is not taken.
    if (d.sriovTotalVfs !== null) return d;
    const pf = d.physfn ?? pfOf.get(d.address) ?? null;
    return pf === d.physfn ? d : { ...d, physfn: pf };
  });
}

/** What discovery reads of every device; the lock-taking ones are left out for a busy device. */
const ATTRS: readonly DeviceAttr[] = [
  'modalias',
  'revision',
  'numa_node',
  'driver_override',
  'boot_vga',
  'reset_method',
  'sriov_totalvfs',
  'sriov_numvfs',
];
const LOCK_FREE_ATTRS = ATTRS.filter((a) => !LOCK_TAKING_ATTRS.has(a));

interface Ids {
  vendorId: string;
  deviceId: string;
  subsystemVendorId: string;
  subsystemDeviceId: string;
  classId: string;
}

const MODALIAS_RE =
  /^pci:v([0-9A-Fa-f]{8})d([0-9A-Fa-f]{8})sv([0-9A-Fa-f]{8})sd([0-9A-Fa-f]{8})bc([0-9A-Fa-f]{2})sc([0-9A-Fa-f]{2})i([0-9A-Fa-f]{2})$/;

/** The ids from a `modalias` attribute; null when it is absent or not a PCI one. */
export function idsFromModalias(text: string | undefined): Ids | null {
  const m = text === undefined ? null : MODALIAS_RE.exec(text.trim());
  if (m === null) return null;
  const id = (h: string | undefined): string => (h ?? '').slice(-4).toLowerCase();
  return {
    vendorId: id(m[1]),
    deviceId: id(m[2]),
    subsystemVendorId: id(m[3]),
    subsystemDeviceId: id(m[4]),
    classId: `${m[5] ?? ''}${m[6] ?? ''}${m[7] ?? ''}`.toLowerCase(),
  };
}

/** The ids one attribute at a time: trees written before modalias was, or odd kernels. */
async function idsFromAttrs(host: HostPort, address: PciAddress): Promise<Ids | null> {
  const [vendor, device, sv, sd, cls] = await Promise.all([
    host.readDeviceAttr(address, 'vendor'),
    host.readDeviceAttr(address, 'device'),
    host.readDeviceAttr(address, 'subsystem_vendor'),
    host.readDeviceAttr(address, 'subsystem_device'),
    host.readDeviceAttr(address, 'class'),
  ]);
  const vendorId = sysfsHex(vendor, 4);
  const deviceId = sysfsHex(device, 4);
  const classId = sysfsHex(cls, 6);
  if (vendorId === null || deviceId === null || classId === null) return null;
  return {
    vendorId,
    deviceId,
    subsystemVendorId: sysfsHex(sv, 4) ?? '0000',
    subsystemDeviceId: sysfsHex(sd, 4) ?? '0000',
    classId,
  };
}

/**
 * Reads one function; null when it vanished while being read (hot-unplug). `physfnFromPfs`:
 * only for discover, which fills `physfn` in afterwards (ReadDeviceOptions).
 */
export async function readFunction(
  host: HostPort,
  address: PciAddress,
  names: PciIdNames = emptyPciIds,
  skipLockedAttrs = false,
  inPlaceWhenBound = false,
  physfnFromPfs = false,
): Promise<PciFunction | null> {
  const got = await host.readDevice(address, skipLockedAttrs ? LOCK_FREE_ATTRS : ATTRS, {
    ...(inPlaceWhenBound ? { inPlaceWhenBound } : {}),
    ...(physfnFromPfs ? { physfnFromPfs } : {}),
  });
  if (got === null) return null;
  const { attrs: a, links } = got;
  const ids = idsFromModalias(a.modalias) ?? (await idsFromAttrs(host, address));
  if (ids === null) return null;
  const { vendorId, deviceId, subsystemVendorId, subsystemDeviceId, classId } = ids;
  // Older kernels lack the revision attribute; config space has it at 0x08.
  let revision = sysfsHex(a.revision ?? null, 2);
  let bridge = classId.startsWith('0604') || classId.startsWith('0607');
  if (revision === null) {
    const cfg = await host.readConfigHeader(address);
    revision = cfg ? (cfg[8] ?? 0).toString(16).padStart(2, '0') : '00';
    if (cfg) bridge ||= headerType(cfg) === 1 || headerType(cfg) === 2;
  }
  const c = classId.slice(0, 2);
  const s = classId.slice(2, 4);
  const p = classId.slice(4, 6);
  const numaNode = sysfsInt(a.numa_node ?? null);
  const override = a.driver_override;
  const ov = override === undefined || override === '(null)' || override === '' ? null : override;
  const reset = a.reset_method;
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
    bootVga: a.boot_vga === '1',
    resetMethods: reset === undefined ? [] : reset.split(/\s+/).filter(Boolean),
    sriovTotalVfs: sysfsInt(a.sriov_totalvfs ?? null),
    sriovNumVfs: sysfsInt(a.sriov_numvfs ?? null),
    physfn: links.physfn,
    virtfns: links.virtfns,
  };
}
