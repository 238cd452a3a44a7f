import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KubernetesAdapter } from '../src/k8s/adapter.js';
import { nodeAgentOf } from '../src/k8s/agent-port.js';
import { CLAIMS } from '../src/k8s/resources.js';
import { silentLogger } from '../src/util/logger.js';
import { startFake } from './fake-apiserver/load.js';
import type { FakeApiServer } from './fake-apiserver/server.js';
import { dpRig, E1000E, TEST_PCI_IDS, type DpRig } from './fake-kubelet/rig.js';
import { labTopology, NIC } from './helpers.js';
import { apiFor, NODE } from './k8s-rig.js';

/**
 * Kubernetes mode with the device plugins, as `passthru agent --kubernetes --device-plugin`
 * composes them (src/main.ts): the plugins advertise each device under its PCIDevice's
 * resourceName, and the claim's status names the pod the kubelet gave the device to.
 */

const VM = { namespace: 'vms', name: 'virt-launcher-vm1-abcde', container: 'compute' };
const nicName = (i: number): string => `${NODE}-0000${String(i + 1).padStart(2, '0')}000`;

interface Both {
  r: DpRig;
  fake: FakeApiServer;
  adapter: KubernetesAdapter;
  ac: AbortController;
  running: Promise<void>;
}

async function start(): Promise<Both> {
  const ref: { adapter: KubernetesAdapter | null } = { adapter: null };
  const r = await dpRig(labTopology(), {
    source: { resourceNameOf: (a) => ref.adapter?.resourceNameOf(a) },
  });
  const fake = await startFake();
  const adapter = new KubernetesAdapter({
    api: apiFor(fake, `agent-${NODE}`),
    node: NODE,
    agent: nodeAgentOf(r.agent, r.kernel.port(), TEST_PCI_IDS),
    clock: r.clock,
    logger: silentLogger(),
    random: () => 0.5,
    podDevices: () => {
      if (r.plugins === null) return Promise.resolve([]);
      return r.plugins.podDevices();
    },
  });
  ref.adapter = adapter;
  const ac = new AbortController();
  const running = adapter.run(ac.signal);
  await r.startPlugins();
  return { r, fake, adapter, ac, running };
}

/** Simulated time for the node and plugins, real time for the sockets, until `pred`. */
async function until(b: Both, pred: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !pred(); i++) {
    await b.r.clock.advance(50);
    await b.r.plugins?.settled();
    await new Promise((res) => setTimeout(res, 4));
  }
  assert.ok(pred(), `timed out waiting for ${what}`);
}

async function stopBoth(b: Both): Promise<void> {
  b.ac.abort();
  await b.r.clock.advance(1);
  await b.running;
  await b.r.close();
  await b.fake.stop();
}

async function claim(b: Both, i: number, spec: Record<string, unknown> = {}): Promise<void> {
  await apiFor(b.fake, 'user').create(CLAIMS, {
    apiVersion: 'devices.harvesterhci.io/v1beta1',
    kind: 'PCIDeviceClaim',
    metadata: { name: nicName(i) },
    spec: { address: NIC[i], nodeName: NODE, userName: 'admin', ...spec },
  });
}

type ClaimStatus = { heldBy?: { namespace: string; pod: string; container: string } };
const claimStatus = (b: Both, i: number): ClaimStatus | undefined =>
  (b.fake.get('pcideviceclaims', nicName(i)) as { status?: ClaimStatus } | undefined)?.status;

test('kubernetes + device plugin: a disableResourcePooling claim is advertised to the kubelet under its per-device name, a pooled one under the pool name', async () => {
  const b = await start();
  try {
    await claim(b, 0, { disableResourcePooling: true });
    await claim(b, 1);
    const perDevice = `intel.com/${nicName(0)}`;
    await until(
      b,
      () =>
        b.r.kubelet.view(perDevice)?.devices.some((d) => d.health === 'Healthy') === true &&
        b.r.kubelet.view(E1000E)?.devices.some((d) => d.health === 'Healthy') === true,
      'both resources registered and healthy',
    );
    assert.deepEqual(
      b.r.kubelet.view(perDevice)?.devices.map((d) => d.ID),
      [NIC[0]],
    );
    assert.deepEqual(
      b.r.kubelet.view(E1000E)?.devices.map((d) => d.ID),
      [NIC[1]],
    );
  } finally {
    await stopBoth(b);
  }
});

test("kubernetes + device plugin: the claim's status.heldBy names the pod the kubelet allocated the device to, is written once, and goes when the pod does", async () => {
  const b = await start();
  try {
    await claim(b, 0);
    await until(
      b,
      () => b.r.kubelet.view(E1000E)?.devices.some((d) => d.health === 'Healthy') === true,
      'the device healthy at the kubelet',
    );
    assert.equal(claimStatus(b, 0)?.heldBy, undefined);
    await b.r.kubelet.allocate(E1000E, 1, VM);
    // The kubelet is asked every 5 s (a local call); a change triggers a pass.
    await until(b, () => claimStatus(b, 0)?.heldBy !== undefined, 'heldBy');
    assert.deepEqual(claimStatus(b, 0)?.heldBy, {
      namespace: 'vms',
      pod: 'virt-launcher-vm1-abcde',
      container: 'compute',
    });
    b.fake.resetStats();
    for (let t = 0; t < 4 * 30_000; t += 1_000) {
      await b.r.clock.advance(1_000);
      await new Promise((res) => setTimeout(res, 1));
    }
    const st = b.fake.clientStats().get(`token:agent-${NODE}`);
    assert.equal(st?.writes ?? 0, 0, `unchanged holder, no writes: ${JSON.stringify(st?.calls)}`);
    b.r.kubelet.release(VM);
    await until(b, () => claimStatus(b, 0)?.heldBy === undefined, 'heldBy removed');
  } finally {
    await stopBoth(b);
  }
});
