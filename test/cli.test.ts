import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { Command } from 'commander';
import { Agent } from '../src/agent/agent.js';
import { addAgentCommands, type AgentEnv } from '../src/cli/agent-commands.js';
import { buildProgram, type CliEnv, type Runtime } from '../src/cli/program.js';
import { errorCodes, PtError } from '../src/errors.js';
import { ManualClock } from '../src/host/clock.js';
import { loadPciIds, loadTopology } from '../src/host/files.js';
import { SimKernel } from '../src/host/sim/kernel.js';
import { validateTopology } from '../src/topology/format.js';
import { MemoryHistory } from '../src/state/history.js';
import { MemoryStore } from '../src/state/model.js';
import { silentLogger } from '../src/util/logger.js';

interface Run {
  out: string;
  code: number;
  files: { path: string; content: string }[];
  kernel: SimKernel;
}

async function run(
  args: string[],
  topology = 'qemu-guest',
  store = new MemoryStore(),
  /** false: the runtime looks like a tree under --root (boot-config refuses --sim). */
  asSim = true,
  onServe: () => void = () => undefined,
): Promise<Run> {
  const { names } = await loadPciIds();
  const kernel = new SimKernel(await loadTopology(topology), new ManualClock(1_000));
  let out = '';
  let code = 0;
  const files: Run['files'] = [];
  const aenv: AgentEnv = {
    openAgent: (rt) =>
      Promise.resolve(
        new Agent({
          host: rt.host,
          store,
          history: new MemoryHistory(),
          clock: kernel.clock,
          logger: rt.logger,
          names,
        }),
      ),
    serveAgent: () => {
      onServe();
      return Promise.resolve();
    },
    requireRoot: () => undefined,
    requestAgent: () => Promise.resolve(null),
    writeFiles: (f) => {
      files.push(...f);
      return Promise.resolve();
    },
    agentCommand: () => ['/usr/bin/node', '/opt/passthru/dist/src/main.js'],
    demo: () => Promise.resolve(),
    apiToken: () => Promise.resolve('t'.repeat(43)),
  };
  const env: CliEnv = {
    out: (t) => {
      out += t;
    },
    makeRuntime: (opts): Promise<Runtime> =>
      Promise.resolve({
        host: kernel.port(),
        names,
        sim: asSim ? kernel : null,
        logger: silentLogger(),
        opts,
        stateDir: '/tmp/x',
        socket: '/tmp/x/agent.sock',
      }),
    writeOutput: (p, t) => {
      files.push({ path: p, content: t });
      return Promise.resolve();
    },
    setExitCode: (c) => {
      code = c;
    },
    extend: (program, ctx) => {
      addAgentCommands(program, ctx, aenv);
    },
  };
  const program = buildProgram(env).exitOverride();
  try {
    await program.parseAsync(['node', 'passthru', ...args]);
  } catch (e) {
    if (e instanceof PtError) code = errorCodes[e.code].exit;
    else throw e;
  }
  return { out, code, files, kernel };
}

test('list --json: the documented fields, lowercase hex, null for no driver', async () => {
  const r = await run(['list', '--json']);
  const list = JSON.parse(r.out) as Record<string, unknown>[];
  assert.equal(list.length, 17);
  const edu = list.find((d) => d.address === '0000:00:06.0');
  assert.ok(edu);
  for (const k of [
    'address',
    'vendorId',
    'deviceId',
    'subsystemVendorId',
    'subsystemDeviceId',
    'classId',
    'revision',
    'driver',
    'iommuGroup',
    'numaNode',
    'vendorName',
    'deviceName',
  ]) {
    assert.ok(k in edu, k);
  }
  assert.equal(edu.driver, null);
  assert.equal(edu.classId, '00ff00');
  assert.equal(edu.iommuGroup, 8);
  assert.equal(edu.numaNode, null);
  for (const d of list) {
    assert.match(String(d.vendorId), /^[0-9a-f]{4}$/);
    assert.match(String(d.classId), /^[0-9a-f]{6}$/);
    assert.match(String(d.revision), /^[0-9a-f]{2}$/);
  }
});

test('list filters: class, vendor:device, driver, group; bad filters are clear errors', async () => {
  const nics = JSON.parse((await run(['list', '--json', '--class', '02'])).out) as {
    address: string;
  }[];
  assert.equal(nics.length, 5);
  const e1000e = JSON.parse(
    (await run(['list', '--json', '--vendor', '8086:10d3'])).out,
  ) as unknown[];
  assert.equal(e1000e.length, 3);
  const none = JSON.parse((await run(['list', '--json', '--driver', 'none'])).out) as {
    address: string;
  }[];
  assert.ok(none.some((d) => d.address === '0000:00:06.0'));
  const g7 = JSON.parse((await run(['list', '--json', '--group', '7'])).out) as unknown[];
  assert.equal(g7.length, 2);
  assert.equal((await run(['list', '--class', 'zz'])).code, 2);
  const table = (await run(['list'])).out;
  assert.match(table.split('\n')[0] ?? '', /ADDRESS\s+CLASS\s+IDS\s+GROUP\s+NUMA\s+DRIVER/);
});

test('groups names the blockers; doctor exits 1 without an IOMMU and 0 with one', async () => {
  const g = JSON.parse((await run(['groups', '--json'])).out) as {
    group: number;
    viable: boolean;
    blockers: { address: string }[];
    claimable: boolean;
    critical: unknown[];
  }[];
  const g7 = g.find((x) => x.group === 7);
  assert.ok(g7);
  assert.equal(g7.viable, false);
  assert.deepEqual(
    g7.blockers.map((b) => b.address),
    ['0000:00:05.0', '0000:00:05.1'],
  );
  assert.equal(g7.claimable, true);
  assert.equal(g.find((x) => x.group === 5)?.claimable, false);
  const ok = await run(['doctor']);
  assert.equal(ok.code, 0);
  const topo = await loadTopology('qemu-guest');
  topo.kernel = { ...topo.kernel, iommus: [] };
  const dir = path.join(process.cwd(), 'dist', 'no-iommu.json');
  await fs.writeFile(dir, JSON.stringify(topo));
  const bad = await run(['doctor', '--json'], dir);
  assert.equal(bad.code, 1);
  const rep = JSON.parse(bad.out) as {
    ok: boolean;
    checks: { id: string; status: string; hint?: string }[];
  };
  assert.equal(rep.ok, false);
  assert.ok(
    rep.checks.some((c) => c.id === 'iommu' && c.status === 'fail' && c.hint !== undefined),
  );
});

test('snapshot writes a topology that loads back into the simulated kernel', async () => {
  const r = await run(['snapshot', '--name', 'roundtrip']);
  const topo = validateTopology(JSON.parse(r.out));
  assert.equal(topo.name, 'roundtrip');
  const k = new SimKernel(topo);
  assert.equal(k.listDevices().length, 17);
  assert.equal(k.driverOf(k.listDevices()[0]!), null);
});

test('claim and release through the CLI: exit codes, refusal text, nothing stored on refusal', async () => {
  const store = new MemoryStore();
  const ok = await run(['claim', '0000:01:00.0'], 'qemu-guest', store);
  assert.equal(ok.code, 0);
  assert.match(ok.out, /0000:01:00\.0\s+ready/);
  const refused = await run(['claim', '0000:00:05.0'], 'qemu-guest', store);
  assert.equal(refused.code, 4);
  assert.match(refused.out, /PT_ERR_GROUP_NOT_VIABLE/);
  const bad = await run(['claim', '0000:01:00.0', 'not-an-address'], 'qemu-guest', store);
  assert.equal(bad.code, 2);
  assert.equal(bad.kernel.calls.length, 0, 'a bad address anywhere: nothing touched');
  const notClaimed = await run(['release', '0000:02:00.0'], 'qemu-guest', store);
  assert.equal(notClaimed.code, 3);
});

test('status without an agent reads and changes nothing', async () => {
  const r = await run(['status', '--json']);
  const st = JSON.parse(r.out) as { claims: unknown[]; keeper: { required: string[] } };
  assert.deepEqual(st.claims, []);
  assert.ok(st.keeper.required.includes('vfio_virqfd'));
  assert.deepEqual(r.kernel.calls, []);
});

test('boot-config: modules-load.d with the kernel vfio set, softdeps for claimed drivers, a unit', async () => {
  const store = new MemoryStore();
  await run(['claim', '0000:01:00.0'], 'qemu-guest', store);
  const r = await run(['boot-config'], 'qemu-guest', store, false);
  const by = (p: string): string => r.files.find((f) => f.path.endsWith(p))?.content ?? '';
  assert.match(by('modules-load.d/passthru-vfio.conf'), /^vfio_pci$/m);
  assert.match(by('modules-load.d/passthru-vfio.conf'), /^vfio_virqfd$/m);
  assert.match(by('modprobe.d/passthru-vfio.conf'), /^softdep e1000e pre: vfio-pci$/m);
  assert.match(
    by('passthru-agent.service'),
    /ExecStart="\/usr\/bin\/node" "\/opt\/passthru\/dist\/src\/main\.js" "agent" "--state-dir" "\/tmp\/x"/,
  );
  const dry = await run(['boot-config', '--dry-run'], 'qemu-guest', store, false);
  assert.equal(dry.files.length, 0);
  assert.match(dry.out, /# \/etc\/modules-load.d\/passthru-vfio.conf/);
});

/** pepr's rule: the docs and --help may not drift apart. */
test('docs/cli.md documents every command, option and environment variable', async () => {
  const doc = await fs.readFile(path.join(process.cwd(), 'docs/cli.md'), 'utf8');
  const env: CliEnv = {
    out: () => undefined,
    makeRuntime: () => Promise.reject(new Error('unused')),
    writeOutput: () => Promise.resolve(),
    setExitCode: () => undefined,
    extend: (p, ctx) => {
      addAgentCommands(p, ctx, {} as AgentEnv);
    },
  };
  const program = buildProgram(env);
  const sectionOf = (title: string): string => {
    const start = doc.indexOf(`### ${title}\n`);
    assert.ok(start >= 0, `docs/cli.md has a section "### ${title}"`);
    const next = doc.indexOf('\n### ', start + 4);
    return doc.slice(start, next < 0 ? undefined : next);
  };
  const walk = (cmd: Command, prefix: string): void => {
    for (const sub of cmd.commands) {
      const title = `${prefix} ${sub.name()}`;
      const section = sectionOf(title);
      for (const o of sub.options) {
        if (o.hidden) continue;
        assert.ok(
          section.includes(o.long ?? o.flags),
          `${title}: ${o.long ?? o.flags} is documented`,
        );
      }
      walk(sub, title);
    }
  };
  walk(program, 'passthru');
  const globals = doc.slice(doc.indexOf('## Global options'), doc.indexOf('## Commands'));
  for (const o of program.options)
    assert.ok(globals.includes(o.long ?? o.flags), `global ${o.flags} documented`);
  const src = await fs.readFile(path.join(process.cwd(), 'src/cli/program.ts'), 'utf8');
  const main = await fs.readFile(path.join(process.cwd(), 'src/main.ts'), 'utf8');
  for (const m of `${src}${main}`.matchAll(/process\.env\.(PASSTHRU_[A-Z_]+)/g)) {
    assert.ok(doc.includes(m[1] ?? ''), `${m[1] ?? ''} documented`);
  }
  const errorsDoc = await fs.readFile(path.join(process.cwd(), 'docs/errors.md'), 'utf8');
  for (const [code, m] of Object.entries(errorCodes)) {
    assert.match(
      errorsDoc,
      new RegExp(`\\|\\s*${code}\\s*\\|\\s*${m.exit}\\s*\\|\\s*${m.http}\\s*\\|`),
      `${code} documented with exit ${m.exit} and HTTP ${m.http}`,
    );
  }
});

test('list, groups and doctor run on every shipped topology', async () => {
  const { listShippedTopologies } = await import('../src/host/files.js');
  for (const name of await listShippedTopologies()) {
    const l = await run(['list', '--json'], name);
    assert.equal(l.code, 0, `${name}: list`);
    assert.ok((JSON.parse(l.out) as unknown[]).length > 0);
    const g = await run(['groups'], name);
    assert.match(g.out, /IOMMU group \d+/, `${name}: groups`);
    const d = await run(['doctor', '--json'], name);
    const rep = JSON.parse(d.out) as { ok: boolean };
    assert.equal(d.code, rep.ok ? 0 : 1, `${name}: doctor exit code reflects failures`);
  }
});

test('nonsense timings are refused with PT_ERR_INVALID_ARGUMENT (exit 2) before the agent starts', async () => {
  for (const [flag, v] of [
    ['--resync-ms', '0'],
    ['--resync-ms', '-1'],
    ['--resync-ms', '1.5'],
    ['--resync-ms', '99999999999'],
    ['--poll-ms', '0'],
    ['--poll-ms', '1e3'],
    ['--unbind-timeout-ms', ''],
  ] as const) {
    let served = false;
    const r = await run(['agent', flag, v], 'qemu-guest', new MemoryStore(), true, () => {
      served = true;
    });
    assert.equal(r.code, 2, `${flag} ${v}`);
    assert.equal(served, false, `${flag} ${v}: no agent served`);
  }
  assert.equal((await run(['--log-level', 'bogus', 'list'])).code, 2);
  assert.equal((await run(['--log-format', 'xml', 'list'])).code, 2);
  assert.equal((await run(['sim', 'fail-load', 'vfio_pci', '--times', '-5'])).code, 2);
});

test('boot-config refuses --sim: simulated claims never reach the real /etc', async () => {
  const r = await run(['boot-config'], 'qemu-guest', new MemoryStore(), true);
  assert.equal(r.code, 2);
  assert.deepEqual(r.files, []);
});

test('boot-config: one udev rule per claimed address, and the softdep comment says it only orders loading', async () => {
  const store = new MemoryStore();
  await run(['claim', '0000:01:00.0', '0000:02:00.0'], 'qemu-guest', store);
  const r = await run(['boot-config'], 'qemu-guest', store, false);
  const rules = r.files.find((f) => f.path.endsWith('/etc/udev/rules.d/70-passthru.rules'));
  assert.ok(rules);
  assert.deepEqual(
    rules.content.split('\n').filter((l) => l.startsWith('ACTION')),
    ['0000:01:00.0', '0000:02:00.0'].map(
      (a) => `ACTION=="add", SUBSYSTEM=="pci", KERNEL=="${a}", ATTR{driver_override}="vfio-pci"`,
    ),
  );
  const modprobe = r.files.find((f) => f.path.endsWith('modprobe.d/passthru-vfio.conf'));
  assert.match(modprobe?.content ?? '', /orders loading only/);
});

test('finding 9: a driver name with a newline never becomes a modprobe.d line; a path with a space or $ is quoted in the unit', async () => {
  const { bootConfigFiles, systemdQuote } = await import('../src/cli/boot-config.js');
  const base = {
    root: '/',
    modules: ['vfio_pci'],
    claimed: [],
    agentCommand: ['/usr/bin/node', '/opt/pass thru/main.js'],
    stateDir: '/var/lib/passthru',
  };
  assert.throws(
    () =>
      bootConfigFiles({
        ...base,
        originalDrivers: ['e1000e\ninstall vfio_pci /bin/sh -c "touch /tmp/pwned"'],
      }),
    (e: unknown) => e instanceof PtError && e.code === 'PT_ERR_INVALID_ARGUMENT',
  );
  assert.throws(() => bootConfigFiles({ ...base, originalDrivers: [], stateDir: 'rel/dir' }));
  const unit = bootConfigFiles({ ...base, originalDrivers: ['e1000e'] }).find((f) =>
    f.path.endsWith('.service'),
  );
  assert.match(
    unit?.content ?? '',
    /^ExecStart="\/usr\/bin\/node" "\/opt\/pass thru\/main\.js" "agent"/m,
  );
  assert.equal(systemdQuote('a"b\\c%d$e'), '"a\\"b\\\\c%%d$$e"');
  assert.throws(() => systemdQuote('a\nb'));
});

test('a topology whose driver names carry control characters is refused (PT_ERR_TOPOLOGY_INVALID)', async () => {
  const topo = await loadTopology('qemu-guest');
  const evil = 'e1000e\u001b[2J\u001b[31mOWNED\u202e';
  topo.drivers = [...(topo.drivers ?? []), { name: evil, ids: [] }];
  const dev = topo.devices.find((d) => d.address === '0000:01:00.0');
  assert.ok(dev);
  dev.driver = evil;
  const file = path.join(process.cwd(), 'dist', 'ansi-topology.json');
  await fs.writeFile(file, JSON.stringify(topo));
  await assert.rejects(
    run(['list'], file),
    (e: unknown) => e instanceof PtError && e.code === 'PT_ERR_TOPOLOGY_INVALID',
  );
});

test('finding 17: control characters in names (a crafted pci.ids) are printed escaped by list and groups', async () => {
  const { parsePciIds } = await import('../src/pci/pciids.js');
  const { discover } = await import('../src/pci/discovery.js');
  const { groupViews, groupsText, listTable } = await import('../src/cli/views.js');
  // Tabs separate ids and names in pci.ids; the vendor name carries ESC sequences and an RLO.
  const names = parsePciIds('8086  Intel\u001b[2J\u001b[31mOWNED\u202e\n\t10d3  82574L\n');
  const kernel = new SimKernel(await loadTopology('qemu-guest'), new ManualClock(1_000));
  const inv = await discover(kernel.port(), names);
  for (const [what, text] of [
    ['list', listTable(inv.devices)],
    ['groups', groupsText(groupViews(inv, await kernel.port().hostUses()))],
  ] as const) {
    assert.ok(!text.includes('\u001b') && !text.includes('\u202e'), what);
    assert.match(text, /Intel\\x1b\[2J\\x1b\[31mOWNED\\u202e/, what);
  }
});
