/**
 * The HostPort contract: one list of cases that every implementation must pass. `npm test` runs
 * it against the simulated kernel (host-port-sim.test.ts); the real-kernel suite runs the same
 * cases against LinuxHost inside the QEMU guest (scenario `host-contract`), so the simulator and
 * the kernel cannot drift apart silently. Cases run in order and leave the devices as they
 * found them.
 */
import assert from 'node:assert/strict';
import { errnoOf } from '../../src/errors.js';
import { parsePciAddress, type PciAddress } from '../../src/pci/address.js';
import type { HostPort } from '../../src/host/port.js';

export interface ContractFixture {
  port: HostPort;
  /** A NIC bound to its host driver, alone in its IOMMU group. */
  nic: PciAddress;
  /** A second such NIC, for "other devices still answer". */
  otherNic: PciAddress;
  hostDriver: string;
  /** The NIC's PCIe Device Serial Number as another reader sees it (lspci -vv, the topology). */
  nicSerial: string;
  /** A device no driver is bound to. */
  driverless: PciAddress;
  /** Holds the device through vfio as a VM does (group fd + device fd); returns a release. */
  hold(addr: PciAddress, group: number): Promise<() => Promise<void>>;
  /** Waits until `pred` holds (the sim settles microtasks, the guest polls); false on timeout. */
  waitUntil(pred: () => Promise<boolean>): Promise<boolean>;
}

export interface ContractCase {
  name: string;
  run(f: ContractFixture): Promise<void>;
}

async function errno(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return errnoOf(e);
  }
}

async function groupOf(f: ContractFixture, a: PciAddress): Promise<number> {
  const g = (await f.port.readDeviceLinks(a)).iommuGroup;
  assert.ok(g !== null, `${a} has an IOMMU group`);
  return g;
}

/** libvirt's order: override, unbind, drivers_probe. */
async function toVfio(f: ContractFixture, a: PciAddress): Promise<void> {
  await f.port.writeDeviceAttr(a, 'driver_override', 'vfio-pci');
  await f.port.unbindDevice(a);
  await f.port.probeDevice(a);
}

async function toHost(f: ContractFixture, a: PciAddress): Promise<void> {
  await f.port.writeDeviceAttr(a, 'driver_override', '');
  if ((await f.port.readDeviceLinks(a)).driver !== null) await f.port.unbindDevice(a);
  await f.port.probeDevice(a);
}

export const HOST_PORT_CONTRACT: ContractCase[] = [
  {
    name: 'listDevices: sorted, unique, includes the fixture devices',
    async run(f) {
      const all = await f.port.listDevices();
      assert.deepEqual(all, [...new Set(all)].sort());
      for (const a of [f.nic, f.otherNic, f.driverless]) assert.ok(all.includes(a), a);
      assert.equal(await f.port.deviceExists(f.nic), true);
    },
  },
  {
    name: 'readDeviceAttr: ids as 0x hex, numa_node an integer, driver_override (null), absent attributes null',
    async run(f) {
      const p = f.port;
      assert.match((await p.readDeviceAttr(f.nic, 'vendor')) ?? '', /^0x[0-9a-f]{4}$/);
      assert.match((await p.readDeviceAttr(f.nic, 'device')) ?? '', /^0x[0-9a-f]{4}$/);
      assert.match((await p.readDeviceAttr(f.nic, 'class')) ?? '', /^0x[0-9a-f]{6}$/);
      assert.match((await p.readDeviceAttr(f.nic, 'numa_node')) ?? '', /^-?\d+$/);
      assert.equal(await p.readDeviceAttr(f.nic, 'driver_override'), '(null)');
      assert.equal(await p.readDeviceAttr(f.nic, 'sriov_numvfs'), null);
      const header = await p.readConfigHeader(f.nic);
      assert.ok(header !== null && header.length === 64, 'a 64-byte config header');
      const vendor = (await p.readDeviceAttr(f.nic, 'vendor')) ?? '';
      assert.equal((header[0] ?? 0) | ((header[1] ?? 0) << 8), parseInt(vendor, 16));
    },
  },
  {
    name: 'readDevice: equals readDeviceAttr and readDeviceLinks one by one, leaves absent attributes out, modalias carries the ids; null for an absent device',
    async run(f) {
      const p = f.port;
      const attrs = [
        'modalias',
        'vendor',
        'device',
        'subsystem_vendor',
        'subsystem_device',
        'class',
        'revision',
        'numa_node',
        'driver_override',
        'sriov_numvfs',
      ] as const;
      for (const a of [f.nic, f.driverless]) {
        const got = await p.readDevice(a, attrs);
        assert.ok(got !== null, `${a} is read`);
        for (const attr of attrs)
          assert.equal(got.attrs[attr] ?? null, await p.readDeviceAttr(a, attr), `${a} ${attr}`);
        assert.deepEqual(got.links, await p.readDeviceLinks(a));
        assert.equal('sriov_numvfs' in got.attrs, false);
        const hex = (attr: (typeof attrs)[number], digits: number): string =>
          (got.attrs[attr] ?? '').replace(/^0x/, '').toUpperCase().padStart(digits, '0');
        assert.equal(
          got.attrs.modalias,
          `pci:v${hex('vendor', 8)}d${hex('device', 8)}sv${hex('subsystem_vendor', 8)}sd${hex('subsystem_device', 8)}bc${hex('class', 6).slice(0, 2)}sc${hex('class', 6).slice(2, 4)}i${hex('class', 6).slice(4, 6)}`,
        );
      }
      assert.equal(await p.readDevice('0000:ff:1f.7' as PciAddress, attrs), null);
    },
  },
  {
    name: 'readDeviceLinks: the host driver, an IOMMU group, no SR-IOV links; listDrivers has the driver',
    async run(f) {
      const l = await f.port.readDeviceLinks(f.nic);
      assert.equal(l.driver, f.hostDriver);
      assert.equal(typeof l.iommuGroup, 'number');
      assert.equal(l.physfn, null);
      assert.deepEqual(l.virtfns, []);
      assert.equal((await f.port.readDeviceLinks(f.driverless)).driver, null);
      assert.ok((await f.port.listDrivers()).includes(f.hostDriver));
    },
  },
  {
    name: 'modules: vfio_pci loads and reads live; its availability lists vfio_pci_core (6.1)',
    async run(f) {
      await f.port.loadModule('vfio-pci');
      const st = (await f.port.moduleStatus(['vfio-pci'])).get('vfio_pci');
      assert.equal(st?.state, 'live');
      const av = await f.port.moduleAvailability('vfio_pci');
      assert.equal(av.kind, 'loadable');
      assert.ok(av.deps.includes('vfio_pci_core'), av.deps.join(' '));
      assert.equal((await f.port.moduleStatus(['no_such_module_x'])).get('no_such_module_x'), null);
    },
  },
  {
    name: 'bind via override + unbind + drivers_probe: on vfio-pci with /dev/vfio/<group>; unbind of a driverless device is ENODEV',
    async run(f) {
      const g = await groupOf(f, f.nic);
      await toVfio(f, f.nic);
      assert.equal((await f.port.readDeviceLinks(f.nic)).driver, 'vfio-pci');
      assert.equal(await f.port.readDeviceAttr(f.nic, 'driver_override'), 'vfio-pci');
      assert.ok(await f.waitUntil(() => f.port.vfioGroupNodeExists(g)), '/dev/vfio/<group>');
      assert.equal(await errno(f.port.unbindDevice(f.driverless)), 'ENODEV');
      assert.equal(await errno(f.port.bindDevice(f.nic, '../x')), 'EINVAL');
    },
  },
  {
    name: 'readDeviceSerial: the NIC on vfio-pci answers the Device Serial Number lspci shows; an absent address null',
    async run(f) {
      assert.equal(await f.port.readDeviceSerial(f.nic), f.nicSerial);
      assert.equal(await f.port.readDeviceSerial(parsePciAddress('0000:7f:1f.7')), null);
    },
  },
  {
    name: 'vfioHolders: none while idle; a holder is named with pid, comm and the group node',
    async run(f) {
      const g = await groupOf(f, f.nic);
      assert.deepEqual(await f.port.vfioHolders(f.nic, g), []);
      const release = await f.hold(f.nic, g);
      try {
        const hs = await f.port.vfioHolders(f.nic, g);
        assert.equal(hs.length, 1, JSON.stringify(hs));
        const [h] = hs;
        assert.equal(typeof h?.pid, 'number');
        assert.ok((h?.comm ?? '').length > 0);
        assert.equal(h?.path, `/dev/vfio/${g}`);
      } finally {
        await release();
      }
      assert.ok(await f.waitUntil(async () => (await f.port.vfioHolders(f.nic, g)).length === 0));
    },
  },
  {
    name: 'an unbind blocked by a holder: abandoned with ECANCELED; lock-free attributes and other devices answer; it completes when the holder lets go',
    async run(f) {
      const g = await groupOf(f, f.nic);
      const release = await f.hold(f.nic, g);
      const ac = new AbortController();
      let outcome: string | undefined = 'pending';
      const unbind = f.port.unbindDevice(f.nic, { signal: ac.signal }).then(
        () => (outcome = undefined),
        (e: unknown) => (outcome = errnoOf(e)),
      );
      try {
        // The driver link goes first; the write then waits for the holder.
        assert.ok(
          await f.waitUntil(async () => (await f.port.readDeviceLinks(f.nic)).driver === null),
          'driver link gone while the unbind waits',
        );
        assert.equal(outcome, 'pending', 'the unbind waits for the holder');
        assert.match((await f.port.readDeviceAttr(f.nic, 'vendor')) ?? '', /^0x/);
        assert.match((await f.port.readDeviceAttr(f.nic, 'numa_node')) ?? '', /^-?\d+$/);
        assert.equal(await f.port.readDeviceAttr(f.otherNic, 'driver_override'), '(null)');
        await f.port.probeDevice(f.otherNic);
        assert.equal((await f.port.readDeviceLinks(f.otherNic)).driver, f.hostDriver);
        ac.abort();
        await unbind;
        assert.equal(outcome, 'ECANCELED');
      } finally {
        await release();
      }
      // The kernel finishes the abandoned write once the holder is gone: the device is free.
      assert.ok(
        await f.waitUntil(async () => {
          const hs = await f.port.vfioHolders(f.nic, g);
          return hs.length === 0 && !(await f.port.vfioGroupNodeExists(g));
        }),
        'the group node goes once the unbind completes',
      );
    },
  },
  {
    name: 'release: override cleared, drivers_probe gives the NIC back to its host driver',
    async run(f) {
      await toHost(f, f.nic);
      assert.ok(
        await f.waitUntil(
          async () => (await f.port.readDeviceLinks(f.nic)).driver === f.hostDriver,
        ),
      );
      assert.equal(await f.port.readDeviceAttr(f.nic, 'driver_override'), '(null)');
    },
  },
];
