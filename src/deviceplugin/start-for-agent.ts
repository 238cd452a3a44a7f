import type { Clock } from '../host/clock.js';
import type { HostPort } from '../host/port.js';
import type { PciIdNames } from '../pci/pciids.js';
import type { Logger } from '../util/logger.js';
import { AgentDeviceSource, type AgentView } from './agent-source.js';
import { startDevicePlugins, type DevicePluginOptions, type DevicePlugins } from './manager.js';
import { FsPluginDir } from '../process/plugin-dir.js';
import { DEFAULT_PLUGIN_DIR, DEFAULT_POD_RESOURCES_SOCKET } from './proto.js';

export interface AgentDevicePluginDeps {
  agent: AgentView;
  host: HostPort;
  clock: Clock;
  logger: Logger;
  names?: PciIdNames;
  /** The kubelet's device-plugin folder (default /var/lib/kubelet/device-plugins). */
  dir?: string;
  /** The kubelet's pod-resources socket (default /var/lib/kubelet/pod-resources/kubelet.sock). */
  podResourcesSocket?: string;
  /** Per-device resource names for this node instead of pooled ones. */
  perDeviceNode?: string;
  /** Kubernetes mode: the PCIDevice's resource name, when its object exists. */
  resourceNameOf?: (address: string) => string | undefined;
  options?: Partial<DevicePluginOptions>;
}

/**
 * Device plugins for the standalone agent, for the composition root (`passthru agent
 * --device-plugin`): the agent adapter, the real plugin folder. Call after `agent.start()`;
 * the returned `stop()` sends every resource an empty list and closes the sockets.
 */
export function startAgentDevicePlugins(d: AgentDevicePluginDeps): Promise<DevicePlugins> {
  const source = new AgentDeviceSource(d.agent, d.host, {
    ...(d.names ? { names: d.names } : {}),
    ...(d.perDeviceNode !== undefined ? { perDeviceNode: d.perDeviceNode } : {}),
    ...(d.resourceNameOf ? { resourceNameOf: d.resourceNameOf } : {}),
  });
  return startDevicePlugins({
    source,
    host: d.host,
    dir: new FsPluginDir(d.dir ?? DEFAULT_PLUGIN_DIR),
    clock: d.clock,
    logger: d.logger,
    podResourcesSocket: d.podResourcesSocket ?? DEFAULT_POD_RESOURCES_SOCKET,
    ...(d.options ? { options: d.options } : {}),
  });
}
