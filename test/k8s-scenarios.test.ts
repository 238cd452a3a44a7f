import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { writeKubeconfig } from './fake-apiserver/load.js';
import { FakeApiServer } from './fake-apiserver/server.js';
import { fromCrd } from './fake-apiserver/resources.js';
import { NIC, ROOTFS, stop } from './helpers.js';
import { apiFor, drive, k8sRig, NODE, startAdapter, stopAdapter, stopAll } from './k8s-rig.js';
import { shippedCrds, startFake } from './fake-apiserver/load.js';
import { CLAIMS, DEVICES, FINALIZER } from '../src/k8s/resources.js';

const exec = promisify(execFile);

interface Cond {
  type: string;
  status: string;
  reason?: string;
}
interface ClaimObj {
  metadata: { finalizers?: string[]; generation: number };
  status?: {
    passthroughEnabled?: boolean;
    kernelDriverToUnbind?: string;
    observedGeneration?: number;
    conditions?: Cond[];
  };
}

const nicName = (i: number): string => `${NODE}-0000${String(i + 1).padStart(2, '0')}000`;

function cond(o: ClaimObj | undefined, type: string): Cond | undefined {
  return o?.status?.conditions?.find((c) => c.type === type);
}

test('kubernetes: PCIDevices appear for every non-bridge function, named <node>-<address>, with Harvester status fields', async () => {
  const r = await k8sRig();
  await drive(r, () => r.fake.list('pcidevices').length === 9, 'the PCIDevices');
  const dev = r.fake.get('pcidevices', nicName(0)) as {
    metadata: { labels: Record<string, string> };
    status: Record<string, unknown>;
  };
  assert.equal(dev.metadata.labels.nodename, NODE);
  assert.deepEqual(
    { ...dev.status },
    {
      address: NIC[0],
      vendorId: '8086',
      deviceId: '10d3',
      classId: '0200',
      nodeName: NODE,
      resourceName: 'unknown.com/10d3',
      description: 'Class 0200: Vendor 8086 Device 10d3',
      kernelDriverInUse: 'e1000e',
      iommuGroup: '10',
      subsystemVendorId: dev.status.subsystemVendorId,
      subsystemDeviceId: dev.status.subsystemDeviceId,
      numaNode: 0,
      conditions: dev.status.conditions,
    },
  );
  await stopAll(r);
});

type DevObj = { status: { conditions?: Cond[]; kernelDriverInUse?: string } };
const devCond = (r: { fake: FakeApiServer }, name: string, type: string): Cond | undefined =>
  (r.fake.get('pcidevices', name) as DevObj | undefined)?.status.conditions?.find(
    (c) => c.type === type,
  );

test('kubernetes: PCIDevice conditions: the root disk is HostCritical and not Claimable, a NIC is Claimable and becomes Bound with its claim; then several resyncs with nothing changing write nothing', async () => {
  const r = await k8sRig();
  await drive(r, () => r.fake.list('pcidevices').length === 9, 'the PCIDevices');
  await drive(r, () => devCond(r, nicName(0), 'Bound') !== undefined, 'the conditions');
  const root = `${NODE}-${ROOTFS.replace(/[:.]/g, '')}`;
  assert.deepEqual(
    ['HostCritical', 'Claimable', 'Bound'].map((t) => {
      const c = devCond(r, root, t);
      return `${t}=${c?.status}/${c?.reason}`;
    }),
    ['HostCritical=True/HostUse', 'Claimable=False/HostCritical', 'Bound=False/NotClaimed'],
  );
  assert.match(
    (
      r.fake.get('pcidevices', root) as { status: { conditions: { message: string }[] } }
    ).status.conditions.find((c) => c.message.includes('9p'))?.message ?? '',
    /9p filesystem at \//,
  );
  assert.equal(devCond(r, nicName(0), 'HostCritical')?.status, 'False');
  assert.equal(devCond(r, nicName(0), 'Claimable')?.status, 'True');
  assert.equal(devCond(r, nicName(0), 'Bound')?.reason, 'NotClaimed');
  await claimNic(r, 0);
  await drive(r, () => devCond(r, nicName(0), 'Bound')?.status === 'True', 'Bound=True');
  await drive(r, () => cond(getClaim(r, 0), 'Ready')?.status === 'True', 'Ready=True');
  const since = devCond(r, nicName(0), 'Claimable') as Cond & { lastTransitionTime: string };
  r.fake.resetStats();
  const before = r.adapter.counts.passes;
  for (let t = 0; t < 5 * 30_000; t += 5_000) {
    await r.node.clock.advance(5_000);
    await new Promise((res) => setTimeout(res, 1));
  }
  assert.ok(r.adapter.counts.passes - before >= 5, 'five resyncs ran');
  const st = r.fake.clientStats().get(`token:agent-${NODE}`);
  assert.equal(st?.writes ?? 0, 0, JSON.stringify(st?.calls));
  assert.deepEqual(devCond(r, nicName(0), 'Claimable'), since, 'lastTransitionTime kept');
  await stopAll(r);
});

test('kubernetes: a claim applied with kubectl ends Ready with the device on vfio-pci; deleting it releases the device before the finalizer goes', async (t) => {
  const r = await k8sRig();
  await drive(r, () => r.fake.list('pcidevices').length === 9, 'the PCIDevices');
  const kc = writeKubeconfig(r.fake.url);
  const file = path.join(path.dirname(kc), 'claim.yaml');
  fs.writeFileSync(
    file,
    `apiVersion: devices.harvesterhci.io/v1beta1\nkind: PCIDeviceClaim\nmetadata:\n  name: ${nicName(0)}\nspec:\n  address: "${NIC[0]}"\n  nodeName: ${NODE}\n  userName: admin\n`,
  );
  let kubectl = true;
  try {
    await exec('kubectl', ['--kubeconfig', kc, 'apply', '-f', file], { timeout: 30_000 });
  } catch (e) {
    if ((e as { code?: unknown }).code !== 'ENOENT' || process.env.CI === 'true') throw e;
    kubectl = false;
    t.diagnostic('kubectl not installed: the claim is created through the fake directly');
    r.fake.seed('pcideviceclaims', {
      metadata: { name: nicName(0) },
      spec: { address: NIC[0], nodeName: NODE, userName: 'admin' },
    });
  }
  const claim = (): ClaimObj | undefined =>
    r.fake.get('pcideviceclaims', nicName(0)) as ClaimObj | undefined;
  await drive(r, () => cond(claim(), 'Ready')?.status === 'True', 'Ready=True');
  assert.equal(r.node.kernel.driverOf(NIC[0]!), 'vfio-pci');
  const c = claim();
  assert.ok(c);
  assert.equal(c.status?.passthroughEnabled, true);
  assert.equal(c.status.kernelDriverToUnbind, 'e1000e');
  assert.equal(c.status.observedGeneration, 1);
  assert.deepEqual(c.metadata.finalizers, [FINALIZER]);
  assert.equal(cond(c, 'ModulesLoaded')?.status, 'True');
  assert.equal(cond(c, 'Refused')?.status, 'False');
  await drive(
    r,
    () =>
      (r.fake.get('pcidevices', nicName(0)) as { status: { kernelDriverInUse: string } }).status
        .kernelDriverInUse === 'vfio-pci',
    'kernelDriverInUse=vfio-pci',
  );
  const events = r.fake.list('events') as { reason: string; involvedObject: { name: string } }[];
  assert.ok(events.some((e) => e.reason === 'Bound' && e.involvedObject.name === nicName(0)));
  if (kubectl) {
    await exec('kubectl', ['--kubeconfig', kc, 'delete', '-f', file, '--wait=false'], {
      timeout: 30_000,
    });
  } else {
    await apiFor(r.fake, 'user').delete(CLAIMS, nicName(0));
  }
  await drive(r, () => claim() === undefined, 'the claim to go');
  assert.equal(r.node.kernel.driverOf(NIC[0]!), 'e1000e');
  await stopAll(r);
});

async function claimNic(
  r: { fake: FakeApiServer },
  i: number,
  extra: Record<string, unknown> = {},
  spec: Record<string, unknown> = {},
): Promise<void> {
  await apiFor(r.fake, 'user').create(CLAIMS, {
    apiVersion: 'devices.harvesterhci.io/v1beta1',
    kind: 'PCIDeviceClaim',
    metadata: { name: nicName(i), ...extra },
    spec: { address: NIC[i], nodeName: NODE, userName: 'admin', ...spec },
  });
}

const getClaim = (r: { fake: FakeApiServer }, i: number): ClaimObj | undefined =>
  r.fake.get('pcideviceclaims', nicName(i)) as ClaimObj | undefined;

const reasons = (r: { fake: FakeApiServer }, kind: string): string[] =>
  (r.fake.list('events') as { reason: string; involvedObject: { kind: string } }[])
    .filter((e) => e.involvedObject.kind === kind)
    .map((e) => e.reason);

test('kubernetes: the field failure (modprobe -r vfio_pci vfio_pci_core vfio_virqfd) raises Events on the node, flips ModulesLoaded to False and back, and the device is on vfio-pci again within 1 s', async () => {
  const r = await k8sRig();
  await claimNic(r, 0);
  await drive(r, () => cond(getClaim(r, 0), 'Ready')?.status === 'True', 'Ready=True');
  for (const m of ['vfio_pci', 'vfio_pci_core', 'vfio_virqfd']) r.node.kernel.rmmod(m);
  assert.notEqual(r.node.kernel.driverOf(NIC[0]!), 'vfio-pci');
  const ms = await drive(
    r,
    () => r.node.kernel.driverOf(NIC[0]!) === 'vfio-pci',
    'the device back on vfio-pci',
    100,
    10,
  );
  assert.ok(ms <= 1_000, `back on vfio-pci after ${ms} simulated ms`);
  await drive(r, () => reasons(r, 'Node').includes('VfioRecovered'), 'the recovery Event');
  assert.ok(reasons(r, 'Node').includes('VfioModulesLost'));
  await drive(
    r,
    () =>
      cond(getClaim(r, 0), 'ModulesLoaded')?.status === 'True' &&
      cond(getClaim(r, 0), 'Ready')?.status === 'True',
    'conditions back to True',
  );
  const seen = r.fake
    .history('pcideviceclaims')
    .map((e) => cond(e.obj as unknown as ClaimObj, 'ModulesLoaded')?.status)
    .filter((s) => s !== undefined);
  assert.ok(seen.includes('False'), `ModulesLoaded went False at some point: ${seen.join(',')}`);
  assert.equal(seen.at(-1), 'True');
  await stopAll(r);
});

test('kubernetes: with the API server down for 60 s while the vfio modules are removed, the node heals anyway and reports (Events, status) once it is back', async () => {
  const r = await k8sRig();
  await claimNic(r, 0);
  await drive(r, () => cond(getClaim(r, 0), 'Ready')?.status === 'True', 'Ready=True');
  r.fake.setDown(true);
  for (const m of ['vfio_pci', 'vfio_pci_core', 'vfio_virqfd']) r.node.kernel.rmmod(m);
  const ms = await drive(
    r,
    () => r.node.kernel.driverOf(NIC[0]!) === 'vfio-pci',
    'healing while the API is down',
    100,
    10,
  );
  assert.ok(ms <= 1_000, `healed in ${ms} simulated ms without the API server`);
  // The rest of the 60 s: the adapter's writes fail and back off; nothing reaches the server.
  for (let t = 0; t < 60_000; t += 1_000) {
    await r.node.clock.advance(1_000);
    await new Promise((res) => setTimeout(res, 2));
  }
  assert.equal(reasons(r, 'Node').length, 0, 'no Event could be sent while down');
  assert.ok(r.adapter.counts.failedPasses > 0);
  r.fake.resetStats();
  r.fake.setDown(false);
  await drive(r, () => reasons(r, 'Node').includes('VfioRecovered'), 'the queued Events', 400, 500);
  assert.ok(reasons(r, 'Node').includes('VfioModulesLost'));
  const c = getClaim(r, 0);
  assert.equal(cond(c, 'Ready')?.status, 'True');
  assert.equal(cond(c, 'ModulesLoaded')?.status, 'True');
  const agent = r.fake.clientStats().get(`token:agent-${NODE}`);
  assert.ok((agent?.calls['PATCH pcideviceclaims/status'] ?? 0) <= 1, 'status writes coalesced');
  await stopAll(r);
});

test('kubernetes: an agent restart creates no duplicates and writes nothing; at rest a node makes no writes and no lists, only watch renewals', async () => {
  const r = await k8sRig();
  await claimNic(r, 0);
  await drive(r, () => cond(getClaim(r, 0), 'Ready')?.status === 'True', 'Ready=True');
  await drive(
    r,
    () =>
      (r.fake.get('pcidevices', nicName(0)) as { status: { kernelDriverInUse: string } }).status
        .kernelDriverInUse === 'vfio-pci',
    'kernelDriverInUse=vfio-pci',
  );
  await stopAdapter(r);
  r.fake.resetStats();
  const again = startAdapter(r.fake, r.node);
  const r2 = { ...r, ...again };
  await drive(
    r2,
    () =>
      again.adapter.devices.synced &&
      again.adapter.claims.synced &&
      again.adapter.counts.passes >= 2,
    'the restarted adapter',
  );
  assert.equal(r.fake.list('pcidevices').length, 9);
  assert.equal(r.fake.list('pcideviceclaims').length, 1);
  const st = r.fake.clientStats().get(`token:agent-${NODE}`);
  assert.equal(st?.writes, 0, JSON.stringify(st?.calls));
  // At rest: ten simulated minutes of resyncs (host reads only) and not one API call.
  r.fake.resetStats();
  const before = again.adapter.counts.passes;
  for (let t = 0; t < 10 * 60_000; t += 5_000) {
    await r.node.clock.advance(5_000);
    await new Promise((res) => setTimeout(res, 1));
  }
  const rest = r.fake.clientStats().get(`token:agent-${NODE}`);
  assert.equal(rest?.writes ?? 0, 0);
  assert.equal(rest?.reads ?? 0, 0, 'no lists: watches resume from their resourceVersion');
  // The watches are renewed every 300-330 s (the agent's own deadline against half-open
  // connections): at most two renewals each in ten minutes.
  assert.ok((rest?.watches ?? 0) <= 4, `watch renewals: ${rest?.watches ?? 0}`);
  assert.equal(r.fake.watchCount(), 2, 'its two watches are open');
  assert.ok(again.adapter.counts.passes - before >= 20, 'the periodic resync ran');
  await stopAll(r2);
});

test("kubernetes: objects in the old controller's shape are adopted: names and resourceNames kept, wrangler finalizers taken over, a claim deleted while it was gone is finished", async () => {
  const fake = await startFake();
  const harvesterDevice = (i: number, rn: string): Record<string, unknown> => ({
    metadata: {
      name: nicName(i),
      labels: { nodename: NODE },
      annotations: { 'harvesterhci.io/pcideviceDriver': 'e1000e' },
    },
    status: {
      address: NIC[i],
      vendorId: '8086',
      deviceId: '10d3',
      classId: '0200',
      nodeName: NODE,
      resourceName: rn,
      description: 'Ethernet controller: Intel Corporation 82574L Gigabit Network Connection',
      kernelDriverInUse: 'e1000e',
      iommuGroup: String(10 + i),
    },
  });
  const dev0 = fake.seed(
    'pcidevices',
    harvesterDevice(0, 'intel.com/82574L_GIGABIT_NETWORK_CONNECTION'),
    true,
  );
  fake.seed('pcidevices', harvesterDevice(1, 'intel.com/82574L_GIGABIT_NETWORK_CONNECTION'), true);
  // As the Harvester UI creates it: named after the device, owned by it, wrangler's finalizer.
  fake.seed('pcideviceclaims', {
    metadata: {
      name: nicName(0),
      finalizers: ['wrangler.cattle.io/PCIDeviceClaimOnRemove'],
      ownerReferences: [
        {
          apiVersion: 'devices.harvesterhci.io/v1beta1',
          kind: 'PCIDevice',
          name: nicName(0),
          uid: (dev0.metadata as { uid: string }).uid,
        },
      ],
    },
    spec: { address: NIC[0], nodeName: NODE, userName: 'admin' },
  });
  // A claim deleted after the old controller was uninstalled: stuck on wrangler's finalizer.
  fake.seed('pcideviceclaims', {
    metadata: { name: nicName(1), finalizers: ['wrangler.cattle.io/PCIDeviceClaimOnRemove'] },
    spec: { address: NIC[1], nodeName: NODE, userName: 'admin' },
  });
  await apiFor(fake, 'user').delete(CLAIMS, nicName(1));
  const r = await k8sRig({ fake });
  await drive(r, () => cond(getClaim(r, 0), 'Ready')?.status === 'True', 'the adopted claim Ready');
  assert.deepEqual(getClaim(r, 0)?.metadata.finalizers, [FINALIZER]);
  await drive(r, () => getClaim(r, 1) === undefined, 'the stuck claim finished');
  assert.equal(r.fake.list('pcidevices').length, 9);
  const d0 = r.fake.get('pcidevices', nicName(0)) as {
    status: { resourceName: string; subsystemVendorId?: string };
  };
  assert.equal(d0.status.resourceName, 'intel.com/82574L_GIGABIT_NETWORK_CONNECTION');
  assert.ok(d0.status.subsystemVendorId !== undefined, 'passthru fields added');
  await apiFor(r.fake, 'user').delete(CLAIMS, nicName(0));
  await drive(r, () => getClaim(r, 0) === undefined, 'the adopted claim deleted');
  assert.equal(r.node.kernel.driverOf(NIC[0]!), 'e1000e');
  await stopAll(r);
});

test('kubernetes: a vanished device loses its PCIDevice but its claim stays, Ready=False with reason PT_ERR_DEVICE_NOT_FOUND', async () => {
  const r = await k8sRig();
  await claimNic(r, 1);
  await drive(r, () => cond(getClaim(r, 1), 'Ready')?.status === 'True', 'Ready=True');
  r.node.kernel.unplug(NIC[1]!);
  await drive(
    r,
    () => r.fake.get('pcidevices', nicName(1)) === undefined,
    'the PCIDevice deleted',
    200,
    500,
  );
  await drive(r, () => cond(getClaim(r, 1), 'Ready')?.status === 'False', 'Ready=False', 200, 500);
  const c = getClaim(r, 1);
  assert.ok(c);
  assert.equal(cond(c, 'Ready')?.reason, 'PT_ERR_DEVICE_NOT_FOUND');
  assert.deepEqual(c.metadata.finalizers, [FINALIZER]);
  await stopAll(r);
});

test('kubernetes: KubeVirt permittedHostDevices gets an entry with the first ready claim and loses it with the last, leaving entries passthru did not add', async () => {
  const fake = await startFake();
  const foreign = {
    pciVendorSelector: '10de:1eb8',
    resourceName: 'nvidia.com/TU104GL_TESLA_T4',
    externalResourceProvider: true,
  };
  fake.seed('kubevirts', {
    metadata: { name: 'kubevirt', namespace: 'harvester-system' },
    spec: { configuration: { permittedHostDevices: { pciHostDevices: [foreign] } } },
  });
  const r = await k8sRig({ fake });
  const pci = (): { resourceName: string; pciVendorSelector: string }[] =>
    (
      r.fake.get('kubevirts', 'kubevirt', 'harvester-system') as {
        spec: {
          configuration: {
            permittedHostDevices: {
              pciHostDevices: { resourceName: string; pciVendorSelector: string }[];
            };
          };
        };
      }
    ).spec.configuration.permittedHostDevices.pciHostDevices;
  await claimNic(r, 0);
  await claimNic(r, 1);
  await drive(r, () => pci().length === 2, 'the entry added');
  assert.deepEqual(pci()[1], {
    pciVendorSelector: '8086:10d3',
    resourceName: 'unknown.com/10d3',
    externalResourceProvider: true,
  });
  await apiFor(r.fake, 'user').delete(CLAIMS, nicName(0));
  await drive(r, () => getClaim(r, 0) === undefined, 'the first claim gone');
  assert.equal(pci().length, 2, 'still used by the second claim');
  await apiFor(r.fake, 'user').delete(CLAIMS, nicName(1));
  await drive(r, () => pci().length === 1, 'the entry removed');
  assert.deepEqual(pci(), [foreign]);
  await stopAll(r);
});

test("kubernetes: objects are checked against the schema layer as they arrive: on a cluster still serving Harvester's schema-less CRD, a claim of the wrong shape is ignored (no finalizer, no status, noted once) while a good one binds", async () => {
  // Harvester's CRDs carry no schema and its chart no policy: the API server stores whatever
  // it is given.
  const fake = new FakeApiServer({
    policy: false,
    resources: shippedCrds().map((c) => {
      const r = fromCrd(c);
      delete r.schema;
      return r;
    }),
  });
  await fake.start();
  fake.seed('pcideviceclaims', {
    metadata: { name: `${NODE}-bad` },
    spec: { address: 12, nodeName: NODE, userName: ['admin'] },
  });
  const r = await k8sRig({ fake });
  await claimNic(r, 0);
  await drive(r, () => cond(getClaim(r, 0), 'Ready')?.status === 'True', 'the good claim Ready');
  for (let i = 0; i < 5; i++) {
    await r.node.clock.advance(30_000);
    await new Promise((res) => setTimeout(res, 5));
  }
  const bad = r.fake.get('pcideviceclaims', `${NODE}-bad`) as unknown as ClaimObj;
  assert.equal(bad.metadata.finalizers, undefined);
  assert.equal(bad.status, undefined);
  assert.match(r.adapter.claims.refused.get(`${NODE}-bad`) ?? '', /\/spec\/address/);
  assert.equal(r.adapter.claims.counts.invalid, 1, 'noted once, not on every pass');
  assert.equal(r.adapter.claims.items.has(`${NODE}-bad`), false);
  await stopAll(r);
});

test("kubernetes: disableResourcePooling gives the claimed device Harvester's per-device name <vendor>/<PCIDevice name> through the override annotation, and the pooled name back (never recomputed) when the claim goes", async () => {
  const r = await k8sRig();
  await drive(r, () => r.fake.list('pcidevices').length === 9, 'the PCIDevices');
  type Dev = {
    metadata: { annotations?: Record<string, string> };
    status: { resourceName: string };
  };
  const dev = (i: number): Dev => r.fake.get('pcidevices', nicName(i)) as unknown as Dev;
  // An adopted device whose pooled name differs from today's rule: that one must come back.
  await apiFor(r.fake, 'user').mergePatch(
    DEVICES,
    nicName(0),
    { status: { resourceName: 'intel.com/82574L_GIGABIT_NETWORK_CONNECTION' } },
    'status',
  );
  await claimNic(r, 0, {}, { disableResourcePooling: true });
  await claimNic(r, 1);
  await drive(r, () => cond(getClaim(r, 0), 'Ready')?.status === 'True', 'Ready=True');
  await drive(
    r,
    () => dev(0).status.resourceName === `intel.com/${nicName(0)}`,
    'the per-device name',
  );
  assert.deepEqual(dev(0).metadata.annotations, {
    'harvesterhci.io/pcideviceDriver': 'e1000e',
    'pcidevice.harvesterhci.io/override-resource-name': `intel.com/${nicName(0)}`,
    'passthru.dev/pooled-resource-name': 'intel.com/82574L_GIGABIT_NETWORK_CONNECTION',
  });
  assert.equal(dev(1).status.resourceName, 'unknown.com/10d3', 'a pooled claim keeps the pool');
  r.fake.resetStats();
  for (let i = 0; i < 4; i++) {
    await r.node.clock.advance(30_000);
    await new Promise((res) => setTimeout(res, 5));
  }
  assert.equal(r.fake.clientStats().get(`token:agent-${NODE}`)?.writes ?? 0, 0, 'at rest');
  await apiFor(r.fake, 'user').delete(CLAIMS, nicName(0));
  await drive(r, () => getClaim(r, 0) === undefined, 'the claim gone');
  await drive(
    r,
    () => dev(0).status.resourceName === 'intel.com/82574L_GIGABIT_NETWORK_CONNECTION',
    'the pooled name back',
  );
  assert.deepEqual(dev(0).metadata.annotations, { 'harvesterhci.io/pcideviceDriver': 'e1000e' });
  await stopAll(r);
});

test('kubernetes: an override-resource-name annotation passthru did not write (a vGPU type) wins and is left alone, with or without disableResourcePooling', async () => {
  const r = await k8sRig();
  await drive(r, () => r.fake.list('pcidevices').length === 9, 'the PCIDevices');
  await apiFor(r.fake, 'user').mergePatch(DEVICES, nicName(2), {
    metadata: { annotations: { 'pcidevice.harvesterhci.io/override-resource-name': 'x.com/Y' } },
  });
  await claimNic(r, 2, {}, { disableResourcePooling: true });
  const rn = (): string =>
    (r.fake.get('pcidevices', nicName(2)) as { status: { resourceName: string } }).status
      .resourceName;
  await drive(r, () => rn() === 'x.com/Y', 'the foreign override');
  await drive(r, () => cond(getClaim(r, 2), 'Ready')?.status === 'True', 'Ready=True');
  await apiFor(r.fake, 'user').delete(CLAIMS, nicName(2));
  await drive(r, () => getClaim(r, 2) === undefined, 'the claim gone');
  await r.node.clock.advance(30_000);
  await new Promise((res) => setTimeout(res, 20));
  assert.equal(rn(), 'x.com/Y');
  await stopAll(r);
});

test('kubernetes: PCIDevices are owned by their Node: adopted ones get the owner once, a NotReady node keeps everything, and deleting the Node (kubectl delete node) lets the garbage collector remove its PCIDevices while claims stay', async (t) => {
  const fake = await startFake();
  const node = fake.seed('nodes', {
    metadata: { name: NODE },
    status: { conditions: [{ type: 'Ready', status: 'True' }] },
  });
  const uid = (node.metadata as { uid: string }).uid;
  // One object left by the old controller, without an owner.
  fake.seed(
    'pcidevices',
    {
      metadata: { name: nicName(3), labels: { nodename: NODE } },
      status: { address: NIC[3], nodeName: NODE, resourceName: 'intel.com/82574L' },
    },
    true,
  );
  const r = await k8sRig({ fake });
  await claimNic(r, 0);
  const owned = (): number =>
    r.fake
      .list('pcidevices')
      .filter((d) =>
        (
          (d.metadata as { ownerReferences?: { kind: string; uid: string }[] }).ownerReferences ??
          []
        ).some((o) => o.kind === 'Node' && o.uid === uid),
      ).length;
  await drive(r, () => r.fake.list('pcidevices').length === 9 && owned() === 9, 'owned devices');
  await drive(r, () => cond(getClaim(r, 0), 'Ready')?.status === 'True', 'Ready=True');
  // NotReady is not gone: nothing is deleted, nothing written for it.
  const nodeUrl = `${r.fake.url}/api/v1/nodes/${NODE}`;
  const res = await fetch(`${nodeUrl}/status`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/merge-patch+json', authorization: 'Bearer kubelet' },
    body: JSON.stringify({ status: { conditions: [{ type: 'Ready', status: 'False' }] } }),
  });
  assert.equal(res.status, 200);
  r.fake.resetStats();
  for (let i = 0; i < 4; i++) {
    await r.node.clock.advance(30_000);
    await new Promise((res) => setTimeout(res, 5));
  }
  assert.equal(r.fake.list('pcidevices').length, 9);
  assert.equal(r.fake.clientStats().get(`token:agent-${NODE}`)?.writes ?? 0, 0);
  await stopAdapter(r);
  const kc = writeKubeconfig(r.fake.url);
  try {
    await exec('kubectl', ['--kubeconfig', kc, 'delete', 'node', NODE], { timeout: 30_000 });
  } catch (e) {
    if ((e as { code?: unknown }).code !== 'ENOENT' || process.env.CI === 'true') throw e;
    t.diagnostic('kubectl not installed: the Node is deleted through the client library');
    const del = await fetch(nodeUrl, { method: 'DELETE' });
    assert.equal(del.status, 200);
  }
  assert.equal(r.fake.list('pcidevices').length, 0, 'collected with their Node');
  assert.ok(getClaim(r, 0), 'a claim is never collected');
  await stop(r.node);
  await r.fake.stop();
});

test('kubernetes: a claim watch whose first response never comes is timed out and retried; the Node gets one ApiWatchStalled Warning and the claim binds once the watch answers', async () => {
  const fake = await startFake();
  fake.inject({
    status: 0,
    hang: true,
    times: 2,
    match: (q) => q.watch && q.path.endsWith('/pcideviceclaims'),
  });
  const r = await k8sRig({ fake });
  await drive(r, () => r.adapter.claims.counts.startTimeouts >= 1, 'the first timeout', 400, 100);
  await claimNic(r, 0);
  await drive(r, () => cond(getClaim(r, 0), 'Ready')?.status === 'True', 'Ready=True', 600, 100);
  assert.equal(r.adapter.claims.counts.startTimeouts, 2);
  const stalled = (
    r.fake.list('events') as { reason: string; message: string; involvedObject: { kind: string } }[]
  ).filter((e) => e.reason === 'ApiWatchStalled');
  assert.equal(stalled.length, 1, 'once per outage');
  const ev = stalled[0];
  assert.ok(ev);
  assert.equal(ev.involvedObject.kind, 'Node');
  assert.match(ev.message, /watch pcideviceclaims: no response in 10000 ms/);
  assert.equal(r.adapter.claims.lastError, null);
  await stopAll(r);
});
