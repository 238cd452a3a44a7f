import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { EventBus } from '../events/events.js';
import { parsePciAddress, type PciAddress } from '../pci/address.js';
import { renderUdevRules, udevRulesSubscriber } from './udev-rules.js';

const A = parsePciAddress('0000:01:00.0');
const B = parsePciAddress('0000:02:00.0');

test('renderUdevRules: one driverctl-style rule per address, sorted and de-duplicated', () => {
  const text = renderUdevRules([B, A, B]);
  const rules = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
  assert.deepEqual(rules, [
    'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="0000:01:00.0", ATTR{driver_override}="vfio-pci"',
    'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="0000:02:00.0", ATTR{driver_override}="vfio-pci"',
  ]);
  assert.equal(
    renderUdevRules([])
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#')).length,
    0,
  );
});

test('udevRulesSubscriber rewrites the file on claim.added/claim.removed with the current claims, coalescing a burst, ignoring other events', async () => {
  const claimed: PciAddress[] = [];
  const writes: string[] = [];
  const bus = new EventBus();
  const sync = udevRulesSubscriber({
    file: '/etc/udev/rules.d/70-passthru.rules',
    claimed: () => claimed,
    write: (_f, content) => {
      writes.push(content);
      return Promise.resolve();
    },
    logger: pino({ level: 'silent' }),
  });
  bus.subscribe(sync.listener);
  bus.emit({ type: 'device.drift', at: 1, address: A, driver: null });
  await sync.settled();
  assert.equal(writes.join(''), '', 'not a claim change');
  claimed.push(A);
  bus.emit({ type: 'claim.added', at: 1, address: A, withGroup: false, force: false });
  claimed.push(B);
  bus.emit({ type: 'claim.added', at: 2, address: B, withGroup: false, force: false });
  bus.emit({ type: 'claim.added', at: 3, address: B, withGroup: true, force: false });
  await sync.settled();
  assert.ok(writes.length <= 2, `three claim events, ${writes.length} writes`);
  assert.match(writes.at(-1) ?? '', /KERNEL=="0000:01:00\.0"[\s\S]*KERNEL=="0000:02:00\.0"/);
  claimed.splice(0, 1);
  bus.emit({ type: 'claim.removed', at: 3, address: A });
  await sync.settled();
  assert.doesNotMatch(writes.at(-1) ?? '', /0000:01:00\.0/);
  assert.match(writes.at(-1) ?? '', /0000:02:00\.0/);
});

test('udevRulesSubscriber: a failing write is logged once per failure streak and retried on the next change', async () => {
  const lines: { level: number }[] = [];
  const logger = pino(
    { level: 'info' },
    { write: (s: string) => lines.push(JSON.parse(s) as { level: number }) },
  );
  let fail = true;
  const writes: string[] = [];
  const sync = udevRulesSubscriber({
    file: 'rules',
    claimed: () => [A],
    write: (_f, c) => {
      if (fail) return Promise.reject(new Error('EROFS'));
      writes.push(c);
      return Promise.resolve();
    },
    logger,
  });
  for (let i = 0; i < 3; i++) {
    sync.listener({ type: 'claim.removed', at: i, address: B });
    await sync.settled();
  }
  assert.equal(lines.filter((l) => l.level === 50).length, 1);
  fail = false;
  sync.listener({ type: 'claim.removed', at: 9, address: B });
  await sync.settled();
  assert.equal(writes.length, 1);
});
