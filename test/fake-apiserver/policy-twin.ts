import type { Obj } from './selectors.js';

/**
 * A twin, in TypeScript, of the ValidatingAdmissionPolicy in deploy/policy.yaml (src/k8s/crds.ts
 * claimPolicy): the fake cannot run CEL. Keep the two in step; the policy's expressions are the
 * truth on a real cluster. Returns the denial message, or null when admitted.
 */
export function admitClaim(op: 'CREATE' | 'UPDATE', obj: Obj, old: Obj | undefined): string | null {
  const spec = (obj.spec ?? {}) as Record<string, unknown>;
  const addr = typeof spec.address === 'string' ? spec.address : '';
  const node = typeof spec.nodeName === 'string' ? spec.nodeName : '';
  const rawName = (obj.metadata as Obj | undefined)?.name;
  const name = typeof rawName === 'string' ? rawName : '';
  const deny = (msg: string): string =>
    `admission webhook "validatingadmissionpolicy" denied: ValidatingAdmissionPolicy 'pcideviceclaims.passthru.dev' with binding 'pcideviceclaims.passthru.dev' denied request: ${msg}`;
  if (op === 'CREATE') {
    if (!/^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}[.][0-7]$/.test(addr)) {
      return deny(`spec.address ${addr} is not DDDD:BB:DD.F`);
    }
    if (node === '') return deny('spec.nodeName is required');
    if (name !== `${node}-${addr.replace(/[:.]/g, '')}`) {
      return deny("name must equal the PCIDevice name <nodeName>-<address without ':' and '.'>");
    }
  }
  if (
    op === 'UPDATE' &&
    old !== undefined &&
    JSON.stringify(obj.spec) !== JSON.stringify(old.spec)
  ) {
    return deny('spec is immutable');
  }
  return null;
}
