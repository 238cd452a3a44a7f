import assert from 'node:assert/strict';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { ManualClock } from '../src/host/clock.js';
import { SimKernel, type SimCall } from '../src/host/sim/kernel.js';
import { LinuxHost } from '../src/host/linux/host.js';
import type { HostPort } from '../src/host/port.js';
import { parsePciAddress, type PciAddress } from '../src/pci/address.js';
import { dryRunClaim, dryRunRelease, type DryRunPlan } from '../src/preview/dry-run.js';
import { MemoryStore } from '../src/state/model.js';
import { apiServer, EDU, MF0, MF1, NIC, ROOTFS, labTopology, makeAgent, rig } from './helpers.js';

async function setup(): Promise<{
  clock: ManualClock;
  kernel: SimKernel;
  agent: ReturnType<typeof makeAgent>['agent'];
}> {
  const clock = new ManualClock(1_000_000);
  const kernel = new SimKernel(labTopology(), clock);
  const { agent } = makeAgent(kernel, clock, new MemoryStore());
  await agent.start();
  return { clock, kernel, agent };
}

function deps(s: Awaited<ReturnType<typeof setup>>) {
  return {
    host: s.kernel.port(),
    clock: s.clock,
    claims: s.agent.engine.claims,
    ledger: s.agent.engine.ledger,
  };
}

/** The plan's steps as the simulated kernel records calls. */
function asCalls(p: DryRunPlan): SimCall[] {
  return p.steps.map((s) =>
    s.address === undefined
      ? { op: s.op, value: s.value }
      : { op: s.op, address: s.address, value: s.value },
  );
}

function taken(k: SimKernel): SimCall[] {
  return k.calls.splice(0);
}

test('claim --dry-run writes nothing and lists exactly the modprobes and writes the real claim then makes', async () => {
  const s = await setup();
  taken(s.kernel);
  const plan = await dryRunClaim(deps(s), [NIC[0] as PciAddress], {
    withGroup: false,
    force: false,
  });
  assert.deepEqual(s.kernel.calls, [], 'the dry run wrote nothing to the host');
  assert.equal(s.kernel.driverOf(NIC[0] as PciAddress), 'e1000e');
  assert.ok(plan.steps.some((x) => x.op === 'modprobe' && x.value === 'vfio_pci'));
  assert.deepEqual(plan.unbinds, [{ address: NIC[0], driver: 'e1000e', serves: [] }]);
  assert.deepEqual(plan.refusals, []);
  assert.equal(plan.claims?.[0]?.state, 'ready');
  await s.agent.claim([NIC[0] as PciAddress], { withGroup: false, force: false });
  assert.deepEqual(taken(s.kernel), asCalls(plan));
});

test('a group claim dry run names the companion and matches the real group claim write for write', async () => {
  const s = await setup();
  taken(s.kernel);
  const plan = await dryRunClaim(deps(s), [MF0], { withGroup: true, force: false });
  assert.deepEqual(plan.companions, [{ address: MF0, members: [MF1] }]);
  assert.deepEqual(
    plan.unbinds.map((u) => [u.address, u.driver]),
    [
      [MF0, 'e1000'],
      [MF1, 'e1000'],
    ],
  );
  assert.deepEqual(s.kernel.calls, []);
  await s.agent.claim([MF0], { withGroup: true, force: false });
  assert.deepEqual(taken(s.kernel), asCalls(plan));
  assert.equal(s.kernel.driverOf(MF1), 'vfio-pci');
});

test('a refused claim dry run has no steps and the refusal code the real claim then returns', async () => {
  const s = await setup();
  taken(s.kernel);
  const plan = await dryRunClaim(deps(s), [ROOTFS], { withGroup: false, force: false });
  assert.deepEqual(plan.steps, []);
  assert.deepEqual(
    plan.refusals.map((r) => [r.address, r.code]),
    [[ROOTFS, 'PT_ERR_HOST_CRITICAL']],
  );
  const real = await s.agent.claim([ROOTFS], { withGroup: false, force: false });
  assert.deepEqual(taken(s.kernel), []);
  assert.equal(real[0]?.code, 'PT_ERR_HOST_CRITICAL');
  // Without --with-group the shared group is not viable: refused too, with its own code.
  const mf = await dryRunClaim(deps(s), [MF0], { withGroup: false, force: false });
  assert.deepEqual(
    mf.refusals.map((r) => r.code),
    ['PT_ERR_GROUP_NOT_VIABLE'],
  );
  assert.deepEqual(mf.steps, []);
});

test('release --dry-run lists exactly the writes the real release then makes, group companions included', async () => {
  const s = await setup();
  await s.agent.claim([MF0], { withGroup: true, force: false });
  await s.agent.claim([EDU], { withGroup: false, force: false });
  taken(s.kernel);
  const plan = await dryRunRelease(deps(s), [MF0]);
  assert.deepEqual(s.kernel.calls, []);
  assert.deepEqual(plan.companions, [{ address: MF0, members: [MF1] }]);
  assert.deepEqual(
    plan.released?.map((r) => [r.address, r.state, r.driver]),
    [
      [MF0, 'released', 'e1000'],
      [MF1, 'released', 'e1000'],
    ],
  );
  assert.ok(plan.steps.some((x) => x.op === 'driver_override' && x.value === '\n'));
  assert.equal(s.kernel.driverOf(MF0), 'vfio-pci');
  await s.agent.release([MF0]);
  assert.deepEqual(taken(s.kernel), asCalls(plan));
  assert.equal(s.kernel.driverOf(MF0), 'e1000');
  // EDU had no driver: its release only clears the override and unbinds, no probe.
  const edu = await dryRunRelease(deps(s), [EDU]);
  await s.agent.release([EDU]);
  assert.deepEqual(taken(s.kernel), asCalls(edu));
  assert.ok(!edu.steps.some((x) => x.op === 'drivers_probe'));
});

test('release --dry-run asks the real host for VM holders: a held device is refused with no steps', async () => {
  const s = await setup();
  await s.agent.claim([NIC[1] as PciAddress], { withGroup: false, force: false });
  s.kernel.openDevice(NIC[1] as PciAddress);
  taken(s.kernel);
  const plan = await dryRunRelease(deps(s), [NIC[1] as PciAddress]);
  assert.deepEqual(plan.steps, []);
  assert.deepEqual(
    plan.refusals.map((r) => r.code),
    ['PT_ERR_DEVICE_IN_USE'],
  );
  assert.deepEqual(s.kernel.calls, []);
});

test('POST /v1/claims/dry-run and /v1/release/dry-run answer the plan the real routes then carry out', async () => {
  const r = await rig(labTopology(), { run: false });
  const { server } = await apiServer(r, { sim: false });
  try {
    const a = NIC[2] as PciAddress;
    taken(r.kernel);
    const post = async (url: string, payload: unknown): Promise<unknown> => {
      const res = await server.app.inject({ method: 'POST', url, payload: payload as object });
      assert.equal(res.statusCode, 200, res.body);
      return res.json();
    };
    const plan = (await post('/v1/claims/dry-run', { addresses: [a] })) as DryRunPlan;
    assert.deepEqual(r.kernel.calls, []);
    assert.equal(plan.kind, 'claim');
    await post('/v1/claims', { addresses: [a] });
    assert.deepEqual(taken(r.kernel), asCalls(plan));
    const rel = (await post('/v1/release/dry-run', { addresses: [a] })) as DryRunPlan;
    assert.deepEqual(r.kernel.calls, []);
    await post('/v1/release', { addresses: [a] });
    assert.deepEqual(taken(r.kernel), asCalls(rel));
    assert.equal(r.kernel.driverOf(a), 'e1000e');
  } finally {
    await server.close();
  }
});

test('LinuxHost.classDevices names the interfaces, block devices and DRM cards below a function, not its neighbours', async () => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'pt-cls-'));
  try {
    const fn = 'sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0';
    const other = 'sys/devices/pci0000:00/0000:00:01.0/0000:01:00.1';
    const made: [string, string][] = [
      ['sys/class/net/enp1s0', `${fn}/net/enp1s0`],
      ['sys/class/net/enp1s1', `${other}/net/enp1s1`],
      ['sys/class/block/nvme0n1', `${fn}/nvme/nvme0/nvme0n1`],
      ['sys/class/drm/card1', `${fn}/drm/card1`],
      ['sys/class/drm/renderD128', `${fn}/drm/renderD128`],
    ];
    for (const [link, target] of made) {
      await fs.mkdir(path.join(root, target), { recursive: true });
      await fs.mkdir(path.dirname(path.join(root, link)), { recursive: true });
      // Relative, as sysfs makes them: ../../devices/...
      await fs.symlink(
        path.relative(path.dirname(path.join(root, link)), path.join(root, target)),
        path.join(root, link),
      );
    }
    const h = new LinuxHost({ root, uevents: false });
    assert.deepEqual(await h.classDevices(parsePciAddress('0000:01:00.0')), {
      net: ['enp1s0'],
      block: ['nvme0n1'],
      drm: ['card1'],
    });
    assert.deepEqual(await h.classDevices(parsePciAddress('0000:01:00.1')), {
      net: ['enp1s1'],
      block: [],
      drm: [],
    });
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});

test('a dry run names what each unbound driver serves on the real host: interface with its address, block device with its mounts, DRM card', async () => {
  const s = await setup();
  const real = Object.assign(Object.create(s.kernel.port()) as HostPort, {
    classDevices: (a: PciAddress) =>
      Promise.resolve(
        a === NIC[0]
          ? { net: ['enp1s0', 'enp1s0d1'], block: ['nvme0n1'], drm: ['card1'] }
          : { net: [], block: [], drm: [] },
      ),
    hostUses: () =>
      Promise.resolve({
        uses: [
          {
            address: NIC[0],
            use: 'network interface enp1s0 is up with a global address (10.0.0.5/24)',
          },
        ],
        unknown: [],
        backing: [
          {
            target: '/srv',
            source: '/dev/nvme0n1p1',
            fstype: 'ext4',
            status: 'traced',
            via: ['nvme0n1p1', 'nvme0n1'],
            devices: [NIC[0]],
          },
        ],
      }),
  });
  const plan = await dryRunClaim({ ...deps(s), host: real }, [NIC[0] as PciAddress], {
    withGroup: false,
    force: true,
  });
  assert.deepEqual(plan.unbinds, [
    {
      address: NIC[0],
      driver: 'e1000e',
      serves: [
        'network interface enp1s0 is up with a global address (10.0.0.5/24)',
        'network interface enp1s0d1 (no global address or route seen)',
        'block device nvme0n1 (under /srv)',
        'DRM card card1',
      ],
    },
  ]);
  // Without --force the same host use is a refusal, evaluated on the real host's uses.
  const refused = await dryRunClaim({ ...deps(s), host: real }, [NIC[0] as PciAddress], {
    withGroup: false,
    force: false,
  });
  assert.deepEqual(
    refused.refusals.map((r) => r.code),
    ['PT_ERR_HOST_CRITICAL'],
  );
  assert.deepEqual(refused.steps, []);
});
