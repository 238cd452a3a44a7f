import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { errnoOf } from '../../errors.js';
import { parsePciAddress } from '../../pci/address.js';
import { loadTopology } from '../files.js';
import { writeSysfsTree } from '../sysfs-tree.js';
import { LinuxHost } from './host.js';

const NIC = parsePciAddress('0000:01:00.0');
const NIC2 = parsePciAddress('0000:02:00.0');

async function tree(): Promise<{ root: string; outside: string }> {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-confine-'));
  const root = path.join(base, 'tree');
  const outside = path.join(base, 'outside');
  await fs.mkdir(outside);
  await writeSysfsTree(await loadTopology('qemu-guest'), root);
  return { root, outside };
}

async function errno(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return errnoOf(e);
  }
}

test('--root: a symlinked attribute leading out of the tree is neither read nor written; the file outside stays untouched', async () => {
  const { root, outside } = await tree();
  try {
    const victim = path.join(outside, 'victim');
    await fs.writeFile(victim, 'precious\n');
    const ov = path.join(root, 'sys/bus/pci/devices', NIC, 'driver_override');
    await fs.rm(await fs.realpath(ov));
    await fs.symlink(
      victim,
      await fs.realpath(path.dirname(ov)).then((d) => path.join(d, 'driver_override')),
    );
    const h = new LinuxHost({ root, uevents: false });
    assert.equal(await h.readDeviceAttr(NIC, 'driver_override'), null);
    assert.equal(await errno(h.writeDeviceAttr(NIC, 'driver_override', 'vfio-pci')), 'ELOOP');
    assert.equal(await fs.readFile(victim, 'utf8'), 'precious\n');
  } finally {
    await fs.rm(path.dirname(root), { recursive: true, force: true });
  }
});

test('--root: a driver link leading out of the tree reads as no driver and its unbind is refused (EXDEV) without writing outside', async () => {
  const { root, outside } = await tree();
  try {
    const drv = path.join(outside, 'outside-driver');
    await fs.mkdir(drv);
    await fs.writeFile(path.join(drv, 'unbind'), '');
    const devDir = await fs.realpath(path.join(root, 'sys/bus/pci/devices', NIC));
    await fs.rm(path.join(devDir, 'driver'));
    await fs.symlink(drv, path.join(devDir, 'driver'));
    const h = new LinuxHost({ root, uevents: false });
    assert.equal((await h.readDeviceLinks(NIC)).driver, null);
    assert.equal(await errno(h.unbindDevice(NIC)), 'EXDEV');
    assert.equal(await fs.readFile(path.join(drv, 'unbind'), 'utf8'), '');
  } finally {
    await fs.rm(path.dirname(root), { recursive: true, force: true });
  }
});

test('--root: relative links that climb out of the tree (a driver link, a device entry) read as no driver and no device; one that stays inside reads its name', async () => {
  const { root, outside } = await tree();
  try {
    await fs.mkdir(path.join(outside, 'rogue'));
    await fs.mkdir(path.join(outside, '0000:09:00.0'));
    const devDir = await fs.realpath(path.join(root, 'sys/bus/pci/devices', NIC));
    const depth = path.relative(path.dirname(root), devDir).split('/').length;
    await fs.rm(path.join(devDir, 'driver'));
    await fs.symlink(`${'../'.repeat(depth)}outside/rogue`, path.join(devDir, 'driver'));
    const h = new LinuxHost({ root, uevents: false });
    assert.equal((await h.readDeviceLinks(NIC)).driver, null);
    assert.equal((await h.readDevice(NIC, ['modalias']))?.links.driver, null);
    await fs.rm(path.join(devDir, 'driver'));
    await fs.symlink(
      `${'../'.repeat(depth - 1)}tree/sys/bus/pci/drivers/e1000e`,
      path.join(devDir, 'driver'),
    );
    assert.equal(
      (await new LinuxHost({ root, uevents: false }).readDeviceLinks(NIC)).driver,
      'e1000e',
    );
    const entry = path.join(root, 'sys/bus/pci/devices/0000:09:00.0');
    await fs.symlink('../../../../../outside/0000:09:00.0', entry);
    assert.equal(await fs.realpath(entry), await fs.realpath(path.join(outside, '0000:09:00.0')));
    const fresh = new LinuxHost({ root, uevents: false });
    assert.equal(await fresh.readDevice(parsePciAddress('0000:09:00.0'), ['modalias']), null);
  } finally {
    await fs.rm(path.dirname(root), { recursive: true, force: true });
  }
});

test('--root: FIFOs planted as attributes read as absent, refuse in-process writes (ENXIO), and a blocked child write is abandoned with ECANCELED', async () => {
  const { root } = await tree();
  try {
    const devDir = await fs.realpath(path.join(root, 'sys/bus/pci/devices', NIC));
    for (const f of ['vendor', 'driver_override']) {
      await fs.rm(path.join(devDir, f));
      execFileSync('mkfifo', [path.join(devDir, f)]);
    }
    const unbind = path.join(root, 'sys/bus/pci/drivers/e1000e/unbind');
    await fs.rm(unbind);
    execFileSync('mkfifo', [unbind]);
    const h = new LinuxHost({ root, uevents: false });
    assert.equal(await h.readDeviceAttr(NIC, 'vendor'), null);
    assert.equal(await h.readDeviceAttr(NIC, 'driver_override'), null);
    assert.equal(await errno(h.writeDeviceAttr(NIC, 'driver_override', 'vfio-pci')), 'ENXIO');
    // Opening a FIFO nobody reads blocks, as an unbind blocks while a VM holds the device.
    const ac = new AbortController();
    const pending = h.unbindDevice(NIC, { signal: ac.signal });
    setImmediate(() => {
      ac.abort();
    });
    assert.equal(await errno(pending), 'ECANCELED');
  } finally {
    await fs.rm(path.dirname(root), { recursive: true, force: true });
  }
});

test('child-process writes (unbind, sriov_numvfs, remove): one write of the value and a newline; a missing attribute is ENOENT and is not created', async () => {
  const { root } = await tree();
  try {
    const h = new LinuxHost({ root, uevents: false });
    await h.unbindDevice(NIC2);
    const unbind = path.join(root, 'sys/bus/pci/drivers/e1000e/unbind');
    assert.equal(await fs.readFile(unbind, 'utf8'), `${NIC2}\n`);
    await h.writeDeviceAttr(NIC2, 'remove', '1');
    const devDir = await fs.realpath(path.join(root, 'sys/bus/pci/devices', NIC2));
    assert.equal(await fs.readFile(path.join(devDir, 'remove'), 'utf8'), '1\n');
    assert.equal(await errno(h.writeDeviceAttr(NIC2, 'sriov_numvfs', '2')), 'ENOENT');
    await assert.rejects(fs.stat(path.join(devDir, 'sriov_numvfs')));
  } finally {
    await fs.rm(path.dirname(root), { recursive: true, force: true });
  }
});

test('--root: with a sibling on its bus read first, a device directory that is itself a link reads as absent when it leads out of the tree and is followed when it stays inside; an entry leading to another folder is read there, not from a same-named directory beside its siblings; an entry leading out of the tree reads as absent though such a directory exists; a directory with no entry is absent; an entry whose folder appears later is found then', async () => {
  const { root, outside } = await tree();
  try {
    const nicDir = await fs.realpath(path.join(root, 'sys/bus/pci/devices', NIC));
    const folder = path.dirname(nicDir);
    const rel = path.relative(path.join(root, 'sys/bus/pci/devices'), folder);
    const entry = (a: string): string => path.join(root, 'sys/bus/pci/devices', a);
    // Out of the tree: a directory outside with a device's attributes.
    await fs.cp(nicDir, path.join(outside, 'dev'), { recursive: true, verbatimSymlinks: true });
    await fs.symlink(path.join(outside, 'dev'), path.join(folder, '0000:01:00.1'));
    await fs.symlink(`${rel}/0000:01:00.1`, entry('0000:01:00.1'));
    // Inside: a link to a copy of the NIC's directory elsewhere in the tree.
    await fs.cp(nicDir, path.join(root, 'copy'), { recursive: true, verbatimSymlinks: true });
    await fs.symlink(
      path.relative(folder, path.join(root, 'copy')),
      path.join(folder, '0000:01:00.2'),
    );
    await fs.symlink(`${rel}/0000:01:00.2`, entry('0000:01:00.2'));
    // A folder that is not there yet.
    await fs.symlink(`${rel}/0000:40:00.0/0000:41:00.0`, entry('0000:41:00.0'));
    // On the NIC's bus, but its entry leads to another folder than its siblings', where a
    // stale directory of the same name also sits beside them.
    await fs.cp(nicDir, path.join(root, 'elsewhere', '0000:01:00.3'), {
      recursive: true,
      verbatimSymlinks: true,
    });
    await fs.symlink('../../../../elsewhere/0000:01:00.3', entry('0000:01:00.3'));
    await fs.cp(nicDir, path.join(folder, '0000:01:00.3'), {
      recursive: true,
      verbatimSymlinks: true,
    });
    // On the NIC's bus, an entry that leads out of the tree beside an in-tree directory of
    // the same name; and a directory beside the NIC's with no entry at all.
    await fs.cp(nicDir, path.join(outside, 'dev4'), { recursive: true, verbatimSymlinks: true });
    await fs.symlink(path.join(outside, 'dev4'), entry('0000:01:00.4'));
    await fs.cp(nicDir, path.join(folder, '0000:01:00.4'), {
      recursive: true,
      verbatimSymlinks: true,
    });
    await fs.cp(nicDir, path.join(folder, '0000:01:00.5'), {
      recursive: true,
      verbatimSymlinks: true,
    });

    const h = new LinuxHost({ root, uevents: false });
    assert.notEqual(await h.readDevice(NIC, ['modalias']), null, 'the sibling reads');
    const other = await h.readDevice(parsePciAddress('0000:01:00.3'), ['modalias']);
    assert.ok(other !== null);
    assert.equal(other.links.parent, null, 'read where its entry leads (no bridge above)');
    assert.match(other.attrs.modalias ?? '', /^pci:v/);
    assert.equal(await h.readDevice(parsePciAddress('0000:01:00.4'), ['modalias']), null);
    const noEntry = parsePciAddress('0000:01:00.5');
    assert.equal(await h.readDevice(noEntry, ['modalias']), null);
    assert.equal(await h.deviceExists(noEntry), false);
    assert.equal(await h.readDevice(parsePciAddress('0000:01:00.1'), ['modalias']), null);
    const inside = await h.readDevice(parsePciAddress('0000:01:00.2'), ['modalias']);
    assert.match(inside?.attrs.modalias ?? '', /^pci:v/);
    const late = parsePciAddress('0000:41:00.0');
    assert.equal(await h.readDevice(late, ['modalias']), null);
    await fs.cp(nicDir, path.join(folder, '0000:40:00.0', '0000:41:00.0'), {
      recursive: true,
      verbatimSymlinks: true,
    });
    assert.match((await h.readDevice(late, ['modalias']))?.attrs.modalias ?? '', /^pci:v/);
  } finally {
    await fs.rm(path.dirname(root), { recursive: true, force: true });
  }
});
