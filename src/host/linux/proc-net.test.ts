import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  formatIp,
  isGlobalIp,
  parseIfInet6,
  parseIp,
  parseIpv4Routes,
  parseIpv6Routes,
  prefixMatches,
  routeFor,
  type Route,
} from './proc-net.js';

const hex = (b: Uint8Array): string => [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
const masked = (b: Uint8Array, len: number): Uint8Array =>
  b.map((x, i) => {
    const bits = Math.max(0, Math.min(8, len - i * 8));
    return x & ((0xff << (8 - bits)) & 0xff);
  });
const v4 = fc.uint8Array({ minLength: 4, maxLength: 4 });
const v6 = fc.uint8Array({ minLength: 16, maxLength: 16 });
const iface = fc.stringMatching(/^[a-z][a-z0-9]{0,6}$/).filter((s) => s !== 'lo');

test('IP addresses: formatIp then parseIp gives the same bytes, IPv4 and IPv6', () => {
  fc.assert(
    fc.property(fc.oneof(v4, v6), (b) => {
      assert.deepEqual(parseIp(formatIp(b)), b);
    }),
  );
});

test('parseIp refuses what is not an address', () => {
  for (const s of ['', 'host.example', '1.2.3', '256.1.1.1', '1:2:3', '1::2::3', ':::'])
    assert.equal(parseIp(s), null, s);
  assert.deepEqual(
    parseIp('::ffff:10.0.0.1'),
    Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1]),
  );
});

test('/proc/net/route: little-endian words parse back to the destination, prefix, gateway flag and metric', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          iface,
          dest: v4,
          len: fc.integer({ min: 0, max: 32 }),
          gw: fc.boolean(),
          metric: fc.nat(1000),
        }),
        { maxLength: 6 },
      ),
      (rows) => {
        const le = (b: Uint8Array): string => hex(Uint8Array.from(b).reverse()).toUpperCase();
        const mask = (len: number): Uint8Array =>
          masked(Uint8Array.from([255, 255, 255, 255]), len);
        const text = [
          'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
          ...rows.map((r) =>
            [
              r.iface,
              le(masked(r.dest, r.len)),
              r.gw ? '0102A8C0' : '00000000',
              r.gw ? '0003' : '0001',
              0,
              0,
              r.metric,
              le(mask(r.len)),
              0,
              0,
              0,
            ].join('\t'),
          ),
        ].join('\n');
        const parsed = parseIpv4Routes(text);
        assert.deepEqual(parsed.bad, []);
        assert.deepEqual(
          parsed.routes,
          rows.map((r) => ({
            iface: r.iface,
            family: 4,
            dest: masked(r.dest, r.len),
            prefixLen: r.len,
            gateway: r.gw,
            metric: r.metric,
          })),
        );
      },
    ),
  );
});

test('/proc/net/ipv6_route: routes parse; reject routes and lo are left out', () => {
  const text = [
    '20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth1',
    '00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0',
    '00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200 lo',
  ].join('\n');
  const { routes, bad } = parseIpv6Routes(text);
  assert.deepEqual(bad, []);
  assert.deepEqual(
    routes.map((r) => [r.iface, formatIp(r.dest), r.prefixLen, r.gateway, r.metric]),
    [
      ['eth1', '2001:db8::', 64, false, 256],
      ['eth0', '::', 0, true, 1024],
    ],
  );
});

test('/proc/net/if_inet6: address, scope and interface', () => {
  const { addresses } = parseIfInet6(
    '20010db8000000000000000000000005 02 40 00 80 eth0\nfe80000000000000021122fffe334455 02 40 20 80 eth0\n',
  );
  assert.deepEqual(addresses, [
    { iface: 'eth0', address: '2001:db8::5', scope: 0 },
    { iface: 'eth0', address: 'fe80::211:22ff:fe33:4455', scope: 0x20 },
  ]);
});

test('routeFor picks a matching route with the longest prefix, the lowest metric among those', () => {
  const routeArb: fc.Arbitrary<Route> = fc
    .record({
      iface,
      dest: v4,
      prefixLen: fc.integer({ min: 0, max: 32 }),
      metric: fc.nat(10),
      gateway: fc.boolean(),
    })
    .map((r) => ({ ...r, family: 4 as const, dest: masked(r.dest, r.prefixLen) }));
  fc.assert(
    fc.property(fc.array(routeArb, { maxLength: 10 }), v4, (routes, ip) => {
      const got = routeFor(routes, ip);
      const matching = routes.filter((r) => prefixMatches(r.dest, ip, r.prefixLen));
      if (matching.length === 0) {
        assert.equal(got, null);
        return;
      }
      assert.ok(got !== null && prefixMatches(got.dest, ip, got.prefixLen));
      for (const r of matching) {
        assert.ok(r.prefixLen <= got.prefixLen);
        if (r.prefixLen === got.prefixLen) assert.ok(r.metric >= got.metric);
      }
    }),
  );
});

test('isGlobalIp: loopback, link-local, unspecified and multicast are not global', () => {
  const g = (s: string): boolean => isGlobalIp(parseIp(s) ?? new Uint8Array());
  assert.deepEqual(
    ['127.0.0.1', '169.254.1.1', '0.0.0.0', '::1', '::', 'fe80::1', 'ff02::1'].map(g),
    [false, false, false, false, false, false, false],
  );
  assert.deepEqual(['10.0.0.1', '192.0.2.7', '2001:db8::1', 'fd00::2'].map(g), [
    true,
    true,
    true,
    true,
  ]);
});
