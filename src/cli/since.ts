import { PtError } from '../errors.js';

const UNIT_MS: Record<string, number> = {
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/**
 * `--since`: a duration back from now (`90s`, `30m`, `2h`, `7d`, `2w`) or a timestamp Date can
 * read (`2026-11-20`, `2026-11-20T08:00:00Z`). Milliseconds since the epoch.
 */
export function parseSince(text: string, now: number): number {
  const t = text.trim();
  const m = /^(\d{1,9})([smhdw])$/.exec(t);
  if (m) return now - Number(m[1]) * (UNIT_MS[m[2] ?? ''] ?? 0);
  if (/^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(t)) {
    const at = Date.parse(t.replace(' ', 'T'));
    if (!Number.isNaN(at)) return at;
  }
  throw new PtError(
    'PT_ERR_INVALID_ARGUMENT',
    `--since takes a duration like 2h or 7d, or a timestamp like 2026-11-20T08:00:00Z, not ${JSON.stringify(text)}`,
  );
}
