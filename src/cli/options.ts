import { PtError } from '../errors.js';

/**
 * A whole number of milliseconds within [min, max]. `--resync-ms 0` made the engine loop
 * without yielding (adversarial finding 11), and values past 2^31-1 become a 1 ms timer in
 * Node (TimeoutOverflowWarning): both are refused here, before anything starts.
 */
export function msOption(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = /^\d{1,10}$/.test(v) ? Number(v) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max)
      throw new PtError(
        'PT_ERR_INVALID_ARGUMENT',
        `${name} takes a whole number of milliseconds from ${min} to ${max}, not ${JSON.stringify(v)}`,
      );
    return n;
  };
}

/** A whole count within [min, max] (sim pokes' --times). */
export function countOption(name: string, min: number, max: number) {
  return (v: string): number => {
    const n = /^\d{1,10}$/.test(v) ? Number(v) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max)
      throw new PtError(
        'PT_ERR_INVALID_ARGUMENT',
        `${name} takes a whole number from ${min} to ${max}, not ${JSON.stringify(v)}`,
      );
    return n;
  };
}

/** One of a fixed set of words; anything else is PT_ERR_INVALID_ARGUMENT (exit 2), not a usage error. */
export function oneOf(name: string, allowed: readonly string[]) {
  return (v: string): string => {
    if (!allowed.includes(v))
      throw new PtError(
        'PT_ERR_INVALID_ARGUMENT',
        `${name} takes one of ${allowed.join(', ')}, not ${JSON.stringify(v)}`,
      );
    return v;
  };
}
