import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadPciIds, loadTopology, listShippedTopologies } from '../src/host/files.js';
import { lspciAvailable } from './lspci.js';
import { writeLspciTree } from './import-render.js';
import { compareLists, dumpsOfTree, importTexts, listJson } from './import-compare.js';

test('every shipped topology, dumped by lspci and imported, lists field for field like the source', async (t) => {
  if (!(await lspciAvailable())) {
    assert.notEqual(process.env.CI, 'true', 'CI installs pciutils: lspci must be there');
    t.skip('lspci not installed');
    return;
  }
  const { names } = await loadPciIds();
  const shipped = await listShippedTopologies();
  assert.ok(shipped.length >= 4, 'at least four shipped topologies');
  for (const name of shipped) {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), `pt-import-${name}-`));
    try {
      const source = await loadTopology(name);
      await writeLspciTree(source, dir);
      const dumps = await dumpsOfTree(dir);
      const imported = importTexts(dumps, name);
      const r = compareLists(
        await listJson(source, names),
        await listJson(imported.topology, names),
      );
      assert.deepEqual(r.mismatches, [], `${name}: source and imported list --json differ`);
      t.diagnostic(`${name}: ${source.devices.length} functions, ${r.fields} fields equal`);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }
});
