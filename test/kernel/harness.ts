/**
 * Real-kernel suite: boots Debian's kernel under QEMU (TCG) with an emulated Intel IOMMU and a
 * set of emulated PCI devices, and runs one scenario per boot with the project's built code and
 * the host's node, shared into the guest over 9p (see ../shared/real-kernel-lab.md).
 *
 * Usage: node dist/test/kernel/harness.js [scenario...]   (all scenarios when none are named)
 * Env:   PASSTHRU_LAB_CACHE (default /var/cache/passthru-lab), PASSTHRU_LAB_TIMEOUT_S (default 600),
 *        PASSTHRU_LAB_QUIET_S (default 180)
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SCENARIOS, type ScenarioSpec } from './scenario-list.js';
import { IMPORT_SCENARIO, hostImportCheck } from './import-scenario.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../../..');
const cache = process.env.PASSTHRU_LAB_CACHE ?? '/var/cache/passthru-lab';
const timeoutS = Number(process.env.PASSTHRU_LAB_TIMEOUT_S ?? 600);
/**
 * A guest that stalled (an RCU stall on a TCG vCPU, seen about once in 150 boots) says nothing
 * but stall reports from then on, and would hold the run for the whole timeout before its retry:
 * a boot with neither a console line other than those nor a new guest.log line for this long is
 * killed and retried. A whole boot takes 20-50 s on an idle 2-core machine.
 */
const quietS = Number(process.env.PASSTHRU_LAB_QUIET_S ?? 180);
/** Console lines a stalled guest keeps printing: not progress. */
const STALL_LINE =
  /rcu|stall|soft lockup|watchdog|^\s*$|^\s*(\[[ \d.]+\]\s*)?(\? )?[\w.]+\+0x|Call Trace|<\/?(IRQ|TASK)>|RIP:|RSP:|R[A-Z0-9]{2}:|Code:|CPU:|Hardware name|Sending NMI|NMI backtrace|task:|Modules linked/i;

function log(msg: string): void {
  process.stdout.write(`[kernel-suite] ${msg}\n`);
}

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function ensureTools(): void {
  const need: Record<string, string> = {
    'qemu-system-x86_64': 'qemu-system-x86',
    cpio: 'cpio',
    depmod: 'kmod',
    lspci: 'pciutils',
    udevadm: 'udev',
    driverctl: 'driverctl',
    'apt-get': 'apt',
  };
  const missing = Object.entries(need)
    .filter(([c]) => !have(c))
    .map(([, p]) => p);
  if (!fs.existsSync('/bin/busybox')) missing.push('busybox-static');
  if (!fs.existsSync('/usr/share/misc/pci.ids')) missing.push('pci.ids');
  if (missing.length === 0) return;
  log(`installing ${missing.join(' ')}`);
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
}

interface Kernel {
  version: string;
  image: string;
  root: string;
  modDir: string;
}

/** Downloads the package linux-image-amd64 points to (once) and unpacks it (once). */
function ensureKernel(): Kernel {
  fs.mkdirSync(cache, { recursive: true });
  let deb = fs.readdirSync(cache).find((f) => /^linux-image-\d.*\.deb$/.test(f));
  if (!deb) {
    const deps = execFileSync('apt-cache', ['depends', 'linux-image-amd64'], { encoding: 'utf8' });
    const pkg = /Depends: (linux-image-\d\S*)/.exec(deps)?.[1];
    if (!pkg) throw new Error('cannot tell which kernel linux-image-amd64 points to');
    log(`downloading ${pkg}`);
    execFileSync('apt-get', ['download', pkg], { cwd: cache, stdio: 'inherit' });
    deb = fs.readdirSync(cache).find((f) => /^linux-image-\d.*\.deb$/.test(f));
    if (!deb) throw new Error('kernel download failed');
  }
  const root = path.join(cache, `kpkg-${deb.replace(/\.deb$/, '')}`);
  if (!fs.existsSync(path.join(root, '.done'))) {
    log(`unpacking ${deb}`);
    fs.rmSync(root, { recursive: true, force: true });
    execFileSync('dpkg', ['-x', path.join(cache, deb), root]);
    const version = fs.readdirSync(path.join(root, 'lib/modules'))[0] ?? '';
    execFileSync('depmod', ['-b', root, version]);
    fs.writeFileSync(path.join(root, '.done'), '');
  }
  const version = fs.readdirSync(path.join(root, 'lib/modules'))[0] ?? '';
  return {
    version,
    image: path.join(root, 'boot', `vmlinuz-${version}`),
    root,
    modDir: path.join(root, 'lib/modules', version),
  };
}

function moduleClosure(modDir: string, names: string[]): string[] {
  const dep = fs.readFileSync(path.join(modDir, 'modules.dep'), 'utf8');
  const map = new Map<string, string[]>();
  for (const line of dep.split('\n')) {
    const [file, deps] = line.split(':');
    if (file === undefined || deps === undefined) continue;
    map.set(file, deps.trim().split(/\s+/).filter(Boolean));
  }
  const byName = (n: string): string | undefined =>
    [...map.keys()].find(
      (f) =>
        path
          .basename(f)
          .replace(/\.ko(\.\w+)?$/, '')
          .replace(/-/g, '_') === n,
    );
  const out = new Set<string>();
  const add = (f: string): void => {
    if (out.has(f)) return;
    out.add(f);
    for (const d of map.get(f) ?? []) add(d);
  };
  for (const n of names) {
    const f = byName(n);
    if (f !== undefined) add(f);
  }
  return [...out];
}

/** A small initramfs: busybox, the modules that reach the 9p root, the first-stage init. */
function ensureInitramfs(k: Kernel): string {
  const init = fs.readFileSync(path.join(repo, 'test/kernel/initramfs-init.sh'));
  const key = createHash('sha256')
    .update(init)
    .update(k.version)
    .update(fs.readFileSync('/bin/busybox'))
    .digest('hex')
    .slice(0, 16);
  const out = path.join(cache, `initrd-${key}.cpio.gz`);
  if (fs.existsSync(out)) return out;
  log('building initramfs');
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'pt-initrd-'));
  try {
    for (const d of ['bin', 'dev', 'proc', 'sys', 'lib/modules'])
      fs.mkdirSync(path.join(stage, d), { recursive: true });
    fs.copyFileSync('/bin/busybox', path.join(stage, 'bin/busybox'));
    fs.chmodSync(path.join(stage, 'bin/busybox'), 0o755);
    fs.copyFileSync(path.join(repo, 'test/kernel/initramfs-init.sh'), path.join(stage, 'init'));
    fs.chmodSync(path.join(stage, 'init'), 0o755);
    for (const f of moduleClosure(k.modDir, ['virtio_pci', '9pnet_virtio', '9p', 'overlay'])) {
      const dst = path.join(stage, 'lib/modules', k.version, f);
      fs.mkdirSync(path.dirname(dst), { recursive: true });
      fs.copyFileSync(path.join(k.modDir, f), dst);
    }
    execFileSync('depmod', ['-b', stage, k.version], { stdio: 'ignore' });
    execFileSync('sh', [
      '-c',
      `cd '${stage}' && find . | cpio -o -H newc --quiet | gzip -1 > '${out}.tmp' && mv '${out}.tmp' '${out}'`,
    ]);
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
  return out;
}

/** The emulated machine: see test/kernel/README.md for the device list. */
function qemuArgs(k: Kernel, initrd: string, job: string, scenario: string, b: Boot): string[] {
  const append = [
    'console=ttyS0',
    'intel_iommu=on',
    'iommu=pt',
    'quiet',
    'panic=-1',
    `passthru.scenario=${scenario}`,
    `passthru.repo=${repo}`,
    `passthru.node=${process.execPath}`,
    `passthru.moddir=${k.modDir}`,
    `passthru.boot=${String(b.index)}`,
    `passthru.coldplug=${b.coldplug}`,
  ].join(' ');
  const nics = (n: number): string[] => ['-netdev', `user,id=n${n},restrict=on`];
  return [
    '-machine',
    'q35,kernel-irqchip=split',
    '-accel',
    'tcg,thread=multi',
    '-smp',
    '2',
    '-m',
    '1024',
    '-cpu',
    'max',
    '-device',
    'intel-iommu,intremap=on,caching-mode=on',
    '-nographic',
    '-no-reboot',
    '-nodefaults',
    '-serial',
    'stdio',
    '-kernel',
    k.image,
    '-initrd',
    initrd,
    '-append',
    append,
    // The guest's root and the job folder: virtio 9p devices the host-critical guard must refuse.
    '-fsdev',
    'local,id=hostfs,path=/,security_model=none,readonly=on,multidevs=remap',
    '-device',
    'virtio-9p-pci,fsdev=hostfs,mount_tag=hostfs,addr=2.0',
    '-fsdev',
    `local,id=jobfs,path=${job},security_model=none,multidevs=remap`,
    '-device',
    'virtio-9p-pci,fsdev=jobfs,mount_tag=jobfs,addr=3.0',
    // Three e1000e NICs, each alone behind its own root port: one IOMMU group each.
    ...[1, 2, 3].flatMap((i) => [
      '-device',
      `pcie-root-port,id=rp${i},chassis=${i},slot=${i},addr=1.${i - 1}${i === 1 ? ',multifunction=on' : ''}`,
      '-device',
      `e1000e,bus=rp${i},netdev=n${i},romfile=`,
      ...nics(i),
    ]),
    // A two-function e1000 on the root bus: both functions share one group.
    '-device',
    'e1000,addr=5.0,multifunction=on,netdev=n4,romfile=',
    ...nics(4),
    '-device',
    'e1000,addr=5.1,netdev=n5,romfile=',
    ...nics(5),
    // edu: a device no driver claims.
    '-device',
    'edu,addr=6.0',
    // An SR-IOV physical function (nvme) whose VFs get their own groups.
    '-device',
    'pcie-root-port,id=rp4,chassis=4,slot=4,addr=1.3',
    '-device',
    'nvme-subsys,id=ns0,nqn=lab-nvme',
    '-device',
    'nvme,bus=rp4,serial=lab0001,subsys=ns0,sriov_max_vfs=2,sriov_vq_flexible=4,sriov_vi_flexible=2,max_ioqpairs=6,msix_qsize=3',
  ];
}

interface Outcome {
  scenario: string;
  ok: boolean;
  seconds: number;
  result: Record<string, unknown> | null;
  note: string;
}

/** One boot of a scenario: its number (a scenario may boot more than once) and how it coldplugs. */
interface Boot {
  index: number;
  coldplug: 'modprobe' | 'udev';
  /** The second try of a boot that hung: its console log is kept beside the first one's. */
  retry?: boolean;
}

function bootOnce(
  k: Kernel,
  initrd: string,
  scenario: string,
  job: string,
  b: Boot,
): Promise<Outcome> {
  const started = Date.now();
  // A result left by an earlier boot of the same scenario must not pass for this one's.
  fs.rmSync(path.join(job, `${scenario}.json`), { force: true });
  return new Promise((resolve) => {
    const qemu = spawn('qemu-system-x86_64', qemuArgs(k, initrd, job, scenario, b), {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const consoleLog = fs.createWriteStream(
      path.join(job, `console-${String(b.index)}${b.retry === true ? '-retry' : ''}.log`),
    );
    let text = '';
    let lastProgress = Date.now();
    const onData = (c: Buffer): void => {
      consoleLog.write(c);
      const chunk = c.toString('utf8');
      text += chunk;
      if (text.length > 1_000_000) text = text.slice(-100_000);
      if (chunk.split('\n').some((l) => !STALL_LINE.test(l))) lastProgress = Date.now();
    };
    qemu.stdout.on('data', onData);
    qemu.stderr.on('data', onData);
    const watchdog = setTimeout(() => {
      qemu.kill('SIGKILL');
    }, timeoutS * 1000);
    let guestLogSize = -1;
    const quietWatch = setInterval(() => {
      let size = -1;
      try {
        size = fs.statSync(path.join(job, 'guest.log')).size;
      } catch {
        // not written yet
      }
      if (size !== guestLogSize) {
        guestLogSize = size;
        lastProgress = Date.now();
      }
      if (Date.now() - lastProgress > quietS * 1000) {
        text += `\n[harness] no progress for ${String(quietS)} s (no console line but stall reports, guest.log not grown): killed\n`;
        qemu.kill('SIGKILL');
      }
    }, 5_000);
    qemu.on('exit', () => {
      clearTimeout(watchdog);
      clearInterval(quietWatch);
      consoleLog.end();
      const seconds = (Date.now() - started) / 1000;
      const m = /PASSTHRU-RESULT scenario=\S+ rc=(\d+)/.exec(text);
      let result: Record<string, unknown> | null;
      try {
        result = JSON.parse(fs.readFileSync(path.join(job, `${scenario}.json`), 'utf8')) as Record<
          string,
          unknown
        >;
      } catch {
        result = null;
      }
      const guestLog = fs.existsSync(path.join(job, 'guest.log'))
        ? fs.readFileSync(path.join(job, 'guest.log'), 'utf8')
        : '';
      if (!m) {
        resolve({
          scenario,
          ok: false,
          seconds,
          result,
          note: `no result line (hung or crashed); console tail:\n${text.slice(-3000)}\nguest log:\n${guestLog.slice(-3000)}`,
        });
        return;
      }
      const ok = m[1] === '0' && result?.ok === true;
      // A scenario with a host side: it reads what the guest left in the job folder.
      if (ok && scenario === IMPORT_SCENARIO && result !== null) {
        const jobResult = result;
        void hostImportCheck(job).then(
          (h) => {
            jobResult.measured = { ...(jobResult.measured as object), host: h.measured };
            jobResult.notes = [...((jobResult.notes as string[] | undefined) ?? []), ...h.notes];
            resolve({
              scenario,
              ok: h.ok,
              seconds,
              result: jobResult,
              note: h.ok ? '' : 'host side failed',
            });
            if (h.ok) fs.rmSync(job, { recursive: true, force: true });
          },
          (e: unknown) => {
            resolve({ scenario, ok: false, seconds, result, note: `host side: ${String(e)}` });
          },
        );
        return;
      }
      resolve({
        scenario,
        ok,
        seconds,
        result,
        note: ok ? '' : `guest log:\n${guestLog.slice(-6000)}`,
      });
    });
  });
}

/**
 * Every boot of a scenario, in one job folder (what a boot saves in /job/persist, the next one
 * finds in place). A hang is retried once per boot. The folder is removed when all boots pass.
 */
async function runScenario(k: Kernel, initrd: string, name: string): Promise<Outcome> {
  const spec: ScenarioSpec | undefined = SCENARIOS.find((s) => s.name === name);
  const boots = spec?.boots ?? 1;
  const coldplug = spec?.coldplug ?? 'modprobe';
  const job = fs.mkdtempSync(path.join(os.tmpdir(), `pt-job-${name}-`));
  fs.chmodSync(job, 0o777);
  const earlier: Record<string, unknown> = {};
  const notes: string[] = [];
  let o: Outcome | null = null;
  let seconds = 0;
  for (let index = 1; index <= boots; index++) {
    const b: Boot = { index, coldplug };
    o = await bootOnce(k, initrd, name, job, b);
    // One boot in about 190 hung before init (real-kernel-lab.md): retry a hang once.
    if (!o.ok && o.result === null) {
      log(
        `${name}: boot ${String(index)}: no result after ${o.seconds.toFixed(1)} s, retrying once`,
      );
      o = await bootOnce(k, initrd, name, job, { ...b, retry: true });
    }
    seconds += o.seconds;
    if (boots > 1)
      log(
        `${name}: boot ${String(index)} ${o.ok ? 'passed' : 'failed'} (${o.seconds.toFixed(1)} s)`,
      );
    if (!o.ok || index === boots) break;
    earlier[`boot${String(index)}`] = o.result?.measured;
    notes.push(...((o.result?.notes as string[] | undefined) ?? []));
  }
  if (o === null) throw new Error(`${name}: no boot ran`);
  if (o.ok) fs.rmSync(job, { recursive: true, force: true });
  if (boots === 1) return o;
  const result =
    o.result === null
      ? null
      : {
          ...o.result,
          measured: { ...earlier, ...(o.result.measured as Record<string, unknown> | undefined) },
          notes: [...notes, ...((o.result.notes as string[] | undefined) ?? [])],
        };
  return { ...o, seconds, result };
}

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const list = wanted.length > 0 ? wanted : SCENARIOS.map((s) => s.name);
  for (const w of list) {
    if (!SCENARIOS.some((s) => s.name === w))
      throw new Error(`unknown scenario ${w}; known: ${SCENARIOS.map((s) => s.name).join(', ')}`);
  }
  ensureTools();
  const k = ensureKernel();
  const initrd = ensureInitramfs(k);
  log(`kernel ${k.version}; ${String(list.length)} scenarios, one boot each (boot-window: two)`);
  const suiteStart = Date.now();
  const outcomes: Outcome[] = [];
  for (const name of list) {
    const o = await runScenario(k, initrd, name);
    outcomes.push(o);
    const measured =
      o.result?.measured === undefined ? '' : ` ${JSON.stringify(o.result.measured)}`;
    log(`${o.ok ? 'PASS' : 'FAIL'} ${name} (${o.seconds.toFixed(1)} s boot+run)${measured}`);
    for (const n of (o.result?.notes as string[] | undefined) ?? []) log(`  ${n}`);
    if (!o.ok) log(o.note);
  }
  const passed = outcomes.filter((o) => o.ok).length;
  log(`suite took ${((Date.now() - suiteStart) / 1000).toFixed(1)} s`);
  process.stdout.write(`${passed} passed, ${outcomes.length - passed} failed\n`);
  if (passed !== outcomes.length) process.exitCode = 1;
}

await main();
