import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSince } from './since.js';

test('--since reads durations back from now and timestamps; anything else is PT_ERR_INVALID_ARGUMENT', () => {
  const now = Date.parse('2026-11-27T12:00:00Z');
  assert.equal(parseSince('2h', now), now - 7_200_000);
  assert.equal(parseSince('7d', now), now - 7 * 86_400_000);
  assert.equal(parseSince('90s', now), now - 90_000);
  assert.equal(parseSince('2w', now), now - 14 * 86_400_000);
  assert.equal(parseSince('2026-11-20T08:00:00Z', now), Date.parse('2026-11-20T08:00:00Z'));
  assert.equal(parseSince('2026-11-20', now), Date.parse('2026-11-20'));
  for (const bad of ['', '2', 'h', '-2h', '2y', 'yesterday', '2026-13-45', '1e9d'])
    assert.throws(() => parseSince(bad, now), { code: 'PT_ERR_INVALID_ARGUMENT' }, bad);
});
