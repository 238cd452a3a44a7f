import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { HostUses } from '../host/port.js';
import { parsePciAddress } from './address.js';
import { bridgeKind, claimGuards, platformFunction } from './guards.js';
import type { PciFunction } from './model.js';

function fn(classId: string, more: Partial<PciFunction> = {}): PciFunction {
  return {
    address: parsePciAddress('0000:00:08.0'),
    vendorId: '8086',
    deviceId: '0000',
    subsystemVendorId: '0000',
    subsystemDeviceId: '0000',
    classId,
    revision: '00',
    vendorName: '',
    deviceName: '',
    subsystemVendorName: '',
    subsystemDeviceName: '',
    className: '',
    subclassName: `Class ${classId.slice(0, 4)}`,
    progIfName: null,
    driver: null,
    driverOverride: null,
    iommuGroup: 1,
    numaNode: null,
    parent: null,
    isBridge: false,
    bootVga: false,
    resetMethods: [],
    sriovTotalVfs: null,
    sriovNumVfs: null,
    physfn: null,
    virtfns: [],
    ...more,
  };
}

const none: HostUses = { uses: [], unknown: [], backing: [] };

test('bridges by class (0600, 0604, 0607) or by header type are hard refusals; other 06xx are soft', () => {
  assert.deepEqual(
    ['060000', '060400', '060401', '060700'].map((c) => claimGuards(fn(c), none).hard.length),
    [1, 1, 1, 1],
  );
  assert.equal(bridgeKind(fn('ff0000', { isBridge: true })), 'bridge (header type 1/2)');
  const isa = claimGuards(fn('060100'), none);
  assert.deepEqual([isa.hard, isa.soft], [[], ['chipset bridge (Class 0601)']]);
});

test('platform functions: 08xx except SD hosts, 1101, and 1080/1180 only when integrated in the root complex', () => {
  const behindPort = { parent: parsePciAddress('0000:00:1c.0') };
  const cases: [string, Partial<PciFunction>, boolean][] = [
    ['080020', {}, true], // IOAPIC
    ['080600', {}, true], // IOMMU
    ['080700', {}, true], // root-complex event collector
    ['088000', {}, true], // uncore, VT-d
    ['080501', behindPort, false], // SD host controller
    ['110100', behindPort, true], // performance counters
    ['108000', {}, true], // AMD PSP/CCP on the root complex
    ['108000', behindPort, false], // a crypto card
    ['118000', {}, true],
    ['118000', behindPort, false],
    ['020000', {}, false],
  ];
  for (const [cls, more, want] of cases)
    assert.equal(platformFunction(fn(cls, more)) !== null, want, `${cls} ${JSON.stringify(more)}`);
});

test('unknown host uses make storage and network functions soft-refused with the reasons, not others', () => {
  const unknown: HostUses = {
    uses: [],
    unknown: ['a', 'b', 'c', 'd', 'e'],
    backing: [],
  };
  assert.deepEqual(claimGuards(fn('010802'), unknown).soft, [
    'a',
    'b',
    'c',
    'and 2 more (see passthru doctor)',
  ]);
  assert.equal(claimGuards(fn('020000'), unknown).soft.length, 4);
  assert.deepEqual(claimGuards(fn('030000'), unknown), { hard: [], soft: [] });
  assert.deepEqual(claimGuards(fn('0c0330'), unknown), { hard: [], soft: [] });
});

test('a recorded host use and the boot VGA flag are soft refusals naming the use', () => {
  const d = fn('030000', { bootVga: true });
  const v = claimGuards(d, {
    uses: [{ address: d.address, use: 'filesystem mounted at /' }],
    unknown: [],
    backing: [],
  });
  assert.deepEqual(v, {
    hard: [],
    soft: ['boot VGA device (the host console)', 'filesystem mounted at /'],
  });
});

test('a device with many host uses names three and counts the rest', () => {
  const d = fn('010802');
  const uses = Array.from({ length: 2001 }, (_, i) => ({
    address: d.address,
    use: `filesystem mounted at /m${i}`,
  }));
  assert.deepEqual(claimGuards(d, { uses, unknown: [], backing: [] }).soft, [
    'filesystem mounted at /m0',
    'filesystem mounted at /m1',
    'filesystem mounted at /m2',
    'and 1998 more host uses (see passthru doctor)',
  ]);
});
