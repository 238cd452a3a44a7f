/**
 * HTTP API load: a real agent process on a simulated host (`agent --sim qemu-guest --listen
 * 127.0.0.1:0`, two NICs claimed), then N requests (default 10,000), alternating GET
 * /v1/status and GET /metrics, from C concurrent loopback clients (default 50), each with its
 * own keep-alive connection and one request at a time. Prints latency p50/p99/max per route,
 * throughput, answers by status (the agent serves at most 32 requests at once and answers 503
 * PT_ERR_AGENT_BUSY past that), and the agent's RSS (VmRSS) before and after.
 * Prints figures; asserts nothing. Usage: node dist/bench/http-load.js [requests] [clients]
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

const total = Number(process.argv[2] ?? 10_000);
const clients = Number(process.argv[3] ?? 50);
const main = path.resolve(import.meta.dirname, '../bundle/passthru.js');

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
}

async function rssMiB(pid: number): Promise<number> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

function get(agent: http.Agent, port: number, url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: url, agent }, (res) => {
      res.resume();
      res.on('end', () => {
        resolve(res.statusCode ?? 0);
      });
    });
    req.on('error', reject);
  });
}

async function waitForUrl(out: () => string): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const m = /http:\/\/127\.0\.0\.1:\d+\//.exec(out());
    if (m) return m[0];
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the agent printed no URL: ${out()}`);
}

const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-http-load-'));
const args = ['--sim', 'qemu-guest', '--state-dir', dir];
const child = spawn(process.execPath, [main, ...args, 'agent', '--listen', '127.0.0.1:0'], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
let out = '';
child.stdout.setEncoding('utf8');
child.stdout.on('data', (c: string) => (out += c));
try {
  const url = new URL(await waitForUrl(() => out));
  const port = Number(url.port);
  const claim = spawnSync(
    process.execPath,
    [main, ...args, 'claim', '0000:01:00.0', '0000:02:00.0'],
    { encoding: 'utf8' },
  );
  if (claim.status !== 0) throw new Error(`claim failed: ${claim.stderr}`);
  // Let the agent settle after start and the claim before the first reading.
  await new Promise((r) => setTimeout(r, 1_000));
  const pid = child.pid ?? 0;
  const rssBefore = await rssMiB(pid);

  const routes = ['/v1/status', '/metrics'];
  const lat = new Map<string, number[]>(routes.map((r) => [r, []]));
  const statuses = new Map<number, number>();
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        for (let i = next++; i < total; i = next++) {
          const route = routes[i % routes.length] ?? '/v1/status';
          const s = performance.now();
          const code = await get(agent, port, route);
          lat.get(route)?.push(performance.now() - s);
          statuses.set(code, (statuses.get(code) ?? 0) + 1);
        }
      } finally {
        agent.destroy();
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const rssAfter = await rssMiB(pid);

  const f = (x: number): string => x.toFixed(1);
  process.stdout.write(
    `HTTP load: ${total} requests from ${clients} concurrent loopback clients (keep-alive), ${f(seconds)} s, ${Math.round(total / seconds)} req/s\n`,
  );
  for (const [route, xs] of lat)
    process.stdout.write(
      `  ${route.padEnd(11)} n=${xs.length}  p50 ${f(pct(xs, 50))} ms  p99 ${f(pct(xs, 99))} ms  max ${f(Math.max(...xs))} ms\n`,
    );
  const all = [...lat.values()].flat();
  process.stdout.write(`  all         p50 ${f(pct(all, 50))} ms  p99 ${f(pct(all, 99))} ms\n`);
  process.stdout.write(
    `  answers: ${[...statuses].map(([c, n]) => `${c} x ${n}`).join(', ')} (503: over the agent's 32 requests at once)\n`,
  );
  process.stdout.write(
    `  agent RSS: ${f(rssBefore)} MiB before, ${f(rssAfter)} MiB after (${os.cpus().length} cores shared with other work)\n`,
  );
} finally {
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  await fs.rm(dir, { recursive: true, force: true });
}
