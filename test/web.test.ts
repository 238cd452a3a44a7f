import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { AgentLifecycle, type ApiContext } from '../src/agent/routes.js';
import { HttpAuth } from '../src/http/auth.js';
import { parsePciIds, type PciIdNames } from '../src/pci/pciids.js';
import { buildApiServer } from '../src/process/socket-server.js';
import { silentLogger } from '../src/util/logger.js';
import { registerWebPage } from '../src/web/page.js';
import { MF0, NIC, ROOTFS, labTopology, rig, stop, type Rig } from './helpers.js';

const A = NIC[0]!;
const TOKEN = 'page-test-token-0123456789';

async function page(r: Rig, names?: PciIdNames, maxStreams?: number) {
  const lifecycle = new AgentLifecycle();
  lifecycle.running();
  const api: ApiContext = { agent: r.agent, sim: r.kernel, lifecycle, logger: silentLogger() };
  const auth = new HttpAuth({ token: TOKEN, now: () => r.clock.now() });
  const host = r.kernel.port();
  const server = await buildApiServer(
    api,
    {},
    {
      auth,
      plugins: [
        (app) => {
          registerWebPage(app, {
            api,
            host,
            names: names ?? parsePciIds(''),
            ...(maxStreams !== undefined ? { maxStreams } : {}),
            clock: r.clock,
            auth,
          });
        },
      ],
    },
  );
  // Markup is compared with the whitespace between tags collapsed (the templates are formatted).
  const get = async (url: string) => {
    const res = await server.app.inject({ url });
    return { statusCode: res.statusCode, headers: res.headers, body: squeeze(res.body) };
  };
  return { server, get };
}

function squeeze(s: string): string {
  return s.replace(/>\s+</g, '><').replace(/\s+/g, ' ');
}

/** Rows of the first table body in the section with this id. */
function rowsOf(body: string, section: string): string[] {
  const start = body.indexOf(`<section id="${section}"`);
  const tbody = body.slice(body.indexOf('<tbody>', start), body.indexOf('</tbody>', start));
  return tbody.split('<tr').slice(1);
}

test('overview: module states, doctor checks with their fixes, claims with state, original driver and history', async () => {
  const topo = labTopology();
  // No IOMMU on this host: doctor fails and says how to fix it.
  topo.kernel = { release: '6.1.0-26-amd64', iommus: [], cmdline: 'intel_iommu=off' };
  const r = await rig(topo);
  const { server, get } = await page(r);
  try {
    await r.agent.claim([A], { withGroup: false, force: false });
    const res = await get('/');
    assert.equal(res.statusCode, 200);
    assert.match(res.headers['content-type'] as string, /^text\/html/);
    const b = res.body;
    for (const m of ['vfio_pci', 'vfio_iommu_type1', 'vfio'])
      assert.match(b, new RegExp(`<code>${m}</code>`));
    assert.match(b, /no IOMMU active/);
    assert.match(b, /remove intel_iommu=off/);
    const claims = rowsOf(b, 'claims');
    assert.match(claims[0]!, new RegExp(`<code>${A}</code>`));
    assert.match(claims[0]!, /badge ok">ready</);
    assert.match(claims[0]!, new RegExp(`<code>${A}</code>: e1000e`));
    assert.match(claims[1]!, /History of/);
    assert.match(claims[1]!, /bound to vfio-pci from e1000e/);
  } finally {
    await server.close();
    await stop(r);
  }
});

test('devices: every function with the fields of list; class, vendor, driver and group filters narrow the rows; a bad filter is a 400 page', async () => {
  const r = await rig(labTopology(), { run: false });
  const { server, get } = await page(r);
  try {
    const all = rowsOf((await get('/devices')).body, 'devices');
    assert.equal(all.length, labTopology().devices.length);
    assert.match(
      all.find((x) => x.includes(A))!,
      /Class 0200 <small>\[0200\]<\/small><\/td><td><code>8086:10d3<\/code><\/td><td>10<\/td><td>0<\/td><td> ?e1000e ?<\/td><td>Vendor 8086 Device 10d3<\/td>/,
    );
    const count = async (q: string) => rowsOf((await get(`/devices?${q}`)).body, 'devices').length;
    assert.equal(await count('class=0200'), 6); // four e1000e and the two-function e1000
    assert.equal(await count('vendor=1234'), 1);
    assert.equal(await count('driver=e1000'), 2);
    assert.equal(await count('driver=none'), 2);
    assert.equal(await count('group=7'), 2);
    assert.equal(await count('class=0200&driver=e1000e&vendor=&group='), 4);
    const bad = await get('/devices?class=zz');
    assert.equal(bad.statusCode, 400);
    assert.match(bad.body, /PT_ERR_INVALID_ARGUMENT/);
    assert.match(bad.body, /<!doctype html>/);
  } finally {
    await server.close();
  }
});

test('groups: whether each group can be passed through now, what blocks it, and why a host-critical one cannot be claimed', async () => {
  const r = await rig(labTopology(), { run: false });
  const { server, get } = await page(r);
  try {
    const b = (await get('/groups')).body;
    const row = (g: number) =>
      b.slice(
        b.indexOf(`<tr id="group-${g}">`),
        b.indexOf('</tr>', b.indexOf(`<tr id="group-${g}">`)),
      );
    assert.match(row(7), new RegExp(`badge bad">no<.*<code>${MF0}</code> is on e1000`, 's'));
    assert.match(row(7), /Claim group…/);
    assert.match(row(8), /badge ok">yes</);
    assert.match(row(5), new RegExp(`<code>${ROOTFS}</code>: .*9p filesystem at /`, 's'));
    assert.doesNotMatch(row(5), /Claim group/);
  } finally {
    await server.close();
  }
});

test('a hostile device name from pci.ids (<script>) is shown as text on every page, never as markup', async () => {
  const names = parsePciIds(
    '8086  Evil <script>alert(1)</script> "Corp"\n\t10d3  <img src=x onerror=alert(2)>\n',
  );
  const r = await rig(labTopology(), { run: false });
  const { server, get } = await page(r, names);
  try {
    for (const url of ['/devices', '/groups', `/claim?address=${A}`]) {
      const b = (await get(url)).body;
      assert.doesNotMatch(b, /<script>alert/, url);
      assert.doesNotMatch(b, /<img src=x/, url);
      assert.match(b, /Evil &lt;script&gt;alert\(1\)&lt;\/script&gt; &quot;Corp&quot;/, url);
    }
  } finally {
    await server.close();
  }
});

test('claim preview lists the exact sysfs writes of a dry run and changes nothing on the host', async () => {
  const r = await rig(labTopology());
  const { server, get } = await page(r);
  try {
    const calls = r.kernel.calls.length;
    const b = (await get(`/claim?address=${A}`)).body;
    const writes = rowsOf(b, 'writes').map((row) =>
      [...row.matchAll(/<td>(.*?)<\/td>/g)]
        .slice(1)
        .map((m) => (m[1] ?? '').replace(/<[^>]+>/g, '')),
    );
    assert.deepEqual(writes, [
      [`/sys/bus/pci/devices/${A}/driver_override`, 'vfio-pci', ''],
      [`/sys/bus/pci/devices/${A}/driver/unbind`, A, 'leaves e1000e'],
      ['/sys/bus/pci/drivers_probe', A, ''],
    ]);
    assert.equal(r.kernel.calls.length, calls);
    assert.equal(r.kernel.driverOf(A), 'e1000e');
    assert.deepEqual(Object.keys(r.agent.engine.claims), []);
  } finally {
    await server.close();
    await stop(r);
  }
});

test('the preview of a host-critical device shows the refusal, its code and reason, and no confirm button', async () => {
  const r = await rig(labTopology(), { run: false });
  const { server, get } = await page(r);
  try {
    const b = (await get(`/claim?address=${ROOTFS}`)).body;
    assert.match(
      b,
      /role="alert">Refused: <code>0000:00:02.0<\/code> ?<code>PT_ERR_HOST_CRITICAL<\/code>[^<]*9p filesystem at \//,
    );
    assert.doesNotMatch(b, /Confirm claim/);
    assert.doesNotMatch(b, /<form method="post"/);
  } finally {
    await server.close();
  }
});

/** A loopback TCP listener and a signed-in session on it, as a browser would have. */
async function session(server: Awaited<ReturnType<typeof buildApiServer>>) {
  const l = await server.listenTcp({ host: '127.0.0.1', port: 0, loopback: true });
  const base = `http://127.0.0.1:${l.port}`;
  const login = await fetch(`${base}/v1/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ token: TOKEN }),
  });
  assert.equal(login.status, 200);
  const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0]!;
  const post = (path: string, form: Record<string, string>) =>
    fetch(`${base}${path}`, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(form).toString(),
    });
  const get = (path: string) => fetch(`${base}${path}`, { headers: { cookie } });
  return { base, post, get };
}

test('a claim form posted without its CSRF token is refused (403 PT_ERR_CSRF) and claims nothing; with the token it claims and redirects', async () => {
  const r = await rig(labTopology());
  const { server } = await page(r);
  try {
    const s = await session(server);
    const refused = await s.post('/claim', { address: A });
    assert.equal(refused.status, 403);
    assert.match(await refused.text(), /PT_ERR_CSRF/);
    assert.equal(r.kernel.driverOf(A), 'e1000e');
    const form = squeeze(await (await s.get(`/claim?address=${A}`)).text());
    const csrf = /name="csrf" value="([^"]+)"/.exec(form)?.[1];
    assert.ok(csrf, 'the confirmation form carries the CSRF token');
    const wrong = await s.post('/claim', { address: A, csrf: `${csrf}x` });
    assert.equal(wrong.status, 403);
    assert.equal(r.kernel.driverOf(A), 'e1000e');
    const ok = await s.post('/claim', { address: A, csrf });
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.get('location'), `/?claimed=${encodeURIComponent(A)}#claims`);
    assert.equal(r.kernel.driverOf(A), 'vfio-pci');
  } finally {
    await server.close();
    await stop(r);
  }
});

test('without a session the confirmation page offers the sign-in form, not the confirm button', async () => {
  const r = await rig(labTopology(), { run: false });
  const { server } = await page(r);
  try {
    const l = await server.listenTcp({ host: '127.0.0.1', port: 0, loopback: true });
    const b = squeeze(await (await fetch(`http://127.0.0.1:${l.port}/claim?address=${A}`)).text());
    assert.match(b, /<form method="post" action="\/v1\/session"/);
    assert.match(b, /<label for="token">/);
    assert.doesNotMatch(b, /Confirm claim/);
  } finally {
    await server.close();
  }
});

/** Reads an event stream until an event of this type arrives; the events seen so far. */
function readEvents(url: string): {
  ready: Promise<http.IncomingMessage>;
  until: (type: string) => Promise<string[]>;
  close: () => void;
} {
  const seen: string[] = [];
  let opened!: (res: http.IncomingMessage) => void;
  const ready = new Promise<http.IncomingMessage>((resolve) => {
    opened = resolve;
  });
  let want: { type: string; resolve: (v: string[]) => void } | null = null;
  let buf = '';
  const req = http.get(url, (res) => {
    // The stream subscribes to the bus before it sends its headers.
    opened(res);
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = block.split('\n').find((l) => l.startsWith('data: '));
        if (!data) continue;
        const e = JSON.parse(data.slice(6)) as { type: string };
        seen.push(e.type);
        if (want && e.type === want.type) want.resolve(seen);
      }
    });
  });
  req.on('error', () => undefined);
  return {
    ready,
    until: (type) =>
      new Promise((resolve) => {
        if (seen.includes(type)) resolve(seen);
        else want = { type, resolve };
      }),
    close: () => req.destroy(),
  };
}

test('the event stream sends module.lost after a simulated module loss, then the recovery', async () => {
  const r = await rig(labTopology());
  const { server } = await page(r);
  try {
    await r.agent.claim([A], { withGroup: false, force: false });
    const l = await server.listenTcp({ host: '127.0.0.1', port: 0, loopback: true });
    const stream = readEvents(`http://127.0.0.1:${l.port}/events`);
    const res = await stream.ready;
    assert.equal(res.statusCode, 200);
    assert.match(res.headers['content-type'] ?? '', /^text\/event-stream/);
    r.kernel.modprobeRemove('vfio_pci');
    const lost = stream.until('module.lost');
    await r.clock.advance(10_000);
    assert.ok((await lost).includes('module.lost'));
    const recovered = stream.until('recovery.completed');
    await r.clock.advance(10_000);
    assert.ok((await recovered).includes('recovery.completed'));
    stream.close();
  } finally {
    await server.close();
    await stop(r);
  }
});

test('event streams beyond the limit are refused with 503 PT_ERR_AGENT_BUSY while the API still answers', async () => {
  const r = await rig(labTopology(), { run: false });
  const { server } = await page(r, undefined, 1);
  try {
    const l = await server.listenTcp({ host: '127.0.0.1', port: 0, loopback: true });
    const first = readEvents(`http://127.0.0.1:${l.port}/events`);
    assert.equal((await first.ready).statusCode, 200);
    const second = await fetch(`http://127.0.0.1:${l.port}/events`);
    assert.equal(second.status, 503);
    assert.equal(
      ((await second.json()) as { error: { code: string } }).error.code,
      'PT_ERR_AGENT_BUSY',
    );
    assert.equal((await fetch(`http://127.0.0.1:${l.port}/v1/health`)).status, 200);
    first.close();
  } finally {
    await server.close();
  }
});
