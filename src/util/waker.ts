import type { Clock } from '../host/clock.js';

/**
 * A sleep that ends early on wake() or when the loop's signal aborts; never rejects. The
 * engine and the keeper loops sleep on one each, and triggers wake them.
 */
export class Waker {
  private current: AbortController | null = null;

  async sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
    const ac = new AbortController();
    const onAbort = (): void => {
      ac.abort();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    this.current = ac;
    try {
      await clock.sleep(ms, ac.signal).catch(() => undefined);
    } finally {
      this.current = null;
      signal.removeEventListener('abort', onAbort);
    }
  }

  wake(): void {
    this.current?.abort();
  }
}
