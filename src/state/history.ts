import type { DomainEvent } from '../events/events.js';
import { addressesOf } from '../events/story.js';

/** Write failures of the history, for status: logged once, never swallowed silently. */
export interface HistoryHealth {
  writeErrors: number;
  lastError: string | null;
}

/** Events of one device that were folded out of the detailed history: counted, by type. */
export interface OlderEvents {
  from: number;
  to: number;
  /** By event type; refusals also as `claim.refused:CODE`. */
  counts: Record<string, number>;
}

/** Everything the history holds, with what was only kept as counts. */
export interface HistoryRead {
  /** The detailed history (the files), oldest first. */
  events: DomainEvent[];
  /**
   * Per device address, its events from rotated-out files, oldest first: all older than
   * `events`. Kept per device (an event about several devices is under each) so a device's
   * counts never include events that its own share only counts in `older`.
   */
  digest: Record<string, DomainEvent[]>;
  /** Per device address. */
  older: Record<string, OlderEvents>;
}

export interface History {
  append(e: DomainEvent): Promise<void>;
  /** The newest events, oldest first; at most the history's in-memory window. */
  recent(n: number): Promise<DomainEvent[]>;
  /** The whole history, for `passthru why`. */
  readAll(): Promise<HistoryRead>;
  health(): HistoryHealth;
}

export class MemoryHistory implements History {
  readonly events: DomainEvent[] = [];
  append(e: DomainEvent): Promise<void> {
    this.events.push(e);
    return Promise.resolve();
  }
  recent(n: number): Promise<DomainEvent[]> {
    return Promise.resolve(n > 0 ? this.events.slice(-n) : []);
  }
  readAll(): Promise<HistoryRead> {
    return Promise.resolve({ events: [...this.events], digest: {}, older: {} });
  }
  health(): HistoryHealth {
    return { writeErrors: 0, lastError: null };
  }
}

export const DIGEST_FORMAT = 'passthru-history-digest/1';

/** One device's share of the rotated-out history. */
export interface DeviceDigest {
  firstAt: number;
  lastAt: number;
  /** Its newest events, oldest first; the newest claim.added is kept whatever its age. */
  events: DomainEvent[];
  older: OlderEvents | null;
}

/**
 * What survives of rotated-out history files: per device, its newest events and counts of the
 * older ones, so `passthru why` can tell weeks of a device's life from a bounded file. Events
 * about no device (module reloads, recovery summaries) are not kept: the device's own events
 * (the loss with its devices, the claim turning ready) carry its part of them.
 */
export interface HistoryDigest {
  format: typeof DIGEST_FORMAT;
  devices: Record<string, DeviceDigest>;
}

export interface DigestLimits {
  eventsPerDevice: number;
  devices: number;
}

export const DEFAULT_DIGEST_LIMITS: DigestLimits = { eventsPerDevice: 200, devices: 256 };

export function emptyDigest(): HistoryDigest {
  return { format: DIGEST_FORMAT, devices: {} };
}

function countKey(e: DomainEvent): string[] {
  return e.type === 'claim.refused' ? [e.type, `${e.type}:${e.code}`] : [e.type];
}

function dropOldest(d: DeviceDigest, limit: number): void {
  while (d.events.length > limit) {
    let lastClaim = -1;
    d.events.forEach((e, i) => {
      if (e.type === 'claim.added') lastClaim = i;
    });
    // The oldest event that is not the newest claim: who asked for the claim stays known.
    const i = lastClaim === 0 ? 1 : 0;
    const [gone] = d.events.splice(i, 1);
    if (!gone) return;
    const o = (d.older ??= { from: gone.at, to: gone.at, counts: {} });
    o.from = Math.min(o.from, gone.at);
    o.to = Math.max(o.to, gone.at);
    for (const k of countKey(gone)) o.counts[k] = (o.counts[k] ?? 0) + 1;
  }
}

/** Pure: the digest with `events` (oldest first) folded in, within the limits. */
export function foldDigest(
  digest: HistoryDigest,
  events: readonly DomainEvent[],
  limits: DigestLimits = DEFAULT_DIGEST_LIMITS,
): HistoryDigest {
  const out: HistoryDigest = structuredClone(digest);
  for (const e of events) {
    for (const a of addressesOf(e)) {
      const d = (out.devices[a] ??= { firstAt: e.at, lastAt: e.at, events: [], older: null });
      d.firstAt = Math.min(d.firstAt, e.at);
      d.lastAt = Math.max(d.lastAt, e.at);
      d.events.push(e);
      dropOldest(d, limits.eventsPerDevice);
    }
  }
  const byAge = Object.entries(out.devices).sort((x, y) => x[1].lastAt - y[1].lastAt);
  // Devices not heard of for longest go first: the bus has a bounded number of them, a host
  // with hotplug churn (VFs coming and going) should not grow the file forever.
  for (const [a] of byAge.slice(0, Math.max(0, byAge.length - limits.devices)))
    Reflect.deleteProperty(out.devices, a);
  return out;
}

/** The digest as a HistoryRead without file events. */
export function digestRead(digest: HistoryDigest): HistoryRead {
  const out: HistoryRead = { events: [], digest: {}, older: {} };
  for (const [a, d] of Object.entries(digest.devices)) {
    out.digest[a] = d.events;
    if (d.older) out.older[a] = d.older;
  }
  return out;
}
