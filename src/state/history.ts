import type { DomainEvent } from '../events/events.js';

/** Write failures of the history, for status: logged once, never swallowed silently. */
export interface HistoryHealth {
  writeErrors: number;
  lastError: string | null;
}

export interface History {
  append(e: DomainEvent): Promise<void>;
  /** The newest events, oldest first; at most the history's in-memory window. */
  recent(n: number): Promise<DomainEvent[]>;
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
  health(): HistoryHealth {
    return { writeErrors: 0, lastError: null };
  }
}
