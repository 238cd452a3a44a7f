import { test } from 'node:test';
import assert from 'node:assert/strict';
import { groupViews } from '../src/cli/views.js';
import { discover } from '../src/pci/discovery.js';
import { parsePciAddress } from '../src/pci/address.js';
import type { Topology } from '../src/topology/format.js';
import { EDU, labTopology, NIC, rig, ROOTFS } from './helpers.js';

const once = { withGroup: false, force: false };
const forced = { withGroup: false, force: true };
const PORT = parsePciAddress('0000:00:1c.0');
const HOSTBRIDGE = parsePciAddress('0000:00:00.0');
const UNCORE = parsePciAddress('0000:00:08.0');
const NVME = parsePciAddress('0000:05:00.0');

/** The lab topology plus a root port, an uncore function and an nvme behind the port. */
function topology(extra: Partial<Topology> = {}): Topology {
  const t = labTopology();
  t.drivers = [...(t.drivers ?? []), { name: 'nvme', ids: ['144d:a808'] }];
  t.devices.push(
    {
      address: PORT,
      vendor: '8086',
      device: 'a110',
      class: '060400',
      driver: 'pcieport',
      iommuGroup: 20,
    },
    { address: UNCORE, vendor: '8086', device: '2088', class: '088000', iommuGroup: 21 },
    {
      address: NVME,
      vendor: '144d',
      device: 'a808',
      class: '010802',
      driver: 'nvme',
      iommuGroup: 22,
      parent: PORT,
    },
  );
  return { ...t, ...extra };
}

const UNKNOWN =
  'cannot tell what backs /srv: fuse.sshfs (from me@h:/srv) is not on a block device passthru can follow';

test('while a mount is untraced, storage and network claims are refused with the reason unless forced; other classes are not', async () => {
  const r = await rig(topology({ hostUnknown: [UNKNOWN] }), { run: false });
  const [nic] = await r.agent.claim([NIC[0]!], once);
  assert.equal(nic?.code, 'PT_ERR_HOST_CRITICAL');
  assert.match(nic.message ?? '', /cannot tell what backs \/srv/);
  const [disk] = await r.agent.claim([NVME], once);
  assert.equal(disk?.code, 'PT_ERR_HOST_CRITICAL');
  assert.match(disk.message ?? '', /cannot tell what backs \/srv/);
  assert.equal(r.kernel.driverOf(NVME), 'nvme');
  const [edu] = await r.agent.claim([EDU], once);
  assert.equal(edu?.state, 'ready', 'a class 00ff device is not storage or network');
  const [nicForced] = await r.agent.claim([NIC[0]!], forced);
  assert.equal(nicForced?.state, 'ready');
});

test('without untraced mounts the same nvme and NIC are claimable', async () => {
  const r = await rig(topology(), { run: false });
  const [disk] = await r.agent.claim([NVME], once);
  assert.equal(disk?.state, 'ready');
  const [nic] = await r.agent.claim([NIC[0]!], once);
  assert.equal(nic?.state, 'ready');
});

test('bridges are refused even with --force, and stay on their driver', async () => {
  const r = await rig(topology(), { run: false });
  const [port] = await r.agent.claim([PORT], forced);
  assert.equal(port?.code, 'PT_ERR_HOST_CRITICAL');
  assert.match(port.message ?? '', /PCI-PCI bridge: bridges are never passed through/);
  assert.match(port.message ?? '', /--force does not override/);
  assert.equal(r.kernel.driverOf(PORT), 'pcieport');
  const [host] = await r.agent.claim([HOSTBRIDGE], forced);
  assert.equal(host?.code, 'PT_ERR_HOST_CRITICAL');
  assert.match(host.message ?? '', /host bridge/);
});

test('a platform function (system peripheral 0880) is refused unless forced and not offered in groups', async () => {
  const r = await rig(topology(), { run: false });
  const [u] = await r.agent.claim([UNCORE], once);
  assert.equal(u?.code, 'PT_ERR_HOST_CRITICAL');
  assert.match(u.message ?? '', /platform function/);
  const views = groupViews(await discover(r.kernel.port()), await r.kernel.port().hostUses());
  const g = views.find((v) => v.group === 21);
  assert.equal(g?.claimable, false);
  assert.match(g.critical[0]?.reasons.join() ?? '', /platform function/);
  assert.equal(views.find((v) => v.group === 22)?.claimable, true, 'the nvme group is offered');
  const [f] = await r.agent.claim([UNCORE], forced);
  assert.equal(f?.state, 'ready');
});

test('the 9p root share is refused as host-critical', async () => {
  const r = await rig(topology(), { run: false });
  const [st] = await r.agent.claim([ROOTFS], once);
  assert.equal(st?.code, 'PT_ERR_HOST_CRITICAL');
  assert.match(st.message ?? '', /9p filesystem at \//);
});

test('--with-group leaves a driverless host bridge in the group alone (AMD dummy host bridges): the GPU and its audio are bound', async () => {
  const t = topology();
  const GPU = parsePciAddress('0000:06:00.0');
  const AUDIO = parsePciAddress('0000:06:00.1');
  const DUMMY = parsePciAddress('0000:00:07.0');
  t.drivers = [
    ...(t.drivers ?? []),
    { name: 'amdgpu', ids: ['1002:73bf'] },
    { name: 'snd_hda_intel', ids: ['1002:ab28'] },
  ];
  t.devices.push(
    { address: DUMMY, vendor: '1022', device: '1482', class: '060000', iommuGroup: 30 },
    {
      address: GPU,
      vendor: '1002',
      device: '73bf',
      class: '030000',
      driver: 'amdgpu',
      iommuGroup: 30,
    },
    {
      address: AUDIO,
      vendor: '1002',
      device: 'ab28',
      class: '040300',
      driver: 'snd_hda_intel',
      iommuGroup: 30,
    },
  );
  const r = await rig(t, { run: false });
  const views = groupViews(await discover(r.kernel.port()), await r.kernel.port().hostUses());
  assert.equal(views.find((v) => v.group === 30)?.claimable, true);
  const [st] = await r.agent.claim([GPU], { withGroup: true, force: false });
  assert.equal(st?.state, 'ready', st?.message);
  assert.deepEqual(
    [r.kernel.driverOf(GPU), r.kernel.driverOf(AUDIO), r.kernel.driverOf(DUMMY)],
    ['vfio-pci', 'vfio-pci', null],
  );
});
