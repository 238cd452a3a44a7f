import type { ResourceRef } from './kube-api.js';
import { GROUP, VERSION } from './schemas.js';

export const DEVICES: ResourceRef = { group: GROUP, version: VERSION, plural: 'pcidevices' };
export const CLAIMS: ResourceRef = { group: GROUP, version: VERSION, plural: 'pcideviceclaims' };
export const NODES: ResourceRef = { group: '', version: 'v1', plural: 'nodes' };
export const KUBEVIRTS: ResourceRef = { group: 'kubevirt.io', version: 'v1', plural: 'kubevirts' };

/** passthru's finalizer on claims: the device is released before the claim goes. */
export const FINALIZER = 'passthru.dev/release';
/** Harvester's controller (wrangler) finalizers passthru takes over. */
export const WRANGLER_PREFIX = 'wrangler.cattle.io/';
export const NODE_LABEL = 'nodename';
export const DRIVER_ANNOTATION = 'harvesterhci.io/pcideviceDriver';
/** On the KubeVirt CR: the permittedHostDevices entries passthru added (and may remove). */
export const KUBEVIRT_OWNED_ANNOTATION = 'passthru.dev/permitted-pci-resources';
/**
 * Harvester's resource-name override on a PCIDevice (vGPU and per-device names); it wins over
 * the pooled name. Harvester writes it for a claim with `disableResourcePooling` and removes it
 * when the claim goes; passthru does the same.
 */
export const OVERRIDE_RESOURCE_ANNOTATION = 'pcidevice.harvesterhci.io/override-resource-name';
/**
 * passthru's note of the pooled name while its own override is in place: the name a device
 * returns to (never recomputed), and the mark that the override is passthru's to remove.
 */
export const POOLED_RESOURCE_ANNOTATION = 'passthru.dev/pooled-resource-name';
