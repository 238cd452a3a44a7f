import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  isExtendedResourceName,
  pciResourceEnvVar,
  perDeviceResourceName,
  pooledResourceName,
  socketNameFor,
} from './resource-name.js';

const pooled: [string | undefined, string | undefined, string, string][] = [
  // Harvester's own test expectations.
  [
    'NVIDIA Corporation',
    'GA104 [RTX A4500 Embedded GPU ]',
    '24ba',
    'nvidia.com/GA104_RTX_A4500_EMBEDDED_GPU',
  ],
  [
    'Mellanox Technologies',
    'MT2892 Family [ConnectX-6 Dx Flash Recovery]',
    '0212',
    'mellanox.com/MT2892_FAMILY_CONNECTX6_DX_FLASH_RECOVERY',
  ],
  ['Test', '!!!', '5678', 'test.com/5678'],
  [
    'Broadcom Inc. and subsidiaries',
    'NetXtreme II BCM57810 10 Gigabit Ethernet Virtual Function',
    '16af',
    'broadcom.com/NETXTREME_II_BCM57810_10_GIGABIT_ETHERNET_VF',
  ],
  // Bracketed vendor token, cut at '/'.
  [
    'Advanced Micro Devices, Inc. [AMD/ATI]',
    'Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]',
    '73bf',
    'amd.com/NAVI_21_RADEON_RX_6800_6800_XT___6900_XT',
  ],
  ['NVIDIA Corporation', 'TU104GL [Tesla T4]', '1eb8', 'nvidia.com/TU104GL_TESLA_T4'],
  ['NVIDIA Corporation', 'GA100 [A100 PCIe 80GB]', '20b5', 'nvidia.com/GA100_A100_PCIE_80GB'],
  // '.' becomes '_'; trailing '_', '.' and '-' are stripped.
  [
    'Intel Corporation',
    '82574L Gigabit Network Connection.',
    '10d3',
    'intel.com/82574L_GIGABIT_NETWORK_CONNECTION',
  ],
  // Unknown to pci.ids: vendor "unknown", product by device id.
  [undefined, undefined, '11e8', 'unknown.com/11e8'],
  ['Red Hat, Inc.', undefined, '1009', 'red.com/1009'],
  // Too long even after VIRTUAL_FUNCTION -> VF: the device id.
  [
    'Intel Corporation',
    'Ethernet Adaptive Virtual Function with an exceptionally long marketing name for testing',
    '1889',
    'intel.com/1889',
  ],
];

for (const [vendor, product, id, want] of pooled) {
  test(`pooled resource name: ${String(vendor)} / ${String(product)} -> ${want}`, () => {
    assert.equal(pooledResourceName(vendor, product, id), want);
  });
}

test('pooled names stay within Harvester socket-path budget (vendor + product <= 60)', () => {
  const long = 'X'.repeat(200);
  for (const [v, p] of [
    ['NVIDIA Corporation', long],
    ['Intel Corporation', `${'A'.repeat(40)} Virtual Function`],
  ] as const) {
    const name = pooledResourceName(v, p, 'abcd');
    assert.ok(name.length - 1 <= 60, `${name} is ${name.length - 1} characters without '/'`);
  }
});

const extended: [string, boolean][] = [
  ['nvidia.com/GA100_A100_PCIE_80GB', true],
  ['intel.com/1889', true],
  ['example.com/a', true],
  ['noslash', false],
  ['kubernetes.io/gpu', false],
  ['a.com/b/c', false],
  ['a.com/', false],
  ['a.com/_x', false],
  ['a.com/x_', false],
  [`a.com/${'x'.repeat(63)}`, true],
  [`a.com/${'x'.repeat(64)}`, false],
  ['Upper.COM/x', false],
];
for (const [name, ok] of extended) {
  test(`extended resource name rule: ${name.slice(0, 40)} is ${ok ? 'valid' : 'invalid'}`, () => {
    assert.equal(isExtendedResourceName(name), ok);
  });
}

test('per-device names: short host names kept verbatim, address without punctuation', () => {
  assert.equal(
    perDeviceResourceName('NVIDIA Corporation', 'node1', '0000:65:00.0'),
    'nvidia.com/node1-000065000',
  );
  assert.equal(
    perDeviceResourceName('NVIDIA Corporation', 'worker-1.example.org', '0000:b1:00.0'),
    'nvidia.com/worker-1.example.org-0000b1000',
  );
});

test('per-device names: a long host name is cut and hashed, valid and distinct per host', () => {
  const a = `rack12-${'very-long-host-name-'.repeat(4)}a.example.internal`;
  const b = `rack12-${'very-long-host-name-'.repeat(4)}b.example.internal`;
  const na = perDeviceResourceName('NVIDIA Corporation', a, '0000:17:00.0');
  const nb = perDeviceResourceName('NVIDIA Corporation', b, '0000:17:00.0');
  for (const n of [na, nb]) {
    assert.ok(isExtendedResourceName(n), `${n} must be a valid extended resource name`);
    assert.equal(n.split('/')[1]?.length, 63);
    assert.ok(n.endsWith('-000017000'));
  }
  assert.notEqual(na, nb);
  assert.equal(perDeviceResourceName('NVIDIA Corporation', a, '0000:17:00.0'), na, 'stable');
});

test('env var KubeVirt reads: upper-cased, / and . as _, - kept', () => {
  assert.equal(
    pciResourceEnvVar('nvidia.com/GA100_A100_PCIE_80GB'),
    'PCI_RESOURCE_NVIDIA_COM_GA100_A100_PCIE_80GB',
  );
  assert.equal(
    pciResourceEnvVar('nvidia.com/node1.lab-000065000'),
    'PCI_RESOURCE_NVIDIA_COM_NODE1_LAB-000065000',
  );
});

test('socket names carry no slash', () => {
  assert.equal(socketNameFor('intel.com/1889'), 'passthru-intel.com-1889.sock');
});
