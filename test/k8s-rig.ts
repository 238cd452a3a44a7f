import { KubeConfig } from '@kubernetes/client-node';
import { KubernetesAdapter, type AdapterOptions } from '../src/k8s/adapter.js';
import { nodeAgentOf } from '../src/k8s/agent-port.js';
import { ClientNodeApi } from '../src/k8s/client-node-api.js';
import { emptyPciIds, type PciIdNames } from '../src/pci/pciids.js';
import { silentLogger } from '../src/util/logger.js';
import { kubeconfigText, startFake } from './fake-apiserver/load.js';
import type { FakeApiServer } from './fake-apiserver/server.js';
import { labTopology, rig, stop, type Rig } from './helpers.js';
import type { Topology } from '../src/topology/format.js';
import type { StateStore } from '../src/state/model.js';

export const NODE = 'node1';

export interface K8sRig {
  fake: FakeApiServer;
  node: Rig;
  adapter: KubernetesAdapter;
  ac: AbortController;
  running: Promise<void>;
}

export function apiFor(fake: FakeApiServer, token: string): ClientNodeApi {
  const kc = new KubeConfig();
  kc.loadFromString(kubeconfigText(fake.url, token));
  return new ClientNodeApi(kc);
}

export function startAdapter(
  fake: FakeApiServer,
  node: Rig,
  name = NODE,
  names: PciIdNames = emptyPciIds,
  options: Partial<AdapterOptions> = {},
): { adapter: KubernetesAdapter; ac: AbortController; running: Promise<void> } {
  let seed = 11;
  const adapter = new KubernetesAdapter({
    api: apiFor(fake, `agent-${name}`),
    node: name,
    agent: nodeAgentOf(node.agent, node.kernel.port(), names),
    clock: node.clock,
    logger: silentLogger(),
    random: () => {
      seed = (seed * 16807) % 2147483647;
      return seed / 2147483647;
    },
    options,
  });
  const ac = new AbortController();
  return { adapter, ac, running: adapter.run(ac.signal) };
}

export async function k8sRig(
  opts: { topology?: Topology; store?: StateStore; fake?: FakeApiServer } = {},
): Promise<K8sRig> {
  const fake = opts.fake ?? (await startFake());
  const node = await rig(opts.topology ?? labTopology());
  const a = startAdapter(fake, node);
  return { fake, node, ...a };
}

/**
 * Simulated time for the node, real time for the sockets: advance the manual clock in small
 * steps and give the HTTP traffic a moment between them, until `pred` holds.
 */
export async function drive(
  r: { node: Rig },
  pred: () => boolean,
  what: string,
  maxSteps = 400,
  stepMs = 20,
): Promise<number> {
  const start = r.node.clock.now();
  for (let i = 0; i < maxSteps; i++) {
    if (pred()) return r.node.clock.now() - start;
    await r.node.clock.advance(stepMs);
    await new Promise((res) => setTimeout(res, 5));
  }
  if (pred()) return r.node.clock.now() - start;
  throw new Error(`timed out waiting for ${what}`);
}

export async function stopAdapter(r: {
  ac: AbortController;
  running: Promise<void>;
  node: Rig;
}): Promise<void> {
  r.ac.abort();
  await r.node.clock.advance(1);
  await r.running;
}

export async function stopAll(r: K8sRig): Promise<void> {
  await stopAdapter(r);
  await stop(r.node);
  await r.fake.stop();
}
