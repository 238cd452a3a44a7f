import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pciDeviceName, resourceName } from './names.js';

test('PCIDevice names are <node>-<address without : and .>, hostname dots kept', () => {
  assert.equal(pciDeviceName('node1', '0000:65:00.0'), 'node1-000065000');
  assert.equal(pciDeviceName('n1.example.com', '0000:00:1f.3'), 'n1.example.com-0000001f3');
});

test("resourceName follows Harvester's rule on the examples from its tests", () => {
  assert.equal(
    resourceName('NVIDIA Corporation', 'GA104 [RTX A4500 Embedded GPU ]', '2233'),
    'nvidia.com/GA104_RTX_A4500_EMBEDDED_GPU',
  );
  assert.equal(
    resourceName('Mellanox Technologies', 'MT2892 Family [ConnectX-6 Dx Flash Recovery]', '0212'),
    'mellanox.com/MT2892_FAMILY_CONNECTX6_DX_FLASH_RECOVERY',
  );
  assert.equal(resourceName('Test', '!!!', '5678'), 'test.com/5678');
  assert.equal(
    resourceName(
      'Broadcom Inc. and subsidiaries',
      'NetXtreme II BCM57810 10 Gigabit Ethernet Virtual Function',
      '16af',
    ),
    'broadcom.com/NETXTREME_II_BCM57810_10_GIGABIT_ETHERNET_VF',
  );
  assert.equal(
    resourceName('Advanced Micro Devices, Inc. [AMD/ATI]', 'Navi 21', '73bf'),
    'amd.com/NAVI_21',
  );
});

test('resourceName: unknown vendor and product fall back to unknown.com and the device id', () => {
  assert.equal(resourceName(undefined, undefined, '11e8'), 'unknown.com/11e8');
});

test('resourceName: a product too long for the socket path falls back to the device id', () => {
  assert.equal(resourceName('Intel Corporation', 'X'.repeat(70), '10d3'), 'intel.com/10d3');
});
