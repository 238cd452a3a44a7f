import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePciAddress, type PciAddress } from '../pci/address.js';
import { makeInventory, type PciFunction } from '../pci/model.js';
import type { ClaimSpec, LedgerEntry } from '../state/model.js';
import { plan, type Desired, type ModuleHealth, type Observed } from './plan.js';

const A = parsePciAddress('0000:01:00.0');
const B = parsePciAddress('0000:01:00.1');
const BR = parsePciAddress('0000:00:01.0');

function dev(address: PciAddress, over: Partial<PciFunction> = {}): PciFunction {
  return {
    address,
    vendorId: '8086',
    deviceId: '10d3',
    subsystemVendorId: '8086',
    subsystemDeviceId: 'a01f',
    classId: '020000',
    revision: '00',
    vendorName: 'Intel',
    deviceName: 'NIC',
    subsystemVendorName: 'Intel',
    subsystemDeviceName: 'NIC',
    className: 'Network controller',
    subclassName: 'Ethernet controller',
    progIfName: null,
    driver: 'e1000e',
    driverOverride: null,
    iommuGroup: 10,
    numaNode: null,
    parent: null,
    isBridge: false,
    bootVga: false,
    resetMethods: [],
    sriovTotalVfs: null,
    sriovNumVfs: null,
    physfn: null,
    virtfns: [],
    ...over,
  };
}

const READY: ModuleHealth = { ready: true, recovering: false, reason: null };

function obs(devices: PciFunction[], over: Partial<Observed> = {}): Observed {
  return {
    inv: makeInventory(devices),
    uses: { uses: [], unknown: [], backing: [] },
    vfioNodes: new Set(
      devices.filter((d) => d.driver === 'vfio-pci').map((d) => d.iommuGroup ?? -1),
    ),
    modules: READY,
    busy: new Map(),
    ...over,
  };
}

const identity = {
  vendorId: '8086',
  deviceId: '10d3',
  subsystemVendorId: '8086',
  subsystemDeviceId: 'a01f',
};

function claim(address: PciAddress, over: Partial<ClaimSpec> = {}): ClaimSpec {
  return { address, withGroup: false, force: false, createdAt: 0, identity, ...over };
}

function entry(address: PciAddress, over: Partial<LedgerEntry> = {}): LedgerEntry {
  return {
    address,
    originalDriver: 'e1000e',
    vendorId: '8086',
    deviceId: '10d3',
    recordedAt: 0,
    claim: address,
    ...over,
  };
}

function desired(claims: ClaimSpec[], ledger: LedgerEntry[] = []): Desired {
  return {
    claims: Object.fromEntries(claims.map((c) => [c.address, c])),
    ledger: Object.fromEntries(ledger.map((l) => [l.address, l])),
  };
}

interface Row {
  rule: string;
  observed: Observed;
  desired: Desired;
  actions: string[];
  claim?: { state: string; code?: string };
  ledger?: { state: string };
}

const rows: Row[] = [
  {
    rule: 'a claimed device on its host driver is bound',
    observed: obs([dev(A)]),
    desired: desired([claim(A)]),
    actions: [`bind ${A}`],
    claim: { state: 'pending' },
  },
  {
    rule: 'on vfio-pci with the override and the group node: ready, nothing to do',
    observed: obs([dev(A, { driver: 'vfio-pci', driverOverride: 'vfio-pci' })]),
    desired: desired([claim(A)], [entry(A)]),
    actions: [],
    claim: { state: 'ready' },
    ledger: { state: 'held' },
  },
  {
    rule: 'on vfio-pci without the override: pinned so a reload re-binds it',
    observed: obs([dev(A, { driver: 'vfio-pci' })]),
    desired: desired([claim(A)], [entry(A)]),
    actions: [`pin-override ${A}`],
    claim: { state: 'ready' },
  },
  {
    rule: 'modules lost while the keeper recovers: waiting, no bind, no module load',
    observed: obs([dev(A, { driver: null, driverOverride: 'vfio-pci' })], {
      modules: { ready: false, recovering: true, reason: 'vfio_pci gone' },
    }),
    desired: desired([claim(A)], [entry(A)]),
    actions: [],
    claim: { state: 'waiting', code: 'PT_ERR_MODULE_UNAVAILABLE' },
  },
  {
    rule: 'modules missing and nobody recovering (one-shot command): one ensure-modules',
    observed: obs([dev(A)], { modules: { ready: false, recovering: false, reason: null } }),
    desired: desired([claim(A)]),
    actions: [`ensure-modules ${A}`],
    claim: { state: 'waiting' },
  },
  {
    rule: 'a refused claim loads no module',
    observed: obs([dev(A, { classId: '010802', driver: 'nvme' })], {
      modules: { ready: false, recovering: false, reason: null },
      uses: { uses: [{ address: A, use: 'root filesystem' }], unknown: [], backing: [] },
    }),
    desired: desired([claim(A)]),
    actions: [],
    claim: { state: 'refused', code: 'PT_ERR_HOST_CRITICAL' },
  },
  {
    rule: 'a device with a pending kernel operation: busy, nothing issued',
    observed: obs([dev(A, { driver: null })], {
      busy: new Map([[A, { op: 'unbind (vfio-pci)', since: 0 }]]),
    }),
    desired: desired([claim(A)], [entry(A)]),
    actions: [],
    claim: { state: 'busy' },
  },
  {
    rule: 'a different card at the address: changed, nothing bound',
    observed: obs([dev(A, { deviceId: '1533', driver: 'igb' })]),
    desired: desired([claim(A)]),
    actions: [],
    claim: { state: 'changed', code: 'PT_ERR_DEVICE_CHANGED' },
  },
  {
    rule: 'an absent device: missing, the claim is kept',
    observed: obs([]),
    desired: desired([claim(A)]),
    actions: [],
    claim: { state: 'missing', code: 'PT_ERR_DEVICE_NOT_FOUND' },
  },
  {
    rule: 'a PF with active VFs: refused without --force',
    observed: obs([dev(A, { driver: 'nvme', sriovTotalVfs: 2, sriovNumVfs: 2 })]),
    desired: desired([claim(A)]),
    actions: [],
    claim: { state: 'refused', code: 'PT_ERR_HAS_VFS' },
  },
  {
    rule: 'a PF with active VFs and --force: bound',
    observed: obs([dev(A, { driver: 'nvme', sriovTotalVfs: 2, sriovNumVfs: 2 })]),
    desired: desired([claim(A, { force: true })]),
    actions: [`bind ${A}`],
    claim: { state: 'pending' },
  },
  {
    rule: 'another endpoint of the group on a host driver: not viable',
    observed: obs([dev(A), dev(B)]),
    desired: desired([claim(A)]),
    actions: [],
    claim: { state: 'refused', code: 'PT_ERR_GROUP_NOT_VIABLE' },
  },
  {
    rule: '--with-group binds every endpoint, bridges excluded',
    observed: obs([
      dev(A),
      dev(B),
      dev(BR, { classId: '060400', isBridge: true, driver: 'pcieport' }),
    ]),
    desired: desired([claim(A, { withGroup: true })]),
    actions: [`bind ${A}`, `bind ${B}`],
    claim: { state: 'pending' },
  },
  {
    rule: 'no claim, device on vfio-pci: released to the ledger original',
    observed: obs([dev(A, { driver: 'vfio-pci', driverOverride: 'vfio-pci' })]),
    desired: desired([], [entry(A)]),
    actions: [`release ${A} e1000e`],
    ledger: { state: 'releasing' },
  },
  {
    rule: 'no claim, device driverless after a failed release: released again, never forgotten',
    observed: obs([dev(A, { driver: null })]),
    desired: desired([], [entry(A)]),
    actions: [`release ${A} e1000e`],
    ledger: { state: 'releasing' },
  },
  {
    rule: 'no claim, device back on its original driver: the entry may go',
    observed: obs([dev(A)]),
    desired: desired([], [entry(A)]),
    actions: [`forget ${A}`],
    ledger: { state: 'restored' },
  },
  {
    rule: 'original was no driver and the device is driverless without override: restored',
    observed: obs([dev(A, { driver: null })]),
    desired: desired([], [entry(A, { originalDriver: null })]),
    actions: [`forget ${A}`],
    ledger: { state: 'restored' },
  },
  {
    rule: 'no claim, device absent: the entry stays until the user abandons it',
    observed: obs([]),
    desired: desired([], [entry(A)]),
    actions: [],
    ledger: { state: 'absent' },
  },
  {
    rule: 'no claim, a different card at the ledger address: left alone',
    observed: obs([dev(A, { deviceId: '1533', driver: 'vfio-pci' })]),
    desired: desired([], [entry(A)]),
    actions: [],
    ledger: { state: 'changed' },
  },
  {
    rule: 'a companion stays held while the claim that pulled it in exists, even if absent',
    observed: obs([dev(B, { driver: 'vfio-pci', driverOverride: 'vfio-pci' })]),
    desired: desired([claim(A, { withGroup: true })], [entry(B, { claim: A })]),
    actions: [],
    ledger: { state: 'held' },
  },
];

for (const row of rows) {
  test(`plan: ${row.rule}`, () => {
    const p = plan(row.observed, row.desired);
    assert.deepEqual(
      p.actions.map((a) => {
        switch (a.kind) {
          case 'ensure-modules':
            return `ensure-modules ${a.key}`;
          case 'release':
            return `release ${a.address} ${a.originalDriver ?? 'none'}`;
          default:
            return `${a.kind} ${a.address}`;
        }
      }),
      row.actions,
    );
    if (row.claim) {
      const c = p.claims[0];
      assert.equal(c?.state, row.claim.state);
      if (row.claim.code !== undefined) assert.equal(c.code, row.claim.code);
    }
    if (row.ledger) assert.equal(p.ledger[0]?.state, row.ledger.state);
  });
}
