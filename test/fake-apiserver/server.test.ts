import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import {
  ApiException,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  Watch,
} from '@kubernetes/client-node';
import { kubeconfigText, startFake, writeKubeconfig } from './load.js';
import type { FakeApiServer } from './server.js';

const exec = promisify(execFile);
const G = { group: 'devices.harvesterhci.io', version: 'v1beta1' };

function client(url: string, token = 'test'): CustomObjectsApi {
  const kc = new KubeConfig();
  kc.loadFromString(kubeconfigText(url, token));
  return kc.makeApiClient(CustomObjectsApi);
}

function claim(name: string, address: string, node = 'node1'): Record<string, unknown> {
  return {
    apiVersion: 'devices.harvesterhci.io/v1beta1',
    kind: 'PCIDeviceClaim',
    metadata: { name },
    spec: { address, nodeName: node, userName: 'admin' },
    status: { passthroughEnabled: true },
  };
}

async function code(
  p: Promise<unknown>,
): Promise<{ code: number; reason: string; message: string }> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ApiException) {
      const body = JSON.parse(String(e.body)) as { reason: string; message: string };
      return { code: e.code, reason: body.reason, message: body.message };
    }
    throw e;
  }
  assert.fail('expected an error');
}

async function withFake(
  fn: (s: FakeApiServer) => Promise<void>,
  historySize?: number,
): Promise<void> {
  const s = await startFake(historySize === undefined ? {} : { historySize });
  try {
    await fn(s);
  } finally {
    await s.stop();
  }
}

test('fake apiserver: create drops status (status subresource), a second create is 409 AlreadyExists, a stale PUT is 409 Conflict', () =>
  withFake(async (s) => {
    const api = client(s.url);
    const body = claim('node1-000001000', '0000:01:00.0');
    const created = (await api.createClusterCustomObject({
      ...G,
      plural: 'pcideviceclaims',
      body,
    })) as {
      metadata: { resourceVersion: string; generation: number };
      status?: unknown;
    };
    assert.equal(created.status, undefined);
    assert.equal(created.metadata.generation, 1);
    const dup = await code(
      api.createClusterCustomObject({ ...G, plural: 'pcideviceclaims', body }),
    );
    assert.deepEqual([dup.code, dup.reason], [409, 'AlreadyExists']);
    // A status write bumps the resourceVersion but not the generation.
    await api.patchClusterCustomObjectStatus(
      {
        ...G,
        plural: 'pcideviceclaims',
        name: 'node1-000001000',
        body: { status: { passthroughEnabled: true } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const after = s.get('pcideviceclaims', 'node1-000001000') as {
      metadata: { resourceVersion: string; generation: number };
      status: { passthroughEnabled: boolean };
    };
    assert.equal(after.metadata.generation, 1);
    assert.equal(after.status.passthroughEnabled, true);
    const stale = await code(
      api.replaceClusterCustomObject({
        ...G,
        plural: 'pcideviceclaims',
        name: 'node1-000001000',
        body: {
          ...body,
          metadata: { name: 'node1-000001000', resourceVersion: created.metadata.resourceVersion },
        },
      }),
    );
    assert.equal(stale.code, 409);
    assert.equal(stale.reason, 'Conflict');
    assert.match(stale.message, /the object has been modified; please apply your changes/);
  }));

test('fake apiserver: schema from the shipped CRD rejects a bad address and a spec change; the policy twin rejects a name that is not <node>-<address>', () =>
  withFake(async (s) => {
    const api = client(s.url);
    const bad = await code(
      api.createClusterCustomObject({
        ...G,
        plural: 'pcideviceclaims',
        body: claim('node1-0000010000', '0000:01:00.00'),
      }),
    );
    assert.equal(bad.code, 422);
    assert.match(bad.message, /spec.address/);
    const name = await code(
      api.createClusterCustomObject({
        ...G,
        plural: 'pcideviceclaims',
        body: claim('other', '0000:01:00.0'),
      }),
    );
    assert.equal(name.code, 422);
    assert.match(name.message, /name must equal the PCIDevice name/);
    await api.createClusterCustomObject({
      ...G,
      plural: 'pcideviceclaims',
      body: claim('node1-000001000', '0000:01:00.0'),
    });
    const moved = await code(
      api.patchClusterCustomObject(
        {
          ...G,
          plural: 'pcideviceclaims',
          name: 'node1-000001000',
          body: { spec: { address: '0000:02:00.0' } },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    );
    assert.equal(moved.code, 422);
    assert.match(moved.message, /spec.address is immutable/);
  }));

test('fake apiserver: field selectors accept metadata.name and selectableFields only (400 otherwise); label selectors filter', () =>
  withFake(async (s) => {
    const api = client(s.url);
    await api.createClusterCustomObject({
      ...G,
      plural: 'pcideviceclaims',
      body: claim('node1-000001000', '0000:01:00.0'),
    });
    await api.createClusterCustomObject({
      ...G,
      plural: 'pcideviceclaims',
      body: claim('node2-000001000', '0000:01:00.0', 'node2'),
    });
    const mine = (await api.listClusterCustomObject({
      ...G,
      plural: 'pcideviceclaims',
      fieldSelector: 'spec.nodeName=node1',
    })) as { items: { metadata: { name: string } }[] };
    assert.deepEqual(
      mine.items.map((i) => i.metadata.name),
      ['node1-000001000'],
    );
    const bad = await code(
      api.listClusterCustomObject({
        ...G,
        plural: 'pcideviceclaims',
        fieldSelector: 'spec.userName=admin',
      }),
    );
    assert.equal(bad.code, 400);
    assert.match(bad.message, /field label not supported: spec.userName/);
    s.seed('pcidevices', { metadata: { name: 'node1-000001000', labels: { nodename: 'node1' } } });
    s.seed('pcidevices', { metadata: { name: 'node2-000001000', labels: { nodename: 'node2' } } });
    const byLabel = (await api.listClusterCustomObject({
      ...G,
      plural: 'pcidevices',
      labelSelector: 'nodename in (node2)',
    })) as { items: { metadata: { name: string } }[] };
    assert.deepEqual(
      byLabel.items.map((i) => i.metadata.name),
      ['node2-000001000'],
    );
  }));

test('fake apiserver: delete with a finalizer sets deletionTimestamp, refuses new finalizers, and removes the object when the last one goes; json patch test guards', () =>
  withFake(async (s) => {
    const api = client(s.url);
    const body = claim('node1-000001000', '0000:01:00.0');
    (body.metadata as Record<string, unknown>).finalizers = ['passthru.dev/release'];
    await api.createClusterCustomObject({ ...G, plural: 'pcideviceclaims', body });
    await api.deleteClusterCustomObject({
      ...G,
      plural: 'pcideviceclaims',
      name: 'node1-000001000',
    });
    const dying = s.get('pcideviceclaims', 'node1-000001000') as {
      metadata: { deletionTimestamp?: string };
    };
    assert.ok(dying.metadata.deletionTimestamp);
    const more = await code(
      api.patchClusterCustomObject(
        {
          ...G,
          plural: 'pcideviceclaims',
          name: 'node1-000001000',
          body: { metadata: { finalizers: ['passthru.dev/release', 'x/y'] } },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    );
    assert.equal(more.code, 422);
    const guard = await code(
      api.patchClusterCustomObject({
        ...G,
        plural: 'pcideviceclaims',
        name: 'node1-000001000',
        body: [
          { op: 'test', path: '/metadata/finalizers', value: ['someone-else'] },
          { op: 'remove', path: '/metadata/finalizers' },
        ],
      }),
    );
    assert.equal(guard.code, 422);
    await api.patchClusterCustomObject({
      ...G,
      plural: 'pcideviceclaims',
      name: 'node1-000001000',
      body: [
        { op: 'test', path: '/metadata/finalizers', value: ['passthru.dev/release'] },
        { op: 'remove', path: '/metadata/finalizers' },
      ],
    });
    assert.equal(s.get('pcideviceclaims', 'node1-000001000'), undefined);
  }));

interface Seen {
  type: string;
  name: string | undefined;
  rv: string | undefined;
}

function watchInto(
  url: string,
  params: Record<string, string | boolean>,
  seen: Seen[],
): Promise<{ ended: Promise<unknown>; abort: () => void }> {
  const kc = new KubeConfig();
  kc.loadFromString(kubeconfigText(url));
  let end!: (e: unknown) => void;
  const ended = new Promise<unknown>((r) => (end = r));
  return new Watch(kc)
    .watch(
      '/apis/devices.harvesterhci.io/v1beta1/pcideviceclaims',
      params,
      (type, obj: { metadata?: { name?: string; resourceVersion?: string } }) => {
        seen.push({ type, name: obj.metadata?.name, rv: obj.metadata?.resourceVersion });
      },
      (e) => {
        end(e);
      },
    )
    .then((ac) => ({
      ended,
      abort: () => {
        ac.abort();
      },
    }));
}

async function until(pred: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !pred(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(pred(), `timed out waiting for ${what}`);
}

test('fake apiserver: watch from a resourceVersion replays later events, a delete is DELETED, bookmarks carry the RV, a too-old RV is 410 Expired', () =>
  withFake(async (s) => {
    const api = client(s.url);
    await api.createClusterCustomObject({
      ...G,
      plural: 'pcideviceclaims',
      body: claim('node1-000001000', '0000:01:00.0'),
    });
    const list = (await api.listClusterCustomObject({ ...G, plural: 'pcideviceclaims' })) as {
      metadata: { resourceVersion: string };
    };
    await api.createClusterCustomObject({
      ...G,
      plural: 'pcideviceclaims',
      body: claim('node1-000002000', '0000:02:00.0'),
    });
    const seen: Seen[] = [];
    const w = await watchInto(
      s.url,
      {
        resourceVersion: list.metadata.resourceVersion,
        allowWatchBookmarks: true,
        fieldSelector: 'metadata.name=node1-000002000',
      },
      seen,
    );
    await until(() => seen.length === 1, 'the replayed ADDED');
    assert.deepEqual(seen[0]?.type, 'ADDED');
    s.bookmark();
    await until(() => seen.length === 2, 'the bookmark');
    assert.deepEqual(seen[1], {
      type: 'BOOKMARK',
      name: undefined,
      rv: String(s.resourceVersion()),
    });
    await api.deleteClusterCustomObject({
      ...G,
      plural: 'pcideviceclaims',
      name: 'node1-000002000',
    });
    await until(() => seen.length === 3, 'the DELETED');
    assert.equal(seen[2]?.type, 'DELETED');
    w.abort();
    s.compact();
    const old: Seen[] = [];
    const w2 = await watchInto(s.url, { resourceVersion: list.metadata.resourceVersion }, old);
    await w2.ended;
    assert.deepEqual(
      old.map((e) => e.type),
      ['ERROR'],
    );
  }));

test('fake apiserver: injected 429 and 503 answer the next requests, then it recovers; writes are counted per client token', () =>
  withFake(async (s) => {
    const a = client(s.url, 'agent-a');
    const b = client(s.url, 'agent-b');
    s.inject({ status: 429, times: 1, retryAfterSeconds: 1 });
    s.inject({ status: 503, times: 1 });
    assert.equal((await code(a.listClusterCustomObject({ ...G, plural: 'pcidevices' }))).code, 429);
    assert.equal((await code(a.listClusterCustomObject({ ...G, plural: 'pcidevices' }))).code, 503);
    await a.createClusterCustomObject({
      ...G,
      plural: 'pcideviceclaims',
      body: claim('node1-000001000', '0000:01:00.0'),
    });
    await b.listClusterCustomObject({ ...G, plural: 'pcideviceclaims' });
    const st = s.clientStats();
    assert.equal(st.get('token:agent-a')?.writes, 1);
    assert.equal(st.get('token:agent-b')?.writes, 0);
    assert.equal(st.get('token:agent-b')?.reads, 1);
  }));

async function kubectlOk(): Promise<boolean> {
  try {
    await exec('kubectl', ['version', '--client']);
    return true;
  } catch {
    return false;
  }
}

test('kubectl against the fake: apply a claim as Harvester docs write it, get pcidevices and pcideviceclaims show the printer columns', async (t) => {
  if (!(await kubectlOk())) {
    if (process.env.CI === 'true') assert.fail('kubectl is required under CI=true');
    t.skip('kubectl not installed');
    return;
  }
  await withFake(async (s) => {
    const kc = writeKubeconfig(s.url);
    s.seed(
      'pcidevices',
      {
        metadata: { name: 'node1-000001000', labels: { nodename: 'node1' } },
        status: {
          address: '0000:01:00.0',
          vendorId: '8086',
          deviceId: '10d3',
          classId: '0200',
          nodeName: 'node1',
          resourceName: 'intel.com/82574L_GIGABIT_NETWORK_CONNECTION',
          description: 'Ethernet controller: Intel Corporation 82574L Gigabit Network Connection',
          kernelDriverInUse: 'e1000e',
          iommuGroup: '10',
        },
      },
      true,
    );
    const file = path.join(path.dirname(kc), 'claim.yaml');
    fs.writeFileSync(
      file,
      'apiVersion: devices.harvesterhci.io/v1beta1\nkind: PCIDeviceClaim\nmetadata:\n  name: node1-000001000\nspec:\n  address: "0000:01:00.0"\n  nodeName: node1\n  userName: admin\n',
    );
    const k = (...args: string[]) =>
      exec('kubectl', ['--kubeconfig', kc, '--request-timeout=10s', ...args], { timeout: 30_000 });
    const applied = await k('apply', '-f', file);
    assert.match(applied.stdout, /pcideviceclaim.devices.harvesterhci.io\/node1-000001000 created/);
    const devs = await k('get', 'pcidevices');
    const [head, row] = devs.stdout.split('\n');
    assert.match(
      head ?? '',
      /^NAME\s+ADDRESS\s+VENDOR ID\s+DEVICE ID\s+NODE NAME\s+DESCRIPTION\s+KERNEL DRIVER IN USE\s+AGE$/,
    );
    assert.match(
      row ?? '',
      /^node1-000001000\s+0000:01:00.0\s+8086\s+10d3\s+node1\s+Ethernet controller: Intel .*\s+e1000e\s+\d+s$/,
    );
    const claims = await k('get', 'pcideviceclaims');
    assert.match(
      claims.stdout.split('\n')[0] ?? '',
      /^NAME\s+ADDRESS\s+NODE NAME\s+USER NAME\s+KERNEL DRIVER ΤΟ UNBIND\s+PASSTHROUGH ENABLED\s+AGE$/,
    );
    // Over plain http kubectl sends no token: the fake counts it by user agent.
    const kubectl = [...s.clientStats().entries()].find(([c]) => c.startsWith('kubectl/'));
    assert.equal(kubectl?.[1].writes, 1, 'kubectl wrote once');
  });
});
