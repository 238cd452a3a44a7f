import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PtError } from '../errors.js';
import { listShippedTopologies, loadTopology } from '../host/files.js';
import { validateTopology } from '../topology/format.js';

const good = {
  format: 'passthru-topology/1',
  name: 'tiny',
  drivers: [{ name: 'e1000e', module: 'e1000e', ids: ['8086:10d3', '8086:*', 'class:020000'] }],
  modules: [{ name: 'vfio_pci', deps: ['vfio'], state: 'available' }],
  devices: [
    { address: '0000:00:1c.0', vendor: '8086', device: '2918', class: '060400', iommuGroup: 1 },
    {
      address: '0000:01:00.0',
      vendor: '8086',
      device: '10d3',
      class: '020000',
      driver: 'e1000e',
      iommuGroup: 2,
      parent: '0000:00:1c.0',
    },
  ],
  hostUses: [{ address: '0000:01:00.0', use: 'default route' }],
};

type Dev = (typeof good.devices)[number] & Record<string, unknown>;
const withDevice = (patch: Record<string, unknown>) => ({
  ...good,
  devices: [good.devices[0], { ...(good.devices[1] as Dev), ...patch }],
});

test('topology schema: every shipped topology loads', async () => {
  const names = await listShippedTopologies();
  assert.ok(names.length >= 4);
  for (const n of names) assert.equal((await loadTopology(n)).name, n);
});

test('topology schema: wrong shapes, bad names and impossible links are PT_ERR_TOPOLOGY_INVALID naming the field', () => {
  assert.equal(validateTopology(good).devices.length, 2);
  const cases: [string, unknown, RegExp][] = [
    ['drivers [null]', { ...good, drivers: [null] }, /drivers\/0/],
    ['driver name a number', { ...good, drivers: [{ name: 7 }] }, /drivers\/0\/name/],
    ['modules [null]', { ...good, modules: [null] }, /modules\/0/],
    [
      'module deps a string',
      { ...good, modules: [{ name: 'x', deps: 'y', state: 'live' }] },
      /deps/,
    ],
    ['hostUses [null]', { ...good, hostUses: [null] }, /hostUses\/0/],
    ['driver a number', withDevice({ driver: 3 }), /devices\/1\/driver/],
    ['driver with a newline', withDevice({ driver: 'e1000e\ninstall vfio_pci /bin/sh' }), /driver/],
    ['driver a path', withDevice({ driver: '../../../etc' }), /driver/],
    ['iommuGroup 1e300', withDevice({ iommuGroup: 1e300 }), /iommuGroup/],
    ['iommuGroup -7', withDevice({ iommuGroup: -7 }), /iommuGroup/],
    ['iommus a string', { ...good, kernel: { iommus: 'dmar0' } }, /kernel\/iommus/],
    ['ANSI escape in the name', { ...good, name: 'x\u001b[31m' }, /name/],
    ['unknown field', withDevice({ colour: 'red' }), /devices\/1/],
    ['physfn is itself', withDevice({ physfn: '0000:01:00.0' }), /itself/],
    ['physfn not an SR-IOV PF', withDevice({ physfn: '0000:00:1c.0' }), /not an SR-IOV PF/],
    ['parent unknown', withDevice({ parent: '0000:09:00.0' }), /unknown device/],
    [
      'parent cycle',
      {
        ...good,
        devices: [{ ...good.devices[0], parent: '0000:01:00.0' }, good.devices[1]],
      },
      /cycle/,
    ],
    ['duplicate address', { ...good, devices: [good.devices[1], good.devices[1]] }, /duplicate/],
    ['other format', { ...good, format: 'x' }, /format/],
  ];
  for (const [what, raw, field] of cases) {
    assert.throws(
      () => validateTopology(raw),
      (e: unknown) =>
        e instanceof PtError && e.code === 'PT_ERR_TOPOLOGY_INVALID' && field.test(e.message),
      what,
    );
  }
});
