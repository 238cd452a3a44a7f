/**
 * Prints two benchmark result files side by side. Usage:
 * node dist/bench/compare.js OLD.json [NEW.json (default bench/results/latest.json)]
 */
import * as fs from 'node:fs';
import { fmt, resultsFile, type Results } from './results.js';

const [oldFile, newFile = resultsFile()] = process.argv.slice(2);
if (oldFile === undefined) {
  process.stderr.write('usage: compare.js OLD.json [NEW.json]\n');
  process.exit(2);
}
const read = (f: string): Results => JSON.parse(fs.readFileSync(f, 'utf8')) as Results;
const a = read(oldFile);
const b = read(newFile);
process.stdout.write(
  `old ${a.date} (load ${a.host.loadavg.join(' ')})\nnew ${b.date} (load ${b.host.loadavg.join(' ')})\n`,
);
for (const key of new Set([...Object.keys(a.figures), ...Object.keys(b.figures)])) {
  const x = a.figures[key];
  const y = b.figures[key];
  const unit = (y ?? x)?.unit ?? '';
  const change =
    x !== undefined && y !== undefined && x.value !== 0
      ? ` (${y.value >= x.value ? '+' : ''}${(((y.value - x.value) / x.value) * 100).toFixed(0)}%)`
      : '';
  process.stdout.write(
    `  ${key}: ${x === undefined ? '-' : fmt(x.value)} -> ${y === undefined ? '-' : fmt(y.value)} ${unit}${change}\n`,
  );
}
