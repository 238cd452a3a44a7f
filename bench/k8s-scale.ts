/**
 * Kubernetes mode at scale: N simulated nodes with F functions each (default 100 x 100), each a
 * full agent (engine, keeper, store) plus its Kubernetes adapter with its own client-node
 * client, all in one process against one fake API server. One manual clock drives every node's
 * loops (simulated time); HTTP runs in real time between clock steps.
 * Prints: API calls to converge, API calls per node per simulated hour at rest, the calls of one
 * claim end to end, heap per node. Asserts nothing.
 * Usage: node --expose-gc dist/bench/k8s-scale.js [nodes] [functions]
 */
import { setMaxListeners } from 'node:events';
import { Agent } from '../src/agent/agent.js';
import { ManualClock } from '../src/host/clock.js';
import { SimKernel } from '../src/host/sim/kernel.js';
import { KubernetesAdapter } from '../src/k8s/adapter.js';
import { nodeAgentOf } from '../src/k8s/agent-port.js';
import { CLAIMS } from '../src/k8s/resources.js';
import { emptyPciIds } from '../src/pci/pciids.js';
import { MemoryHistory } from '../src/state/history.js';
import { MemoryStore } from '../src/state/model.js';
import { TOPOLOGY_FORMAT, type Topology } from '../src/topology/format.js';
import { silentLogger } from '../src/util/logger.js';
import { startFake } from '../test/fake-apiserver/load.js';
import type { ClientStats } from '../test/fake-apiserver/server.js';
import { apiFor } from '../test/k8s-rig.js';

const nodes = Number(process.argv[2] ?? 100);
const functions = Number(process.argv[3] ?? 100);

function topology(n: number): Topology {
  return {
    format: TOPOLOGY_FORMAT,
    name: `scale-${n}`,
    kernel: { release: '6.1.0-26-amd64' },
    drivers: [{ name: 'e1000e', ids: ['8086:10d3'] }],
    devices: Array.from({ length: n }, (_, i) => ({
      address: `0000:${(i + 1).toString(16).padStart(2, '0')}:00.0`,
      vendor: '8086',
      device: '10d3',
      class: '020000',
      driver: 'e1000e',
      iommuGroup: 10 + i,
      numaNode: 0,
    })),
  };
}

const realPause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const gc = (): void => {
  (globalThis as { gc?: () => void }).gc?.();
};

function sum(stats: Map<string, ClientStats>, prefix: string): ClientStats {
  const out: ClientStats = { reads: 0, writes: 0, watches: 0, calls: {} };
  for (const [client, s] of stats) {
    if (!client.startsWith(prefix)) continue;
    out.reads += s.reads;
    out.writes += s.writes;
    out.watches += s.watches;
    for (const [k, v] of Object.entries(s.calls)) out.calls[k] = (out.calls[k] ?? 0) + v;
  }
  return out;
}

const fake = await startFake({ historySize: 1000 });
const clock = new ManualClock(1_000_000);
const ac = new AbortController();
// Every node's loops listen on the one signal.
setMaxListeners(0, ac.signal);
const loops: Promise<void>[] = [];
const adapters: KubernetesAdapter[] = [];
const kernels: SimKernel[] = [];
gc();
const heapBefore = process.memoryUsage().heapUsed;
const topo = topology(functions);
for (let n = 0; n < nodes; n++) {
  const kernel = new SimKernel(topo, clock);
  kernels.push(kernel);
  const agent = new Agent({
    host: kernel.port(),
    store: new MemoryStore(),
    history: new MemoryHistory(),
    clock,
    logger: silentLogger(),
    // The keeper's poll is not what is measured here; 10 s keeps 100 nodes affordable.
    keeper: { pollMs: 10_000 },
  });
  await agent.start();
  loops.push(agent.run(ac.signal));
  const adapter = new KubernetesAdapter({
    api: apiFor(fake, `node-${n}`),
    node: `node${n}`,
    agent: nodeAgentOf(agent, kernel.port(), emptyPciIds),
    clock,
    logger: silentLogger(),
    random: Math.random,
  });
  adapters.push(adapter);
  loops.push(adapter.run(ac.signal));
}

const t0 = Date.now();
const want = nodes * functions;
while (
  fake.list('pcidevices').filter((d) => (d.status as { address?: string } | undefined)?.address)
    .length < want
) {
  await clock.advance(100);
  await realPause(20);
}
const convergeReal = Date.now() - t0;
// Let the last status writes land and every pass settle.
for (let i = 0; i < 20; i++) {
  await clock.advance(1_000);
  await realPause(20);
}
gc();
const heapPerNode = (process.memoryUsage().heapUsed - heapBefore) / nodes;
const start = sum(fake.clientStats(), 'token:node-');
const startEvents = new Map<string, number>();
for (const e of fake.list('events') as { reason: string }[]) {
  startEvents.set(e.reason, (startEvents.get(e.reason) ?? 0) + 1);
}

fake.resetStats();
const hourStart = clock.now();
const passesBefore = adapters.reduce((a, x) => a + x.counts.passes, 0);
let lastBookmark = clock.now();
while (clock.now() - hourStart < 3_600_000) {
  await clock.advance(10_000);
  // A real API server sends a bookmark about once a minute; it keeps resumption RVs fresh.
  if (clock.now() - lastBookmark >= 60_000) {
    fake.bookmark();
    lastBookmark = clock.now();
  }
  await realPause(2);
}
const rest = sum(fake.clientStats(), 'token:node-');
const passesInHour = adapters.reduce((a, x) => a + x.counts.passes, 0) - passesBefore;

fake.resetStats();
await apiFor(fake, 'user').create(CLAIMS, {
  apiVersion: 'devices.harvesterhci.io/v1beta1',
  kind: 'PCIDeviceClaim',
  metadata: { name: 'node0-000001000' },
  spec: { address: '0000:01:00.0', nodeName: 'node0', userName: 'admin' },
});
const claimStart = clock.now();
const ready = (): boolean => {
  const c = fake.get('pcideviceclaims', 'node0-000001000') as
    { status?: { conditions?: { type: string; status: string }[] } } | undefined;
  return c?.status?.conditions?.some((x) => x.type === 'Ready' && x.status === 'True') === true;
};
while (!ready()) {
  await clock.advance(10);
  await realPause(5);
}
const claimSim = clock.now() - claimStart;
for (let i = 0; i < 20; i++) {
  await clock.advance(100);
  await realPause(10);
}
const claimCalls = sum(fake.clientStats(), 'token:node-');
const node0 = fake.clientStats().get('token:node-0');

ac.abort();
await clock.advance(1);
await Promise.all(loops);
await fake.stop();

const fmt = (s: ClientStats): string =>
  `${s.writes} writes, ${s.reads} reads, ${s.watches} watches (${Object.entries(s.calls)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')})`;
console.log(`k8s scale: ${nodes} nodes x ${functions} functions, one fake API server`);
console.log(
  `  converge (create ${want} PCIDevices): ${fmt(start)}; ${(start.writes / nodes).toFixed(1)} writes/node; ${convergeReal} ms real; Events: ${[...startEvents].map(([k, v]) => `${k} ${v}`).join(', ')}`,
);
console.log(
  `  at rest, per node per simulated hour: ${(rest.writes / nodes).toFixed(2)} writes, ${(rest.reads / nodes).toFixed(2)} reads, ${(rest.watches / nodes).toFixed(2)} watch renewals (and ${passesInHour / nodes} host resyncs/node)`,
);
console.log(
  `  one claim end to end (node0): ${fmt(node0 ?? { reads: 0, writes: 0, watches: 0, calls: {} })}; all nodes: ${claimCalls.writes} writes, ${claimCalls.reads} reads; Ready after ${claimSim} simulated ms`,
);
console.log(
  `  heap per node (agent + adapter + client + simulated kernel of ${functions} functions): ${(heapPerNode / 1024 / 1024).toFixed(2)} MiB`,
);
