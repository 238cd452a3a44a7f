import type { Logger } from '../util/logger.js';
import { KubeError, type KubeApi, type KubeObject } from './kube-api.js';
import { CLAIMS, DEVICES, KUBEVIRTS, KUBEVIRT_OWNED_ANNOTATION } from './resources.js';

export interface PermittedPci {
  pciVendorSelector: string;
  resourceName: string;
  externalResourceProvider?: boolean;
}

interface KubeVirtSpec {
  configuration?: {
    permittedHostDevices?: { pciHostDevices?: PermittedPci[] } & Record<string, unknown>;
  } & Record<string, unknown>;
}

const MAX_CONFLICT_RETRIES = 5;

/**
 * KubeVirt's permittedHostDevices.pciHostDevices: an entry per resource with a ready claim in the
 * cluster, removed when the last one goes. The list is atomic, so every change is a
 * resourceVersion-guarded patch of the whole list, retried on 409. Entries passthru did not add
 * (recorded in an annotation on the CR) are never touched.
 */
export class KubeVirtPermitter {
  private warned = false;

  constructor(
    private readonly api: KubeApi,
    private readonly log: Logger,
  ) {}

  /** Is any ready claim in the cluster (any node) using `resourceName`? */
  private async usedElsewhere(resourceName: string, exceptNode: string): Promise<boolean> {
    const claims = await this.api.list(CLAIMS, {});
    for (const c of claims.items) {
      const spec = (c.spec ?? {}) as { nodeName?: string };
      const st = (c.status ?? {}) as { passthroughEnabled?: boolean };
      if (spec.nodeName === exceptNode || st.passthroughEnabled !== true) continue;
      try {
        const dev = await this.api.get(DEVICES, c.metadata.name);
        if ((dev.status as { resourceName?: string } | undefined)?.resourceName === resourceName)
          return true;
      } catch (e) {
        if (!(e instanceof KubeError && e.status === 404)) throw e;
      }
    }
    return false;
  }

  /**
   * Makes the list hold `add` and not hold `remove` (only entries passthru owns, and only when
   * no other node still uses them). Returns false when there is no KubeVirt CR.
   */
  async apply(add: PermittedPci[], remove: string[], node: string): Promise<boolean> {
    const removable: string[] = [];
    for (const r of remove) if (!(await this.usedElsewhere(r, node))) removable.push(r);
    for (let attempt = 0; ; attempt++) {
      const list = await this.api.list(KUBEVIRTS, {});
      const kv = list.items[0];
      if (kv === undefined) {
        if (!this.warned) this.log.warn('no KubeVirt CR found: permittedHostDevices not updated');
        this.warned = true;
        return false;
      }
      const spec = (kv.spec ?? {}) as KubeVirtSpec;
      const current = spec.configuration?.permittedHostDevices?.pciHostDevices ?? [];
      const owned = new Set<string>(
        JSON.parse(kv.metadata.annotations?.[KUBEVIRT_OWNED_ANNOTATION] ?? '[]') as string[],
      );
      let next = [...current];
      for (const a of add) {
        if (next.some((e) => e.resourceName === a.resourceName)) continue;
        next.push({ ...a, externalResourceProvider: true });
        owned.add(a.resourceName);
      }
      for (const r of removable) {
        if (!owned.has(r)) continue;
        next = next.filter((e) => e.resourceName !== r);
        owned.delete(r);
      }
      if (JSON.stringify(next) === JSON.stringify(current)) return true;
      try {
        await this.patch(kv, spec, next, [...owned].sort());
        return true;
      } catch (e) {
        if (e instanceof KubeError && e.status === 409 && attempt < MAX_CONFLICT_RETRIES) continue;
        throw e;
      }
    }
  }

  private async patch(
    kv: KubeObject,
    spec: KubeVirtSpec,
    next: PermittedPci[],
    owned: string[],
  ): Promise<void> {
    const ns = kv.metadata.namespace ?? 'kubevirt';
    const rv = kv.metadata.resourceVersion;
    await this.api.mergePatch({ ...KUBEVIRTS, namespace: ns }, kv.metadata.name, {
      metadata: {
        ...(rv !== undefined ? { resourceVersion: rv } : {}),
        annotations: { [KUBEVIRT_OWNED_ANNOTATION]: JSON.stringify(owned) },
      },
      spec: {
        configuration: {
          permittedHostDevices: {
            ...(spec.configuration?.permittedHostDevices ?? {}),
            pciHostDevices: next,
          },
        },
      },
    });
  }
}
