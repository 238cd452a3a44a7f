import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadPciIds } from '../src/host/files.js';
import { deferredPciIds, parsePciIds } from '../src/pci/pciids.js';

test('parsePciIds gives the system pci.ids names a full parse gives, for every 8th vendor with all its devices and subsystems, and undefined for ids absent from it', async (t) => {
  let text: string;
  try {
    text = await fs.readFile('/usr/share/misc/pci.ids', 'utf8');
  } catch {
    t.skip('no /usr/share/misc/pci.ids (Debian package pci.ids)');
    return;
  }
  // The reference: every line parsed, as the eager parser did.
  const want = new Map<string, string>();
  const vendors = new Set<string>();
  let v = '';
  let d = '';
  let i = 0;
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('C ')) break;
    if (line.startsWith('\t\t')) {
      if (v !== '')
        want.set(`s:${v}:${d}:${line.slice(2, 6)}:${line.slice(7, 11)}`, line.slice(11).trim());
    } else if (line.startsWith('\t')) {
      d = line.slice(1, 5);
      if (v !== '') want.set(`d:${v}:${d}`, line.slice(5).trim());
    } else {
      vendors.add(line.slice(0, 4));
      v = i++ % 8 === 0 ? line.slice(0, 4) : '';
      if (v !== '') want.set(`v:${v}`, line.slice(4).trim());
    }
  }
  const n = parsePciIds(text);
  for (const [k, name] of want) {
    const [kind, a = '', b = '', c = '', e = ''] = k.split(':');
    const got =
      kind === 'v' ? n.vendor(a) : kind === 'd' ? n.device(a, b) : n.subsystem(a, b, c, e);
    assert.equal(got, name, k);
  }
  assert.ok(want.size > 1000, `${want.size} entries compared`);
  const absent = ['0002', '0003', '0004', '0005', '0006'].find((x) => !vendors.has(x));
  assert.ok(absent !== undefined);
  assert.equal(n.vendor(absent), undefined);
  assert.equal(n.device('8086', 'fffe'), undefined);
  assert.equal(n.subsystem('8086', '10d3', 'ffff', 'fffe'), undefined);
});

test('loadPciIds checks the file at once but reads it on the first lookup: a file rewritten after loading names from the new text, a file removed before any lookup gives no names', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-pciids-'));
  try {
    const file = path.join(dir, 'pci.ids');
    await fs.writeFile(file, '8086  Old name\n');
    const loaded = await loadPciIds(file);
    assert.equal(loaded.path, file);
    await fs.writeFile(file, '8086  New name\n');
    assert.equal(loaded.names.vendor('8086'), 'New name');
    await fs.rm(file);
    // The text read at the first lookup stays.
    assert.equal(loaded.names.vendor('8086'), 'New name');

    await fs.writeFile(file, '8086  Intel\n');
    const gone = await loadPciIds(file);
    await fs.rm(file);
    assert.equal(gone.names.vendor('8086'), undefined);
    await assert.rejects(loadPciIds(file), /cannot read pci\.ids at .*ENOENT/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('deferredPciIds lets go of its source only after a call with no lookup since the previous one, and loads it again at the next lookup', () => {
  let loads = 0;
  const names = deferredPciIds(() => {
    loads++;
    return parsePciIds('8086  Intel Corporation\n\t1521  I350 Gigabit Network Connection\n');
  });
  assert.equal(names.releaseIfUnused(), false, 'nothing loaded yet');
  assert.equal(names.device('8086', '1521'), 'I350 Gigabit Network Connection');
  assert.equal(loads, 1);
  assert.equal(names.releaseIfUnused(), false, 'looked up since the last call');
  assert.equal(names.releaseIfUnused(), true, 'no lookup since the last call');
  assert.equal(names.releaseIfUnused(), false, 'already let go');
  assert.equal(loads, 1);
  assert.equal(names.vendor('8086'), 'Intel Corporation');
  assert.equal(loads, 2);
});

test('loadPciIds decodes UTF-8 names (vendor, device, subsystem, class) and still matches ids written in upper case', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-pciids-'));
  try {
    const file = path.join(dir, 'pci.ids');
    await fs.writeFile(
      file,
      [
        '15cf  Hilscher Gesellschaft für Systemautomation mbH',
        '\t0001  Gerät „α“',
        '\t\t15cf 0002  Übertragung',
        'ABCD  Upper vendor',
        '\tEF01  Upper device',
        'C 02  Réseau',
        '\t00  Ethernet contrôleur',
        '',
      ].join('\n'),
    );
    const { names } = await loadPciIds(file);
    assert.equal(names.vendor('15cf'), 'Hilscher Gesellschaft für Systemautomation mbH');
    assert.equal(names.device('15cf', '0001'), 'Gerät „α“');
    assert.equal(names.subsystem('15cf', '0001', '15cf', '0002'), 'Übertragung');
    assert.equal(names.vendor('abcd'), 'Upper vendor');
    assert.equal(names.device('abcd', 'ef01'), 'Upper device');
    assert.equal(names.className('02'), 'Réseau');
    assert.equal(names.subclassName('02', '00'), 'Ethernet contrôleur');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});
