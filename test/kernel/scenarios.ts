/**
 * Guest side of the real-kernel suite: runs inside the QEMU guest as root, against real sysfs,
 * with the project's built CLI. Usage: scenarios.js NAME JOBDIR. Writes JOBDIR/NAME.json
 * ({ ok, measured, notes }) and exits 0 on success.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compareWithLspci, parseLspci, type ListEntry } from '../lspci.js';
import { hostContract, vfioHoldFacts, vmHoldsDevice } from './host-scenarios.js';
import { bootWindow } from './boot-window.js';
import { engineScenarios } from './engine-scenarios.js';
import { guestImportDumps } from './import-scenario.js';
import { driverOf, groupOf, overrideOf, sleep, sysDev, waitFor } from './guest-helpers.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const MAIN = path.join(repo, 'dist/bundle/passthru.js');
const STATE = '/tmp/pt-state';
const SOCKET = '/tmp/pt-run/agent.sock';
const BASE = ['--state-dir', STATE, '--socket', SOCKET];

class Failure extends Error {}

interface Report {
  ok: boolean;
  measured: Record<string, unknown>;
  notes: string[];
}

const report: Report = { ok: false, measured: {}, notes: [] };
const note = (s: string): void => {
  report.notes.push(s);
  process.stdout.write(`${s}\n`);
};
function expect(cond: boolean, what: string): asserts cond {
  if (!cond) throw new Failure(what);
}

function cli(
  args: string[],
  opts: { allowFail?: boolean } = {},
): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [MAIN, ...BASE, ...args], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  const code = r.status ?? -1;
  if (code !== 0 && opts.allowFail !== true)
    throw new Failure(`passthru ${args.join(' ')} exited ${code}: ${r.stderr}${r.stdout}`);
  return { code, out: r.stdout, err: r.stderr };
}

function sh(cmd: string): { code: number; out: string } {
  const r = spawnSync('sh', ['-c', cmd], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

const dev = (a: string, f: string): string => sysDev(a, f);
function moduleState(name: string): string {
  const line = fs
    .readFileSync('/proc/modules', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${name} `));
  return line?.split(' ')[4] ?? 'absent';
}

function list(): ListEntry[] {
  return JSON.parse(cli(['list', '--json']).out) as ListEntry[];
}
function byIds(vendor: string, device: string): string[] {
  return list()
    .filter((d) => d.vendorId === vendor && d.deviceId === device)
    .map((d) => d.address);
}

function startAgent(extra: string[] = [], logName = 'agent.log'): ChildProcess {
  const logFd = fs.openSync(path.join(jobDir, logName), 'a');
  return spawn(process.execPath, [MAIN, ...BASE, '--log-level', 'info', 'agent', ...extra], {
    stdio: ['ignore', logFd, logFd],
  });
}
async function waitForAgent(): Promise<void> {
  const ok = await waitFor(() => fs.existsSync(SOCKET), 30_000, 50);
  expect(ok !== null, 'agent control socket appeared');
  // The socket opens before the first reconcile; `running` once the claims are re-applied.
  const running = await waitFor(
    () => (JSON.parse(cli(['status', '--json']).out) as { phase?: string }).phase === 'running',
    30_000,
    50,
  );
  expect(running !== null, 'agent finished starting');
}
interface Status {
  claims: { address: string; state: string }[];
  keeper: {
    losses: number;
    recovering: boolean;
    recoveries: {
      detectedAt: number;
      via: string;
      detectToReloadMs: number | null;
      detectToReboundMs: number | null;
      attempts: number;
    }[];
  };
}
function status(): Status {
  return JSON.parse(cli(['status', '--json']).out) as Status;
}
function stats(xs: number[]): { min: number; median: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return {
    min: Math.round(s[0] ?? 0),
    median: Math.round(s[Math.floor(s.length / 2)] ?? 0),
    max: Math.round(s[s.length - 1] ?? 0),
  };
}

// ------------------------------------------------------------------ scenarios

function discovery(): void {
  const ours = list();
  const lspci = parseLspci(sh('lspci -vmm -nn -k -D -O hwdb.disable=1').out);
  const { fields, mismatches } = compareWithLspci(ours, lspci);
  report.measured = {
    functions: ours.length,
    fields,
    groups: new Set(ours.map((d) => d.iommuGroup)).size,
  };
  for (const m of mismatches) note(`mismatch: ${m}`);
  expect(mismatches.length === 0, 'passthru list --json agrees with lspci');
  expect(
    ours.filter((d) => d.iommuGroup !== null).length === ours.length,
    'every function has an IOMMU group',
  );
}

function claimRelease(): void {
  const nic = byIds('8086', '10d3')[0];
  expect(nic !== undefined, 'an e1000e NIC');
  expect(driverOf(nic) === 'e1000e', 'NIC starts on e1000e');
  const t0 = performance.now();
  cli(['claim', nic]);
  const claimMs = performance.now() - t0;
  expect(driverOf(nic) === 'vfio-pci', 'NIC on vfio-pci after claim');
  expect(overrideOf(nic) === 'vfio-pci', 'driver_override pinned');
  expect(fs.existsSync(`/dev/vfio/${groupOf(nic)}`), `/dev/vfio/${groupOf(nic)} exists`);
  const t1 = performance.now();
  cli(['release', nic]);
  const releaseMs = performance.now() - t1;
  expect(driverOf(nic) === 'e1000e', 'NIC back on e1000e after release');
  expect(overrideOf(nic) === null, 'override cleared');
  expect(!fs.existsSync(`/dev/vfio/${groupOf(nic)}`), '/dev/vfio node gone');
  report.measured = {
    device: nic,
    claimCliMs: Math.round(claimMs),
    releaseCliMs: Math.round(releaseMs),
  };
}

async function fieldFailure(): Promise<void> {
  const nics = byIds('8086', '10d3').slice(0, 2);
  expect(nics.length === 2, 'two e1000e NICs');
  const agent = startAgent();
  try {
    await waitForAgent();
    // With no claim at all the modules must still come back.
    const z0 = performance.now();
    expect(sh('modprobe -r vfio_pci').code === 0, 'modprobe -r vfio_pci with zero claims');
    const zeroClaims = await waitFor(() => moduleState('vfio_pci') === 'Live', 20_000);
    expect(zeroClaims !== null, 'vfio_pci reloaded with zero claims');
    const zeroClaimsBackMs = Math.round(performance.now() - z0);
    await waitFor(() => !status().keeper.recovering, 10_000, 50);
    cli(['claim', ...nics]);
    expect(
      nics.every((a) => driverOf(a) === 'vfio-pci'),
      'both NICs claimed',
    );
    const recovery: number[] = [];
    const otherRmmod: string[] = [];
    const removedAt: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      removedAt.push(Date.now());
      // What the node component did in the field.
      const r1 = sh('modprobe -r vfio_pci');
      expect(r1.code === 0, `modprobe -r vfio_pci (round ${i}): ${r1.out}`);
      const r2 = sh('rmmod vfio_pci_core');
      otherRmmod.push(r2.code === 0 ? 'removed' : /in use/.test(r2.out) ? 'in use' : r2.out.trim());
      const ms = await waitFor(
        () => nics.every((a) => driverOf(a) === 'vfio-pci') && moduleState('vfio_pci') === 'Live',
        20_000,
      );
      expect(ms !== null, `round ${i}: both NICs back on vfio-pci within 20 s`);
      recovery.push(performance.now() - t0);
      // Let the agent finish recording the recovery before the next removal.
      await waitFor(() => !status().keeper.recovering, 10_000, 50);
    }
    const st = status();
    const recs = st.keeper.recoveries.slice(-10);
    expect(st.keeper.losses >= 11, `11 losses seen (saw ${st.keeper.losses})`);
    expect(
      recs.length >= 10 && recs.every((r) => r.detectToReboundMs !== null),
      'every loss recovered, none missed',
    );
    expect(
      st.claims.every((c) => c.state === 'ready'),
      'claims ready',
    );
    report.measured = {
      rounds: 10,
      losses: st.keeper.losses,
      zeroClaimsBackMs,
      removalToBothBackMs: stats(recovery),
      removalToDetectMs: stats(recs.map((r, i) => r.detectedAt - (removedAt[i] ?? r.detectedAt))),
      agentDetectToReloadMs: stats(recs.map((r) => r.detectToReloadMs ?? 0)),
      agentDetectToReboundMs: stats(recs.map((r) => r.detectToReboundMs ?? 0)),
      detectedVia: [...new Set(recs.map((r) => r.via))],
      otherComponentRmmodVfioPciCore: otherRmmod,
    };
  } finally {
    agent.kill('SIGTERM');
  }
}

async function crashMidBind(): Promise<void> {
  const nic = byIds('8086', '10d3')[0];
  expect(nic !== undefined, 'an e1000e NIC');
  const agent = startAgent(['--fault-pause-after-unbind-ms', '60000'], 'agent-1.log');
  await waitForAgent();
  const claim = spawn(process.execPath, [MAIN, ...BASE, 'claim', nic], { stdio: 'ignore' });
  const unbound = await waitFor(() => driverOf(nic) === null, 30_000);
  expect(unbound !== null, 'device unbound (the agent is paused before drivers_probe)');
  agent.kill('SIGKILL');
  claim.kill('SIGKILL');
  await sleep(200);
  expect(
    driverOf(nic) === null && overrideOf(nic) === 'vfio-pci',
    'left driverless with the override, as a crash leaves it',
  );
  const ledger = (): string | null | undefined =>
    (
      JSON.parse(fs.readFileSync(path.join(STATE, 'state.json'), 'utf8')) as {
        ledger: Record<string, { originalDriver: string | null }>;
      }
    ).ledger[nic]?.originalDriver;
  expect(ledger() === 'e1000e', 'ledger recorded e1000e before touching the device');
  fs.rmSync(SOCKET, { force: true });
  const t0 = performance.now();
  const again = startAgent([], 'agent-2.log');
  try {
    const ms = await waitFor(() => driverOf(nic) === 'vfio-pci', 30_000);
    expect(ms !== null, 'restarted agent converged: NIC on vfio-pci');
    expect(ledger() === 'e1000e', 'ledger still knows e1000e');
    await waitForAgent();
    cli(['release', nic]);
    expect(driverOf(nic) === 'e1000e', 'release after the crash restores e1000e');
    report.measured = { device: nic, restartToBoundMs: Math.round(performance.now() - t0) };
  } finally {
    again.kill('SIGTERM');
  }
}

function multifunction(): void {
  const [f0, f1] = ['0000:00:05.0', '0000:00:05.1'];
  expect(groupOf(f0) === groupOf(f1), 'both functions share a group');
  const r = cli(['claim', f0], { allowFail: true });
  expect(r.code === 4, `claim of one function refused with exit 4 (got ${r.code})`);
  expect(
    r.out.includes('PT_ERR_GROUP_NOT_VIABLE') && r.out.includes(f1),
    'refusal names the blocker',
  );
  expect(driverOf(f0) === 'e1000' && driverOf(f1) === 'e1000', 'nothing changed');
  cli(['claim', '--with-group', f0]);
  expect(driverOf(f0) === 'vfio-pci' && driverOf(f1) === 'vfio-pci', 'both functions on vfio-pci');
  expect(fs.existsSync(`/dev/vfio/${groupOf(f0)}`), 'group node exists');
  cli(['release', f0]);
  expect(driverOf(f0) === 'e1000' && driverOf(f1) === 'e1000', 'both back on e1000');
  report.measured = { group: groupOf(f0), refusal: r.out.trim().split('\n').pop() };
}

function hostCritical(): void {
  const t0 = Date.now();
  const step = (what: string): void => {
    note(`host-critical: ${what} at ${String(Date.now() - t0)} ms`);
  };
  const ninep = byIds('1af4', '1009');
  expect(ninep.length >= 2, 'the 9p virtio devices are visible');
  // One CLI call for both: under TCG each node start costs seconds.
  const before = ninep.map(driverOf);
  const r = cli(['claim', ...ninep], { allowFail: true });
  step('9p claims refused');
  expect(r.code === 4, `refused: ${r.out}`);
  for (const a of ninep) {
    const line = r.out.split('\n').find((l) => l.startsWith(a)) ?? '';
    expect(line.includes('PT_ERR_HOST_CRITICAL'), `${a} refused as host-critical: ${r.out}`);
    expect(/9p (filesystem|share)/.test(line), `the reason names the 9p share: ${line}`);
  }
  expect(JSON.stringify(ninep.map(driverOf)) === JSON.stringify(before), 'drivers unchanged');
  // doctor traces the overlay root to the share that no visible mount uses (hostfs).
  const doc = cli(['doctor', '--json'], { allowFail: true });
  step('doctor');
  const checks = (
    JSON.parse(doc.out) as { checks: { id: string; status: string; summary: string }[] }
  ).checks;
  const root = checks.find((c) => c.id === 'backing:/');
  expect(
    root !== undefined && ninep.some((a) => root.summary.includes(a)),
    `doctor says a 9p device backs /: ${JSON.stringify(root)}`,
  );
  const unknown = checks.filter((c) => c.id === 'host-uses-unknown').map((c) => c.summary);
  expect(unknown.length === 0, `every mount, swap and route traced: ${unknown.join(' | ')}`);
  // A NIC that is up with a global address is the host's: refused until it has none.
  const nic = byIds('8086', '10d3')[0];
  expect(nic !== undefined, 'an e1000e NIC');
  const iface = fs.readdirSync(dev(nic, 'net'))[0];
  expect(iface !== undefined, `${nic} has a network interface`);
  const up = sh(`ip link set ${iface} up && ip addr add 192.0.2.10/24 dev ${iface}`);
  expect(up.code === 0, `address ${iface}: ${up.out}`);
  const refused = cli(['claim', nic], { allowFail: true });
  step('addressed NIC refused');
  expect(
    refused.code === 4 &&
      refused.out.includes('PT_ERR_HOST_CRITICAL') &&
      refused.out.includes(`network interface ${iface} is up with a global address (192.0.2.0/24)`),
    `${nic} (${iface}, up, 192.0.2.10/24) refused: ${refused.out}`,
  );
  expect(driverOf(nic) === 'e1000e', 'NIC still on e1000e');
  const down = sh(`ip addr flush dev ${iface} && ip link set ${iface} down`);
  expect(down.code === 0, `unaddress ${iface}: ${down.out}`);
  cli(['claim', nic]);
  expect(driverOf(nic) === 'vfio-pci', 'the same NIC without an address is claimable');
  cli(['release', nic]);
  step('unaddressed NIC claimed and released');
  expect(driverOf(nic) === 'e1000e', 'released');
  report.measured = { refused: ninep, refusedNic: { nic, iface }, root: root.summary };
}

function driverctl(): void {
  const nic = byIds('8086', '10d3')[2];
  expect(nic !== undefined, 'a third e1000e NIC');
  const snapshot = (): Record<string, unknown> => ({
    driver: driverOf(nic),
    override: overrideOf(nic),
    node: fs.existsSync(`/dev/vfio/${groupOf(nic)}`),
  });
  const r = sh(`driverctl --nosave set-override ${nic} vfio-pci`);
  expect(r.code === 0, `driverctl set-override: ${r.out}`);
  const viaDriverctl = snapshot();
  const u = sh(`driverctl --nosave unset-override ${nic}`);
  expect(
    u.code === 0 && driverOf(nic) === 'e1000e',
    `driverctl unset-override restores e1000e: ${u.out}`,
  );
  cli(['claim', nic]);
  const viaPassthru = snapshot();
  expect(
    JSON.stringify(viaDriverctl) === JSON.stringify(viaPassthru),
    `same state: driverctl ${JSON.stringify(viaDriverctl)} passthru ${JSON.stringify(viaPassthru)}`,
  );
  cli(['release', nic]);
  expect(driverOf(nic) === 'e1000e', 'released');
  report.measured = { device: nic, state: viaPassthru };
}

async function sriovVf(): Promise<void> {
  const pf = byIds('1b36', '0010')[0];
  expect(pf !== undefined, 'the nvme PF');
  fs.writeFileSync(dev(pf, 'sriov_numvfs'), '2');
  // In virtfn order: kernfs lists a directory in hash order, not by name.
  const vfs = fs
    .readdirSync(dev(pf, ''))
    .filter((e) => /^virtfn\d+$/.test(e))
    .sort((a, b) => Number(a.slice(6)) - Number(b.slice(6)))
    .map((e) => path.basename(fs.readlinkSync(dev(pf, e))));
  expect(vfs.length === 2, 'two VFs');
  const entries = list();
  const vf = entries.find((d) => d.address === vfs[0]);
  expect(
    vf !== undefined && vf.iommuGroup !== null && vf.iommuGroup !== groupOf(pf),
    'VF has its own group',
  );
  // `list` takes each VF's physfn from its PF's virtfn links: the kernel's own link must agree.
  const sriov = entries as (ListEntry & { physfn: string | null; virtfns: string[] })[];
  for (const a of vfs) {
    const kernel = path.basename(fs.readlinkSync(dev(a, 'physfn')));
    const ours = sriov.find((d) => d.address === a)?.physfn;
    expect(ours === kernel && kernel === pf, `${a}: physfn ${String(ours)}, kernel ${kernel}`);
  }
  const pfEntry = sriov.find((d) => d.address === pf);
  expect(pfEntry?.virtfns.join(',') === vfs.join(','), `PF virtfns ${String(pfEntry?.virtfns)}`);
  // The nvme driver probes new VFs asynchronously: let it settle before recording the state.
  await waitFor(() => driverOf(vfs[0]!) !== null, 10_000, 20);
  await sleep(200);
  const before = driverOf(vfs[0]!);
  cli(['claim', vfs[0]!]);
  expect(driverOf(vfs[0]!) === 'vfio-pci', 'VF on vfio-pci');
  cli(['release', vfs[0]!]);
  expect(driverOf(vfs[0]!) === before, `VF back on ${before ?? 'no driver'}`);
  report.measured = { pf, vfs, vfDriverBefore: before };
}

const scenarios: Record<string, () => Promise<void> | void> = {
  discovery,
  'claim-release': claimRelease,
  'field-failure': fieldFailure,
  'crash-mid-bind': crashMidBind,
  multifunction,
  'host-critical': hostCritical,
  driverctl,
  'sriov-vf': sriovVf,
  'host-contract': () => hostContract({ note, measured: report.measured }),
  'vfio-hold-facts': () => vfioHoldFacts({ note, measured: report.measured }),
  'vm-holds-device': () => vmHoldsDevice({ note, measured: report.measured }),
  'import-dumps': () =>
    guestImportDumps({ note, measured: report.measured, jobDir, cli: (a) => cli(a).out }),
  ...engineScenarios({ note, measured: report.measured, jobDir: process.argv[3] ?? '/job' }),
  'boot-window': () =>
    bootWindow({
      note,
      measured: report.measured,
      jobDir: process.argv[3] ?? '/job',
      boot: Number(process.argv[4] ?? 1),
    }),
};

const name = process.argv[2] ?? '';
const jobDir = process.argv[3] ?? '/job';
const fn = scenarios[name];
try {
  if (!fn) throw new Failure(`unknown scenario ${name}`);
  fs.mkdirSync(path.dirname(SOCKET), { recursive: true, mode: 0o700 });
  await fn();
  report.ok = true;
} catch (e) {
  report.ok = false;
  note(`FAILED: ${e instanceof Error ? e.message : String(e)}`);
  if (!(e instanceof Failure) && e instanceof Error && e.stack) note(e.stack);
}
fs.writeFileSync(path.join(jobDir, `${name}.json`), `${JSON.stringify(report, null, 1)}\n`);
process.exitCode = report.ok ? 0 : 1;
