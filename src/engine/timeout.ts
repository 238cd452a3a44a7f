import type { Clock } from '../host/clock.js';

export class TimeoutError extends Error {
  constructor(what: string, ms: number) {
    super(`${what} did not finish within ${ms} ms`);
    this.name = 'TimeoutError';
  }
}

/**
 * Races `work` against the clock. The work itself is not cancelled (a sysfs write blocked in the
 * kernel cannot be), only no longer awaited.
 */
export async function withTimeout<T>(
  clock: Clock,
  ms: number,
  what: string,
  work: Promise<T>,
): Promise<T> {
  const ac = new AbortController();
  const timer = clock.sleep(ms, ac.signal).then(
    () => {
      throw new TimeoutError(what, ms);
    },
    () => undefined as never,
  );
  try {
    return await Promise.race([work, timer]);
  } finally {
    ac.abort();
  }
}
