/**
 * `passthru import` on the real kernel. In the guest: the three dumps the README asks users for
 * (`lspci -vvnn -k -D`, `lspci -vmm -nnk -D`, `find /sys/kernel/iommu_groups -type l`) and the
 * guest's own `passthru list --json`, written to the job folder. On the host: the dumps imported
 * and run on the simulated kernel, its `list --json` compared with the guest's field by field.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadPciIds } from '../../src/host/files.js';
import { compareLists, importTexts, listJson } from '../import-compare.js';

export const IMPORT_SCENARIO = 'import-dumps';
export const DUMP_FILES = ['lspci-vv.txt', 'lspci-vmm.txt', 'iommu-groups.txt'] as const;
const COMMANDS: Record<(typeof DUMP_FILES)[number], string> = {
  'lspci-vv.txt': 'lspci -vvnn -k -D',
  'lspci-vmm.txt': 'lspci -vmm -nnk -D',
  'iommu-groups.txt': 'find /sys/kernel/iommu_groups -type l',
};

interface Ctx {
  note: (s: string) => void;
  measured: Record<string, unknown>;
  jobDir: string;
  /** Runs the built CLI in the guest; returns stdout. */
  cli: (args: string[]) => string;
}

/** The two states dumped: as booted, and with two VFs of the SR-IOV nvme enabled. */
export const DUMP_SETS = ['booted', 'vfs'] as const;

function dumpSet(ctx: Ctx, set: string): void {
  const dir = path.join(ctx.jobDir, 'import', set);
  fs.mkdirSync(dir, { recursive: true });
  for (const f of DUMP_FILES) {
    const r = spawnSync('sh', ['-c', COMMANDS[f]], { encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`${COMMANDS[f]} exited ${String(r.status)}: ${r.stderr}`);
    fs.writeFileSync(path.join(dir, f), r.stdout);
    ctx.measured[`${set}/${f}`] = r.stdout.split('\n').length - 1;
  }
  fs.writeFileSync(path.join(dir, 'list.json'), ctx.cli(['list', '--json']));
  // The CLI path too, in the guest: the file the README's commands would produce.
  const all = DUMP_FILES.map((f) => path.join(dir, f));
  const summary = ctx.cli(['import', ...all, '-o', path.join(dir, 'imported.json')]);
  for (const l of summary.trim().split('\n')) ctx.note(`${set}: ${l}`);
}

/** Guest side: the dumps exactly as a user would take them, and the guest's own list. */
export async function guestImportDumps(ctx: Ctx): Promise<void> {
  dumpSet(ctx, 'booted');
  const devices = '/sys/bus/pci/devices';
  const pf = fs
    .readdirSync(devices)
    .find((a) => fs.existsSync(path.join(devices, a, 'sriov_totalvfs')));
  if (pf === undefined) throw new Error('no SR-IOV PF in the guest');
  // nvme probes new VFs asynchronously, and in QEMU the probe of a VF without controller
  // resources fails after a while and unbinds again: a dump taken meanwhile disagrees with a
  // list taken a moment later (seen in CI). Without autoprobe the VFs stay driverless.
  fs.writeFileSync(path.join(devices, pf, 'sriov_drivers_autoprobe'), '0');
  fs.writeFileSync(path.join(devices, pf, 'sriov_numvfs'), '2');
  const vfs = [0, 1].map((i) => path.join(devices, pf, `virtfn${i}`));
  for (let t = 0; t < 100 && !vfs.every((v) => fs.existsSync(v)); t++)
    await new Promise((r) => setTimeout(r, 100));
  if (!vfs.every((v) => fs.existsSync(v))) throw new Error(`${pf}: VFs did not appear`);
  dumpSet(ctx, 'vfs');
}

export interface HostCheck {
  ok: boolean;
  measured: Record<string, unknown>;
  notes: string[];
}

/**
 * Host side: import the guest's dumps of each state and compare. With PASSTHRU_LAB_SAVE_DUMPS=DIR
 * the dumps and the guest's lists are copied to DIR/<state> (how test/fixtures/qemu-guest-dump
 * was made).
 */
export async function hostImportCheck(job: string): Promise<HostCheck> {
  const notes: string[] = [];
  const measured: Record<string, unknown> = {};
  let ok = true;
  const { names } = await loadPciIds();
  for (const set of DUMP_SETS) {
    const dir = path.join(job, 'import', set);
    const texts: Record<string, string> = {};
    for (const f of DUMP_FILES) texts[f] = fs.readFileSync(path.join(dir, f), 'utf8');
    const guestList = JSON.parse(fs.readFileSync(path.join(dir, 'list.json'), 'utf8')) as Record<
      string,
      unknown
    >[];
    const imported = importTexts(texts, 'qemu-guest-import');
    const r = compareLists(guestList, await listJson(imported.topology, names));
    // The CLI's file (written in the guest) must be the same topology the host computed.
    const cliTopo = JSON.parse(fs.readFileSync(path.join(dir, 'imported.json'), 'utf8')) as {
      name: string;
    };
    const same =
      JSON.stringify(cliTopo) === JSON.stringify({ ...imported.topology, name: cliTopo.name });
    if (!same) notes.push(`${set}: the guest-side passthru import wrote a different topology`);
    for (const m of r.mismatches) notes.push(`${set}: mismatch: ${m}`);
    ok = ok && same && r.mismatches.length === 0;
    measured[set] = {
      functions: guestList.length,
      vfs: imported.counts.vfs,
      fieldsCompared: r.fields,
      fieldsEqual: r.fields - r.mismatches.length,
    };
    const save = process.env.PASSTHRU_LAB_SAVE_DUMPS;
    if (save !== undefined && save !== '') {
      const to = path.join(save, set);
      fs.mkdirSync(to, { recursive: true });
      for (const f of [...DUMP_FILES, 'list.json'])
        fs.copyFileSync(path.join(dir, f), path.join(to, f));
      notes.push(`${set}: dumps saved to ${to}`);
    }
  }
  return { ok, measured, notes };
}
