import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { PtError } from '../src/errors.js';
import { isSafeTopologyName, loadPciIds, loadTopology } from '../src/host/files.js';

async function scratch(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'pt-inputs-'));
}

const code = (c: string) => (e: unknown) => e instanceof PtError && e.code === c;

test('finding 16: a FIFO given as --sim topology or --pci-ids is refused at once, not read forever', async () => {
  const dir = await scratch();
  try {
    const fifo = path.join(dir, 'topology.json');
    execFileSync('mkfifo', [fifo]);
    // No writer ever opens the FIFO: a blocking open or read would never return.
    await assert.rejects(loadTopology(fifo), code('PT_ERR_TOPOLOGY_INVALID'));
    await assert.rejects(loadTopology(fifo), /FIFO/);
    await assert.rejects(loadPciIds(fifo), code('PT_ERR_INVALID_ARGUMENT'));
    await assert.rejects(loadPciIds('/dev/zero'), /a device, not a regular file/);
    await assert.rejects(loadTopology('/dev/null'), code('PT_ERR_TOPOLOGY_INVALID'));
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('finding 9: a topology name that could steer paths (../../var/lib/passthru, ., a slash) is PT_ERR_TOPOLOGY_INVALID', async () => {
  const dir = await scratch();
  try {
    const topo = JSON.parse(
      await fs.readFile(path.join(process.cwd(), 'topologies', 'qemu-guest.json'), 'utf8'),
    ) as { name: string };
    for (const name of ['../../var/lib/passthru', '..', '.', 'a/b', 'x\ny', '']) {
      const file = path.join(dir, 't.json');
      await fs.writeFile(file, JSON.stringify({ ...topo, name }));
      await assert.rejects(loadTopology(file), code('PT_ERR_TOPOLOGY_INVALID'), name);
    }
    assert.ok(isSafeTopologyName('gpu-server-2s'));
    assert.ok(isSafeTopologyName('snap.2026_11'));
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
