import { constants as fsc } from 'node:fs';
import * as fs from 'node:fs/promises';
import { errnoOf } from '../../errors.js';
import type { PciAddress } from '../../pci/address.js';
import type { DeviceHolder } from '../port.js';
import type { RootedFs } from './sysfs.js';

/** How many processes are scanned between two yields to the event loop. */
const PIDS_PER_SLICE = 64;

/**
 * Who holds a device through vfio. First a scan of /proc/<pid>/fd for the group node
 * (/dev/vfio/<group>) and the device's cdev node (/dev/vfio/devices/vfioN): on 6.1 a VM holds
 * the group node plus an anon_inode:[vfio-device] fd that names no device, so the group node is
 * what names the holder (real-kernel-lab.md). Processes that exit mid-scan are skipped.
 *
 * When the scan finds nothing on the live host, a second open of /dev/vfio/<group> tells
 * whether someone holds it anyway (a process in another pid namespace, or /proc mounted with
 * hidepid): 6.1 lets one file open a group at a time and answers EBUSY to the next. That
 * holder is reported with pid and comm null. The probe open is closed at once; in the instant
 * it is open a VM starting on that group would itself get EBUSY, which is why it runs only when
 * the scan found nothing.
 */
export async function findVfioHolders(
  rfs: RootedFs,
  addr: PciAddress,
  group: number | null,
): Promise<DeviceHolder[]> {
  const wanted = new Set<string>();
  if (group !== null) wanted.add(`/dev/vfio/${group}`);
  for (const n of rfs.readdir(rfs.p('sys/bus/pci/devices', addr, 'vfio-dev')))
    if (/^vfio\d+$/.test(n)) wanted.add(`/dev/vfio/devices/${n}`);
  if (wanted.size === 0) return [];
  const out: DeviceHolder[] = [];
  const pids = rfs
    .readdir(rfs.p('proc'))
    .filter((p) => /^\d+$/.test(p))
    .sort((a, b) => Number(a) - Number(b));
  for (let i = 0; i < pids.length; i++) {
    const pid = pids[i];
    if (pid === undefined) continue;
    if (i % PIDS_PER_SLICE === PIDS_PER_SLICE - 1) await new Promise((r) => setImmediate(r));
    const held = heldPath(rfs, pid, wanted);
    if (held === null) continue;
    const comm = rfs.readText(rfs.p('proc', pid, 'comm'));
    // No comm any more: the process exited after its fd was seen, so it holds nothing now.
    if (comm === null) continue;
    out.push({ pid: Number(pid), comm, path: held });
  }
  if (out.length > 0 || group === null || !rfs.live) return out;
  const node = rfs.p('dev/vfio', String(group));
  if (await groupBusy(node)) out.push({ pid: null, comm: null, path: node });
  return out;
}

function heldPath(rfs: RootedFs, pid: string, wanted: Set<string>): string | null {
  const fdDir = rfs.p('proc', pid, 'fd');
  for (const fd of rfs.readdir(fdDir)) {
    const target = rfs.readLink(`${fdDir}/${fd}`);
    if (target !== null && wanted.has(target)) return target;
  }
  return null;
}

async function groupBusy(node: string): Promise<boolean> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(node, fsc.O_RDWR);
  } catch (e) {
    return errnoOf(e) === 'EBUSY';
  }
  await fh.close();
  return false;
}
