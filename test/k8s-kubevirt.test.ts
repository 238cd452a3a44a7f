import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KubeVirtPermitter } from '../src/k8s/kubevirt.js';
import type { KubeApi } from '../src/k8s/kube-api.js';
import { KUBEVIRTS } from '../src/k8s/resources.js';
import { silentLogger } from '../src/util/logger.js';
import { startFake } from './fake-apiserver/load.js';
import { apiFor } from './k8s-rig.js';

test('KubeVirt permittedHostDevices: a concurrent write makes the guarded patch 409; the retry keeps the other writer and the entries passthru did not add', async () => {
  const fake = await startFake();
  const foreign = {
    pciVendorSelector: '10de:1eb8',
    resourceName: 'nvidia.com/T4',
    externalResourceProvider: true,
  };
  fake.seed('kubevirts', {
    metadata: { name: 'kubevirt', namespace: 'kubevirt' },
    spec: { configuration: { permittedHostDevices: { pciHostDevices: [foreign] } } },
  });
  const mine = apiFor(fake, 'agent');
  const other = apiFor(fake, 'other');
  let patches = 0;
  const racing: KubeApi = {
    list: (r, s) => mine.list(r, s),
    watch: (r, o, f) => mine.watch(r, o, f),
    get: (r, n) => mine.get(r, n),
    create: (r, o) => mine.create(r, o),
    delete: (r, n) => mine.delete(r, n),
    mergePatch: async (r, n, p, sub) => {
      if (patches++ === 0) {
        // Someone else writes between our read and our write.
        await other.mergePatch({ ...KUBEVIRTS, namespace: 'kubevirt' }, 'kubevirt', {
          metadata: { labels: { touched: 'yes' } },
        });
      }
      return mine.mergePatch(r, n, p, sub);
    },
  };
  const kv = new KubeVirtPermitter(racing, silentLogger());
  assert.equal(
    await kv.apply([{ pciVendorSelector: '8086:10d3', resourceName: 'intel.com/X' }], [], 'node1'),
    true,
  );
  assert.equal(patches, 2, 'one conflict, one retry');
  const cr = fake.get('kubevirts', 'kubevirt', 'kubevirt') as {
    metadata: { labels: Record<string, string> };
    spec: { configuration: { permittedHostDevices: { pciHostDevices: unknown[] } } };
  };
  assert.equal(cr.metadata.labels.touched, 'yes');
  assert.deepEqual(cr.spec.configuration.permittedHostDevices.pciHostDevices, [
    foreign,
    { pciVendorSelector: '8086:10d3', resourceName: 'intel.com/X', externalResourceProvider: true },
  ]);
  // Removing what passthru never added is a no-op.
  await kv.apply([], ['nvidia.com/T4'], 'node1');
  assert.equal(
    (fake.get('kubevirts', 'kubevirt', 'kubevirt') as typeof cr).spec.configuration
      .permittedHostDevices.pciHostDevices.length,
    2,
  );
  await fake.stop();
});

test('KubeVirt permittedHostDevices: no KubeVirt CR is a warning, not an error', async () => {
  const fake = await startFake();
  const kv = new KubeVirtPermitter(apiFor(fake, 'agent'), silentLogger());
  assert.equal(
    await kv.apply([{ pciVendorSelector: '8086:10d3', resourceName: 'intel.com/X' }], [], 'n'),
    false,
  );
  await fake.stop();
});
