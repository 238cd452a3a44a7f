import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePciIds } from './pciids.js';

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
