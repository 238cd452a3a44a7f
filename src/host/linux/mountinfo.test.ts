import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  escapeOctal,
  MountIndex,
  mountHolding,
  mountOptions,
  parseMountinfo,
  splitLowerdirs,
  type MountInfo,
} from './mountinfo.js';

const pathArb = fc
  .array(fc.stringMatching(/^[a-z0-9 \t\n\\._-]{1,8}$/), { maxLength: 4 })
  .map((parts) => `/${parts.join('/')}`);
const word = fc.stringMatching(/^[a-z0-9._:/-]{1,12}$/);

const mountArb: fc.Arbitrary<MountInfo> = fc.record({
  id: fc.nat(100000),
  parent: fc.nat(100000),
  major: fc.nat(4095),
  minor: fc.nat(1 << 20),
  root: pathArb,
  mountPoint: pathArb,
  fstype: fc.stringMatching(/^[a-z0-9.]{1,10}$/),
  source: fc.oneof(word, pathArb),
  superOptions: fc.stringMatching(/^[a-z0-9=,]{1,20}$/),
});

function line(m: MountInfo, optional: string[]): string {
  return [
    m.id,
    m.parent,
    `${m.major}:${m.minor}`,
    escapeOctal(m.root),
    escapeOctal(m.mountPoint),
    'rw,relatime',
    ...optional,
    '-',
    m.fstype,
    escapeOctal(m.source),
    m.superOptions,
  ].join(' ');
}

test('mountinfo: any mount the kernel can print (escaped paths, optional fields) parses back to the same fields', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          mountArb,
          fc.array(fc.constantFrom('shared:1', 'master:2', 'unbindable'), { maxLength: 3 }),
        ),
        { maxLength: 8 },
      ),
      (rows) => {
        const text = rows.map(([m, o]) => line(m, o)).join('\n');
        const parsed = parseMountinfo(text);
        assert.deepEqual(parsed.bad, []);
        assert.deepEqual(
          parsed.mounts,
          rows.map(([m]) => ({ ...m })),
        );
      },
    ),
  );
});

test('mountinfo: arbitrary text never throws, and every non-blank line is either a mount or reported bad', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 300 }), (text) => {
      const parsed = parseMountinfo(text);
      const lines = text.split('\n').filter((l) => l.trim() !== '');
      assert.equal(parsed.mounts.length + parsed.bad.length, lines.length);
    }),
  );
});

test('overlay lowerdir: directories escaped with \\: split back into the same list', () => {
  fc.assert(
    fc.property(fc.array(fc.stringMatching(/^[a-z0-9:\\/]{1,10}$/), { maxLength: 5 }), (dirs) => {
      const joined = dirs.map((d) => d.replace(/[\\:]/g, (c) => `\\${c}`)).join(':');
      assert.deepEqual(splitLowerdirs(joined), dirs);
    }),
  );
});

test('mountOptions: key=value pairs and flags, the value may hold "="', () => {
  assert.deepEqual(
    [...mountOptions('rw,addr=10.0.0.1,lowerdir=/a=b,ro')],
    [
      ['rw', ''],
      ['addr', '10.0.0.1'],
      ['lowerdir', '/a=b'],
      ['ro', ''],
    ],
  );
});

test('mountHolding: the answer is the mount with the longest mount point that holds the file, and no other holds it more closely', () => {
  fc.assert(
    fc.property(fc.array(mountArb, { minLength: 1, maxLength: 8 }), pathArb, (mounts, file) => {
      const holds = (mp: string): boolean => mp === '/' || file === mp || file.startsWith(`${mp}/`);
      const got = mountHolding(mounts, file);
      const candidates = mounts.filter((m) => holds(m.mountPoint));
      if (candidates.length === 0) {
        assert.equal(got, null);
        return;
      }
      assert.ok(got !== null && holds(got.mountPoint));
      const longest = Math.max(...candidates.map((m) => m.mountPoint.length));
      assert.equal(got.mountPoint.length, longest);
    }),
  );
});

test('MountIndex.holding answers exactly as mountHolding, with and without excluded mounts', () => {
  fc.assert(
    fc.property(
      fc.array(mountArb, { minLength: 1, maxLength: 10 }),
      pathArb,
      fc.array(fc.nat(9), { maxLength: 3 }),
      (mounts, file, skip) => {
        const except = new Set(skip.map((i) => mounts[i % mounts.length]?.id ?? -1));
        assert.equal(
          new MountIndex(mounts).holding(file, except),
          mountHolding(mounts, file, except),
        );
      },
    ),
  );
});
