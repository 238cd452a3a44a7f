/**
 * The agent at rest on a 4096-function host (issue 11): a sysfs tree on disk read through the
 * real LinuxHost (--root), 16 claimed functions already on vfio-pci, the vfio modules live.
 * 1. A real agent process (no --listen, default 250 ms poll): CPU share and RSS over a window,
 *    then RSS again 6 s after a resync (a look at every claim, with the bus listed).
 * 2. In process, the same host wrapped to count calls: host calls per keeper poll at rest, and
 *    which devices they touch (only the claimed ones may be read).
 * Prints figures beside their goals, records them; asserts nothing.
 * Usage: node dist/bench/agent-rest.js [restSeconds]   (PT_BENCH_SETTLE_MS: the wait after the
 * claim before the window, default 10000)
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent } from '../src/agent/agent.js';
import { systemClock } from '../src/host/clock.js';
import { LinuxHost } from '../src/host/linux/host.js';
import type { HostPort } from '../src/host/port.js';
import { parsePciAddress, type PciAddress } from '../src/pci/address.js';
import { MemoryHistory } from '../src/state/history.js';
import { MemoryStore } from '../src/state/model.js';
import { silentLogger } from '../src/util/logger.js';
import { line, loadLine, record, type Figure } from './results.js';
import { syntheticTree } from './synthetic.js';

const restSeconds = Number(process.argv[2] ?? 60);
const SETTLE_MS = Number(process.env.PT_BENCH_SETTLE_MS ?? 10_000);
const CLAIMS = 16;
const main = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bundle/passthru.js');
const out = (s: string): void => {
  process.stdout.write(s);
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const { root, topo } = await syntheticTree(4096, CLAIMS);
const claimed = topo.devices.filter((d) => d.driver === 'vfio-pci').map((d) => d.address);
// Debian 6.1's vfio set, live, so the keeper has nothing to load.
fs.writeFileSync(
  path.join(root, 'proc/modules'),
  ['vfio_pci', 'vfio_pci_core', 'vfio_iommu_type1', 'vfio', 'vfio_virqfd', 'irqbypass']
    .map((m) => `${m} 16384 1 - Live 0x0000000000000000\n`)
    .join(''),
);
fs.mkdirSync(path.join(root, 'sys/bus/pci/drivers/vfio-pci'), { recursive: true });
// The group nodes vfio-pci makes for its devices: without them a claim is not ready.
fs.mkdirSync(path.join(root, 'dev/vfio'), { recursive: true });
for (const d of topo.devices)
  if (d.driver === 'vfio-pci')
    fs.writeFileSync(path.join(root, 'dev/vfio', String(d.iommuGroup)), '');
const figures: Record<string, Figure> = {};
out(
  `agent at rest, 4096 functions (tree via LinuxHost), ${String(claimed.length)} claims; ${loadLine()}`,
);

// ---- 1. a real process
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pt-rest-state-'));
const args = [main, '--root', root, '--state-dir', stateDir, '--socket', path.join(stateDir, 's')];
const RESYNC_MS = 30_000; // the agent's default --resync-ms
const spawnedAt = performance.now();
const agentProc = spawn(process.execPath, [...args, 'agent', '--no-uevents'], { stdio: 'ignore' });
try {
  for (let i = 0; i < 300 && !fs.existsSync(path.join(stateDir, 's')); i++) await sleep(100);
  const claim = spawnSync(process.execPath, [...args, 'claim', '--force', ...claimed], {
    encoding: 'utf8',
  });
  if (claim.status !== 0) out(`  claim exited ${String(claim.status)}: ${claim.stderr}`);
  // At rest means after start-up has settled: the claim's writes, the lean heap's two
  // collections (1 s apart) and V8's memory reducer, which runs about 8 s after a full
  // collection (docs/adr/0008). A window that began 3 s after the claim counted those.
  await sleep(SETTLE_MS);
  const ticks = (): number => {
    const f =
      fs
        .readFileSync(`/proc/${String(agentProc.pid)}/stat`, 'utf8')
        .split(') ')[1]
        ?.split(' ') ?? [];
    return Number(f[11] ?? 0) + Number(f[12] ?? 0);
  };
  const hz = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);
  const rssNow = (): number =>
    Number(
      /VmRSS:\s+(\d+) kB/.exec(
        fs.readFileSync(`/proc/${String(agentProc.pid)}/status`, 'utf8'),
      )?.[1] ?? NaN,
    ) / 1024;
  const t0 = ticks();
  const w0 = performance.now();
  let peak = 0;
  for (let s = 0; s < restSeconds; s++) {
    await sleep(1000);
    peak = Math.max(peak, rssNow());
  }
  const cpu = ((ticks() - t0) / hz / ((performance.now() - w0) / 1000)) * 100;
  const rss = rssNow();
  // Each resync (every 30 s from start) was a full rediscovery whose garbage stayed in the RSS;
  // now it lists the bus and reads the claimed devices: look again 6 s past the next one.
  const sinceStart = performance.now() - spawnedAt;
  const k = Math.max(1, Math.ceil((sinceStart - 6000) / RESYNC_MS));
  await sleep(k * RESYNC_MS + 6000 - sinceStart);
  const rssAfterResync = rssNow();
  figures.agent_rest_cpu_pct = {
    what: `agent process at rest, ${String(restSeconds)} s, 250 ms poll: CPU`,
    value: cpu,
    unit: '% of one core',
    goal: 1,
  };
  figures.agent_rest_rss_mib = {
    what: `agent process at rest: RSS at the end of the window (highest in it: ${peak.toFixed(1)} MiB)`,
    value: rss,
    unit: 'MiB',
    goal: 80 / 1.048576,
  };
  figures.agent_rest_rss_after_resync_mib = {
    what: 'agent process at rest: RSS 6 s after a resync',
    value: rssAfterResync,
    unit: 'MiB',
    goal: 80 / 1.048576,
  };
  out(line(figures.agent_rest_cpu_pct));
  out(line(figures.agent_rest_rss_mib));
  out(line(figures.agent_rest_rss_after_resync_mib));
} finally {
  agentProc.kill('SIGTERM');
  await sleep(500);
  fs.rmSync(stateDir, { recursive: true, force: true });
}

// ---- 2. host calls per poll, in process
const calls = new Map<string, number>();
const touched = new Set<string>();
const counting = (h: HostPort): HostPort =>
  new Proxy(h, {
    get(target, prop, receiver) {
      const v: unknown = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      const name = String(prop);
      return (...a: unknown[]): unknown => {
        calls.set(name, (calls.get(name) ?? 0) + 1);
        if (typeof a[0] === 'string' && /^[0-9a-f]{4}:/.test(a[0])) touched.add(a[0]);
        return (v as (...x: unknown[]) => unknown).apply(target, a);
      };
    },
  });
const ac = new AbortController();
const agent = new Agent({
  host: counting(new LinuxHost({ root, uevents: false })),
  store: new MemoryStore(),
  history: new MemoryHistory(),
  clock: systemClock,
  logger: silentLogger(),
});
await agent.start({ loadModules: true });
const running = agent.run(ac.signal);
await agent.claim(
  claimed.map((a) => parsePciAddress(a)),
  // The tree has no /proc/self/mountinfo: nothing tells what backs the host, so force.
  { withGroup: false, force: true },
);
await sleep(2000);
calls.clear();
touched.clear();
const windowMs = 5000;
await sleep(windowMs);
ac.abort();
await running;
const polls = windowMs / 250;
const total = [...calls.values()].reduce((a, b) => a + b, 0);
const claimedSet = new Set<string>(claimed);
const others = [...touched].filter((a) => !claimedSet.has(a as PciAddress));
figures.agent_rest_host_calls_per_poll = {
  what: `host calls per keeper poll at rest (${[...calls].map(([k, v]) => `${k} ${(v / polls).toFixed(1)}`).join(', ')}); devices touched: ${String(touched.size)} claimed of ${String(claimed.length)}, ${String(others.length)} others`,
  value: total / polls,
  unit: 'calls',
};
out(line(figures.agent_rest_host_calls_per_poll));
record(figures);
fs.rmSync(root, { recursive: true, force: true });
// The stopped agent may leave an unref'd handle or a late timer: the figures are out, so go.
process.exit(0);
