import type { PciAddress } from '../pci/address.js';

/**
 * What the device plugins need from the rest of passthru, and nothing more: the claimed
 * devices with their resource name, topology and health, and a signal that something changed.
 * The standalone agent provides it through agent-source.ts; Kubernetes mode can provide the
 * same from its claims without the plugins changing.
 */
export interface PluginDevice {
  address: PciAddress;
  resourceName: string;
  /** NUMA node from sysfs; null when the kernel reports none (-1). */
  numaNode: number | null;
  iommuGroup: number | null;
  /** The vfio cdev name (`vfio3`) when the device has one. */
  vfioDev: string | null;
  /** Claim ready, verified on vfio-pci, vfio modules live, no recovery in progress. */
  healthy: boolean;
  /** Why it is not healthy (for logs and errors). */
  reason: string | null;
}

export interface DeviceSource {
  /** The claimed devices now. Called after every change signal and on a periodic resync. */
  snapshot(): Promise<PluginDevice[]>;
  /** `fn` runs when something may have changed; returns an unsubscribe function. */
  subscribe(fn: () => void): () => void;
}
