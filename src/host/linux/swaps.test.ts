import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { escapeOctal } from './mountinfo.js';
import { parseSwaps } from './swaps.js';

test('/proc/swaps: every area (escaped names, partitions and files) parses back; the header is skipped', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          file: fc.stringMatching(/^\/[a-z0-9 \t\\_-]{1,16}$/),
          type: fc.constantFrom('partition', 'file'),
        }),
        { maxLength: 6 },
      ),
      (areas) => {
        const text = [
          'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority',
          // The kernel pads the name to 40 columns with at least one space (swap_show).
          ...areas.map((a) => {
            const name = escapeOctal(a.file);
            const pad = ' '.repeat(Math.max(1, 40 - name.length));
            return `${name}${pad}${a.type}\t\t999420\t\t0\t\t-2`;
          }),
        ].join('\n');
        const parsed = parseSwaps(text);
        assert.deepEqual(parsed.bad, []);
        assert.deepEqual(
          parsed.swaps,
          areas.map((a) => ({ ...a })),
        );
      },
    ),
  );
});

test('/proc/swaps: a line with fewer than five fields is reported, not guessed at', () => {
  const parsed = parseSwaps('Filename Type Size Used Priority\n/dev/sda2 partition\n');
  assert.deepEqual(parsed, { swaps: [], bad: ['/dev/sda2 partition'] });
});
