import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePciAddress } from '../pci/address.js';
import { containerAllocation, preferredAllocation, type Placement } from './allocation.js';

function placements(rows: [string, number | null, number | null][]): Map<string, Placement> {
  return new Map(
    rows.map(([a, numaNode, iommuGroup]) => [
      parsePciAddress(a),
      { address: parsePciAddress(a), numaNode, iommuGroup },
    ]),
  );
}

// Two sockets: node 0 has groups 7 (two functions) and 9; node 1 has 11, 13 and 14.
const devs = placements([
  ['0000:17:00.0', 0, 7],
  ['0000:17:00.1', 0, 7],
  ['0000:31:00.0', 0, 9],
  ['0000:98:00.0', 1, 11],
  ['0000:b1:00.0', 1, 13],
  ['0000:b2:00.0', 1, 14],
]);
const all = [...devs.keys()];

const cases: {
  title: string;
  available: string[];
  must: string[];
  size: number;
  want: string[];
}[] = [
  {
    title: 'two devices: the node that has two free groups, not one from each node',
    available: ['0000:31:00.0', '0000:98:00.0', '0000:b1:00.0'],
    must: [],
    size: 2,
    want: ['0000:98:00.0', '0000:b1:00.0'],
  },
  {
    title: 'two devices: a whole two-function group is preferred over two single groups',
    available: all,
    must: [],
    size: 2,
    want: ['0000:17:00.0', '0000:17:00.1'],
  },
  {
    title: 'three devices: one node supplies them all, its two-function group whole',
    available: all,
    must: [],
    size: 3,
    want: ['0000:17:00.0', '0000:17:00.1', '0000:31:00.0'],
  },
  {
    title: 'must-include on node 0: the rest comes from node 0, its group completed first',
    available: all,
    must: ['0000:17:00.1'],
    size: 2,
    want: ['0000:17:00.1', '0000:17:00.0'],
  },
  {
    title: 'must-include on node 1 keeps the choice on node 1',
    available: all,
    must: ['0000:b2:00.0'],
    size: 2,
    want: ['0000:b2:00.0', '0000:98:00.0'],
  },
  {
    title: 'one device: a single-function group, not half of a two-function group',
    available: all,
    must: [],
    size: 1,
    want: ['0000:31:00.0'],
  },
  {
    title: 'more than one node must give: one node emptied first, then the next',
    available: all,
    must: [],
    size: 5,
    want: ['0000:17:00.0', '0000:17:00.1', '0000:31:00.0', '0000:98:00.0', '0000:b1:00.0'],
  },
  {
    title: 'unknown available IDs are ignored',
    available: ['0000:99:00.0', '0000:31:00.0'],
    must: [],
    size: 1,
    want: ['0000:31:00.0'],
  },
];

for (const c of cases) {
  test(`preferred allocation: ${c.title}`, () => {
    assert.deepEqual(preferredAllocation(devs, c.available, c.must, c.size), c.want);
  });
}

test('preferred allocation: devices without NUMA information are used after those with it', () => {
  const d = placements([
    ['0000:01:00.0', null, 1],
    ['0000:02:00.0', 0, 2],
  ]);
  assert.deepEqual(preferredAllocation(d, [...d.keys()], [], 1), ['0000:02:00.0']);
});

test('container allocation: exactly the requested addresses in request order, vfio nodes mrw', () => {
  const r = containerAllocation('nvidia.com/GA100', [
    { address: parsePciAddress('0000:b1:00.0'), iommuGroup: 13, vfioDev: 'vfio2' },
    { address: parsePciAddress('0000:17:00.0'), iommuGroup: 7, vfioDev: null },
  ]);
  assert.deepEqual(r.envs, { PCI_RESOURCE_NVIDIA_COM_GA100: '0000:b1:00.0,0000:17:00.0' });
  assert.deepEqual(
    r.devices.map((d) => [d.host_path, d.container_path, d.permissions]),
    [
      ['/dev/vfio/vfio', '/dev/vfio/vfio', 'mrw'],
      ['/dev/vfio/13', '/dev/vfio/13', 'mrw'],
      ['/dev/vfio/devices/vfio2', '/dev/vfio/devices/vfio2', 'mrw'],
      ['/dev/vfio/7', '/dev/vfio/7', 'mrw'],
    ],
  );
});

test('container allocation: two functions of one group list the group node once', () => {
  const r = containerAllocation('intel.com/X', [
    { address: parsePciAddress('0000:00:05.0'), iommuGroup: 7, vfioDev: null },
    { address: parsePciAddress('0000:00:05.1'), iommuGroup: 7, vfioDev: null },
  ]);
  assert.deepEqual(
    r.devices.map((d) => d.host_path),
    ['/dev/vfio/vfio', '/dev/vfio/7'],
  );
});
