import type { Clock } from '../host/clock.js';
import type { Logger } from '../util/logger.js';
import {
  KubeError,
  type KubeApi,
  type KubeObject,
  type ResourceRef,
  type WatchHandle,
} from './kube-api.js';

export interface ReflectorOptions {
  fieldSelector?: string;
  labelSelector?: string;
  /** Server-side watch timeout: a half-open connection ends by this at the latest. */
  timeoutSeconds: number;
  backoffBaseMs: number;
  backoffCapMs: number;
  random: () => number;
  /**
   * Selectors to fall back to when the server refuses the first ones with 400 (a cluster
   * without selectableFields): the caller then filters the cache itself.
   */
  fallback?: { fieldSelector?: string; labelSelector?: string };
}

export const defaultReflectorOptions: Omit<ReflectorOptions, 'random'> = {
  timeoutSeconds: 300,
  backoffBaseMs: 500,
  backoffCapMs: 30_000,
};

/**
 * List+watch into a local cache, the way client-go's reflector does (client-node 1.4's informer
 * stops on any non-410 error): list once, watch from the list's resourceVersion with bookmarks,
 * resume from the last seen resourceVersion when a watch ends, relist on 410 Expired, and back
 * off with jitter while the API server is unreachable. The cache stays as last seen meanwhile.
 */
export class Reflector {
  readonly items = new Map<string, KubeObject>();
  private rv = '';
  private everSynced = false;
  private handle: WatchHandle | null = null;
  private readonly opts: ReflectorOptions;
  private readonly log: Logger;
  /** Counters for tests and the benchmark. */
  readonly counts = { lists: 0, watches: 0, relists410: 0, failures: 0 };

  constructor(
    private readonly api: KubeApi,
    private readonly res: ResourceRef,
    private readonly clock: Clock,
    logger: Logger,
    private readonly onChange: () => void,
    opts: Partial<ReflectorOptions> & { random: () => number },
  ) {
    this.opts = { ...defaultReflectorOptions, ...opts };
    this.log = logger.child({ component: 'reflector', resource: res.plural });
  }

  /** True once a list succeeded: before that the cache says nothing about the cluster. */
  get synced(): boolean {
    return this.everSynced;
  }

  /** Our own writes go into the cache at once, so the next pass does not repeat them. */
  observe(obj: KubeObject): void {
    this.items.set(obj.metadata.name, obj);
  }

  forget(name: string): void {
    this.items.delete(name);
  }

  private useFallback = false;

  private selectors(): { fieldSelector?: string; labelSelector?: string } {
    if (this.useFallback) return this.opts.fallback ?? {};
    return {
      ...(this.opts.fieldSelector !== undefined ? { fieldSelector: this.opts.fieldSelector } : {}),
      ...(this.opts.labelSelector !== undefined ? { labelSelector: this.opts.labelSelector } : {}),
    };
  }

  private async relist(): Promise<void> {
    this.counts.lists++;
    const out = await this.api.list(this.res, this.selectors());
    const before = JSON.stringify([...this.items.values()]);
    this.items.clear();
    for (const o of out.items) this.items.set(o.metadata.name, o);
    this.rv = out.resourceVersion;
    this.everSynced = true;
    if (JSON.stringify([...this.items.values()]) !== before || this.counts.lists === 1) {
      this.onChange();
    }
  }

  async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    const onAbort = (): void => this.handle?.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    const aborted = (): boolean => signal.aborted;
    try {
      while (!aborted()) {
        let ok = false;
        try {
          if (this.rv === '') await this.relist();
          ok = await this.watchOnce(signal);
        } catch (e) {
          if (
            e instanceof KubeError &&
            e.status === 400 &&
            this.opts.fallback &&
            !this.useFallback
          ) {
            this.log.warn({ err: e.message }, 'selector refused: falling back');
            this.useFallback = true;
            this.rv = '';
            continue;
          }
          if (e instanceof KubeError && e.status === 410) {
            this.rv = '';
            this.counts.relists410++;
            continue;
          }
          this.counts.failures++;
          this.log.debug({ err: e instanceof Error ? e.message : String(e) }, 'list/watch failed');
        }
        if (aborted()) break;
        if (ok) {
          failures = 0;
          continue;
        }
        const base = Math.min(this.opts.backoffCapMs, this.opts.backoffBaseMs * 2 ** failures);
        failures++;
        await this.clock.sleep(base / 2 + (this.opts.random() * base) / 2, signal).catch(() => {
          // Aborted: the loop condition ends it.
        });
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** One watch; true when it delivered something and ended cleanly (resume at once). */
  private async watchOnce(signal: AbortSignal): Promise<boolean> {
    const seen = { delivered: false, expired: false };
    this.counts.watches++;
    const h = await this.api.watch(
      this.res,
      { resourceVersion: this.rv, timeoutSeconds: this.opts.timeoutSeconds, ...this.selectors() },
      (type, obj) => {
        seen.delivered = true;
        if (type === 'ERROR') {
          const code = (obj as { code?: number }).code;
          if (code === 410) seen.expired = true;
          return;
        }
        const rv = obj.metadata.resourceVersion;
        if (rv !== undefined) this.rv = rv;
        if (type === 'BOOKMARK') return;
        if (type === 'DELETED') this.items.delete(obj.metadata.name);
        else this.items.set(obj.metadata.name, obj);
        this.onChange();
      },
    );
    this.handle = h;
    if (signal.aborted) h.abort();
    // Our own deadline as well as the server's: a half-open connection (no FIN, no bookmarks)
    // would otherwise leave the cache stale forever. Jittered so nodes do not re-watch in step.
    const deadline = new AbortController();
    const ms = this.opts.timeoutSeconds * 1000 * (1 + this.opts.random() * 0.1);
    const t = { out: false };
    void this.clock.sleep(ms, deadline.signal).then(
      () => {
        t.out = true;
        h.abort();
      },
      () => undefined,
    );
    const err = await h.done;
    deadline.abort();
    this.handle = null;
    if (seen.expired) throw new KubeError(410, 'Expired', 'watch expired');
    if (t.out) return !signal.aborted;
    if (err !== null && err !== undefined) return false;
    return seen.delivered;
  }
}
