/**
 * CLI start-up (issue 11: within 60 ms of `node -e 0`): each command line below is run
 * alternately with `node -e 0`, so load from other work hits both alike, and the figure is the
 * median of the paired differences. Also counts the JavaScript files (ours and node_modules')
 * each command loads, since loading modules is most of a command's start.
 * Prints figures, records them (bench/results.ts); asserts nothing.
 * Usage: node dist/bench/startup.js [pairs]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { line, loadLine, record, type Figure } from './results.js';
import { median, syntheticTree } from './synthetic.js';

const pairs = Number(process.argv[2] ?? 21);
const main = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bundle/passthru.js');
const out = (s: string): void => {
  process.stdout.write(s);
};

function timeRun(args: string[]): number {
  const t0 = performance.now();
  execFileSync(process.execPath, args, { stdio: ['ignore', 'ignore', 'ignore'] });
  return performance.now() - t0;
}

/** A module hook that names each file it loads on stderr (hooks run on their own thread). */
const hook = `data:text/javascript,${encodeURIComponent(
  `import { register } from 'node:module';
register('data:text/javascript,' + encodeURIComponent(
  'export async function load(u, c, next) { if (u.startsWith("file:")) process._rawDebug("LOADED " + u); return next(u, c); }'));`,
)}`;

function filesLoaded(args: string[]): number {
  const r = spawnSync(process.execPath, ['--import', hook, ...args], { encoding: 'utf8' });
  return r.stderr.split('\n').filter((l) => l.startsWith('LOADED file:')).length;
}

const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'pt-bench-startup-'));
fs.mkdirSync(path.join(empty, 'sys/bus/pci/devices'), { recursive: true });
const tree = await syntheticTree(100);
const cases: { key: string; what: string; args: string[]; goal?: number }[] = [
  {
    key: 'startup_list_empty_paired_ms',
    what: '`passthru list --json` on an empty tree',
    args: ['--root', empty, 'list', '--json'],
    goal: 60,
  },
  {
    key: 'startup_list_100_paired_ms',
    what: '`passthru list --json` on 100 functions (names looked up)',
    args: ['--root', tree.root, 'list', '--json'],
  },
  {
    key: 'startup_groups_empty_paired_ms',
    what: '`passthru groups` on an empty tree',
    args: ['--root', empty, 'groups'],
  },
  { key: 'startup_help_paired_ms', what: '`passthru --help`', args: ['--help'] },
];

const figures: Record<string, Figure> = {};
try {
  out(`start-up, ${String(pairs)} runs alternated with \`node -e 0\`; median of the differences\n`);
  for (const c of cases) {
    const args = [main, ...c.args];
    const diffs: number[] = [];
    const cmd: number[] = [];
    const node: number[] = [];
    timeRun(args);
    for (let i = 0; i < pairs; i++) {
      const n = timeRun(['-e', '0']);
      const t = timeRun(args);
      node.push(n);
      cmd.push(t);
      diffs.push(t - n);
    }
    const f: Figure = {
      what: `${c.what} minus \`node -e 0\` (${String(filesLoaded(args))} files loaded; whole run ${median(cmd).toFixed(1)} ms)`,
      value: median(diffs),
      unit: 'ms',
      ...(c.goal === undefined ? {} : { goal: c.goal }),
      paired: { what: 'node -e 0', value: median(node) },
    };
    figures[c.key] = f;
    out(line(f));
  }
} finally {
  fs.rmSync(empty, { recursive: true, force: true });
  fs.rmSync(tree.root, { recursive: true, force: true });
}
out(loadLine());
record(figures);
