import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { LinuxHost } from '../src/host/linux/host.js';
import { loadPciIds, loadTopology, listShippedTopologies } from '../src/host/files.js';
import { writeSysfsTree } from '../src/host/sysfs-tree.js';
import { discover } from '../src/pci/discovery.js';
import type { Inventory } from '../src/pci/model.js';
import {
  compareWithLspci,
  lspciAvailable,
  runLspci,
  type ListEntry,
  type LspciRecord,
} from './lspci.js';
import { deviceJson } from '../src/cli/views.js';

function compare(inv: Inventory, records: LspciRecord[], where: string): number {
  const { fields, mismatches } = compareWithLspci(
    inv.devices.map((d) => deviceJson(d) as unknown as ListEntry),
    records,
  );
  assert.deepEqual(mismatches, [], `${where}: passthru and lspci disagree`);
  return fields;
}

/** CI installs pciutils, so there a missing lspci fails; elsewhere the test is skipped. */
async function requireLspci(t: TestContext): Promise<boolean> {
  if (await lspciAvailable()) return true;
  assert.notEqual(process.env.CI, 'true', 'CI installs pciutils: lspci must be there');
  t.skip('lspci not installed');
  return false;
}

test('discovery agrees with lspci on the real /sys', async (t) => {
  if (!(await requireLspci(t))) return;
  const { names } = await loadPciIds();
  const records = await runLspci();
  const inv = await discover(new LinuxHost({ uevents: false }), names);
  const fields = compare(inv, records, 'real /sys');
  t.diagnostic(`real /sys: ${inv.devices.length} functions, ${fields} fields equal`);
});

test('discovery agrees with lspci on every shipped topology written as a sysfs tree', async (t) => {
  if (!(await requireLspci(t))) return;
  const { names } = await loadPciIds();
  const shipped = await listShippedTopologies();
  assert.ok(shipped.length >= 4, 'at least four shipped topologies');
  for (const name of shipped) {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), `pt-lspci-${name}-`));
    try {
      const topo = await loadTopology(name);
      await writeSysfsTree(topo, dir);
      const records = await runLspci(path.join(dir, 'sys/bus/pci'));
      const inv = await discover(new LinuxHost({ root: dir, uevents: false }), names);
      assert.equal(inv.devices.length, topo.devices.length, `${name}: every function found`);
      const fields = compare(inv, records, name);
      t.diagnostic(`${name}: ${inv.devices.length} functions, ${fields} fields equal`);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }
});
