import { execFile } from 'node:child_process';
import { SimKernel } from '../src/host/sim/kernel.js';
import { ManualClock } from '../src/host/clock.js';
import { discover } from '../src/pci/discovery.js';
import type { PciIdNames } from '../src/pci/pciids.js';
import type { Topology } from '../src/topology/format.js';
import { deviceJson } from '../src/cli/views.js';
import { DumpParser } from '../src/import/lspci-parse.js';
import { dumpsToTopology, type ImportResult } from '../src/import/to-topology.js';

/** What `passthru --sim TOPO list --json` prints for a topology. */
export async function listJson(
  topo: Topology,
  names: PciIdNames,
): Promise<Record<string, unknown>[]> {
  const kernel = new SimKernel(topo, new ManualClock(1_000));
  const inv = await discover(kernel.port(), names);
  return inv.devices.map(deviceJson);
}

/**
 * `list --json` of two hosts, field by field (every key either side prints). Returns the count of
 * fields compared and the mismatches, so a caller can report them all at once.
 */
export function compareLists(
  source: Record<string, unknown>[],
  imported: Record<string, unknown>[],
): { fields: number; mismatches: string[]; perField: Record<string, number> } {
  const mismatches: string[] = [];
  const perField: Record<string, number> = {};
  let fields = 0;
  const a = source.map((d) => String(d.address)).join(',');
  const b = imported.map((d) => String(d.address)).join(',');
  if (a !== b) mismatches.push(`functions differ: source [${a}] imported [${b}]`);
  const byAddr = new Map(imported.map((d) => [String(d.address), d]));
  for (const s of source) {
    const i = byAddr.get(String(s.address));
    if (i === undefined) continue;
    for (const k of new Set([...Object.keys(s), ...Object.keys(i)])) {
      fields++;
      const x = JSON.stringify(s[k]);
      const y = JSON.stringify(i[k]);
      if (x === y) perField[k] = (perField[k] ?? 0) + 1;
      else mismatches.push(`${String(s.address)} ${k}: source ${x} imported ${y}`);
    }
  }
  return { fields, mismatches, perField };
}

/** Imports dump texts (as files named by their keys) the way `passthru import` does. */
export function importTexts(files: Record<string, string>, name = 'imported'): ImportResult {
  const p = new DumpParser();
  for (const [file, text] of Object.entries(files)) {
    const lines = text.split('\n');
    if (lines.at(-1) === '') lines.pop();
    lines.forEach((l, i) => {
      p.line(l, { file, line: i + 1 });
    });
  }
  return dumpsToTopology(p.finish(), { name });
}

export function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout) => {
      if (err) reject(new Error(`${cmd} failed: ${err.message}`));
      else resolve(stdout);
    });
  });
}

/** The three dumps the README asks for, taken of a sysfs tree instead of the live /sys. */
export async function dumpsOfTree(root: string): Promise<Record<string, string>> {
  const sysfs = [
    '-A',
    'linux-sysfs',
    '-O',
    `sysfs.path=${root}/sys/bus/pci`,
    '-O',
    'hwdb.disable=1',
  ];
  const vv = await run('lspci', ['-vvnn', '-k', '-D', ...sysfs]);
  const vmm = await run('lspci', ['-vmm', '-nnk', '-D', ...sysfs]);
  const groups = (await run('find', [`${root}/sys/kernel/iommu_groups`, '-type', 'l']))
    .split('\n')
    .map((l) => (l.startsWith(root) ? l.slice(root.length) : l))
    .join('\n');
  return { 'lspci-vv.txt': vv, 'lspci-vmm.txt': vmm, 'iommu-groups.txt': groups };
}
