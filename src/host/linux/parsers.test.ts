import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Uevent } from '../port.js';
import {
  parseModprobeConf,
  parseModulesBuiltin,
  parseModulesDep,
  parseProcModules,
  type ModprobeBlock,
} from './modules.js';
import { parseUeventStream } from './uevents.js';

const modName = fc.stringMatching(/^[a-z][a-z0-9_]{0,15}$/);
/** A module file name as the kernel tree spells it: dashes or underscores, maybe compressed. */
const modFile = (name: string, dashes: boolean, ext: string): string =>
  `kernel/drivers/x/${dashes ? name.replace(/_/g, '-') : name}${ext}`;
const ext = fc.constantFrom('.ko', '.ko.xz', '.ko.zst', '.ko.gz');

test('property: parseProcModules reports exactly the listed modules, with their state and refcount', () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(
        fc.record({
          name: modName,
          refcount: fc.nat(1000),
          state: fc.constantFrom('Live', 'Loading', 'Unloading'),
          users: fc.array(modName, { maxLength: 3 }),
        }),
        { selector: (m) => m.name, maxLength: 20 },
      ),
      (mods) => {
        const text = mods
          .map(
            (m) =>
              `${m.name} 16384 ${m.refcount} ${m.users.length > 0 ? `${m.users.join(',')},` : '-'} ${m.state} 0x0000000000000000`,
          )
          .join('\n');
        const parsed = parseProcModules(text);
        assert.deepEqual([...parsed.keys()].sort(), mods.map((m) => m.name).sort());
        for (const m of mods) {
          const p = parsed.get(m.name);
          assert.ok(p !== undefined);
          assert.equal(p.refcount, m.refcount);
          assert.equal(
            p.state,
            m.state === 'Live' ? 'live' : m.state === 'Unloading' ? 'unloading' : 'loading',
          );
        }
      },
    ),
  );
});

test('property: parseModulesDep maps each module file to its dependencies, canonical names whatever the spelling and compression', () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(
        fc.record({
          name: modName,
          dashes: fc.boolean(),
          ext,
          deps: fc.array(fc.record({ name: modName, dashes: fc.boolean(), ext }), {
            maxLength: 4,
          }),
        }),
        { selector: (m) => m.name, maxLength: 20 },
      ),
      (mods) => {
        const text = mods
          .map(
            (m) =>
              `${modFile(m.name, m.dashes, m.ext)}:${m.deps.map((d) => ` ${modFile(d.name, d.dashes, d.ext)}`).join('')}`,
          )
          .join('\n');
        const parsed = parseModulesDep(`${text}\n`);
        assert.equal(parsed.size, mods.length);
        for (const m of mods)
          assert.deepEqual(
            parsed.get(m.name),
            m.deps.map((d) => d.name),
          );
      },
    ),
  );
});

test('property: parseModulesBuiltin gives the canonical name of every line, nothing else', () => {
  fc.assert(
    fc.property(fc.array(fc.record({ name: modName, dashes: fc.boolean() })), (mods) => {
      const text = mods.map((m) => modFile(m.name, m.dashes, '.ko')).join('\n');
      assert.deepEqual(
        [...parseModulesBuiltin(text)].sort(),
        [...new Set(mods.map((m) => m.name))].sort(),
      );
    }),
  );
});

type ConfLine =
  | { kind: 'blacklist'; name: string }
  | { kind: 'install'; name: string; cmd: string }
  | { kind: 'other'; text: string };

const confLine: fc.Arbitrary<ConfLine> = fc.oneof(
  fc.record({ kind: fc.constant('blacklist' as const), name: modName }),
  fc.record({
    kind: fc.constant('install' as const),
    name: modName,
    cmd: fc.constantFrom(
      '/bin/false',
      '/bin/true',
      '/usr/bin/true',
      '/sbin/modprobe --ignore-install x',
    ),
  }),
  fc.record({
    kind: fc.constant('other' as const),
    text: fc.oneof(
      modName.map((n) => `options ${n} ids=8086:10d3`),
      modName.map((n) => `alias pci:v* ${n}`),
      modName.map((n) => `softdep ${n} pre: vfio-pci`),
      modName.map((n) => `# blacklist ${n}`),
      fc.constant(''),
    ),
  }),
);

test('property: parseModprobeConf finds blacklists and install-as-true/false lines, in order, and nothing in comments or other directives', () => {
  fc.assert(
    fc.property(fc.array(confLine, { maxLength: 15 }), fc.boolean(), (lines, dashes) => {
      const spell = (n: string): string => (dashes ? n.replace(/_/g, '-') : n);
      const text = lines
        .map((l) =>
          l.kind === 'blacklist'
            ? `blacklist ${spell(l.name)}`
            : l.kind === 'install'
              ? `install ${spell(l.name)} ${l.cmd}`
              : l.text,
        )
        .join('\n');
      const want: ModprobeBlock[] = [];
      for (const l of lines) {
        if (l.kind === 'blacklist')
          want.push({ module: l.name, kind: 'blacklist', detail: 'blacklist' });
        if (l.kind === 'install' && /\/(false|true)$/.test(l.cmd))
          want.push({ module: l.name, kind: 'install', detail: `install ${l.cmd}` });
      }
      assert.deepEqual(parseModprobeConf(text), want);
    }),
  );
});

const propKey = fc.stringMatching(/^[A-Z][A-Z0-9_]{0,11}$/);
const propValue = fc.stringMatching(/^[\x21-\x7e][\x20-\x7e]{0,30}$/).map((v) => v.trimEnd());

test('property: the uevent stream parser returns every event with all its properties, however the stream is split into chunks', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          action: fc.constantFrom('add', 'remove', 'bind', 'unbind', 'change'),
          devpath: fc.stringMatching(/^\/[a-z0-9:./_-]{1,40}$/),
          extra: fc.dictionary(propKey, propValue, { maxKeys: 4 }),
        }),
        { maxLength: 8 },
      ),
      fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 20 }),
      (events, cuts) => {
        let text = 'monitor will print the received events for:\nKERNEL - the kernel uevent\n\n';
        const want: Record<string, string>[] = [];
        events.forEach((e, i) => {
          const props: Record<string, string> = {
            ...e.extra,
            ACTION: e.action,
            DEVPATH: e.devpath,
            SEQNUM: String(i),
          };
          want.push(props);
          text += `KERNEL[${i}.5] ${e.action} ${e.devpath} (x)\n`;
          for (const [k, v] of Object.entries(props)) text += `${k}=${v}\n`;
          text += '\n';
        });
        const seen: Uevent[] = [];
        const feed = parseUeventStream((e) => seen.push(e));
        let at = 0;
        for (let i = 0; at < text.length; i++) {
          const n = cuts[i % cuts.length] ?? 1;
          feed(text.slice(at, at + n));
          at += n;
        }
        assert.deepEqual(
          seen.map((e) => e.props),
          want,
        );
        assert.deepEqual(
          seen.map((e) => [e.action, e.devpath]),
          events.map((e) => [e.action, e.devpath]),
        );
      },
    ),
  );
});
