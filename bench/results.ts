/**
 * Benchmark results as JSON: each bench script merges its figures into one file
 * (bench/results/latest.json unless PASSTHRU_BENCH_OUT names another), and
 * `node dist/bench/compare.js OLD.json [NEW.json]` prints them side by side.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Figure {
  /** What was measured, for people. */
  what: string;
  value: number;
  unit: string;
  /** The goal (issue 11), when there is one: value must be <= goal. */
  goal?: number;
  /** A paired reference measured in the same run (lspci, node -e 0, the old code). */
  paired?: { what: string; value: number };
  /** value / paired.value, when a ratio is the goal. */
  ratio?: number;
  ratioGoal?: number;
}

export interface Results {
  date: string;
  host: { cpus: number; loadavg: number[] };
  figures: Record<string, Figure>;
}

export function resultsFile(): string {
  const env = process.env.PASSTHRU_BENCH_OUT;
  if (env !== undefined && env !== '') return path.resolve(env);
  // dist/bench/results.js -> bench/results/latest.json in the source tree
  return path.resolve(
    path.dirname(fileURLToPath(import.meta.url)),
    '../../bench/results/latest.json',
  );
}

/** Adds figures to the results file (replacing those with the same keys). */
export function record(figures: Record<string, Figure>): void {
  const file = resultsFile();
  let r: Results = { date: '', host: { cpus: 0, loadavg: [] }, figures: {} };
  try {
    r = JSON.parse(fs.readFileSync(file, 'utf8')) as Results;
  } catch {
    // A first run.
  }
  r.date = new Date().toISOString();
  r.host = { cpus: os.cpus().length, loadavg: os.loadavg().map((x) => Number(x.toFixed(2))) };
  Object.assign(r.figures, figures);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `${JSON.stringify(r, null, 2)}\n`);
}

/** One printed line: the figure, its goal and verdict, the paired reference and the ratio. */
export function line(f: Figure): string {
  const v = `${fmt(f.value)} ${f.unit}`;
  const goal =
    f.goal === undefined
      ? ''
      : `  goal <= ${fmt(f.goal)} ${f.unit}: ${f.value <= f.goal ? 'met' : 'NOT met'}`;
  const paired =
    f.paired === undefined ? '' : `  (${f.paired.what}: ${fmt(f.paired.value)} ${f.unit}`;
  const ratio =
    f.ratio === undefined
      ? paired === ''
        ? ''
        : ')'
      : `, ratio ${f.ratio.toFixed(2)}${f.ratioGoal === undefined ? '' : ` goal <= ${f.ratioGoal.toFixed(1)}: ${f.ratio <= f.ratioGoal ? 'met' : 'NOT met'}`})`;
  return `  ${f.what}: ${v}${goal}${paired}${ratio}\n`;
}

export function fmt(x: number): string {
  return Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(1);
}

export function loadLine(): string {
  return `load average ${os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')} on ${String(os.cpus().length)} cores\n`;
}
