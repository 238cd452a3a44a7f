// One process for every test file: measured far faster than a process per file (DESIGN.md).
// Test files are found, not listed: every *.test.js under dist/src and dist/test runs, so a new
// test file cannot be forgotten. The kernel suite (test/kernel) boots QEMU and runs on its own.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const dist = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function find(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      if (p !== path.join(dist, 'test', 'kernel')) out.push(...find(p));
    } else if (e.name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const files = [...find(path.join(dist, 'src')), ...find(path.join(dist, 'test'))].sort();
if (files.length === 0) throw new Error(`no test files under ${dist}`);
for (const f of files) await import(pathToFileURL(f).href);
