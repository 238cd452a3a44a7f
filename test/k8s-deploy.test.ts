import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAll } from 'js-yaml';
import { generatedManifests } from '../src/k8s/manifests.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

test('the committed CRDs and policy under deploy/ equal what npm run gen:crds generates', () => {
  for (const [rel, text] of Object.entries(generatedManifests())) {
    const committed = fs.readFileSync(path.join(root, rel), 'utf8');
    assert.equal(committed, text, `${rel} is stale: run npm run gen:crds`);
  }
});

function kubectlAvailable(): boolean {
  return spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore' }).status === 0;
}

interface Doc {
  kind: string;
  metadata: { name: string; namespace?: string };
  spec?: {
    template?: {
      spec: {
        volumes: { hostPath?: { path: string } }[];
        containers: { env?: { name: string }[]; args?: string[] }[];
      };
    };
  };
}

test('kubectl kustomize deploy renders CRDs, policy, RBAC, ServiceAccount and a DaemonSet with the host paths', (t) => {
  if (!kubectlAvailable()) {
    if (process.env.CI === 'true') assert.fail('kubectl is required under CI=true');
    t.skip('kubectl not installed: cannot render the kustomize base');
    return;
  }
  const out = execFileSync('kubectl', ['kustomize', path.join(root, 'deploy')], {
    encoding: 'utf8',
  });
  const docs = loadAll(out) as Doc[];
  const kinds = docs.map((d) => `${d.kind}/${d.metadata.name}`).sort();
  assert.deepEqual(kinds, [
    'ClusterRole/passthru-agent',
    'ClusterRoleBinding/passthru-agent',
    'CustomResourceDefinition/pcideviceclaims.devices.harvesterhci.io',
    'CustomResourceDefinition/pcidevices.devices.harvesterhci.io',
    'DaemonSet/passthru-agent',
    'Namespace/passthru-system',
    'ServiceAccount/passthru-agent',
    'ValidatingAdmissionPolicy/pcideviceclaims.passthru.dev',
    'ValidatingAdmissionPolicyBinding/pcideviceclaims.passthru.dev',
  ]);
  const ds = docs.find((d) => d.kind === 'DaemonSet');
  const pod = ds?.spec?.template?.spec;
  assert.ok(pod);
  assert.deepEqual(pod.volumes.map((v) => v.hostPath?.path).sort(), [
    '/dev/vfio',
    '/lib/modules',
    '/run/udev',
    '/sys',
    '/var/lib/kubelet/device-plugins',
    '/var/lib/kubelet/pod-resources',
    '/var/lib/passthru',
  ]);
  const c = pod.containers[0];
  assert.ok(c);
  assert.deepEqual(c.args?.slice(0, 2), ['agent', '--kubernetes']);
  assert.ok(c.env?.some((e) => e.name === 'NODE_NAME'));
});
