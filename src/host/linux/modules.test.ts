import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { LinuxModules } from './modules.js';
import { RootedFs } from './sysfs.js';

test('modules.builtin is read once per kernel release: a built-in module stays built-in after the file goes, and a new release reads its own file', async () => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-builtin-'));
  try {
    const w = async (p: string, text: string): Promise<void> => {
      await fs.mkdir(path.dirname(path.join(root, p)), { recursive: true });
      await fs.writeFile(path.join(root, p), text);
    };
    await w('proc/sys/kernel/osrelease', '6.1.0-a\n');
    await w('lib/modules/6.1.0-a/modules.builtin', 'kernel/drivers/vfio/vfio.ko\n');
    await fs.mkdir(path.join(root, 'sys/module/vfio'), { recursive: true });
    const m = new LinuxModules(new RootedFs(root), 'modprobe', 1000);
    assert.equal(m.status(['vfio']).get('vfio')?.state, 'builtin');
    await fs.rm(path.join(root, 'lib/modules/6.1.0-a/modules.builtin'));
    assert.equal(m.status(['vfio']).get('vfio')?.state, 'builtin', 'served from the cache');
    await w('proc/sys/kernel/osrelease', '6.1.0-b\n');
    await w('lib/modules/6.1.0-b/modules.builtin', 'kernel/drivers/other/other.ko\n');
    assert.equal(m.status(['vfio']).get('vfio'), null, 'the new release has no built-in vfio');
    assert.equal(m.availability('vfio').kind, 'missing');
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});
