import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isLoopbackIp, parseListenAddress, urlOf } from './listen-address.js';

test('--listen addresses: IP literals with a port; localhost is 127.0.0.1; loopback is told apart', () => {
  const cases: [string, string, number, boolean][] = [
    ['127.0.0.1:8080', '127.0.0.1', 8080, true],
    ['127.1.2.3:0', '127.1.2.3', 0, true],
    ['localhost:9', '127.0.0.1', 9, true],
    ['[::1]:8080', '::1', 8080, true],
    ['0.0.0.0:9100', '0.0.0.0', 9100, false],
    ['[::]:9100', '::', 9100, false],
    ['192.168.1.5:65535', '192.168.1.5', 65535, false],
    ['[fe80::1]:80', 'fe80::1', 80, false],
  ];
  for (const [text, host, port, loopback] of cases)
    assert.deepEqual(parseListenAddress(text), { host, port, loopback }, text);
});

test('--listen refuses names, missing or out-of-range ports and odd IPv4 spellings with PT_ERR_INVALID_ARGUMENT', () => {
  for (const text of [
    'example.com:80',
    '127.0.0.1',
    '127.0.0.1:65536',
    '127.1:80',
    '256.0.0.1:80',
    '::1:8080',
    '[nope]:80',
    '[::1:80',
    ':8080',
    '127.0.0.1:80 ',
  ])
    assert.throws(() => parseListenAddress(text), { code: 'PT_ERR_INVALID_ARGUMENT' }, text);
});

test('loopback IPs: 127/8, ::1 and IPv4-mapped 127/8; not 0.0.0.0, ::, or a public address', () => {
  for (const ip of ['127.0.0.1', '127.255.0.9', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1'])
    assert.equal(isLoopbackIp(ip), true, ip);
  for (const ip of ['0.0.0.0', '::', '10.0.0.1', '::ffff:10.0.0.1', 'localhost', '1::'])
    assert.equal(isLoopbackIp(ip), false, ip);
  assert.equal(urlOf('::1', 80), 'http://[::1]:80/');
});

test('loopback IPs: IPv4-mapped 127/8 in the hex spelling the URL parser gives a Host header ([::ffff:127.0.0.1] becomes ::ffff:7f00:1) is loopback; mapped 10/8 is not', () => {
  for (const ip of ['::ffff:7f00:1', '::ffff:7fff:ffff', '0:0:0:0:0:ffff:7f00:1'])
    assert.equal(isLoopbackIp(ip), true, ip);
  for (const ip of ['::ffff:a00:1', '::ffff:8000:1', '::7f00:1'])
    assert.equal(isLoopbackIp(ip), false, ip);
});
