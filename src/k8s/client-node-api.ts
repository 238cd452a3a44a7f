import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  Watch,
  type CoreV1Event,
} from '@kubernetes/client-node';
import {
  KubeError,
  type KubeApi,
  type KubeObject,
  type ListResult,
  type ResourceRef,
  type WatchEventType,
  type WatchHandle,
  type WatchOptions,
} from './kube-api.js';

function toKubeError(e: unknown): KubeError {
  if (e instanceof ApiException) {
    let reason = '';
    let message = `HTTP ${e.code}`;
    try {
      const body = (typeof e.body === 'string' ? JSON.parse(e.body) : e.body) as {
        reason?: string;
        message?: string;
      };
      reason = body.reason ?? '';
      message = body.message ?? message;
    } catch {
      // Not a Status object (a proxy's error page): the code is enough.
    }
    return new KubeError(e.code, reason, message);
  }
  return new KubeError(0, 'Unreachable', e instanceof Error ? e.message : String(e));
}

async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw toKubeError(e);
  }
}

function basePath(res: ResourceRef): string {
  const root = res.group === '' ? `/api/${res.version}` : `/apis/${res.group}/${res.version}`;
  return `${root}${res.namespace !== undefined ? `/namespaces/${res.namespace}` : ''}/${res.plural}`;
}

/** KubeApi over @kubernetes/client-node 1.4 (CustomObjectsApi, CoreV1Api for Events, Watch). */
export class ClientNodeApi implements KubeApi {
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;
  private readonly watcher: Watch;

  constructor(readonly kc: KubeConfig) {
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.core = kc.makeApiClient(CoreV1Api);
    this.watcher = new Watch(kc);
  }

  /** In-cluster when the service-account token is mounted, else the kubeconfig. */
  static fromEnvironment(kubeconfig: string | undefined): ClientNodeApi {
    const kc = new KubeConfig();
    if (kubeconfig !== undefined) kc.loadFromFile(kubeconfig);
    else kc.loadFromCluster();
    return new ClientNodeApi(kc);
  }

  list(
    res: ResourceRef,
    sel: { fieldSelector?: string; labelSelector?: string },
  ): Promise<ListResult> {
    return call(async () => {
      const out = (await (res.namespace !== undefined
        ? this.custom.listNamespacedCustomObject({ ...res, namespace: res.namespace, ...sel })
        : this.custom.listClusterCustomObject({ ...res, ...sel }))) as {
        items: KubeObject[];
        metadata: { resourceVersion: string };
      };
      return { items: out.items, resourceVersion: out.metadata.resourceVersion };
    });
  }

  async watch(
    res: ResourceRef,
    opts: WatchOptions,
    onEvent: (type: WatchEventType, obj: KubeObject) => void,
  ): Promise<WatchHandle> {
    let finish!: (err: unknown) => void;
    const done = new Promise<unknown>((r) => (finish = r));
    const params: Record<string, string | number | boolean> = {
      resourceVersion: opts.resourceVersion,
      allowWatchBookmarks: true,
      timeoutSeconds: opts.timeoutSeconds,
    };
    if (opts.fieldSelector !== undefined) params.fieldSelector = opts.fieldSelector;
    if (opts.labelSelector !== undefined) params.labelSelector = opts.labelSelector;
    const ac = await call(() =>
      this.watcher.watch(
        basePath(res),
        params,
        (type: string, obj: KubeObject) => {
          onEvent(type as WatchEventType, obj);
        },
        (err: unknown) => {
          finish(err ?? null);
        },
      ),
    );
    return {
      abort: () => {
        ac.abort();
        // client-node does not always call `done` for a watch we abort ourselves.
        finish(null);
      },
      done,
    };
  }

  get(res: ResourceRef, name: string): Promise<KubeObject> {
    if (res.group === '' && res.plural === 'nodes')
      return call(async () => (await this.core.readNode({ name })) as unknown as KubeObject);
    return call(
      async () =>
        (await (res.namespace !== undefined
          ? this.custom.getNamespacedCustomObject({ ...res, namespace: res.namespace, name })
          : this.custom.getClusterCustomObject({ ...res, name }))) as KubeObject,
    );
  }

  create(res: ResourceRef, obj: KubeObject): Promise<KubeObject> {
    if (res.group === '' && res.plural === 'events' && res.namespace !== undefined) {
      const ns = res.namespace;
      return call(
        async () =>
          (await this.core.createNamespacedEvent({
            namespace: ns,
            body: obj as unknown as CoreV1Event,
          })) as unknown as KubeObject,
      );
    }
    return call(
      async () =>
        (await (res.namespace !== undefined
          ? this.custom.createNamespacedCustomObject({
              ...res,
              namespace: res.namespace,
              body: obj,
            })
          : this.custom.createClusterCustomObject({ ...res, body: obj }))) as KubeObject,
    );
  }

  mergePatch(
    res: ResourceRef,
    name: string,
    patch: object,
    subresource?: 'status',
  ): Promise<KubeObject> {
    const opt = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
    const ns = res.namespace;
    return call(async () => {
      if (ns !== undefined) {
        const p = { ...res, namespace: ns, name, body: patch };
        return (await (subresource === 'status'
          ? this.custom.patchNamespacedCustomObjectStatus(p, opt)
          : this.custom.patchNamespacedCustomObject(p, opt))) as KubeObject;
      }
      const p = { ...res, name, body: patch };
      return (await (subresource === 'status'
        ? this.custom.patchClusterCustomObjectStatus(p, opt)
        : this.custom.patchClusterCustomObject(p, opt))) as KubeObject;
    });
  }

  delete(res: ResourceRef, name: string): Promise<void> {
    return call(async () => {
      await (res.namespace !== undefined
        ? this.custom.deleteNamespacedCustomObject({ ...res, namespace: res.namespace, name })
        : this.custom.deleteClusterCustomObject({ ...res, name }));
    });
  }
}
