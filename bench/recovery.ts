/**
 * Recovery latency over 1000 simulated losses of vfio_pci + vfio_pci_core + vfio_virqfd with 4
 * claimed devices, on the simulated kernel with a manual clock (simulated milliseconds, 5 ms
 * resolution), with uevents and with polling only; then the agent's CPU and memory at rest
 * (a real process, default 250 ms poll, simulated gpu-server-2s topology, 2 claims).
 * Prints figures; asserts nothing. Usage: node dist/bench/recovery.js [losses] [restSeconds]
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { labTopology, modulesLive, NIC, onVfio, rig } from '../test/helpers.js';
import { parsePciAddress } from '../src/pci/address.js';
import { line, loadLine, record, type Figure } from './results.js';
import { synthetic } from './synthetic.js';

const losses = Number(process.argv[2] ?? 1000);
const restSeconds = Number(process.argv[3] ?? 20);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
}

const figures: Record<string, Figure> = {};

/**
 * Recovery at scale (issue 11): 64 claimed functions of a 1024-function simulated host, the
 * vfio modules removed, time until all 64 are verified back on vfio-pci.
 */
async function atScale(mode: 'uevents' | 'polling', rounds: number): Promise<number[]> {
  const { agent, kernel, clock, ac, running } = await rig(synthetic(1024), {
    uevents: mode === 'uevents',
  });
  const all = kernel
    .port()
    .listDevices()
    .then((xs) => xs.filter((a) => kernel.driverOf(a) === 'ice'));
  const devs = (await all).filter((_, i) => i % 14 === 0).slice(0, 64);
  await agent.claim(
    devs.map((a) => parsePciAddress(a)),
    { withGroup: false, force: false },
  );
  await clock.advanceUntil(() => onVfio(kernel, devs), 60_000, 5);
  const out: number[] = [];
  for (let i = 0; i < rounds; i++) {
    await clock.advance((i * 37) % 250);
    for (const m of ['vfio_pci', 'vfio_pci_core', 'vfio_virqfd']) kernel.rmmod(m);
    out.push(
      await clock.advanceUntil(() => onVfio(kernel, devs) && modulesLive(kernel), 10_000, 5),
    );
    await clock.advance(50);
  }
  ac.abort();
  await clock.advance(1);
  await running;
  if (devs.length !== 64) throw new Error(`only ${String(devs.length)} devices claimed`);
  return out;
}

async function simulate(mode: 'uevents' | 'polling'): Promise<number[]> {
  const { agent, kernel, clock, ac, running } = await rig(labTopology(), {
    uevents: mode === 'uevents',
  });
  await agent.claim(NIC, { withGroup: false, force: false });
  const out: number[] = [];
  for (let i = 0; i < losses; i++) {
    // Remove at a random phase of the poll cycle.
    await clock.advance((i * 37) % 250);
    for (const m of ['vfio_pci', 'vfio_pci_core', 'vfio_virqfd']) kernel.rmmod(m);
    out.push(await clock.advanceUntil(() => onVfio(kernel, NIC) && modulesLive(kernel), 10_000, 5));
    await clock.advance(50);
  }
  ac.abort();
  await clock.advance(1);
  await running;
  return out;
}

process.stdout.write(
  `recovery latency, ${losses} simulated losses, 4 claimed devices (simulated ms, 5 ms steps)\n`,
);
for (const mode of ['uevents', 'polling'] as const) {
  const xs = await simulate(mode);
  process.stdout.write(
    `  ${mode.padEnd(8)} p50 ${pct(xs, 50)}  p99 ${pct(xs, 99)}  max ${Math.max(...xs)}  (recovered ${xs.filter((x) => x < 10_000).length}/${xs.length})\n`,
  );
}

process.stdout.write(`recovery at scale: 64 claimed of 1024 functions; ${loadLine()}`);
for (const mode of ['uevents', 'polling'] as const) {
  const xs = await atScale(mode, Math.min(200, losses));
  const f: Figure = {
    what: `64 claims, module loss to all 64 on vfio-pci, ${mode}, ${String(xs.length)} losses: p50 ${String(pct(xs, 50))}, max ${String(Math.max(...xs))}, recovered ${String(xs.filter((x) => x < 10_000).length)}/${String(xs.length)}; p99`,
    value: pct(xs, 99),
    unit: 'simulated ms',
    goal: 300,
  };
  figures[`recovery_64_${mode}_p99_ms`] = f;
  process.stdout.write(line(f));
}

// ---- the agent at rest: a real process, real timers.
const main = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bundle/passthru.js');
const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pt-rest-'));
const args = [
  main,
  '--sim',
  'gpu-server-2s',
  '--state-dir',
  stateDir,
  '--socket',
  path.join(stateDir, 'agent.sock'),
];
const agentProc = spawn(process.execPath, [...args, 'agent'], { stdio: 'ignore' });
try {
  for (let i = 0; i < 100 && !fs.existsSync(path.join(stateDir, 'agent.sock')); i++)
    await new Promise((r) => setTimeout(r, 100));
  spawnSync(process.execPath, [...args, 'claim', '0000:17:00.0', '--with-group'], {
    stdio: 'ignore',
  });
  await new Promise((r) => setTimeout(r, 2000));
  const ticks = (): number => {
    const f =
      fs
        .readFileSync(`/proc/${agentProc.pid ?? 0}/stat`, 'utf8')
        .split(') ')[1]
        ?.split(' ') ?? [];
    return Number(f[11] ?? 0) + Number(f[12] ?? 0);
  };
  const hz = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100);
  const t0 = ticks();
  const w0 = Date.now();
  await new Promise((r) => setTimeout(r, restSeconds * 1000));
  const cpu = ((ticks() - t0) / hz / ((Date.now() - w0) / 1000)) * 100;
  const rss =
    /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${agentProc.pid ?? 0}/status`, 'utf8'))?.[1] ??
    '?';
  process.stdout.write(
    `agent at rest (${restSeconds} s, poll 250 ms, gpu-server-2s sim, 1 claim of 2 functions): CPU ${cpu.toFixed(2)}% of one core, RSS ${(Number(rss) / 1024).toFixed(1)} MiB\n`,
  );
  figures.agent_rest_sim_cpu_pct = {
    what: 'agent at rest, gpu-server-2s sim, 1 claim: CPU',
    value: cpu,
    unit: '% of one core',
  };
  figures.agent_rest_sim_rss_mib = {
    what: 'agent at rest, gpu-server-2s sim, 1 claim: RSS',
    value: Number(rss) / 1024,
    unit: 'MiB',
  };
} finally {
  agentProc.kill('SIGTERM');
  fs.rmSync(stateDir, { recursive: true, force: true });
}
record(figures);
