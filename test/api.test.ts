import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { AgentLifecycle, type ApiContext } from '../src/agent/routes.js';
import { requestAgent } from '../src/process/socket-client.js';
import { buildApiServer } from '../src/process/socket-server.js';
import { PtError } from '../src/errors.js';
import { silentLogger } from '../src/util/logger.js';
import { NIC, apiServer, labTopology, rig, stop } from './helpers.js';

const A = NIC[0]!;

async function tmpDir(prefix: string): Promise<string> {
  // mkdtemp makes the folder 0700: a private folder, as the socket needs.
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

test('routes answer only the names they define: /v1/sim/constructor and unknown paths are 404 PT_ERR_NO_ROUTE', async () => {
  const r = await rig(labTopology(), { run: false });
  const { server } = await apiServer(r);
  try {
    for (const [method, url] of [
      ['POST', '/v1/sim/constructor'],
      ['POST', '/v1/sim/__proto__'],
      ['GET', '/v1/sim/toString'],
      ['GET', '/v1/nope'],
      ['DELETE', '/v1/status'],
    ] as const) {
      const res = await server.app.inject({ method, url, payload: method === 'POST' ? {} : '' });
      assert.equal(res.statusCode, 404, `${method} ${url}`);
      assert.equal(
        res.json<{ error: { code: string } }>().error.code,
        'PT_ERR_NO_ROUTE',
        `${method} ${url}`,
      );
    }
  } finally {
    await server.close();
  }
});

test('/v1/sim/* exists only on a simulated agent: without --sim, GET /v1/sim/state is 404 and says why', async () => {
  const r = await rig(labTopology(), { run: false });
  const withSim = await apiServer(r);
  const without = await apiServer(r, { sim: false });
  try {
    assert.equal((await withSim.server.app.inject({ url: '/v1/sim/state' })).statusCode, 200);
    const res = await without.server.app.inject({ url: '/v1/sim/state' });
    assert.equal(res.statusCode, 404);
    assert.match(
      res.json<{ error: { message: string } }>().error.message,
      /not running on a simulated kernel/,
    );
  } finally {
    await withSim.server.close();
    await without.server.close();
  }
});

test('an oversized body gets 413 PT_ERR_REQUEST_TOO_LARGE and changes nothing', async () => {
  const r = await rig(labTopology(), { run: false });
  const { server } = await apiServer(r);
  try {
    const res = await server.app.inject({
      method: 'POST',
      url: '/v1/claims',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ addresses: [A], pad: 'x'.repeat(70 * 1024) }),
    });
    assert.equal(res.statusCode, 413);
    assert.equal(res.json<{ error: { code: string } }>().error.code, 'PT_ERR_REQUEST_TOO_LARGE');
    assert.equal(r.kernel.driverOf(A), 'e1000e');
  } finally {
    await server.close();
  }
});

test('bodies are validated by schema without coercion: "force":"true", unknown fields, negative times, bad errno are 400', async () => {
  const r = await rig(labTopology(), { run: false });
  const { server } = await apiServer(r);
  try {
    const cases: [string, unknown][] = [
      ['/v1/claims', { addresses: [A], force: 'true' }],
      ['/v1/claims', { addresses: [A], extra: 1 }],
      ['/v1/claims', { addresses: [] }],
      ['/v1/claims', ['not', 'an', 'object']],
      ['/v1/sim/fail-load', { module: 'vfio_pci', times: -5 }],
      ['/v1/sim/fail-write', { op: 'unbind', errno: 'NOT_AN_ERRNO\n' }],
      ['/v1/sim/rmmod', { module: 'vfio_pci\ninstall' }],
    ];
    for (const [url, payload] of cases) {
      const res = await server.app.inject({ method: 'POST', url, payload: payload as object });
      assert.equal(res.statusCode, 400, `${url} ${JSON.stringify(payload)}`);
      assert.equal(res.json<{ error: { code: string } }>().error.code, 'PT_ERR_INVALID_ARGUMENT');
    }
    assert.equal(r.kernel.driverOf(A), 'e1000e', 'the claim with "force":"true" did nothing');
  } finally {
    await server.close();
  }
});

test('status says starting until the start finishes; a claim sent meanwhile waits and then binds', async () => {
  const r = await rig(labTopology());
  const { server, lifecycle } = await apiServer(r, { running: false });
  try {
    const before = await server.app.inject({ url: '/v1/status' });
    assert.equal(before.json<{ phase: string }>().phase, 'starting');
    assert.equal(
      (await server.app.inject({ url: '/v1/health' })).json<{ phase: string }>().phase,
      'starting',
    );
    let answered = false;
    const claim = server.app
      .inject({ method: 'POST', url: '/v1/claims', payload: { addresses: [A] } })
      .then((res) => {
        answered = true;
        return res;
      });
    // Let the request reach the handler; it must not run the claim while starting.
    for (let i = 0; i < 20; i++) await new Promise((res) => setImmediate(res));
    assert.equal(answered, false);
    assert.equal(r.kernel.driverOf(A), 'e1000e');
    lifecycle.running();
    const res = await claim;
    assert.equal(res.statusCode, 200);
    assert.equal(r.kernel.driverOf(A), 'vfio-pci');
    const after = (await server.app.inject({ url: '/v1/status' })).json<{
      phase: string;
      problems: { history: { writeErrors: number }; events: { subscriberErrors: number } };
    }>();
    assert.equal(after.phase, 'running');
    assert.equal(after.problems.history.writeErrors, 0);
    assert.equal(after.problems.events.subscriberErrors, 0);
  } finally {
    await server.close();
    await stop(r);
  }
});

test('request concurrency is bounded: past maxInFlight the agent answers 503 PT_ERR_AGENT_BUSY', async () => {
  const r = await rig(labTopology(), { run: false });
  // Still starting: a claim waits in its handler, holding its slot.
  const { server, lifecycle } = await apiServer(r, { running: false, maxInFlight: 1 });
  try {
    const held = server.app.inject({
      method: 'POST',
      url: '/v1/claims',
      payload: { addresses: [A] },
    });
    for (let i = 0; i < 20; i++) await new Promise((res) => setImmediate(res));
    const busy = await server.app.inject({ url: '/v1/status' });
    assert.equal(busy.statusCode, 503);
    assert.equal(busy.json<{ error: { code: string } }>().error.code, 'PT_ERR_AGENT_BUSY');
    lifecycle.running();
    assert.equal((await held).statusCode, 200);
    assert.equal((await server.app.inject({ url: '/v1/status' })).statusCode, 200);
  } finally {
    await server.close();
  }
});

test('unix socket: created 0600 in a 0700 folder, served, and removed on close', async () => {
  const r = await rig(labTopology(), { run: false });
  const dir = await tmpDir('pt-sock-');
  const sock = path.join(dir, 'agent.sock');
  const { server } = await apiServer(r);
  try {
    await server.listenUnix(sock);
    const st = await fs.lstat(sock);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o600);
    const res = await requestAgent(sock, 'GET', '/v1/health');
    assert.deepEqual(res, { status: 200, body: { phase: 'running' } });
    await server.close();
    await assert.rejects(fs.lstat(sock), { code: 'ENOENT' });
  } finally {
    await server.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('unix socket: a regular file at the socket path is refused with PT_ERR_UNSAFE_PATH and left byte-identical', async () => {
  const r = await rig(labTopology(), { run: false });
  const dir = await tmpDir('pt-sock-');
  const notASocket = path.join(dir, 'state.json');
  await fs.writeFile(notASocket, '{"precious":true}');
  const { server } = await apiServer(r);
  try {
    await assert.rejects(server.listenUnix(notASocket), { code: 'PT_ERR_UNSAFE_PATH' });
    assert.equal(await fs.readFile(notASocket, 'utf8'), '{"precious":true}');
  } finally {
    await server.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('unix socket: a stale socket is replaced, a live one is refused', async () => {
  const r = await rig(labTopology(), { run: false });
  const dir = await tmpDir('pt-sock-');
  const sock = path.join(dir, 'agent.sock');
  const first = await apiServer(r);
  const second = await apiServer(r);
  try {
    await first.server.listenUnix(sock);
    await assert.rejects(second.server.listenUnix(sock), /already listening/);
    // A socket file nobody listens on (an agent that was SIGKILLed).
    await first.server.close();
    const stale = net.createServer();
    await new Promise<void>((res) => stale.listen(path.join(dir, 'stale.sock'), res));
    await fs.rename(path.join(dir, 'stale.sock'), sock);
    stale.close();
    await second.server.listenUnix(sock);
    assert.equal((await requestAgent(sock, 'GET', '/v1/health'))?.status, 200);
  } finally {
    await first.server.close();
    await second.server.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('unix socket: a socket folder others can reach (0755) or write (0777) is refused with PT_ERR_UNSAFE_PATH', async () => {
  const r = await rig(labTopology(), { run: false });
  const dir = await tmpDir('pt-sock-');
  const { server } = await apiServer(r);
  try {
    for (const mode of [0o755, 0o777]) {
      await fs.chmod(dir, mode);
      await assert.rejects(server.listenUnix(path.join(dir, 'agent.sock')), {
        code: 'PT_ERR_UNSAFE_PATH',
      });
      await assert.rejects(fs.lstat(path.join(dir, 'agent.sock')), { code: 'ENOENT' });
    }
  } finally {
    await server.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('client: a listener that accepts and never answers fails with PT_ERR_AGENT_UNRESPONSIVE', async () => {
  const dir = await tmpDir('pt-mute-');
  const sock = path.join(dir, 'agent.sock');
  const held: net.Socket[] = [];
  const mute = net.createServer((s) => held.push(s));
  await new Promise<void>((res) => mute.listen(sock, res));
  try {
    await assert.rejects(
      requestAgent(sock, 'GET', '/v1/status', undefined, { timeoutMs: 200 }),
      (e: unknown) => e instanceof PtError && e.code === 'PT_ERR_AGENT_UNRESPONSIVE',
    );
  } finally {
    for (const s of held) s.destroy();
    mute.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('client: no socket is null (direct mode); a socket in a folder others can write is refused (PT_ERR_UNSAFE_PATH)', async () => {
  const dir = await tmpDir('pt-client-');
  const sock = path.join(dir, 'agent.sock');
  const fake = net.createServer((s) => s.end());
  try {
    assert.equal(await requestAgent(sock, 'GET', '/v1/status'), null);
    await new Promise<void>((res) => fake.listen(sock, res));
    await fs.chmod(dir, 0o777);
    await assert.rejects(requestAgent(sock, 'GET', '/v1/status'), {
      code: 'PT_ERR_UNSAFE_PATH',
    });
  } finally {
    fake.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('status shows history write failures (a symlink planted as history.jsonl) and subscriber failures instead of hiding them', async () => {
  const { ManualClock } = await import('../src/host/clock.js');
  const { SimKernel } = await import('../src/host/sim/kernel.js');
  const { MemoryStore } = await import('../src/state/model.js');
  const { FileHistory } = await import('../src/process/file-history.js');
  const { makeAgent } = await import('./helpers.js');
  const dir = await tmpDir('pt-hist-api-');
  await fs.symlink(path.join(dir, 'victim'), path.join(dir, 'history.jsonl'));
  const clock = new ManualClock(1_000_000);
  const kernel = new SimKernel(labTopology(), clock);
  const history = new FileHistory(dir, { logger: silentLogger() });
  const { agent } = makeAgent(kernel, clock, new MemoryStore(), kernel.port(), { history });
  await agent.start({ loadModules: false });
  agent.bus.subscribe(() => {
    throw new Error('metrics exporter broke');
  });
  const lifecycle = new AgentLifecycle();
  lifecycle.running();
  const server = await buildApiServer({
    agent,
    sim: kernel,
    lifecycle,
    history,
    logger: silentLogger(),
  });
  try {
    await server.app.inject({ method: 'POST', url: '/v1/claims', payload: { addresses: [A] } });
    await history.append({ type: 'claim.removed', at: 1, address: A });
    const st = (await server.app.inject({ url: '/v1/status' })).json<{
      problems: {
        history: { writeErrors: number; lastError: string };
        events: { subscriberErrors: number; lastError: string };
      };
    }>();
    assert.ok(st.problems.history.writeErrors > 0);
    assert.match(st.problems.history.lastError, /ELOOP/);
    assert.ok(st.problems.events.subscriberErrors > 0);
    assert.match(st.problems.events.lastError, /metrics exporter broke/);
    await assert.rejects(fs.lstat(path.join(dir, 'victim')), { code: 'ENOENT' });
  } finally {
    await server.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('status carries which pod holds which device when device plugins run, leaves it out when the lookup fails, and the status text lists it', async () => {
  const r = await rig(labTopology());
  const lifecycle = new AgentLifecycle();
  lifecycle.running();
  const pods: NonNullable<ApiContext['pods']> = {
    lookup: () =>
      Promise.resolve([
        {
          address: A,
          resourceName: 'intel.com/82574L',
          namespace: 'vms',
          pod: 'virt-launcher-a',
          container: 'compute',
        },
      ]),
  };
  const server = await buildApiServer({
    agent: r.agent,
    sim: null,
    lifecycle,
    logger: silentLogger(),
    pods,
  });
  try {
    const res = await server.app.inject({ method: 'GET', url: '/v1/status' });
    const body = res.json<{ pods?: { pod: string }[] }>();
    assert.equal(body.pods?.[0]?.pod, 'virt-launcher-a');
    const { statusText } = await import('../src/cli/render.js');
    assert.match(
      statusText(res.json()),
      /0000:01:00\.0\s+intel\.com\/82574L\s+vms\/virt-launcher-a\s+compute/,
    );
    pods.lookup = () => Promise.reject(new Error('kubelet restarting'));
    const again = await server.app.inject({ method: 'GET', url: '/v1/status' });
    assert.equal(again.statusCode, 200);
    assert.equal(again.json<{ pods?: unknown }>().pods, undefined);
  } finally {
    await server.close();
    await stop(r);
  }
});
