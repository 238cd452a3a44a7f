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
