import type { Agent } from '../agent/agent.js';
import { PtError } from '../errors.js';
import type { Clock } from '../host/clock.js';
import type { HostPort } from '../host/port.js';
import type { PciIdNames } from '../pci/pciids.js';
import type { Logger } from '../util/logger.js';
import { KubernetesAdapter, type AdapterDeps } from './adapter.js';
import { nodeAgentOf } from './agent-port.js';
import { ClientNodeApi } from './client-node-api.js';

export interface KubernetesModeOptions {
  /** From NODE_NAME (the DaemonSet's downward API). */
  node: string | undefined;
  /** A kubeconfig file for development; in-cluster config when absent. */
  kubeconfig: string | undefined;
  /** Which pod holds which device (kubelet pod-resources), when the device plugins run. */
  podDevices?: AdapterDeps['podDevices'];
}

/** Builds the adapter for a started agent; the caller runs it beside agent.run(). */
export function kubernetesAdapter(
  agent: Agent,
  host: HostPort,
  names: PciIdNames,
  clock: Clock,
  logger: Logger,
  o: KubernetesModeOptions,
): KubernetesAdapter {
  if (o.node === undefined || o.node === '') {
    throw new PtError(
      'PT_ERR_INVALID_ARGUMENT',
      '--kubernetes needs NODE_NAME (the DaemonSet sets it from spec.nodeName)',
    );
  }
  return new KubernetesAdapter({
    api: ClientNodeApi.fromEnvironment(o.kubeconfig),
    node: o.node,
    agent: nodeAgentOf(agent, host, names),
    clock,
    logger,
    random: Math.random,
    ...(o.podDevices ? { podDevices: o.podDevices } : {}),
  });
}
