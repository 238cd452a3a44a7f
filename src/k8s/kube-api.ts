/**
 * The narrow slice of the Kubernetes API the adapter uses. The production implementation is
 * client-node-api.ts (@kubernetes/client-node 1.4); tests run it against the fake API server.
 */

export type KubeObject = {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    generation?: number;
    deletionTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    finalizers?: string[];
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string }[];
  };
} & Record<string, unknown>;

export interface ResourceRef {
  group: string;
  version: string;
  plural: string;
  namespace?: string;
}

export interface ListResult {
  items: KubeObject[];
  resourceVersion: string;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WatchOptions {
  resourceVersion: string;
  fieldSelector?: string;
  labelSelector?: string;
  timeoutSeconds: number;
}

export interface WatchHandle {
  abort(): void;
  /** Resolves when the stream ends: with the error, or null for a clean end. */
  done: Promise<unknown>;
}

/** An API answer other than 2xx, or no answer at all (status 0). */
export class KubeError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

export interface KubeApi {
  list(
    res: ResourceRef,
    sel: { fieldSelector?: string; labelSelector?: string },
  ): Promise<ListResult>;
  watch(
    res: ResourceRef,
    opts: WatchOptions,
    onEvent: (type: WatchEventType, obj: KubeObject) => void,
  ): Promise<WatchHandle>;
  get(res: ResourceRef, name: string): Promise<KubeObject>;
  create(res: ResourceRef, obj: KubeObject): Promise<KubeObject>;
  /** JSON merge patch; a metadata.resourceVersion in the body makes it conditional (409). */
  mergePatch(
    res: ResourceRef,
    name: string,
    patch: object,
    subresource?: 'status',
  ): Promise<KubeObject>;
  delete(res: ResourceRef, name: string): Promise<void>;
}
