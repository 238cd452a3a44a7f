import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { load } from 'js-yaml';
import type { Crd } from '../../src/k8s/crds.js';
import { fromCrd } from './resources.js';
import { FakeApiServer, type FakeApiServerOptions } from './server.js';

export const repoRoot = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  '..',
);

/** The CRDs exactly as shipped in deploy/crds: the fake serves what a cluster would get. */
export function shippedCrds(): Crd[] {
  const dir = path.join(repoRoot, 'deploy', 'crds');
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => load(fs.readFileSync(path.join(dir, f), 'utf8')) as Crd);
}

export async function startFake(
  opts: Omit<FakeApiServerOptions, 'resources'> = {},
): Promise<FakeApiServer> {
  const s = new FakeApiServer({ ...opts, resources: shippedCrds().map(fromCrd) });
  await s.start();
  return s;
}

/** A kubeconfig for `server`; http needs insecure-skip-tls-verify for client-node. */
export function kubeconfigText(server: string, token = 'passthru-test'): string {
  return `apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: ${server}
    insecure-skip-tls-verify: true
users:
- name: u
  user:
    token: ${token}
contexts:
- name: fake
  context: {cluster: fake, user: u}
current-context: fake
`;
}

export function writeKubeconfig(server: string, token?: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'passthru-kube-'));
  const p = path.join(dir, 'config');
  fs.writeFileSync(p, kubeconfigText(server, token));
  return p;
}
