import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { writeKubeconfig } from './fake-apiserver/load.js';
import { NIC } from './helpers.js';
import { apiFor, drive, k8sRig, NODE, stopAll } from './k8s-rig.js';
import { CLAIMS, FINALIZER } from '../src/k8s/resources.js';

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
    },
  );
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
