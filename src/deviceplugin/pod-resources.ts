import { services, unary, unixClient, type PodResourcesResponse } from './proto.js';

/** Which pod's container holds a device, from the kubelet's pod-resources API. */
export interface PodDeviceUse {
  address: string;
  resourceName: string;
  namespace: string;
  pod: string;
  container: string;
}

/**
 * Asks the kubelet (PodResourcesLister.List on its pod-resources socket) which pod holds which
 * device of the given resources. Device-plugin calls carry no pod identity; this does, and it
 * replaces Harvester's `exec env` into virt-launcher pods.
 */
export async function listPodDevices(
  socketPath: string,
  resourceNames: ReadonlySet<string> | null = null,
  timeoutMs = 5_000,
): Promise<PodDeviceUse[]> {
  const client = unixClient(services().PodResourcesLister, socketPath);
  try {
    const res = await unary<PodResourcesResponse>(client, 'List', {}, timeoutMs);
    const out: PodDeviceUse[] = [];
    for (const p of res.pod_resources) {
      for (const c of p.containers) {
        for (const d of c.devices) {
          if (resourceNames && !resourceNames.has(d.resource_name)) continue;
          for (const id of d.device_ids) {
            out.push({
              address: id,
              resourceName: d.resource_name,
              namespace: p.namespace,
              pod: p.name,
              container: c.name,
            });
          }
        }
      }
    }
    return out;
  } finally {
    client.close();
  }
}
