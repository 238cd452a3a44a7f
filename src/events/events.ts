import type { PciAddress } from '../pci/address.js';
import type { Logger } from '../util/logger.js';

/**
 * Domain events. The core emits them; logs, history, metrics (and later Kubernetes Events)
 * subscribe. Times are the injected clock's milliseconds.
 */
export type DomainEvent =
  | {
      type: 'claim.added';
      at: number;
      address: PciAddress;
      withGroup: boolean;
      force: boolean;
      /** Who asked: cli, api, kubernetes. */
      source?: string;
    }
  /** A claim's state changed (ready, pending, waiting, busy, refused, missing, changed, error). */
  | {
      type: 'claim.state';
      at: number;
      address: PciAddress;
      state: string;
      members: PciAddress[];
      code?: string;
      message?: string;
    }
  | {
      type: 'claim.accepted_change';
      at: number;
      address: PciAddress;
      vendorId: string;
      deviceId: string;
    }
  /** The user gave up restoring a device (release --abandon, or a replaced card). */
  | {
      type: 'ledger.abandoned';
      at: number;
      address: PciAddress;
      originalDriver: string | null;
      reason: string;
    }
  | { type: 'claim.removed'; at: number; address: PciAddress }
  | { type: 'device.bound'; at: number; address: PciAddress; from: string | null; ms: number }
  | {
      type: 'device.bind_failed';
      at: number;
      address: PciAddress;
      code: string;
      message: string;
      rolledBack: boolean;
    }
  | {
      type: 'device.released';
      at: number;
      address: PciAddress;
      driver: string | null;
      expected: string | null;
      note?: string;
    }
  | {
      type: 'device.release_failed';
      at: number;
      address: PciAddress;
      code: string;
      message: string;
    }
  | { type: 'device.drift'; at: number; address: PciAddress; driver: string | null }
  | { type: 'claim.refused'; at: number; address: PciAddress; code: string; message: string }
  | {
      type: 'module.lost';
      at: number;
      modules: string[];
      states: Record<string, string>;
      via: string;
      /** The devices that were verified on vfio-pci when the loss was seen. */
      devices?: PciAddress[];
    }
  | {
      type: 'module.reload_failed';
      at: number;
      module: string;
      attempt: number;
      message: string;
      retryInMs: number;
    }
  | { type: 'module.reloaded'; at: number; modules: string[]; attempts: number }
  | { type: 'recovery.completed'; at: number; recovery: Recovery };

export interface Recovery {
  /** When the loss was first seen (detection). */
  detectedAt: number;
  modules: string[];
  via: string;
  reloadedAt: number | null;
  /** When every claimed device was verified on vfio-pci again. */
  reboundAt: number | null;
  devices: number;
  attempts: number;
  detectToReloadMs: number | null;
  detectToReboundMs: number | null;
}

export type Listener = (e: DomainEvent) => void;

/** Subscriber failures, for status: each failing subscriber is logged once, then counted. */
export interface BusHealth {
  subscriberErrors: number;
  lastError: string | null;
}

export interface EventBusOptions {
  /**
   * Called on the first failure of each subscriber (later ones are only counted, so a
   * subscriber that fails on every event does not flood the log). Give it the logger.
   */
  onError?: (err: unknown, event: DomainEvent) => void;
}

export class EventBus {
  private listeners = new Set<Listener>();
  private readonly reported = new WeakSet<Listener>();
  private errors = 0;
  private lastError: string | null = null;

  constructor(private readonly opts: EventBusOptions = {}) {}

  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(e: DomainEvent): void {
    for (const fn of this.listeners) {
      try {
        fn(e);
      } catch (err) {
        // A failing subscriber must not stop the core or the other subscribers; it is
        // reported, never swallowed.
        this.errors++;
        this.lastError = `${e.type}: ${err instanceof Error ? err.message : String(err)}`;
        if (!this.reported.has(fn)) {
          this.reported.add(fn);
          this.opts.onError?.(err, e);
        }
      }
    }
  }

  health(): BusHealth {
    return { subscriberErrors: this.errors, lastError: this.lastError };
  }
}

/** The usual onError: one error line per failing subscriber, with the event that failed. */
export function logSubscriberErrors(log: Logger): (err: unknown, e: DomainEvent) => void {
  return (err, e) => {
    log.error(
      { event: e.type, err: err instanceof Error ? err.message : String(err) },
      'event subscriber failed (later failures of it are counted in status)',
    );
  };
}
