import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEVICE_SERIAL_RE, findDeviceSerial, formatDeviceSerial } from './device-serial.js';

/** A 4 KiB config space with these extended capabilities chained from 0x100. */
function configSpace(caps: { at: number; id: number; body?: number[] }[]): Uint8Array {
  const b = new Uint8Array(4096);
  const dv = new DataView(b.buffer);
  caps.forEach((c, i) => {
    const next = caps[i + 1]?.at ?? 0;
    dv.setUint32(c.at, (next << 20) | (1 << 16) | c.id, true);
    for (const [j, w] of (c.body ?? []).entries()) dv.setUint32(c.at + 4 + 4 * j, w, true);
  });
  return b;
}

const reader =
  (b: Uint8Array, readable = b.length) =>
  (offset: number, length: number): Promise<Uint8Array | null> =>
    Promise.resolve(offset + length <= readable ? b.slice(offset, offset + length) : null);

test('formatDeviceSerial prints the upper dword first, most significant byte first, as lspci does', () => {
  assert.equal(formatDeviceSerial(0xff123456, 0x525400ff), '52-54-00-ff-ff-12-34-56');
  assert.match(formatDeviceSerial(0, 0), DEVICE_SERIAL_RE);
});

test('findDeviceSerial follows the extended capability list past other capabilities to the DSN (id 3)', async () => {
  const b = configSpace([
    { at: 0x100, id: 0x0001 }, // AER
    { at: 0x140, id: 0x0003, body: [0x9abcdef0, 0x12345678] },
  ]);
  assert.equal(await findDeviceSerial(reader(b)), '12-34-56-78-9a-bc-de-f0');
});

test('findDeviceSerial answers null with no capabilities, all-ones, a loop, or config space readable only to 64 bytes (not root)', async () => {
  assert.equal(await findDeviceSerial(reader(new Uint8Array(4096))), null);
  assert.equal(await findDeviceSerial(reader(new Uint8Array(4096).fill(0xff))), null);
  const loop = configSpace([{ at: 0x100, id: 0x0001 }]);
  new DataView(loop.buffer).setUint32(0x100, (0x100 << 20) | (1 << 16) | 0x0001, true);
  assert.equal(await findDeviceSerial(reader(loop)), null);
  const dsn = configSpace([{ at: 0x100, id: 0x0003, body: [1, 2] }]);
  assert.equal(await findDeviceSerial(reader(dsn, 64)), null);
  assert.equal(await findDeviceSerial(reader(dsn)), '00-00-00-02-00-00-00-01');
});
