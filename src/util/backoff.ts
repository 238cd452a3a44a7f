/** Capped exponential backoff: the one formula every retry in passthru uses. */
export interface BackoffPolicy {
  baseMs: number;
  capMs: number;
}

/**
 * Delay before retry number `attempt` (1-based): base * 2^(attempt-1), capped, with jitter in
 * [50%, 100%] so that retries never run in lockstep with another component's loop.
 */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: () => number): number {
  const raw = Math.min(policy.capMs, policy.baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.max(1, Math.round(raw * (0.5 + 0.5 * random())));
}
