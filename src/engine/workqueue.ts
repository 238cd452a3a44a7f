import type { Clock } from '../host/clock.js';
import { backoffDelay, type BackoffPolicy } from '../util/backoff.js';

/**
 * A keyed work queue in the shape of client-go's: adding a key that is already queued is a
 * no-op, a key being processed is never handed out twice (adding it meanwhile queues it again
 * for after), and failures back off per key. Time comes from the injected clock.
 */
export class WorkQueue<K> {
  private readonly dueAt = new Map<K, number>();
  private readonly processing = new Set<K>();
  /** Keys added while being processed: they come back when done() is called. */
  private readonly dirty = new Map<K, number>();
  private readonly failures = new Map<K, number>();
  private wakeFn: (() => void) | null = null;

  constructor(
    private readonly clock: Clock,
    private readonly policy: BackoffPolicy,
    private readonly random: () => number,
  ) {}

  /** Ready now. */
  add(key: K): void {
    this.addAt(key, this.clock.now());
  }

  /** Ready after `ms`; an earlier deadline already queued wins. */
  addAfter(key: K, ms: number): void {
    this.addAt(key, this.clock.now() + Math.max(0, ms));
  }

  private addAt(key: K, at: number): void {
    if (this.processing.has(key)) {
      const prev = this.dirty.get(key);
      if (prev === undefined || at < prev) this.dirty.set(key, at);
      return;
    }
    const prev = this.dueAt.get(key);
    if (prev === undefined || at < prev) this.dueAt.set(key, at);
    this.wakeFn?.();
  }

  /** Records a failure and queues the key after its backoff; returns the delay. */
  addRateLimited(key: K): number {
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    const delay = backoffDelay(this.policy, n, this.random);
    this.addAfter(key, delay);
    return delay;
  }

  /** The key succeeded: its next failure starts from the base delay again. */
  forget(key: K): void {
    this.failures.delete(key);
  }

  /** Drops a key entirely (its object is gone). */
  remove(key: K): void {
    this.dueAt.delete(key);
    this.dirty.delete(key);
    this.failures.delete(key);
  }

  /** Every key due now, marked as processing. */
  take(): K[] {
    const now = this.clock.now();
    const out: K[] = [];
    for (const [k, at] of this.dueAt) {
      if (at <= now) {
        out.push(k);
        this.dueAt.delete(k);
        this.processing.add(k);
      }
    }
    return out;
  }

  done(key: K): void {
    this.processing.delete(key);
    const again = this.dirty.get(key);
    if (again !== undefined) {
      this.dirty.delete(key);
      this.addAt(key, again);
    }
  }

  /** Milliseconds until the next key is due (0 when one is due now), or null when empty. */
  nextDueIn(): number | null {
    let min: number | null = null;
    for (const at of this.dueAt.values()) if (min === null || at < min) min = at;
    return min === null ? null : Math.max(0, min - this.clock.now());
  }

  /** Called whenever a key is added, so a sleeping loop can wake. */
  onAdd(fn: (() => void) | null): void {
    this.wakeFn = fn;
  }
}
