import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { deferredPciIds, emptyPciIds, parsePciIds, type PciIdNames } from './pciids.js';

const SAMPLE = `# comment
8086  Intel Corporation
\t10d3  82574L Gigabit Network Connection
\t\t8086 0000  Gigabit CT Desktop Adapter
10de  NVIDIA Corporation
\t26b9  AD102GL [L40S]
C 02  Network controller
\t00  Ethernet controller
C 0c  Serial bus controller
\t03  USB controller
\t\t30  XHCI
`;

test('parsePciIds reads vendors, devices, subsystems and classes', () => {
  const n = parsePciIds(SAMPLE);
  assert.equal(n.vendor('8086'), 'Intel Corporation');
  assert.equal(n.device('8086', '10d3'), '82574L Gigabit Network Connection');
  assert.equal(n.subsystem('8086', '10d3', '8086', '0000'), 'Gigabit CT Desktop Adapter');
  assert.equal(n.device('10de', '26b9'), 'AD102GL [L40S]');
  assert.equal(n.className('02'), 'Network controller');
  assert.equal(n.subclassName('02', '00'), 'Ethernet controller');
  assert.equal(n.progIfName('0c', '03', '30'), 'XHCI');
  assert.equal(n.vendor('1234'), undefined);
  assert.equal(n.device('8086', 'ffff'), undefined);
});

test('parsePciIds (property): every vendor, device and subsystem written in pci.ids layout is found again by its ids, and unknown ids are undefined', () => {
  const hex4 = fc.stringMatching(/^[0-9a-f]{4}$/);
  const name = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9 ()[\]/.,+-]{0,30}[A-Za-z0-9)\]]$/);
  const sub = fc.record({ sv: hex4, sd: hex4, name });
  const dev = fc.record({ id: hex4, name, subs: fc.array(sub, { maxLength: 3 }) });
  const vendor = fc.record({ id: hex4, name, devices: fc.array(dev, { maxLength: 4 }) });
  fc.assert(
    fc.property(fc.uniqueArray(vendor, { selector: (v) => v.id, maxLength: 6 }), (vendors) => {
      // pci.ids keeps one entry per id: the last one written wins in the generator, as in a
      // file where duplicates do not occur.
      const lines: string[] = ['# generated'];
      const want = new Map<string, string>();
      for (const v of vendors) {
        lines.push(`${v.id}  ${v.name}`);
        want.set(`v:${v.id}`, v.name);
        const seenDev = new Set<string>();
        for (const d of v.devices) {
          if (seenDev.has(d.id)) continue;
          seenDev.add(d.id);
          lines.push(`\t${d.id}  ${d.name}`);
          want.set(`d:${v.id}:${d.id}`, d.name);
          const seenSub = new Set<string>();
          for (const s of d.subs) {
            if (seenSub.has(`${s.sv}${s.sd}`)) continue;
            seenSub.add(`${s.sv}${s.sd}`);
            lines.push(`\t\t${s.sv} ${s.sd}  ${s.name}`);
            want.set(`s:${v.id}:${d.id}:${s.sv}:${s.sd}`, s.name);
          }
        }
      }
      const n = parsePciIds(`${lines.join('\n')}\n`);
      for (const [k, expected] of want) {
        const [kind, a = '', b = '', c = '', d = ''] = k.split(':');
        const got =
          kind === 'v' ? n.vendor(a) : kind === 'd' ? n.device(a, b) : n.subsystem(a, b, c, d);
        assert.equal(got, expected, k);
      }
      if (!vendors.some((v) => v.id === 'zzzz')) assert.equal(n.vendor('zzzz'), undefined);
    }),
  );
});

test('discovery names a subsystem whose ids equal the device ids after the device, as lspci does; otherwise "Device xxxx"', async () => {
  const { readFunction } = await import('./discovery.js');
  const { SimKernel } = await import('../host/sim/kernel.js');
  const { TOPOLOGY_FORMAT } = await import('../topology/format.js');
  const { ManualClock } = await import('../host/clock.js');
  const { parsePciAddress } = await import('./address.js');
  const names = parsePciIds('10de  NVIDIA Corporation\n\t26b9  AD102GL [L40S]\n');
  const mk = (sv: string, sd: string) =>
    new SimKernel(
      {
        format: TOPOLOGY_FORMAT,
        name: 't',
        devices: [
          {
            address: '0000:17:00.0',
            vendor: '10de',
            device: '26b9',
            class: '030200',
            subsystemVendor: sv,
            subsystemDevice: sd,
            iommuGroup: 1,
          },
        ],
      },
      new ManualClock(),
    ).port();
  const a = parsePciAddress('0000:17:00.0');
  const same = await readFunction(mk('10de', '26b9'), a, names);
  assert.equal(same?.subsystemDeviceName, 'AD102GL [L40S]');
  const other = await readFunction(mk('10de', '1851'), a, names);
  assert.equal(other?.subsystemDeviceName, 'Device 1851');
});

test('parsePciIds finds ids the file writes in upper case (lspci reads either), takes lower-case lookups only, and answers undefined for a malformed id', () => {
  const n = parsePciIds('10DE  NVIDIA\n\t26B9  AD102GL\n\t\t10DE 1851  Board\n');
  assert.equal(n.vendor('10de'), 'NVIDIA');
  assert.equal(n.device('10de', '26b9'), 'AD102GL');
  assert.equal(n.subsystem('10de', '26b9', '10de', '1851'), 'Board');
  assert.equal(n.vendor('10DE'), undefined);
  assert.equal(n.device('10de', '26B9'), undefined);
  for (const bad of ['', '10d', '10de ', '.*', '(?:)', '\n10d'])
    assert.equal(n.vendor(bad), undefined);
});

test('parsePciIds: comments and empty lines inside a vendor do not end it; a subsystem belongs only to the device line above it; a vendor ends at the next one and before the classes', () => {
  const n = parsePciIds(
    [
      '8086  Intel',
      '\t1000  First',
      '# a comment inside the vendor',
      '',
      '\t\t8086 0001  Sub of first',
      '\t2000  Second',
      '\t\t8086 0002  Sub of second',
      '8087  Intel (another id)',
      '\t3000  Third',
      'C 02  Network controller',
      '\t00  Ethernet controller',
      '',
    ].join('\n'),
  );
  assert.equal(n.subsystem('8086', '1000', '8086', '0001'), 'Sub of first');
  assert.equal(n.device('8086', '2000'), 'Second');
  assert.equal(n.subsystem('8086', '1000', '8086', '0002'), undefined);
  assert.equal(n.subsystem('8086', '2000', '8086', '0002'), 'Sub of second');
  assert.equal(n.subsystem('8086', '2000', '8086', '0001'), undefined);
  assert.equal(n.device('8086', '3000'), undefined);
  assert.equal(n.device('8087', '3000'), 'Third');
  assert.equal(n.vendor('8087'), 'Intel (another id)');
  assert.equal(n.className('02'), 'Network controller');
  assert.equal(n.subclassName('02', '00'), 'Ethernet controller');
});

test('deferredPciIds calls load on the first lookup and never again; without a lookup, never', () => {
  let loads = 0;
  const load = (): PciIdNames => {
    loads++;
    return parsePciIds('8086  Intel\nC 02  Network controller\n');
  };
  deferredPciIds(load);
  assert.equal(loads, 0);
  const n = deferredPciIds(load);
  assert.equal(n.className('02'), 'Network controller');
  assert.equal(loads, 1);
  assert.equal(n.vendor('8086'), 'Intel');
  assert.equal(n.device('8086', '1000'), undefined);
  assert.equal(loads, 1);
  assert.equal(deferredPciIds(() => emptyPciIds).vendor('8086'), undefined);
});
