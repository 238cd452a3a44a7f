import type { DomainEvent } from '../events/events.js';

export interface History {
  append(e: DomainEvent): Promise<void>;
  recent(n: number): Promise<DomainEvent[]>;
}

export class MemoryHistory implements History {
  readonly events: DomainEvent[] = [];
  append(e: DomainEvent): Promise<void> {
    this.events.push(e);
    return Promise.resolve();
  }
  recent(n: number): Promise<DomainEvent[]> {
    return Promise.resolve(this.events.slice(-n));
  }
}
