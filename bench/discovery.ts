/**
 * Discovery at server scale (issue 11), on synthetic sysfs trees of 100, 1000 and 4096
 * functions, each measured beside lspci in the same run:
 * - in-process discover() through LinuxHost (wall and CPU), and that it equals the simulated
 *   kernel's view of the same topology;
 * - whole process: `passthru list --json` against `lspci -vmm -nnk -D` on the same tree, runs
 *   alternated so that load from other work hits both alike;
 * - start-up: `passthru list --json` on an empty tree against `node -e 0`, alternated too.
 * Prints each figure beside its goal, records them (bench/results.ts); asserts nothing.
 * Usage: node dist/bench/discovery.js [runs] (default 11: at 4096 functions one run of either
 * process varies by about ±10 ms, a few per cent of the ratio)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { isDeepStrictEqual } from 'node:util';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { ManualClock } from '../src/host/clock.js';
import { loadPciIds } from '../src/host/files.js';
import { LinuxHost } from '../src/host/linux/host.js';
import { SimKernel } from '../src/host/sim/kernel.js';
import { discover } from '../src/pci/discovery.js';
import { line, loadLine, record, type Figure } from './results.js';
import { median, syntheticTree } from './synthetic.js';

const runs = Number(process.argv[2] ?? 11);
const main = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bundle/passthru.js');
const { names } = await loadPciIds();
const haveLspci = spawnSync('lspci', ['--version'], { stdio: 'ignore' }).status === 0;
const figures: Record<string, Figure> = {};
const out = (s: string): void => {
  process.stdout.write(s);
};

/** Wall milliseconds of one child process run to completion, its output discarded. */
function timeRun(cmd: string, args: string[]): number {
  const t0 = performance.now();
  execFileSync(cmd, args, { stdio: ['ignore', 'ignore', 'ignore'] });
  return performance.now() - t0;
}

/** Runs a and b alternately `runs` times: medians of each. */
function paired(runsN: number, a: () => number, b: () => number): [number, number] {
  const xs: number[] = [];
  const ys: number[] = [];
  a();
  b();
  for (let i = 0; i < runsN; i++) {
    xs.push(a());
    ys.push(b());
  }
  return [median(xs), median(ys)];
}

const lspciArgs = (root: string): string[] => [
  '-vmm',
  '-nn',
  '-k',
  '-D',
  '-O',
  'hwdb.disable=1',
  '-A',
  'linux-sysfs',
  '-O',
  `sysfs.path=${root}/sys/bus/pci`,
];

out(`discovery benchmark, ${String(runs)} paired runs, medians; ${loadLine()}`);
for (const n of [100, 1000, 4096]) {
  const { root, topo } = await syntheticTree(n);
  try {
    const host = new LinuxHost({ root, uevents: false });
    const sim = (await discover(new SimKernel(topo, new ManualClock(0)).port(), names)).devices;
    // Two ways to read: as `passthru list` does (lock-taking attributes of devices bound to a
    // host driver read in place), and as the agent does (every one in the thread pool).
    const modes = [
      { key: '', what: 'as `passthru list` reads', inPlaceWhenBound: true },
      {
        key: '_agent',
        what: 'as the agent reads (lock-taking reads in the pool)',
        inPlaceWhenBound: false,
      },
    ];
    let identical = true;
    const wall: number[][] = modes.map(() => []);
    const cpu: number[][] = modes.map(() => []);
    const lspci: number[] = [];
    for (let i = 0; i < runs + 1; i++) {
      for (const [m, mode] of modes.entries()) {
        const c0 = process.cpuUsage();
        const t0 = performance.now();
        const inv = await discover(host, names, { inPlaceWhenBound: mode.inPlaceWhenBound });
        const dt = performance.now() - t0;
        const c = process.cpuUsage(c0);
        identical &&= isDeepStrictEqual(inv.devices, sim);
        if (i === 0) continue;
        wall[m]?.push(dt);
        cpu[m]?.push((c.user + c.system) / 1000);
      }
      if (i > 0 && haveLspci) lspci.push(timeRun('lspci', lspciArgs(root)));
    }
    const l = haveLspci ? median(lspci) : NaN;
    for (const [m, mode] of modes.entries()) {
      const w = wall[m] ?? [];
      const c = cpu[m] ?? [];
      const f: Figure = {
        what: `in-process discovery, ${String(n)} functions, ${mode.what} (wall; CPU ${median(c).toFixed(0)} ms; output ${identical ? 'identical to' : 'DIFFERENT from'} the simulated kernel's)`,
        value: median(w),
        unit: 'ms',
        ...(n === 4096 ? { goal: 150 } : {}),
        ...(haveLspci ? { paired: { what: 'lspci process', value: l } } : {}),
      };
      figures[`discovery_inprocess${mode.key}_${String(n)}_ms`] = f;
      figures[`discovery_inprocess${mode.key}_${String(n)}_cpu_ms`] = {
        what: `in-process discovery CPU, ${String(n)} functions, ${mode.what}`,
        value: median(c),
        unit: 'ms',
      };
      out(line(f));
    }
    if (haveLspci) {
      const [ours, theirs] = paired(
        runs,
        () => timeRun(process.execPath, [main, '--root', root, 'list', '--json']),
        () => timeRun('lspci', lspciArgs(root)),
      );
      const ratioGoal = n === 4096 ? 1 : n === 1000 ? 2 : undefined;
      const w: Figure = {
        what: `whole process \`passthru list --json\`, ${String(n)} functions`,
        value: ours,
        unit: 'ms',
        paired: { what: 'lspci -vmm -nnk -D', value: theirs },
        ratio: ours / theirs,
        ...(ratioGoal === undefined ? {} : { ratioGoal }),
      };
      figures[`list_process_${String(n)}_ms`] = w;
      out(line(w));
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'pt-bench-empty-'));
try {
  fs.mkdirSync(path.join(empty, 'sys/bus/pci/devices'), { recursive: true });
  const [list, node] = paired(
    runs * 2,
    () => timeRun(process.execPath, [main, '--root', empty, 'list', '--json']),
    () => timeRun(process.execPath, ['-e', '0']),
  );
  const f: Figure = {
    what: 'start-up: `passthru list --json` on an empty tree, minus `node -e 0`',
    value: list - node,
    unit: 'ms',
    goal: 60,
    paired: { what: 'node -e 0', value: node },
  };
  figures.startup_over_node_ms = f;
  out(line(f));
} finally {
  fs.rmSync(empty, { recursive: true, force: true });
}
out(loadLine());
record(figures);
