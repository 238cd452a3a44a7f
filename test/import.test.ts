import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { PtError } from '../src/errors.js';
import { DumpParser } from '../src/import/lspci-parse.js';
import { dumpsToTopology } from '../src/import/to-topology.js';
import { readLines } from '../src/process/read-lines.js';
import { MAX_IMPORT_BYTES } from '../src/cli/commands/import.js';
import { importTexts } from './import-compare.js';
import { buildProgram, type CliEnv } from '../src/cli/program.js';
import { validateTopology } from '../src/topology/format.js';

/** A hand-written two-function card behind a root port, as lspci -vvnn -k -D prints it. */
const VV = `0000:00:01.0 PCI bridge [0604]: Intel Corporation Device [8086:347a] (rev 04) (prog-if 00 [Normal decode])
\tControl: I/O+ Mem+ BusMaster+ SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- SERR- FastB2B- DisINTx-
\tBus: primary=00, secondary=17, subordinate=17, sec-latency=0
\tCapabilities: [40] Express (v2) Root Port (Slot+), MSI 00
\t\tDevCap:\tMaxPayload 256 bytes, PhantFunc 0
\t\t\tExtTag- RBE+
\tKernel driver in use: pcieport

0000:17:00.0 Ethernet controller [0200]: Intel Corporation Ethernet Controller E810-C for QSFP [8086:1592] (rev 02)
\tSubsystem: Intel Corporation Ethernet Network Adapter E810-C-Q2 [8086:0002]
\tNUMA node: 1
\tIOMMU group: 23
\tCapabilities: [70] Express (v2) Endpoint, MSI 00
\t\tDevCap:\tMaxPayload 512 bytes, PhantFunc 0, Latency L0s <512ns, L1 <64us
\t\t\tExtTag+ AttnBtn- AttnInd- PwrInd- RBE+ FLReset+ SlotPowerLimit 0W
\tCapabilities: [150 v1] Device Serial Number 40-a6-b7-ff-ff-95-b7-98
\tCapabilities: [160 v1] Single Root I/O Virtualization (SR-IOV)
\t\tIOVCap:\tMigration- 10BitTagReq- Interrupt Message Number: 000
\t\tInitial VFs: 128, Total VFs: 128, Number of VFs: 2, Function Dependency Link: 00
\t\tVF offset: 8, stride: 1, Device ID: 1889
\tKernel driver in use: ice
\tKernel modules: ice

0000:17:01.0 Ethernet controller [0200]: Intel Corporation Ethernet Adaptive Virtual Function [8086:1889] (rev 02)
\tSubsystem: Intel Corporation Device [8086:0000]
\tNUMA node: 1
\tIOMMU group: 24
\tKernel driver in use: iavf
\tKernel modules: iavf
`;
const GROUPS = `/sys/kernel/iommu_groups/23/devices/0000:17:00.0
/sys/kernel/iommu_groups/24/devices/0000:17:01.0
/sys/kernel/iommu_groups/2/devices/0000:00:01.0
`;

function refusal(files: Record<string, string>): PtError {
  try {
    importTexts(files);
  } catch (e) {
    assert.ok(e instanceof PtError, `a PtError, not ${String(e)}`);
    return e;
  }
  assert.fail('the input was accepted');
}

test('import maps ids, driver, module, NUMA, group, parent, FLR, SR-IOV, serial number and VFs', () => {
  const r = importTexts({ 'vv.txt': VV, 'groups.txt': GROUPS });
  const [port, pf, vf] = r.topology.devices;
  assert.deepEqual(port, {
    address: '0000:00:01.0',
    vendor: '8086',
    device: '347a',
    subsystemVendor: '0000',
    subsystemDevice: '0000',
    class: '060400',
    revision: '04',
    driver: 'pcieport',
    iommuGroup: 2,
    numaNode: -1,
    parent: null,
  });
  assert.deepEqual(pf, {
    address: '0000:17:00.0',
    vendor: '8086',
    device: '1592',
    subsystemVendor: '8086',
    subsystemDevice: '0002',
    class: '020000',
    revision: '02',
    driver: 'ice',
    iommuGroup: 23,
    numaNode: 1,
    parent: '0000:00:01.0',
    resetMethods: ['flr', 'bus'],
    serialNumber: '40-a6-b7-ff-ff-95-b7-98',
    sriov: { totalVfs: 128, numVfs: 2, vfDevice: '1889', vfOffset: 8, vfStride: 1 },
  });
  assert.equal(vf?.physfn, '0000:17:00.0');
  assert.equal(vf.parent, '0000:00:01.0', 'a VF hangs where its PF does');
  assert.deepEqual(
    r.topology.drivers?.find((d) => d.name === 'pcieport'),
    { name: 'pcieport', module: null },
  );
  assert.deepEqual(
    r.topology.drivers.find((d) => d.name === 'ice'),
    { name: 'ice', module: 'ice' },
  );
  assert.ok(r.assumed.some((a) => a.includes('1 enabled VF(s) not in the lspci output')));
  assert.deepEqual(r.dropped, []);
});

test('import decides each input by content: one concatenated file, in any order, equals separate files', () => {
  const separate = importTexts({ 'vv.txt': VV, 'groups.txt': GROUPS });
  const oneFile = importTexts({ 'all.txt': `# lspci -vvnn -k -D\n${VV}\n${GROUPS}` });
  const reversed = importTexts({
    'all.txt': `${GROUPS}\nlspci: Unable to load libkmod resources: error -2\n${VV}`,
  });
  assert.deepEqual(oneFile.topology, separate.topology);
  assert.deepEqual(reversed.topology, separate.topology);
});

test('import without IOMMU groups or NUMA nodes says what it assumed and groups per slot', () => {
  const vv = VV.replace(/\tIOMMU group: \d+\n/g, '').replace(/\tNUMA node: \d+\n/g, '');
  const r = importTexts({ 'vv.txt': vv });
  assert.deepEqual(
    r.topology.devices.map((d) => [d.address, d.iommuGroup, d.numaNode]),
    [
      ['0000:00:01.0', 0, -1],
      ['0000:17:00.0', 1, -1],
      ['0000:17:01.0', 2, -1],
    ],
  );
  assert.ok(r.assumed.some((a) => a.startsWith('no IOMMU groups in the input: assumed')));
  assert.ok(r.assumed.some((a) => a.startsWith('no NUMA node in the input')));
  assert.match(r.topology.description ?? '', /Assumed: \d+/);
});

test('import refuses hostile names and addresses with the file and line', () => {
  const cases: [string, string, RegExp][] = [
    ['../../etc Host bridge [0600]: X [8086:1234]', 'x.txt:1', /not a PCI address/],
    ['Slot:\t../../etc/passwd', 'x.txt:1', /not a PCI address/],
    ['/sys/kernel/iommu_groups/../../etc/devices/0000:00:00.0', 'x.txt:1', /not a line of `find/],
    [
      '/sys/kernel/iommu_groups/..%2f/devices/0000:00:00.0',
      'x.txt:1',
      /IOMMU group is not a number/,
    ],
    ['/sys/kernel/iommu_groups/1/devices/../../../etc/passwd', 'x.txt:1', /not a line of `find/],
    ['/sys/kernel/iommu_groups/1/devices/0000:00:00.0/../x', 'x.txt:1', /not a line of `find/],
    ['/sys/kernel/iommu_groups/1/devices/0000:00:20.0', 'x.txt:1', /not a PCI address/],
    [
      `${VV.split('\n')[0] ?? ''}\n\tKernel driver in use: ../../evil`,
      'x.txt:2',
      /not a kernel driver name/,
    ],
    [
      `${VV.split('\n')[0] ?? ''}\n\tKernel driver in use: ..`,
      'x.txt:2',
      /not a kernel driver name/,
    ],
    [`${VV.split('\n')[0] ?? ''}\n\tKernel modules: ok, ../x`, 'x.txt:2', /not a module name/],
    [`${VV.split('\n')[0] ?? ''}\n\tDeviceName: \u001b[31mred`, 'x.txt:2', /control characters/],
    ['Vendor:\tIntel [8086]', 'x.txt:1', /before the record's Slot line/],
    [`x${'y'.repeat(5000)}`, 'x.txt:1', /line longer than 4096/],
    [`${VV.split('\n')[0] ?? ''}\n\tIOMMU group: 99999999999`, 'x.txt:2', /not a number|over/],
  ];
  for (const [text, where, msg] of cases) {
    const e = refusal({ 'x.txt': text });
    assert.equal(e.code, 'PT_ERR_IMPORT_INVALID', text.slice(0, 60));
    assert.ok(e.message.startsWith(`${where}: `), `${e.message} names ${where}`);
    assert.match(e.message, msg);
    assert.ok(!e.message.includes('\u001b'), 'no escape sequence reaches the terminal');
  }
});

test('import refuses malformed and truncated input with the line and what to run instead', () => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ 'a.txt': '00:00.0 Host bridge [0600]: Intel [8086:1234]' }, /a\.txt:1: .*run lspci with -D/],
    [
      { 'a.txt': '0000:00:00.0 Host bridge: Intel Corporation Device' },
      /a\.txt:1: .*run lspci with -nn/,
    ],
    [{ 'a.txt': '0000:00:01.0 PCI bri' }, /a\.txt:1: not lspci -vvnn -k -D/],
    [
      { 'a.txt': 'Slot:\t0000:00:01.0\nClass:\tPCI bridge [0604]\n' },
      /a\.txt:1: 0000:00:01\.0 has no vendor \(truncated record\?\)/,
    ],
    [
      { 'a.txt': 'Slot:\t0000:00:01.0\nClass:\tPCI bridge\n' },
      /a\.txt:2: Class has no \[xxxx\] id/,
    ],
    [{ 'a.txt': '\tKernel driver in use: e1000e' }, /a\.txt:1: indented line outside/],
    [{ 'a.txt': 'hello world' }, /a\.txt:1: not lspci/],
    [{ 'a.txt': '' }, /no PCI functions in the input/],
    [{ 'a.txt': `${VV}\n${VV}` }, /appears twice in lspci -vv output/],
    [
      { 'vv.txt': VV, 'g.txt': '/sys/kernel/iommu_groups/7/devices/0000:17:00.0' },
      /g\.txt:1: 0000:17:00\.0 iommuGroup is 7 here but 23 in an earlier input \(vv\.txt:9\)/,
    ],
  ];
  for (const [files, msg] of cases) {
    const e = refusal(files);
    assert.equal(e.code, 'PT_ERR_IMPORT_INVALID');
    assert.match(e.message, msg);
  }
});

test('a VF file cut after its header line still imports: the header carries every id', () => {
  const cut = VV.slice(0, VV.indexOf('\tSubsystem: Intel Corporation Device [8086:0000]'));
  const r = importTexts({ 'cut.txt': cut });
  assert.equal(r.topology.devices.length, 3);
  assert.equal(r.topology.devices[2]?.subsystemVendor, '0000');
});

test('the parser holds one entry per function: 70000 functions are refused, not stored', () => {
  const p = new DumpParser();
  let refused: unknown = null;
  try {
    for (let i = 0; i < 70000; i++) {
      const bus = (i >> 8) & 0xff;
      const dev = (i >> 3) & 0x1f;
      const dom = (i >> 16).toString(16).padStart(4, '0');
      const a = `${dom}:${bus.toString(16).padStart(2, '0')}:${dev.toString(16).padStart(2, '0')}.${i & 7}`;
      p.line(`/sys/kernel/iommu_groups/${i}/devices/${a}`, { file: 'g', line: i + 1 });
    }
  } catch (e) {
    refused = e;
  }
  assert.ok(refused instanceof PtError && refused.code === 'PT_ERR_IMPORT_INVALID');
  assert.match(refused.message, /^g:65537: more than 65536 PCI functions/);
  assert.throws(() => dumpsToTopology(p.finish(), { name: 'x' }), /no PCI functions/);
});

async function tmp(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'pt-import-'));
}

test('a 1 GB file of zeros is refused at line 1 with PT_ERR_IMPORT_INVALID, memory bounded', async () => {
  const dir = await tmp();
  try {
    const f = path.join(dir, 'big.txt');
    await fs.writeFile(f, '');
    await fs.truncate(f, 1024 ** 3);
    const p = new DumpParser();
    let lines = 0;
    const before = process.memoryUsage().rss;
    await assert.rejects(
      readLines([f], { maxBytes: MAX_IMPORT_BYTES, maxLineBytes: 16384 }, (t, file, line) => {
        lines++;
        p.line(t, { file, line });
      }),
      (e: unknown) =>
        e instanceof PtError &&
        e.code === 'PT_ERR_IMPORT_INVALID' &&
        e.message === `${f}:1: line longer than 16384 bytes: not lspci output`,
    );
    assert.equal(lines, 0);
    assert.ok(process.memoryUsage().rss - before < 64 * 1024 * 1024, 'memory stays bounded');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('an endless stream of valid-looking lines stops at the 64 MiB limit with PT_ERR_IMPORT_TOO_LARGE', async () => {
  const dir = await tmp();
  const fifo = path.join(dir, 'endless');
  const mk = spawn('mkfifo', [fifo]);
  await new Promise((r) => mk.on('exit', r));
  // `yes` writes forever: only the reader's limit ends this.
  const writer = spawn('sh', ['-c', `yes '# ${'x'.repeat(200)}' > '${fifo}'`], { stdio: 'ignore' });
  try {
    let lines = 0;
    const before = process.memoryUsage().rss;
    await assert.rejects(
      readLines([fifo], { maxBytes: MAX_IMPORT_BYTES, maxLineBytes: 16384 }, () => {
        lines++;
      }),
      (e: unknown) =>
        e instanceof PtError &&
        e.code === 'PT_ERR_IMPORT_TOO_LARGE' &&
        e.message.startsWith(`input over ${MAX_IMPORT_BYTES} bytes at ${fifo} line `),
    );
    assert.ok(lines > 300_000 && lines < 340_000, `${lines} lines read before the limit`);
    assert.ok(process.memoryUsage().rss - before < 64 * 1024 * 1024, 'memory stays bounded');
  } finally {
    writer.kill();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('readLines refuses a directory and a device, and numbers lines across files separately', async () => {
  const dir = await tmp();
  try {
    await assert.rejects(
      readLines([dir], { maxBytes: 1024, maxLineBytes: 100 }, () => undefined),
      /is not a file of lspci output/,
    );
    await assert.rejects(
      readLines(['/dev/zero'], { maxBytes: 1024, maxLineBytes: 100 }, () => undefined),
      /is not a file of lspci output/,
    );
    const a = path.join(dir, 'a');
    const b = path.join(dir, 'b');
    await fs.writeFile(a, 'one\ntwo\n');
    await fs.writeFile(b, 'three\r\nfour');
    const seen: string[] = [];
    await readLines([a, b], { maxBytes: 1024, maxLineBytes: 100 }, (t, f, l) => {
      seen.push(`${path.basename(f)}:${l}:${t}`);
    });
    assert.deepEqual(seen, ['a:1:one', 'a:2:two', 'b:1:three\r', 'b:2:four']);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

async function cli(args: string[]): Promise<{ out: string; files: Map<string, string> }> {
  let out = '';
  const files = new Map<string, string>();
  const env: CliEnv = {
    out: (t) => {
      out += t;
    },
    makeRuntime: () => Promise.reject(new Error('import needs no host')),
    writeOutput: (f, t) => {
      files.set(f, t);
      return Promise.resolve();
    },
    setExitCode: () => undefined,
    readLines,
  };
  await buildProgram(env)
    .exitOverride()
    .parseAsync(['node', 'passthru', ...args]);
  return { out, files };
}

test('passthru import -o writes a valid topology and prints counts, assumptions and what to run', async () => {
  const dir = await tmp();
  try {
    const f = path.join(dir, 'server.txt');
    await fs.writeFile(f, `${VV}\n${GROUPS}`);
    const r = await cli(['import', f, '-o', '/out/my-server.json']);
    const topo = validateTopology(JSON.parse(r.files.get('/out/my-server.json') ?? 'null'));
    assert.equal(topo.name, 'my-server');
    assert.equal(topo.devices.length, 3);
    const lines = r.out.trim().split('\n');
    assert.equal(
      lines[0],
      'wrote /out/my-server.json: 3 functions, 3 IOMMU groups, 1 bridges, 1 SR-IOV PFs with 1 VFs listed, 1 NUMA nodes',
    );
    assert.ok(lines.some((l) => l.startsWith('assumed: 1 enabled VF(s) not in the lspci output')));
    assert.equal(lines.at(-1)?.startsWith('try it: passthru --sim /out/my-server.json list'), true);
    const stdout = await cli(['import', f, '--name', 'x1']);
    assert.equal(validateTopology(JSON.parse(stdout.out)).name, 'x1');
    assert.equal(stdout.files.size, 0);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('a refused import writes no file', async () => {
  const dir = await tmp();
  try {
    const f = path.join(dir, 'bad.txt');
    await fs.writeFile(f, `${VV}\n/sys/kernel/iommu_groups/1/devices/../../../etc/passwd\n`);
    let files = new Map<string, string>();
    await assert.rejects(
      (async () => {
        files = (await cli(['import', f, '-o', '/out/x.json'])).files;
      })(),
      (e: unknown) =>
        e instanceof PtError &&
        e.code === 'PT_ERR_IMPORT_INVALID' &&
        e.message.startsWith(`${f}:${VV.split('\n').length + 1}: `),
    );
    assert.equal(files.size, 0);
    await assert.rejects(cli(['import', f, '--name', '../x']), /--name takes letters/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
