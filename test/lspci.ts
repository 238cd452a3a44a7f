import { execFile } from 'node:child_process';

/** One `lspci -vmm -nn -k -D` record, keyed by field name ("Slot", "Class", ...). */
export type LspciRecord = Record<string, string>;

export function lspciAvailable(): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('lspci', ['--version'], (err) => {
      resolve(!err);
    });
  });
}

export function runLspci(sysBusPci?: string): Promise<LspciRecord[]> {
  // hwdb off: names then come from pci.ids alone, the same database discovery reads.
  const args = ['-vmm', '-nn', '-k', '-D', '-O', 'hwdb.disable=1'];
  if (sysBusPci !== undefined) args.push('-A', 'linux-sysfs', '-O', `sysfs.path=${sysBusPci}`);
  return new Promise((resolve, reject) => {
    execFile('lspci', args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout) => {
      if (err) {
        reject(new Error(`lspci failed: ${err.message}`));
        return;
      }
      resolve(parseLspci(stdout));
    });
  });
}

export function parseLspci(text: string): LspciRecord[] {
  return text
    .split(/\n\s*\n/)
    .map((block) => {
      const rec: LspciRecord = {};
      for (const line of block.split('\n')) {
        const tab = line.indexOf(':\t');
        if (tab > 0) rec[line.slice(0, tab)] = line.slice(tab + 2);
      }
      return rec;
    })
    .filter((r) => r.Slot !== undefined);
}

/** The "[xxxx]" id at the end of an lspci -nn field. */
export function bracketId(field: string | undefined): string | undefined {
  if (field === undefined) return undefined;
  const m = /\[([0-9a-f]+)\]$/.exec(field);
  return m?.[1];
}

/** The name before the " [xxxx]" id. */
export function bracketName(field: string | undefined): string | undefined {
  if (field === undefined) return undefined;
  return field.replace(/\s*\[[0-9a-f]+\]$/, '');
}

/** The fields `passthru list --json` prints that lspci also shows. */
export interface ListEntry {
  address: string;
  vendorId: string;
  deviceId: string;
  subsystemVendorId: string;
  subsystemDeviceId: string;
  classId: string;
  revision: string;
  driver: string | null;
  iommuGroup: number | null;
  numaNode: number | null;
  vendorName: string;
  deviceName: string;
  className: string;
}

/**
 * Field by field: slot, class, vendor, device, subsystem, revision, prog-if, driver, IOMMU group,
 * NUMA node, and names where lspci found one. Returns the mismatches, not assertions, so the
 * guest side of the real-kernel suite can report them too.
 */
export function compareWithLspci(
  list: ListEntry[],
  records: LspciRecord[],
): { fields: number; mismatches: string[] } {
  const mismatches: string[] = [];
  let fields = 0;
  const slotsA = list.map((d) => d.address).join(',');
  const slotsB = records.map((r) => r.Slot).join(',');
  if (slotsA !== slotsB) mismatches.push(`slots differ: passthru [${slotsA}] lspci [${slotsB}]`);
  const byAddr = new Map(list.map((d) => [d.address, d]));
  for (const r of records) {
    const d = byAddr.get(r.Slot ?? '');
    if (!d) continue;
    const check = (what: string, ours: unknown, theirs: unknown): void => {
      fields++;
      if (ours !== theirs)
        mismatches.push(
          `${d.address} ${what}: passthru ${JSON.stringify(ours)} lspci ${JSON.stringify(theirs)}`,
        );
    };
    check('class', d.classId.slice(0, 4), bracketId(r.Class));
    check('vendor', d.vendorId, bracketId(r.Vendor));
    check('device', d.deviceId, bracketId(r.Device));
    // lspci omits a zero subsystem and prints Rev only when non-zero.
    if (r.SVendor !== undefined)
      check('subsystem vendor', d.subsystemVendorId, bracketId(r.SVendor));
    if (r.SDevice !== undefined)
      check('subsystem device', d.subsystemDeviceId, bracketId(r.SDevice));
    check('revision', d.revision, r.Rev ?? '00');
    check('prog-if', d.classId.slice(4, 6), r.ProgIf ?? '00');
    check('driver', d.driver, r.Driver ?? null);
    check('iommu group', d.iommuGroup, r.IOMMUGroup === undefined ? null : Number(r.IOMMUGroup));
    check('numa node', d.numaNode, r.NUMANode === undefined ? null : Number(r.NUMANode));
    const vendorName = bracketName(r.Vendor);
    if (vendorName !== undefined && !/^(Vendor|Device)( [0-9a-f]{4})?$/.test(vendorName))
      check('vendor name', d.vendorName, vendorName);
    const deviceName = bracketName(r.Device);
    if (deviceName !== undefined && !/^Device( [0-9a-f]{4})?$/.test(deviceName))
      check('device name', d.deviceName, deviceName);
    check('class name', d.className, bracketName(r.Class));
  }
  return { fields, mismatches };
}
