/** Routes and addresses as procfs lists them; one shape for IPv4 and IPv6. */
export interface Route {
  iface: string;
  family: 4 | 6;
  /** Destination network, as 4 or 16 bytes. */
  dest: Uint8Array;
  prefixLen: number;
  /** Via a gateway (false for a directly connected network). */
  gateway: boolean;
  metric: number;
}

export interface IfAddress {
  iface: string;
  address: string;
  /** Kernel address scope: global (0), host (0x10), link (0x20), site (0x40). */
  scope: number;
}

const RTF_UP = 0x1;
const RTF_GATEWAY = 0x2;
const RTF_REJECT = 0x200;

/**
 * /proc/net/route prints each address as the 32-bit word in host byte order: on little-endian
 * machines the first byte of the address is the last pair of hex digits.
 */
export function parseIpv4Routes(
  text: string,
  littleEndian = true,
): { routes: Route[]; bad: string[] } {
  const routes: Route[] = [];
  const bad: string[] = [];
  const lines = text.split('\n');
  for (const line of lines.slice(lines[0]?.startsWith('Iface') === true ? 1 : 0)) {
    if (line.trim() === '') continue;
    const f = line.trim().split(/\s+/);
    const [iface, dest, , flags, , , metric, mask] = f;
    if (
      iface === undefined ||
      !isHex(dest, 8) ||
      !isHex(flags, 4) ||
      !isHex(mask, 8) ||
      !/^\d+$/.test(metric ?? '')
    ) {
      bad.push(line);
      continue;
    }
    const fl = parseInt(flags, 16);
    if ((fl & RTF_UP) === 0 || (fl & RTF_REJECT) !== 0) continue;
    routes.push({
      iface,
      family: 4,
      dest: word(dest, littleEndian),
      prefixLen: popcount(word(mask, littleEndian)),
      gateway: (fl & RTF_GATEWAY) !== 0,
      metric: Number(metric),
    });
  }
  return { routes, bad };
}

/** /proc/net/ipv6_route: dest plen src plen nexthop metric refcnt use flags iface, in hex. */
export function parseIpv6Routes(text: string): { routes: Route[]; bad: string[] } {
  const routes: Route[] = [];
  const bad: string[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const f = line.trim().split(/\s+/);
    const [dest, plen, , , nexthop, metric, , , flags, iface] = f;
    if (
      !isHex(dest, 32) ||
      !isHex(plen, 2) ||
      !isHex(nexthop, 32) ||
      !isHex(metric, 8) ||
      !isHex(flags, 8) ||
      iface === undefined
    ) {
      bad.push(line);
      continue;
    }
    const fl = parseInt(flags, 16);
    // The local table's own addresses and multicast routes live on the interfaces too, but
    // only unicast routes through a real interface say where traffic leaves.
    if ((fl & RTF_UP) === 0 || (fl & RTF_REJECT) !== 0 || iface === 'lo') continue;
    routes.push({
      iface,
      family: 6,
      dest: hexBytes(dest),
      prefixLen: parseInt(plen, 16),
      gateway: (fl & RTF_GATEWAY) !== 0 || !/^0+$/.test(nexthop),
      metric: parseInt(metric, 16),
    });
  }
  return { routes, bad };
}

/** /proc/net/if_inet6: address ifindex prefixlen scope flags name. */
export function parseIfInet6(text: string): { addresses: IfAddress[]; bad: string[] } {
  const addresses: IfAddress[] = [];
  const bad: string[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const [addr, , , scope, , iface] = line.trim().split(/\s+/);
    if (!isHex(addr, 32) || !isHex(scope, 2) || iface === undefined) {
      bad.push(line);
      continue;
    }
    addresses.push({ iface, address: formatIpv6(hexBytes(addr)), scope: parseInt(scope, 16) });
  }
  return { addresses, bad };
}

/** The interface the kernel's main table sends `ip` through: longest prefix, then metric. */
export function routeFor(routes: readonly Route[], ip: Uint8Array): Route | null {
  const family = ip.length === 4 ? 4 : 6;
  let best: Route | null = null;
  for (const r of routes) {
    if (r.family !== family || !prefixMatches(r.dest, ip, r.prefixLen)) continue;
    if (
      best === null ||
      r.prefixLen > best.prefixLen ||
      (r.prefixLen === best.prefixLen && r.metric < best.metric)
    )
      best = r;
  }
  return best;
}

export function prefixMatches(net: Uint8Array, ip: Uint8Array, len: number): boolean {
  if (net.length !== ip.length || len > net.length * 8) return false;
  for (let bit = 0; bit < len; bit++) {
    const i = bit >> 3;
    const m = 0x80 >> (bit & 7);
    if (((net[i] ?? 0) & m) !== ((ip[i] ?? 0) & m)) return false;
  }
  return true;
}

/** Parses a dotted IPv4 or a textual IPv6 address (with :: and a trailing dotted quad). */
export function parseIp(text: string): Uint8Array | null {
  const s = text.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (v4) {
    const b = v4.slice(1).map(Number);
    return b.every((x) => x <= 255) ? Uint8Array.from(b) : null;
  }
  if (!s.includes(':')) return null;
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const groups = (part: string | undefined): number[] | null => {
    if (part === undefined || part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      const q = parseIp(g);
      if (q?.length === 4) {
        out.push(((q[0] ?? 0) << 8) | (q[1] ?? 0), ((q[2] ?? 0) << 8) | (q[3] ?? 0));
      } else if (/^[0-9a-fA-F]{1,4}$/.test(g)) {
        out.push(parseInt(g, 16));
      } else return null;
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  if (head === null || tail === null) return null;
  const fill = 8 - head.length - tail.length;
  if (halves.length === 1 ? fill !== 0 : fill < 1) return null;
  const all = [...head, ...new Array<number>(halves.length === 1 ? 0 : fill).fill(0), ...tail];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

export function formatIp(b: Uint8Array): string {
  return b.length === 4 ? [...b].join('.') : formatIpv6(b);
}

function formatIpv6(b: Uint8Array): string {
  const g: string[] = [];
  for (let i = 0; i < 16; i += 2) g.push((((b[i] ?? 0) << 8) | (b[i + 1] ?? 0)).toString(16));
  return g
    .join(':')
    .replace(/(^|:)0(:0)+(:|$)/, '::')
    .replace(/:::+/, '::');
}

/** Link-local (169.254/16, fe80::/10) and loopback addresses say nothing about reachability. */
export function isGlobalIp(b: Uint8Array): boolean {
  if (b.length === 4) return !(b[0] === 127 || (b[0] === 169 && b[1] === 254) || b[0] === 0);
  const first = ((b[0] ?? 0) << 8) | (b[1] ?? 0);
  const zero = b.every((x) => x === 0);
  const loop = b.slice(0, 15).every((x) => x === 0) && b[15] === 1;
  return !zero && !loop && (first & 0xffc0) !== 0xfe80 && (b[0] ?? 0) !== 0xff;
}

function isHex(s: string | undefined, len: number): s is string {
  return s !== undefined && s.length === len && /^[0-9a-fA-F]+$/.test(s);
}

function hexBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(i * 2, i * 2 + 2), 16);
  return out;
}

function word(hex: string, littleEndian: boolean): Uint8Array {
  const b = hexBytes(hex);
  return littleEndian ? b.reverse() : b;
}

function popcount(b: Uint8Array): number {
  let n = 0;
  for (const x of b) for (let m = 0x80; m > 0; m >>= 1) if ((x & m) !== 0) n++;
  return n;
}
