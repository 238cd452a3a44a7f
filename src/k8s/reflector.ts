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
  /**
   * How long a list, or a watch's first response (its headers), may take. client-node 1.4's
   * `Watch.watch` awaits the response with no deadline of its own: a server (or a proxy) that
   * accepts the connection and never answers would otherwise hang this loop for good.
   */
  startTimeoutMs: number;
  backoffBaseMs: number;
  backoffCapMs: number;
  random: () => number;
  /**
   * Selectors to fall back to when the server refuses the first ones with 400 (a cluster
   * without selectableFields): the caller then filters the cache itself.
   */
  fallback?: { fieldSelector?: string; labelSelector?: string };
  /**
   * Checks each object as it arrives (list or watch): a string says why it is refused, and the
   * object is kept out of the cache, as if absent. The CRD validates too, but a cluster may
   * still run Harvester's schema-less CRDs, or an older version of ours.
   */
  validate?: (o: KubeObject) => string | null;
}

export const defaultReflectorOptions: Omit<ReflectorOptions, 'random'> = {
  timeoutSeconds: 300,
  startTimeoutMs: 10_000,
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
  readonly counts = {
    lists: 0,
    watches: 0,
    relists410: 0,
    failures: 0,
    startTimeouts: 0,
    invalid: 0,
  };
  /** Objects refused by `validate`, by name: why (logged once per resourceVersion). */
  readonly refused = new Map<string, string>();
  /** The last list/watch failure, cleared once a watch delivers again; for status and logs. */
  lastError: string | null = null;
  /** Consecutive failed attempts (the backoff exponent). */
  failing = 0;

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

  /** Into the cache when valid; out of it (and noted) when not. */
  private put(o: KubeObject): void {
    const why = this.opts.validate?.(o) ?? null;
    const name = o.metadata.name;
    if (why === null) {
      this.refused.delete(name);
      this.items.set(name, o);
      return;
    }
    this.items.delete(name);
    const note = `${why} (resourceVersion ${o.metadata.resourceVersion ?? '?'})`;
    if (this.refused.get(name) !== note) {
      this.counts.invalid++;
      this.log.warn({ name, err: why }, 'object ignored: it does not match the schema');
    }
    this.refused.set(name, note);
  }

  private useFallback = false;

  private selectors(): { fieldSelector?: string; labelSelector?: string } {
    if (this.useFallback) return this.opts.fallback ?? {};
    return {
      ...(this.opts.fieldSelector !== undefined ? { fieldSelector: this.opts.fieldSelector } : {}),
      ...(this.opts.labelSelector !== undefined ? { labelSelector: this.opts.labelSelector } : {}),
    };
  }

  /**
   * `p` or a KubeError(0, 'Timeout') after startTimeoutMs. A late answer is still handled by
   * `late` (a watch that finally opens is aborted, so no stream is left unread).
   */
  private async bounded<T>(
    what: string,
    p: Promise<T>,
    late: (v: T) => void,
    signal?: AbortSignal,
  ): Promise<T> {
    const ac = new AbortController();
    const stop = signal ? AbortSignal.any([ac.signal, signal]) : ac.signal;
    const state = { timedOut: false };
    const timer = this.clock.sleep(this.opts.startTimeoutMs, stop).then(
      () => {
        state.timedOut = true;
      },
      () => undefined,
    );
    try {
      const first = await Promise.race([p.then((v) => ({ v })), timer.then(() => null)]);
      if (first !== null) return first.v;
      p.then(late, () => undefined);
      if (!state.timedOut) throw new KubeError(0, 'Aborted', `${what} ${this.res.plural}: stopped`);
      this.counts.startTimeouts++;
      throw new KubeError(
        0,
        'Timeout',
        `${what} ${this.res.plural}: no response in ${this.opts.startTimeoutMs} ms`,
      );
    } finally {
      ac.abort();
    }
  }

  private async relist(signal: AbortSignal): Promise<void> {
    this.counts.lists++;
    const out = await this.bounded(
      'list',
      this.api.list(this.res, this.selectors()),
      () => {
        // A late list is stale by now: the next attempt lists again.
      },
      signal,
    );
    const before = JSON.stringify([...this.items.values()]);
    this.items.clear();
    this.refused.clear();
    for (const o of out.items) this.put(o);
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
          if (this.rv === '') await this.relist(signal);
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
          const msg = e instanceof Error ? e.message : String(e);
          this.lastError = msg;
          // A hanging API server is worth a warning every time; ordinary unreachability (the
          // node keeps working from its cache) only once per outage.
          if (e instanceof KubeError && e.reason === 'Timeout') {
            this.log.warn({ err: msg, attempt: failures + 1 }, 'list/watch start timed out');
            // The owner reports it (an Event on the Node): its health changed.
            if (failures === 0) this.onChange();
          } else if (failures === 0) this.log.warn({ err: msg }, 'list/watch failed; retrying');
          else this.log.debug({ err: msg }, 'list/watch failed');
        }
        if (aborted()) break;
        if (ok) {
          failures = 0;
          this.failing = 0;
          continue;
        }
        const base = Math.min(this.opts.backoffCapMs, this.opts.backoffBaseMs * 2 ** failures);
        failures++;
        this.failing = failures;
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
    // Set when the start timed out: events of a watch that opens too late are not ours.
    const abandoned = { yes: false };
    this.counts.watches++;
    const h = await this.bounded(
      'watch',
      this.api.watch(
        this.res,
        { resourceVersion: this.rv, timeoutSeconds: this.opts.timeoutSeconds, ...this.selectors() },
        (type, obj) => {
          if (abandoned.yes) return;
          seen.delivered = true;
          this.lastError = null;
          if (type === 'ERROR') {
            const code = (obj as { code?: number }).code;
            if (code === 410) seen.expired = true;
            return;
          }
          const rv = obj.metadata.resourceVersion;
          if (rv !== undefined) this.rv = rv;
          if (type === 'BOOKMARK') return;
          if (type === 'DELETED') {
            this.items.delete(obj.metadata.name);
            this.refused.delete(obj.metadata.name);
          } else this.put(obj);
          this.onChange();
        },
      ),
      (late) => {
        abandoned.yes = true;
        late.abort();
      },
      signal,
    );
    this.handle = h;
    // The server answered: whatever failed before is over.
    this.lastError = null;
    this.failing = 0;
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
