import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { LinuxHost } from '../src/host/linux.js';
import { loadPciIds, loadTopology, listShippedTopologies } from '../src/host/files.js';
import { writeSysfsTree } from '../src/host/sysfs-tree.js';
import { discover } from '../src/pci/discovery.js';
import type { Inventory } from '../src/pci/model.js';
import { bracketId, bracketName, lspciAvailable, runLspci, type LspciRecord } from './lspci.js';

/** Field by field: slot, class, vendor, device, subsystem, revision, prog-if, driver, group, NUMA. */
function compare(inv: Inventory, records: LspciRecord[], where: string): number {
  assert.deepEqual(
    inv.devices.map((d) => d.address),
    records.map((r) => r.Slot),
    `${where}: same slots in the same order`,
  );
  let fields = 0;
  for (const r of records) {
    const d = inv.byAddress.get(r.Slot as never);
    assert.ok(d, `${where}: ${r.Slot} discovered`);
    const at = `${where} ${d.address}`;
    const check = (
      what: string,
      ours: string | number | null | undefined,
      theirs: string | number | null | undefined,
    ): void => {
      assert.equal(ours, theirs, `${at}: ${what}`);
      fields++;
    };
    check('class', d.classId.slice(0, 4), bracketId(r.Class));
    check('vendor', d.vendorId, bracketId(r.Vendor));
    check('device', d.deviceId, bracketId(r.Device));
    // lspci omits the subsystem when it is 0000:0000 and prints Rev only when non-zero.
    if (r.SVendor !== undefined)
      check('subsystem vendor', d.subsystemVendorId, bracketId(r.SVendor));
    if (r.SDevice !== undefined)
      check('subsystem device', d.subsystemDeviceId, bracketId(r.SDevice));
    check('revision', d.revision, r.Rev ?? '00');
    check('prog-if', d.classId.slice(4, 6), r.ProgIf ?? '00');
    check('driver', d.driver, r.Driver ?? null);
    check('iommu group', d.iommuGroup, r.IOMMUGroup === undefined ? null : Number(r.IOMMUGroup));
    check('numa node', d.numaNode, r.NUMANode === undefined ? null : Number(r.NUMANode));
    // Names: both read the same pci.ids; compare where lspci found one.
    const vendorName = bracketName(r.Vendor);
    if (vendorName !== undefined && !/^(Vendor|Device)( [0-9a-f]{4})?$/.test(vendorName))
      check('vendor name', d.vendorName, vendorName);
    const deviceName = bracketName(r.Device);
    if (deviceName !== undefined && !/^Device( [0-9a-f]{4})?$/.test(deviceName))
      check('device name', d.deviceName, deviceName);
    check('class name', d.subclassName, bracketName(r.Class));
  }
  return fields;
}

test('discovery agrees with lspci on the real /sys', async (t) => {
  if (!(await lspciAvailable())) {
    assert.notEqual(process.env.CI, 'true', 'CI installs pciutils: lspci must be there');
    t.skip('lspci not installed');
    return;
  }
  const { names } = await loadPciIds();
  const records = await runLspci();
  const inv = await discover(new LinuxHost({ uevents: false }), names);
  const fields = compare(inv, records, 'real /sys');
  t.diagnostic(`real /sys: ${inv.devices.length} functions, ${fields} fields equal`);
});

test('discovery agrees with lspci on every shipped topology written as a sysfs tree', async (t) => {
  if (!(await lspciAvailable())) {
    assert.notEqual(process.env.CI, 'true', 'CI installs pciutils: lspci must be there');
    t.skip('lspci not installed');
    return;
  }
  const { names } = await loadPciIds();
  const shipped = await listShippedTopologies();
  assert.ok(shipped.length >= 4, 'at least four shipped topologies');
  for (const name of shipped) {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), `pt-lspci-${name}-`));
    try {
      const topo = await loadTopology(name);
      await writeSysfsTree(topo, dir);
      const records = await runLspci(path.join(dir, 'sys/bus/pci'));
      const inv = await discover(new LinuxHost({ root: dir, uevents: false }), names);
      assert.equal(inv.devices.length, topo.devices.length, `${name}: every function found`);
      const fields = compare(inv, records, name);
      t.diagnostic(`${name}: ${inv.devices.length} functions, ${fields} fields equal`);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }
});
