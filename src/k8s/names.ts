import type { PciFunction } from '../pci/model.js';
import type { PciIdNames } from '../pci/pciids.js';

/**
 * Harvester's naming rules (pkg/apis/devices.harvesterhci.io/v1beta1 at bdd8025), so objects
 * written by its controller and by passthru are interchangeable.
 */

/** `<node>-<address without ':' and '.'>`; the hostname kept verbatim, dots included. */
export function pciDeviceName(node: string, address: string): string {
  return `${node}-${address.replace(/[:.]/g, '')}`;
}

const SOCKET_PREFIX = '/var/lib/kubelet/device-plugins/kubevirt-';
/** sun_path is 108 bytes: kubelet's device-plugin socket path must fit. */
const SOCKET_MAX = 108;

function fits(vendor: string, product: string): boolean {
  return `${SOCKET_PREFIX}/${vendor}-${product}.sock`.length <= SOCKET_MAX;
}

function vendorPart(vendorName: string): string {
  const bracket = /\[([^\]]*)\]/.exec(vendorName);
  const raw = bracket
    ? ((bracket[1] ?? '').split('/')[0] ?? '')
    : (vendorName.trim().split(/\s+/)[0] ?? '');
  return `${raw.replace(/[^a-zA-Z0-9]/g, '').toLowerCase()}.com`;
}

function productPart(productName: string | undefined, deviceId: string): string {
  if (productName === undefined) return deviceId;
  const p = productName
    .trim()
    .toUpperCase()
    .replace(/[/.]/g, '_')
    .replace(/\s+/g, '_')
    .replace(/[^a-zA-Z0-9_.]/g, '')
    .replace(/[_.-]+$/, '');
  return p === '' ? deviceId : p;
}

/**
 * The pooled resource name from pci.ids names (undefined = missing from pci.ids, which ghw calls
 * "unknown"). Computed once, when the PCIDevice object is created: a newer pci.ids must never
 * rename the resource of a device VMs already request.
 */
export function resourceName(
  vendorName: string | undefined,
  productName: string | undefined,
  deviceId: string,
): string {
  const v = vendorPart(vendorName ?? 'unknown');
  let p = productPart(productName, deviceId);
  if (!fits(v, p)) p = p.replace(/VIRTUAL_FUNCTION/g, 'VF');
  if (!fits(v, p)) p = deviceId;
  return `${v}/${p}`;
}

const NAME_PART_MAX = 63;

/** FNV-1a, 32 bits: a short stable tag for a shortened host name. */
function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

/**
 * Harvester's per-device resource name (`disableResourcePooling`): `<vendor>/<PCIDevice name>`,
 * the vendor part being the pooled name's (`mellanox.com/harvester-node-000008002`). Harvester
 * breaks kubelet's 63-character rule for the part after `/` with long host names (kubelet then
 * refuses Register); here such a node name is cut and tagged with a hash of the whole name, so
 * the result is valid, stable and still unique per node. Names that fit are Harvester's exactly.
 */
export function perDeviceResourceName(vendor: string, node: string, address: string): string {
  const addr = address.replace(/[:.]/g, '');
  let n = node.replace(/[^-A-Za-z0-9_.]/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  if (n.length + 1 + addr.length > NAME_PART_MAX) {
    const keep = NAME_PART_MAX - addr.length - 1 - 9;
    n = `${n.slice(0, keep).replace(/[^A-Za-z0-9]+$/, '')}-${fnv1a(node)}`;
  }
  return n === '' ? `${vendor}/${addr}` : `${vendor}/${n}-${addr}`;
}

/**
 * `"<subclass|class|'Class CCSS'>: <vendor|'Vendor VVVV'> <product|'Device DDDD'>"`: discovery
 * already applies the same fallbacks as Harvester (and lspci) to the names.
 */
export function description(f: PciFunction): string {
  return `${f.subclassName}: ${f.vendorName} ${f.deviceName}`;
}

/** The resource name of a discovered function, from the pci.ids names (not discovery's fallbacks). */
export function resourceNameOf(f: PciFunction, names: PciIdNames): string {
  return resourceName(names.vendor(f.vendorId), names.device(f.vendorId, f.deviceId), f.deviceId);
}
