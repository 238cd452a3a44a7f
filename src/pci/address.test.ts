import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PtError } from '../errors.js';
import {
  addressParts,
  compactAddress,
  formatAddress,
  fromRoutingId,
  isPciAddress,
  parsePciAddress,
  routingId,
} from './address.js';

test('parsePciAddress accepts dddd:bb:dd.f and normalises case', () => {
  assert.equal(parsePciAddress('0000:01:00.0'), '0000:01:00.0');
  assert.equal(parsePciAddress('0000:AF:1F.7'), '0000:af:1f.7');
  assert.equal(parsePciAddress('10000:e1:00.0'), '10000:e1:00.0');
});

test('parsePciAddress rejects everything else with PT_ERR_INVALID_ADDRESS', () => {
  const bad = [
    '',
    '01:00.0',
    '0000:01:00',
    '0000:01:00.8',
    '0000:01:20.0',
    '0000:1:00.0',
    '000g:01:00.0',
    '0000:01:00.0/../../',
    '../0000:01:00.0',
    '0000:01:00.0\n0000:02:00.0',
    ' 0000:01:00.0x',
    '0000:01:00.0;rm',
    '/sys/bus/pci/devices/0000:01:00.0',
    '0000:01:00.0\0',
    '123456:01:00.0',
  ];
  for (const b of bad) {
    assert.throws(
      () => parsePciAddress(b),
      (e: unknown) => e instanceof PtError && e.code === 'PT_ERR_INVALID_ADDRESS',
      b,
    );
  }
  assert.throws(() => parsePciAddress(42), PtError);
  assert.match(
    (() => {
      try {
        parsePciAddress('01:00.0');
        return '';
      } catch (e) {
        return (e as Error).message;
      }
    })(),
    /did you mean 0000:01:00\.0/,
  );
});

test('property: random strings never parse unless they are addresses; addresses round-trip', () => {
  let seed = 42;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const alphabet = '0123456789abcdefABCDEF:./\\ -\n\0xyz';
  for (let i = 0; i < 5000; i++) {
    const len = rnd(16);
    let s = '';
    for (let j = 0; j < len; j++) s += alphabet[rnd(alphabet.length)] ?? '';
    let parsed: string | null = null;
    try {
      parsed = parsePciAddress(s);
    } catch (e) {
      assert.ok(e instanceof PtError);
    }
    if (parsed !== null) {
      assert.ok(isPciAddress(parsed));
      assert.ok(!/[/\\\0\n ]/.test(parsed));
    }
  }
  for (let i = 0; i < 2000; i++) {
    const p = { domain: rnd(0x10000), bus: rnd(256), device: rnd(32), fn: rnd(8) };
    const a = formatAddress(p);
    assert.deepEqual(addressParts(a), p);
    assert.equal(fromRoutingId(p.domain, routingId(a)), a);
  }
});

test('compactAddress gives the Harvester object-name form', () => {
  assert.equal(compactAddress(parsePciAddress('0000:65:00.0')), '000065000');
});
