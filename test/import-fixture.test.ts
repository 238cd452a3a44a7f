import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { loadPciIds } from '../src/host/files.js';
import { compareLists, importTexts, listJson } from './import-compare.js';

/**
 * Dumps taken inside the real-kernel suite's QEMU guest (Debian's 6.1 kernel) by the
 * `import-dumps` scenario, with the guest's own `passthru list --json` beside them, as booted and
 * with two VFs of the SR-IOV nvme enabled (PASSTHRU_LAB_SAVE_DUMPS=test/fixtures/qemu-guest-dump
 * node dist/test/kernel/harness.js import-dumps).
 */
const DIR = path.join(process.cwd(), 'test/fixtures/qemu-guest-dump');
const SETS = { booted: { functions: 17, vfs: 0 }, vfs: { functions: 19, vfs: 2 } } as const;

async function dumps(set: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of ['lspci-vv.txt', 'lspci-vmm.txt', 'iommu-groups.txt'])
    out[f] = await fs.readFile(path.join(DIR, set, f), 'utf8');
  return out;
}

test('the real guest dumps (as booted, with 2 VFs), imported, list field for field like the guest', async (t) => {
  const { names } = await loadPciIds();
  for (const [set, want] of Object.entries(SETS)) {
    const guest = JSON.parse(await fs.readFile(path.join(DIR, set, 'list.json'), 'utf8')) as Record<
      string,
      unknown
    >[];
    const imported = importTexts(await dumps(set));
    const r = compareLists(guest, await listJson(imported.topology, names));
    assert.deepEqual(r.mismatches, [], set);
    assert.equal(guest.length, want.functions, `${set}: every function of the guest`);
    assert.equal(imported.counts.vfs, want.vfs, `${set}: VFs tied to their PF`);
    t.diagnostic(`real guest ${set}: ${guest.length} functions, ${r.fields} fields equal`);
  }
});

test('the real guest lspci -vv dump alone gives the same list as all three dumps', async () => {
  const { names } = await loadPciIds();
  for (const set of Object.keys(SETS)) {
    const d = await dumps(set);
    const all = importTexts(d);
    const vvOnly = importTexts({ 'lspci-vv.txt': d['lspci-vv.txt'] ?? '' });
    const r = compareLists(
      await listJson(all.topology, names),
      await listJson(vvOnly.topology, names),
    );
    assert.deepEqual(r.mismatches, [], set);
  }
});

test('the real guest lspci -vmm dump alone keeps ids, drivers and groups and says what it lacks', async () => {
  const d = await dumps('vfs');
  const vmm = importTexts({ 'lspci-vmm.txt': d['lspci-vmm.txt'] ?? '' });
  const vv = importTexts({ 'lspci-vv.txt': d['lspci-vv.txt'] ?? '' });
  const pick = (x: (typeof vv.topology.devices)[number]): unknown[] => [
    x.address,
    x.vendor,
    x.device,
    x.subsystemVendor,
    x.subsystemDevice,
    x.class,
    x.revision,
    x.driver,
    x.iommuGroup,
    x.numaNode,
  ];
  assert.deepEqual(vmm.topology.devices.map(pick), vv.topology.devices.map(pick));
  assert.ok(vmm.assumed.some((a) => a.startsWith('no `lspci -vvnn -k -D` output')));
  assert.ok(vmm.topology.devices.every((x) => x.parent === null && x.sriov === undefined));
});
