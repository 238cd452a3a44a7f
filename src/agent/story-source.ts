import { buildStory, type DeviceStory } from '../events/story.js';
import type { PciAddress } from '../pci/address.js';
import type { Agent } from './agent.js';

/**
 * `passthru why`: the device's story from the agent's history, ending with where it stands.
 * `running` says whether this agent is the running one (it re-applies claims by itself) or a
 * read-only look without one.
 */
export async function deviceStory(
  agent: Agent,
  addr: PciAddress,
  since: number | null,
  running: boolean,
): Promise<DeviceStory> {
  const history = await agent.history.readAll();
  const status = await agent.status(0);
  const present = await agent.host.deviceExists(addr);
  const driver = present ? (await agent.host.readDeviceLinks(addr)).driver : null;
  return buildStory(
    history,
    addr,
    {
      present,
      driver,
      claims: agent.engine.claims,
      statuses: status.claims,
      ledger: status.ledger,
      agentRunning: running,
    },
    since,
  );
}
