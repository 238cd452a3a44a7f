import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { parsePciAddress } from '../../pci/address.js';
import { loadTopology } from '../files.js';
import { writeSysfsTree } from '../sysfs-tree.js';
import { LinuxHost } from './host.js';

const NIC = parsePciAddress('0000:01:00.0');

/** A /proc/<pid> with the given fd link targets; comm omitted = the process exited mid-scan. */
async function proc(root: string, pid: string, fds: string[], comm?: string): Promise<void> {
  const dir = path.join(root, 'proc', pid);
  await fs.mkdir(path.join(dir, 'fd'), { recursive: true });
  for (const [i, target] of fds.entries())
    await fs.symlink(target, path.join(dir, 'fd', String(i)));
  if (comm !== undefined) await fs.writeFile(path.join(dir, 'comm'), `${comm}\n`);
}

test('vfioHolders on a tree: names the processes holding the group node or the device cdev; skips exited processes, other fds and non-pid entries', async () => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-holders-'));
  try {
    await writeSysfsTree(await loadTopology('qemu-guest'), root);
    const devDir = await fs.realpath(path.join(root, 'sys/bus/pci/devices', NIC));
    await fs.mkdir(path.join(devDir, 'vfio-dev/vfio3'), { recursive: true });
    await proc(root, '100', ['/dev/null', '/dev/vfio/vfio', '/dev/vfio/10'], 'qemu-system-x86');
    await proc(root, '200', ['/dev/vfio/10']); // exited after its fd was listed
    await proc(root, '300', ['/dev/vfio/11', 'anon_inode:[vfio-device]'], 'other-vm');
    await proc(root, '400', ['/dev/vfio/devices/vfio3'], 'iommufd-vm');
    await fs.mkdir(path.join(root, 'proc/500'), { recursive: true }); // no fd folder
    await proc(root, 'self', ['/dev/vfio/10'], 'self');
    const h = new LinuxHost({ root, uevents: false });
    assert.deepEqual(await h.vfioHolders(NIC, 10), [
      { pid: 100, comm: 'qemu-system-x86', path: '/dev/vfio/10' },
      { pid: 400, comm: 'iommufd-vm', path: '/dev/vfio/devices/vfio3' },
    ]);
    assert.deepEqual(await h.vfioHolders(parsePciAddress('0000:02:00.0'), null), []);
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});
