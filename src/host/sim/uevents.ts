import type { Clock } from '../clock.js';
import type { Uevent } from '../port.js';

/** Delivers the simulated kernel's uevents, optionally late (SimTiming.ueventMs). */
export class SimUevents {
  private readonly listeners = new Set<(e: Uevent) => void>();

  constructor(
    private readonly clock: Clock,
    private readonly delayMs: number,
  ) {}

  subscribe(fn: (e: Uevent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(e: Uevent): void {
    const props: Record<string, string> = { ...e.props, ACTION: e.action, DEVPATH: e.devpath };
    if (e.subsystem !== undefined) props.SUBSYSTEM = e.subsystem;
    if (e.driver !== undefined) props.DRIVER = e.driver;
    const ev: Uevent = { ...e, props };
    const deliver = (): void => {
      for (const fn of this.listeners) fn(ev);
    };
    if (this.delayMs > 0) void this.clock.sleep(this.delayMs).then(deliver);
    else deliver();
  }
}
