import type { ResourceRef } from './kube-api.js';
import { GROUP, VERSION } from './schemas.js';

export const DEVICES: ResourceRef = { group: GROUP, version: VERSION, plural: 'pcidevices' };
export const CLAIMS: ResourceRef = { group: GROUP, version: VERSION, plural: 'pcideviceclaims' };
export const KUBEVIRTS: ResourceRef = { group: 'kubevirt.io', version: 'v1', plural: 'kubevirts' };

/** passthru's finalizer on claims: the device is released before the claim goes. */
export const FINALIZER = 'passthru.dev/release';
/** Harvester's controller (wrangler) finalizers passthru takes over. */
export const WRANGLER_PREFIX = 'wrangler.cattle.io/';
export const NODE_LABEL = 'nodename';
export const DRIVER_ANNOTATION = 'harvesterhci.io/pcideviceDriver';
/** On the KubeVirt CR: the permittedHostDevices entries passthru added (and may remove). */
export const KUBEVIRT_OWNED_ANNOTATION = 'passthru.dev/permitted-pci-resources';
