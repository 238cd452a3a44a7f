import { PtError } from '../errors.js';

/** Where the HTTP API listens: an IP literal (never a name to resolve) and a port (0: any free). */
export interface ListenAddress {
  host: string;
  port: number;
  /** A loopback address: reads are open there; anything else requires the token for all. */
  loopback: boolean;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/**
 * `ADDR:PORT` as `passthru agent --listen` takes it: `127.0.0.1:8080`, `[::1]:8080`,
 * `0.0.0.0:9100`, `[::]:9100`, `localhost:8080` (taken as 127.0.0.1: a name is not resolved,
 * so a hosts file cannot turn it into a public address).
 */
export function parseListenAddress(text: string): ListenAddress {
  const m = /^(\[[^\]]*\]|[^:[\]]+):(\d{1,5})$/.exec(text);
  const bad = (why: string): PtError =>
    new PtError(
      'PT_ERR_INVALID_ARGUMENT',
      `--listen takes ADDR:PORT with an IP address (127.0.0.1:8080, [::1]:8080, 0.0.0.0:9100) or off, not ${JSON.stringify(text)}: ${why}`,
    );
  if (!m) throw bad('no ADDR:PORT');
  const rawHost = m[1] ?? '';
  const port = Number(m[2]);
  if (port > 65_535) throw bad('the port is above 65535');
  if (rawHost === 'localhost') return { host: '127.0.0.1', port, loopback: true };
  if (rawHost.startsWith('[')) {
    const v6 = rawHost.slice(1, -1).toLowerCase();
    if (!isIpv6(v6)) throw bad('not an IPv6 address');
    return { host: v6, port, loopback: isLoopbackIp(v6) };
  }
  if (!IPV4.test(rawHost)) throw bad('not an IPv4 address (names are not resolved)');
  return { host: rawHost, port, loopback: isLoopbackIp(rawHost) };
}

function isIpv6(s: string): boolean {
  if (!/^[0-9a-f:.]+$/.test(s) || !s.includes(':')) return false;
  try {
    // The URL parser knows every IPv6 spelling; it refuses what is not one.
    return new URL(`http://[${s}]/`).hostname.length > 2;
  } catch {
    return false;
  }
}

/** 127.0.0.0/8, ::1, and IPv4-mapped loopback (::ffff:127.x.y.z). */
export function isLoopbackIp(ip: string): boolean {
  const s = ip.toLowerCase();
  if (IPV4.test(s)) return s.startsWith('127.');
  if (s.startsWith('::ffff:') && IPV4.test(s.slice('::ffff:'.length)))
    return isLoopbackIp(s.slice('::ffff:'.length));
  if (!isIpv6(s)) return false;
  const v6 = new URL(`http://[${s}]/`).hostname;
  // The URL parser writes IPv4-mapped addresses in hex: [::ffff:127.0.0.1] is [::ffff:7f00:1].
  return v6 === '[::1]' || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(v6);
}

/** `http://host:port/` with IPv6 bracketed, for messages and the printed URL. */
export function urlOf(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}/`;
}
