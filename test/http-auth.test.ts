import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { Type } from '@sinclair/typebox';
import { AgentLifecycle } from '../src/agent/routes.js';
import { HttpAuth, SESSION_COOKIE } from '../src/http/auth.js';
import { parseListenAddress } from '../src/http/listen-address.js';
import { buildApiServer, type ApiServer, type TcpListener } from '../src/process/socket-server.js';
import { silentLogger } from '../src/util/logger.js';
import { NIC, labTopology, rig, stop, type Rig } from './helpers.js';

const A = NIC[0]!;
const B = NIC[1]!;
const TOKEN = 'x'.repeat(43);

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  code: string | undefined;
}

/** A plain HTTP/1.1 request over loopback TCP, every header as given (no client adds any). */
function request(
  port: number,
  method: string,
  path: string,
  o: { headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path, headers: o.headers ?? {}, agent: false },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let code: string | undefined;
          try {
            code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
          } catch {
            code = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, code });
        });
      },
    );
    req.on('error', reject);
    if (o.body !== undefined) req.write(o.body);
    req.end();
  });
}

const json = (v: unknown): { headers: Record<string, string>; body: string } => ({
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(v),
});

interface Served {
  r: Rig;
  server: ApiServer;
  tcp: TcpListener;
  /** The wall clock the sessions expire by. */
  time: { now: number };
  formsSeen: unknown[];
}

/** The lab agent behind a TCP listener, plus a form route like the page's (to test the contract). */
async function serve(listen = '127.0.0.1:0'): Promise<Served> {
  const r = await rig(labTopology());
  const lifecycle = new AgentLifecycle();
  lifecycle.running();
  const time = { now: 1_700_000_000_000 };
  const formsSeen: unknown[] = [];
  const server = await buildApiServer(
    { agent: r.agent, sim: r.kernel, lifecycle, logger: silentLogger() },
    {},
    {
      auth: new HttpAuth({ token: TOKEN, now: () => time.now }),
      plugins: [
        (app) => {
          app.post(
            '/test/form',
            {
              schema: {
                body: Type.Object({ note: Type.String() }, { additionalProperties: false }),
              },
            },
            (req) => {
              formsSeen.push(req.body);
              return { ok: true };
            },
          );
        },
      ],
    },
  );
  const tcp = await server.listenTcp(parseListenAddress(listen));
  return { r, server, tcp, time, formsSeen };
}

async function done(s: Served): Promise<void> {
  await s.server.close();
  await stop(s.r);
}

/** Signs in with the token; the cookie to send back and the CSRF token for writes. */
async function signIn(port: number): Promise<{ cookie: string; csrf: string; setCookie: string }> {
  const res = await request(port, 'POST', '/v1/session', json({ token: TOKEN }));
  assert.equal(res.status, 200, res.text);
  const setCookie = res.headers['set-cookie']?.[0] ?? '';
  const cookie = setCookie.split(';')[0] ?? '';
  return { cookie, csrf: (JSON.parse(res.text) as { csrfToken: string }).csrfToken, setCookie };
}

test('loopback HTTP: status is open; a claim without the token is 401 PT_ERR_UNAUTHENTICATED and binds nothing; with it the claim binds', async () => {
  const s = await serve();
  try {
    const port = s.tcp.port;
    const st = await request(port, 'GET', '/v1/status');
    assert.equal(st.status, 200);
    const none = await request(port, 'POST', '/v1/claims', json({ addresses: [A] }));
    assert.equal(none.status, 401);
    assert.equal(none.code, 'PT_ERR_UNAUTHENTICATED');
    assert.match(none.headers['www-authenticate'] ?? '', /^Bearer/);
    const wrong = await request(port, 'POST', '/v1/claims', {
      ...json({ addresses: [A] }),
      headers: { 'content-type': 'application/json', authorization: `Bearer ${'y'.repeat(43)}` },
    });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.code, 'PT_ERR_UNAUTHENTICATED');
    const poke = await request(port, 'POST', '/v1/sim/modprobe-r', json({ module: 'vfio_pci' }));
    assert.equal(poke.status, 401, 'sim pokes are writes too');
    assert.equal(s.r.kernel.driverOf(A), 'e1000e');
    assert.equal(s.r.kernel.moduleState('vfio_pci'), 'live');
    const ok = await request(port, 'POST', '/v1/claims', {
      ...json({ addresses: [A] }),
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(s.r.kernel.driverOf(A), 'vfio-pci');
  } finally {
    await done(s);
  }
});

test('loopback HTTP: an open read with a Host that is not a loopback name (DNS rebinding) is 403 PT_ERR_HOST_NOT_ALLOWED; localhost and [::1] pass; the token passes any Host', async () => {
  const s = await serve();
  try {
    const port = s.tcp.port;
    const evil = await request(port, 'GET', '/v1/status', {
      headers: { host: `rebind.example:${port}` },
    });
    assert.equal(evil.status, 403);
    assert.equal(evil.code, 'PT_ERR_HOST_NOT_ALLOWED');
    for (const host of [`localhost:${port}`, `[::1]:${port}`, `127.0.0.1:${port}`])
      assert.equal((await request(port, 'GET', '/v1/health', { headers: { host } })).status, 200);
    const withToken = await request(port, 'GET', '/v1/status', {
      headers: { host: `proxy.example:${port}`, authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(withToken.status, 200);
  } finally {
    await done(s);
  }
});

test('session: the token buys an HttpOnly SameSite=Strict cookie; a write with it but without the CSRF token is 403 PT_ERR_CSRF and changes nothing; with it the release works', async () => {
  const s = await serve();
  try {
    const port = s.tcp.port;
    await s.r.agent.claim([A], { withGroup: false, force: false });
    const { cookie, csrf, setCookie } = await signIn(port);
    assert.ok(cookie.startsWith(`${SESSION_COOKIE}=`));
    assert.match(setCookie, /HttpOnly/);
    assert.match(setCookie, /SameSite=Strict/);
    assert.match(setCookie, /Path=\//);
    const body = JSON.stringify({ addresses: [A] });
    const headers = { 'content-type': 'application/json', cookie };
    const noCsrf = await request(port, 'POST', '/v1/release', { headers, body });
    assert.equal(noCsrf.status, 403);
    assert.equal(noCsrf.code, 'PT_ERR_CSRF');
    const badCsrf = await request(port, 'POST', '/v1/release', {
      headers: { ...headers, 'x-csrf-token': `${csrf.slice(0, -2)}AA` },
      body,
    });
    assert.equal(badCsrf.code, 'PT_ERR_CSRF');
    assert.equal(s.r.kernel.driverOf(A), 'vfio-pci', 'nothing was released');
    const info = JSON.parse(
      (await request(port, 'GET', '/v1/session', { headers: { cookie } })).text,
    ) as { via: string; csrfToken: string; canWrite: boolean };
    assert.deepEqual(info, {
      transport: 'loopback',
      via: 'session',
      canWrite: true,
      csrfToken: csrf,
    });
    const ok = await request(port, 'POST', '/v1/release', {
      headers: { ...headers, 'x-csrf-token': csrf },
      body,
    });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(s.r.kernel.driverOf(A), 'e1000e');
  } finally {
    await done(s);
  }
});

test('session: a form post carries csrf as a field, which is removed before the route schema sees the body; cross-site Origin or Sec-Fetch-Site is 403 even with the right CSRF token', async () => {
  const s = await serve();
  try {
    const port = s.tcp.port;
    const { cookie, csrf } = await signIn(port);
    const form = 'application/x-www-form-urlencoded';
    const post = (body: string, extra: Record<string, string> = {}) =>
      request(port, 'POST', '/test/form', {
        headers: { 'content-type': form, cookie, ...extra },
        body,
      });
    const missing = await post('note=hi');
    assert.equal(missing.status, 403);
    assert.equal(missing.code, 'PT_ERR_CSRF');
    const q = `note=hi&csrf=${encodeURIComponent(csrf)}`;
    const ok = await post(q, {
      origin: `http://127.0.0.1:${port}`,
      'sec-fetch-site': 'same-origin',
    });
    assert.equal(ok.status, 200, ok.text);
    assert.deepEqual({ ...(s.formsSeen[0] as object) }, { note: 'hi' });
    const foreign = await post(q, { origin: 'http://evil.example' });
    assert.equal(foreign.status, 403);
    assert.equal(foreign.code, 'PT_ERR_CSRF');
    const crossSite = await post(q, { 'sec-fetch-site': 'cross-site' });
    assert.equal(crossSite.code, 'PT_ERR_CSRF');
    assert.equal(s.formsSeen.length, 1, 'only the same-site post with its token got through');
  } finally {
    await done(s);
  }
});

test('sign-in: a wrong token is 401; a bearer header needs no body; the form answers 303 to a local next path only; a cross-site sign-in is refused; sessions end after 12 h', async () => {
  const s = await serve();
  try {
    const port = s.tcp.port;
    const wrong = await request(port, 'POST', '/v1/session', json({ token: 'nope' }));
    assert.equal(wrong.status, 401);
    assert.equal(wrong.code, 'PT_ERR_UNAUTHENTICATED');
    assert.equal(wrong.headers['set-cookie'], undefined);
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    for (const [next, to] of [
      ['/devices?class=02', '/devices?class=02'],
      ['//evil.example/', '/'],
      ['https://evil.example/', '/'],
    ] as const) {
      const res = await request(port, 'POST', '/v1/session', {
        headers: form,
        body: `token=${TOKEN}&next=${encodeURIComponent(next)}`,
      });
      assert.equal(res.status, 303, next);
      assert.equal(res.headers.location, to, next);
    }
    const bearerOnly = await request(port, 'POST', '/v1/session', {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(bearerOnly.status, 200, bearerOnly.text);
    assert.match(bearerOnly.headers['set-cookie']?.[0] ?? '', /^passthru_session=/);
    const cross = await request(port, 'POST', '/v1/session', {
      headers: { ...form, origin: 'http://evil.example' },
      body: `token=${TOKEN}`,
    });
    assert.equal(cross.code, 'PT_ERR_CSRF');
    const { cookie, csrf } = await signIn(port);
    s.time.now += 12 * 3_600_000 + 1;
    const late = await request(port, 'POST', '/v1/claims', {
      headers: { 'content-type': 'application/json', cookie, 'x-csrf-token': csrf },
      body: JSON.stringify({ addresses: [B] }),
    });
    assert.equal(late.status, 401);
    assert.equal(s.r.kernel.driverOf(B), 'e1000e');
  } finally {
    await done(s);
  }
});

test('a non-loopback listener (0.0.0.0) asks for the token on reads too, even from 127.0.0.1; the token or a session opens them', async () => {
  const s = await serve('0.0.0.0:0');
  try {
    const port = s.tcp.port;
    assert.equal(s.tcp.loopback, false);
    for (const path of ['/v1/status', '/v1/health', '/v1/sim/state', '/nowhere']) {
      const res = await request(port, 'GET', path);
      assert.equal(res.status, 401, path);
      assert.equal(res.code, 'PT_ERR_UNAUTHENTICATED', path);
    }
    const info = await request(port, 'GET', '/v1/session');
    assert.equal(info.status, 200, 'the session info is public: it says you are not signed in');
    assert.equal((JSON.parse(info.text) as { via: unknown }).via, null);
    const bearer = await request(port, 'GET', '/v1/status', {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(bearer.status, 200);
    const { cookie } = await signIn(port);
    assert.equal((await request(port, 'GET', '/v1/status', { headers: { cookie } })).status, 200);
  } finally {
    await done(s);
  }
});

test('HTTP bodies: malformed JSON is 400 PT_ERR_INVALID_ARGUMENT, an oversized JSON or form body is 413 PT_ERR_REQUEST_TOO_LARGE, a text/plain body is 400 (not an object), and nothing is bound', async () => {
  const s = await serve();
  try {
    const port = s.tcp.port;
    const auth = { authorization: `Bearer ${TOKEN}` };
    const bad = await request(port, 'POST', '/v1/claims', {
      headers: { ...auth, 'content-type': 'application/json' },
      body: '{"addresses": ["0000:01:00.0"',
    });
    assert.equal(bad.status, 400);
    assert.equal(bad.code, 'PT_ERR_INVALID_ARGUMENT');
    const big = await request(port, 'POST', '/v1/claims', {
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ addresses: [A], pad: 'x'.repeat(70 * 1024) }),
    });
    assert.equal(big.status, 413);
    assert.equal(big.code, 'PT_ERR_REQUEST_TOO_LARGE');
    const bigForm = await request(port, 'POST', '/test/form', {
      headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' },
      body: `note=${'x'.repeat(70 * 1024)}`,
    });
    assert.equal(bigForm.status, 413);
    const wrongType = await request(port, 'POST', '/v1/claims', {
      headers: { ...auth, 'content-type': 'text/plain' },
      body: 'claim 0000:01:00.0',
    });
    assert.equal(wrongType.status, 400);
    assert.equal(wrongType.code, 'PT_ERR_INVALID_ARGUMENT');
    assert.match(wrongType.text, /body at \/: Expected object/);
    assert.equal(s.r.kernel.driverOf(A), 'e1000e');
  } finally {
    await done(s);
  }
});

test('the control socket and in-process requests need no token (the socket is root-only); TCP needs auth configured', async () => {
  const r = await rig(labTopology(), { run: false });
  const lifecycle = new AgentLifecycle();
  lifecycle.running();
  const ctx = { agent: r.agent, sim: r.kernel, lifecycle, logger: silentLogger() };
  const withAuth = await buildApiServer(
    ctx,
    {},
    {
      auth: new HttpAuth({ token: TOKEN, now: () => 0 }),
    },
  );
  const without = await buildApiServer(ctx);
  try {
    const res = await withAuth.app.inject({
      method: 'POST',
      url: '/v1/claims',
      payload: { addresses: [A] },
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(r.kernel.driverOf(A), 'vfio-pci');
    await assert.rejects(
      without.listenTcp(parseListenAddress('127.0.0.1:0')),
      /needs the HTTP API auth/,
    );
  } finally {
    await withAuth.close();
    await without.close();
  }
});

test('a route marked config.stream (server-sent events) holds no in-flight slot: with maxInFlight 1 and a stream open, status still answers 200', async () => {
  const r = await rig(labTopology(), { run: false });
  const lifecycle = new AgentLifecycle();
  lifecycle.running();
  let release = (): void => undefined;
  const open = new Promise<void>((res) => {
    release = res;
  });
  const server = await buildApiServer(
    { agent: r.agent, sim: r.kernel, lifecycle, logger: silentLogger() },
    { maxInFlight: 1 },
    {
      plugins: [
        (app) => {
          app.get('/test/stream', { config: { stream: true } }, async () => {
            await open;
            return { done: true };
          });
        },
      ],
    },
  );
  try {
    const stream = server.app.inject({ url: '/test/stream' });
    for (let i = 0; i < 20; i++) await new Promise((res) => setImmediate(res));
    assert.equal((await server.app.inject({ url: '/v1/status' })).statusCode, 200);
    release();
    assert.equal((await stream).statusCode, 200);
  } finally {
    await server.close();
  }
});
