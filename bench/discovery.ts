/**
 * Discovery cost against lspci on synthetic sysfs trees of 100, 1000 and 4096 functions.
 * Prints a table; asserts nothing. Usage: node dist/bench/discovery.js [runs]
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { LinuxHost } from '../src/host/linux/host.js';
import { writeSysfsTree } from '../src/host/sysfs-tree.js';
import { TOPOLOGY_FORMAT, type Topology, type TopologyDevice } from '../src/topology/format.js';
import { discover } from '../src/pci/discovery.js';
import { loadPciIds } from '../src/host/files.js';

const runs = Number(process.argv[2] ?? 5);

/** n functions: root ports on bus 0, each with an 8-function endpoint behind it. */
function synthetic(n: number): Topology {
  const devices: TopologyDevice[] = [];
  let group = 0;
  for (let port = 0; devices.length < n; port++) {
    const dom = Math.floor(port / 24);
    const slot = port % 24;
    const rp = `${dom.toString(16).padStart(4, '0')}:00:${(slot + 1).toString(16).padStart(2, '0')}.0`;
    devices.push({
      address: rp,
      vendor: '8086',
      device: '347a',
      class: '060400',
      driver: 'pcieport',
      iommuGroup: group++,
      numaNode: dom % 2,
      parent: null,
    });
    const bus = (slot + 1).toString(16).padStart(2, '0');
    const g = group++;
    for (let fn = 0; fn < 8 && devices.length < n; fn++) {
      devices.push({
        address: `${dom.toString(16).padStart(4, '0')}:${bus}:00.${fn}`,
        vendor: '8086',
        device: '1592',
        subsystemVendor: '8086',
        subsystemDevice: '0002',
        class: '020000',
        revision: '02',
        driver: 'ice',
        iommuGroup: g,
        numaNode: dom % 2,
        parent: rp,
      });
    }
  }
  return { format: TOPOLOGY_FORMAT, name: `synthetic-${n}`, devices: devices.slice(0, n) };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

const { names } = await loadPciIds();
const haveLspci = (() => {
  try {
    execFileSync('lspci', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
process.stdout.write(
  `discovery benchmark: median of ${runs} runs, cold process not included (warm page cache)\n`,
);
process.stdout.write('functions  passthru_ms  per_function_us  lspci_ms  lspci_per_function_us\n');
for (const n of [100, 1000, 4096]) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), `pt-bench-${n}-`));
  try {
    await writeSysfsTree(synthetic(n), root);
    const host = new LinuxHost({ root, uevents: false });
    const ours: number[] = [];
    for (let i = 0; i < runs + 1; i++) {
      const t0 = performance.now();
      const inv = await discover(host, names);
      const dt = performance.now() - t0;
      if (inv.devices.length !== n) throw new Error(`found ${inv.devices.length} of ${n}`);
      if (i > 0) ours.push(dt);
    }
    const theirs: number[] = [];
    if (haveLspci) {
      for (let i = 0; i < runs; i++) {
        const t0 = performance.now();
        execFileSync(
          'lspci',
          [
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
          ],
          { stdio: ['ignore', 'ignore', 'ignore'] },
        );
        theirs.push(performance.now() - t0);
      }
    }
    const m = median(ours);
    const l = haveLspci ? median(theirs) : NaN;
    process.stdout.write(
      `${String(n).padStart(9)}  ${m.toFixed(1).padStart(11)}  ${((m * 1000) / n).toFixed(1).padStart(15)}  ${haveLspci ? l.toFixed(1).padStart(8) : '     n/a'}  ${haveLspci ? ((l * 1000) / n).toFixed(1).padStart(21) : '                  n/a'}\n`,
    );
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}
