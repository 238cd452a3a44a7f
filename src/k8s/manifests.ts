import { dump } from 'js-yaml';
import { claimPolicy, claimPolicyBinding, pciDeviceClaimCrd, pciDeviceCrd } from './crds.js';

const HEADER =
  '# Generated from src/schema/k8s.ts and src/k8s/crds.ts by `npm run gen:crds`: do not edit.\n';

function yaml(docs: object[]): string {
  return HEADER + docs.map((d) => dump(d, { lineWidth: -1, noRefs: true })).join('---\n');
}

/** The generated files under deploy/, by path relative to the repository root. */
export function generatedManifests(): Record<string, string> {
  return {
    [`deploy/crds/${pciDeviceCrd.metadata.name}.yaml`]: yaml([pciDeviceCrd]),
    [`deploy/crds/${pciDeviceClaimCrd.metadata.name}.yaml`]: yaml([pciDeviceClaimCrd]),
    'deploy/policy.yaml': yaml([claimPolicy, claimPolicyBinding]),
  };
}
