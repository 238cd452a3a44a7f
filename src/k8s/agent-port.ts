import type { Agent, AgentStatus, ReleaseOutcome } from '../agent/agent.js';
import type { ClaimStatus } from '../engine/engine.js';
import type { DomainEvent } from '../events/events.js';
import type { HostPort, HostUses } from '../host/port.js';
import type { PciAddress } from '../pci/address.js';
import { discover } from '../pci/discovery.js';
import type { Inventory } from '../pci/model.js';
import type { PciIdNames } from '../pci/pciids.js';

/**
 * What the Kubernetes adapter needs from the node: the standalone agent's public methods and a
 * fresh inventory. This file alone knows the Agent class, so reshaping the engine touches only
 * here.
 */
export interface NodeAgent {
  claim(addresses: PciAddress[]): Promise<ClaimStatus[]>;
  release(addresses: PciAddress[]): Promise<ReleaseOutcome[]>;
  status(): Promise<AgentStatus>;
  subscribe(fn: (e: DomainEvent) => void): () => void;
  inventory(): Promise<Inventory>;
  /** What the host itself uses (mounts, routes, swap): the PCIDevice HostCritical condition. */
  hostUses(): Promise<HostUses>;
  names: PciIdNames;
}

export function nodeAgentOf(agent: Agent, host: HostPort, names: PciIdNames): NodeAgent {
  return {
    // Harvester claims one function; group companions are the user's to claim (or the engine
    // refuses with PT_ERR_GROUP_NOT_VIABLE, shown as the Refused condition).
    claim: (addresses) =>
      agent.claim(addresses, { withGroup: false, force: false, source: 'kubernetes' }),
    release: (addresses) => agent.release(addresses),
    // One recent event: the adapter reads claims and keeper state, not the history.
    status: () => agent.status(1),
    subscribe: (fn) => agent.bus.subscribe(fn),
    inventory: () => discover(host, names),
    hostUses: () => host.hostUses(),
    names,
  };
}
