/**
 * The boot window (issue 7, item 5a), over two boots of one guest with udev coldplug. Boot 1
 * claims a NIC, runs `boot-config` and saves what a disk would keep (boot-config's files and the
 * state folder) in /job/persist; guest-init.sh puts them back at boot 2 before udevd replays the
 * add uevents. Boot 2 checks the kernel log and the driver link before the agent starts, then
 * with the agent running, then releases the NIC so e1000e takes it (the check's control: the
 * same log does show e1000e probing it once it is allowed to).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  STATE,
  cli,
  killStragglers,
  startAgent,
  stateFile,
  statusOnce,
  stopAgent,
  waitForRunning,
} from './guest-agent.js';
import { check, driverOf, e1000eNics, overrideOf, step, waitFor } from './guest-helpers.js';

export interface BootWindowContext {
  note(s: string): void;
  measured: Record<string, unknown>;
  jobDir: string;
  /** 1 or 2: which boot of the scenario this is. */
  boot: number;
}

/** The kernel log, whole (dmesg reads the ring buffer; `quiet` only mutes the console). */
function dmesg(): string[] {
  const r = spawnSync('dmesg', [], { encoding: 'utf8', timeout: 10_000 });
  return r.stdout.split('\n').filter((l) => l.length > 0);
}

/** e1000e prints `e1000e <address> ...` when it probes a device (and on each later change). */
const e1000eLines = (addr: string): string[] => dmesg().filter((l) => l.includes(`e1000e ${addr}`));

/** The claimed NIC: the last e1000e, whose add uevent udev replays after the other two's. */
function claimedNic(): string {
  const nic = e1000eNics()[2];
  check(nic !== undefined, 'three e1000e NICs');
  return nic;
}

const persist = (ctx: BootWindowContext): string => path.join(ctx.jobDir, 'persist');

/** Copies a file or folder of the guest's / into /job/persist at the same path. */
function keep(ctx: BootWindowContext, p: string): void {
  const dst = path.join(persist(ctx), p);
  fs.mkdirSync(path.dirname(dst), { recursive: true });
  fs.cpSync(p, dst, { recursive: true });
}

async function firstBoot(ctx: BootWindowContext): Promise<void> {
  const nic = claimedNic();
  // The control: with no rule, udev's coldplug loaded e1000e and it took the NIC.
  check(
    driverOf(nic) === 'e1000e',
    `${nic} on e1000e after a plain boot (${String(driverOf(nic))})`,
  );
  const probed = e1000eLines(nic);
  check(probed.length > 0, `the kernel log shows e1000e probing ${nic} at a plain boot`);
  step(`boot 1: ${nic} on e1000e; claiming`);
  await cli(['claim', nic]);
  check(driverOf(nic) === 'vfio-pci', `${nic} on vfio-pci after claim`);
  // The claim's identity carries the Device Serial Number lspci reads from the same capability.
  const lspci = spawnSync('lspci', ['-vv', '-s', nic], { encoding: 'utf8', timeout: 30_000 });
  const dsn = /Device Serial Number ([0-9a-f-]+)/.exec(lspci.stdout)?.[1] ?? null;
  const recorded = stateFile().claims[nic] as { identity?: { serialNumber?: string } } | undefined;
  const serial = recorded?.identity?.serialNumber ?? null;
  ctx.measured.serial = { lspci: dsn, claim: serial };
  check(
    serial === dsn,
    `the claim records the serial lspci shows (${String(dsn)}): ${String(serial)}`,
  );
  const bc = await cli(['boot-config']);
  const files = [...bc.out.matchAll(/^wrote (\S+)$/gm)].map((m) => m[1] ?? '');
  const rules = '/etc/udev/rules.d/70-passthru.rules';
  check(files.includes(rules), `boot-config wrote ${rules}: ${bc.out}`);
  check(
    fs.readFileSync(rules, 'utf8').includes(`KERNEL=="${nic}", ATTR{driver_override}="vfio-pci"`),
    `the rule names ${nic}`,
  );
  fs.rmSync(persist(ctx), { recursive: true, force: true });
  for (const f of files) keep(ctx, f);
  keep(ctx, STATE);
  ctx.measured.nic = nic;
  ctx.measured.e1000eLinesPlainBoot = probed;
  ctx.measured.kept = [...files, STATE];
  ctx.note(`boot 1: claimed ${nic}; kept ${[...files, STATE].join(', ')}`);
}

async function secondBoot(ctx: BootWindowContext): Promise<void> {
  const nic = claimedNic();
  // Before anything of passthru runs: what udev and the kernel did with the rules kept.
  const atBoot = driverOf(nic);
  const lines = e1000eLines(nic);
  const otherNics = e1000eNics().filter((a) => a !== nic);
  const modules = fs.readFileSync('/proc/modules', 'utf8');
  ctx.measured.nic = nic;
  ctx.measured.driverBeforeAgent = atBoot;
  ctx.measured.overrideBeforeAgent = overrideOf(nic);
  ctx.measured.e1000eLinesForNic = lines;
  ctx.measured.nicLines = dmesg().filter((l) => l.includes(nic));
  ctx.measured.otherNicsDrivers = otherNics.map((a) => `${a}=${String(driverOf(a))}`);
  ctx.measured.vfioPciLoadedAtBoot = /^vfio_pci /m.test(modules);
  step(`boot 2: ${nic} driver ${String(atBoot)}, ${String(lines.length)} e1000e lines`);
  check(
    otherNics.every((a) => driverOf(a) === 'e1000e'),
    'the other e1000e NICs are on e1000e (e1000e loaded at this boot)',
  );
  check(lines.length === 0, `no e1000e probe line for ${nic}: ${lines.join(' | ')}`);
  check(
    atBoot === 'vfio-pci' || atBoot === null,
    `${nic} on vfio-pci or driverless (${String(atBoot)})`,
  );
  check(ctx.measured.overrideBeforeAgent === 'vfio-pci', 'udev set driver_override=vfio-pci');

  const t0 = performance.now();
  const agent = startAgent(ctx, [], 'agent-boot2.log');
  try {
    ctx.measured.agentStartToRunningMs = await waitForRunning(agent);
    const { st } = await statusOnce();
    const claim = st.claims.find((c) => c.address === nic);
    check(
      claim?.state === 'ready',
      `claim ready after the agent started, its identity (serial included) verified (${String(claim?.state)})`,
    );
    check(driverOf(nic) === 'vfio-pci', `${nic} on vfio-pci with the agent running`);
    check(e1000eLines(nic).length === 0, 'still no e1000e line for the NIC');
    ctx.measured.agentStartToRunningTotalMs = Math.round(performance.now() - t0);
    check(stateFile().ledger[nic]?.originalDriver === 'e1000e', 'the kept ledger says e1000e');
    // The control: once released, e1000e takes the NIC and the log says so.
    await cli(['release', nic]);
    const back = await waitFor(() => driverOf(nic) === 'e1000e', 10_000, 20);
    check(back !== null, `${nic} on e1000e after release`);
    const after = e1000eLines(nic);
    check(after.length > 0, 'the kernel log shows e1000e probing the NIC after the release');
    ctx.measured.e1000eLinesAfterRelease = after;
  } finally {
    await stopAgent(agent).catch(() => undefined);
    killStragglers();
  }
}

export async function bootWindow(ctx: BootWindowContext): Promise<void> {
  if (ctx.boot === 1) await firstBoot(ctx);
  else await secondBoot(ctx);
}
