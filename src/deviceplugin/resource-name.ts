import { perDeviceResourceName as perDeviceName, resourceName } from '../k8s/names.js';

/**
 * Kubernetes extended-resource names for PCI devices. The pooled rule is Harvester's
 * (pcidevices `resourceName` and `trimResourceNameIfNeeded`): existing clusters carry these
 * names in VM specs and KubeVirt's permittedHostDevices, so they must come out identical.
 */

/**
 * The pooled resource name for a device model, from its pci.ids vendor and product names
 * (undefined when pci.ids lacks them) and its 4-hex-digit device id. The rule itself lives
 * once, with the PCIDevice naming in src/k8s/names.ts: a CRD's resourceName and the plugin's
 * must never differ.
 */
export function pooledResourceName(
  vendorName: string | undefined,
  productName: string | undefined,
  deviceId: string,
): string {
  return resourceName(vendorName, productName, deviceId);
}

/** `amd.com` from "Advanced Micro Devices, Inc. [AMD/ATI]", `nvidia.com` from "NVIDIA Corporation". */
export function vendorPart(vendorName: string | undefined): string {
  return resourceName(vendorName, undefined, '0000').split('/')[0] ?? '';
}

const NAME_PART_MAX = 63; // kubelet's limit on the part after '/'
const NAME_PART_RE = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const DNS_SUBDOMAIN_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * kubelet's `IsExtendedResourceName`: a prefixed name outside kubernetes.io whose
 * `requests.<name>` is a qualified name. Register fails for anything else.
 */
export function isExtendedResourceName(name: string): boolean {
  const slash = name.indexOf('/');
  if (slash <= 0 || name.indexOf('/', slash + 1) !== -1) return false;
  const prefix = name.slice(0, slash);
  const part = name.slice(slash + 1);
  if (prefix === 'kubernetes.io' || prefix.endsWith('.kubernetes.io')) return false;
  if (prefix === 'requests') return false;
  if (prefix.length > 253 || !DNS_SUBDOMAIN_RE.test(prefix)) return false;
  return part.length <= NAME_PART_MAX && NAME_PART_RE.test(part);
}

/**
 * The per-device resource name `<vendor>/<node>-<address without ':' and '.'>` (Harvester's
 * PCIDevice name), valid under the 63-character rule; the rule lives in src/k8s/names.ts.
 */
export function perDeviceResourceName(
  vendorName: string | undefined,
  nodeName: string,
  address: string,
): string {
  return perDeviceName(vendorPart(vendorName), nodeName, address);
}

/**
 * The variable KubeVirt's virt-launcher reads (`util.ResourceNameToEnvVar`): `PCI_RESOURCE_` plus
 * the upper-cased name with `/` and `.` as `_` (`-` is kept).
 */
export function pciResourceEnvVar(resourceName: string): string {
  return `PCI_RESOURCE_${resourceName.toUpperCase().replace(/[/.]/g, '_')}`;
}

/** The plugin's socket file name inside the plugin folder (no '/' allowed there). */
export function socketNameFor(resourceName: string): string {
  return `passthru-${resourceName.replace(/\//g, '-')}.sock`;
}
