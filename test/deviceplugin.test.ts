import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readFile } from 'node:fs/promises';
import { loadTopology } from '../src/host/files.js';
import { LinuxHost } from '../src/host/linux/host.js';
import { writeSysfsTree } from '../src/host/sysfs-tree.js';
import { SimKernel } from '../src/host/sim/kernel.js';
import { validateTopology, type Topology } from '../src/topology/format.js';
import { parsePciAddress, type PciAddress } from '../src/pci/address.js';
import { listPodDevices } from '../src/deviceplugin/pod-resources.js';
import { EDU, labTopology, NIC, onVfio } from './helpers.js';
import { AD102_AUDIO, dpRig, E1000E, L40S } from './fake-kubelet/rig.js';

const VM = { namespace: 'default', name: 'virt-launcher-vm1-abcde', container: 'compute' };

async function gpuServer(): Promise<Topology> {
  const text = await readFile(path.join(process.cwd(), 'topologies/gpu-server-2s.json'), 'utf8');
  return validateTopology(JSON.parse(text) as unknown);
}

const GPUS = ['0000:17:00.0', '0000:31:00.0', '0000:98:00.0', '0000:b1:00.0'].map((a) =>
  parsePciAddress(a),
);

const allHealth = (devs: { health: string }[] | undefined, h: string): boolean =>
  devs !== undefined && devs.length > 0 && devs.every((d) => d.health === h);

test('device plugin: serves, registers v1beta1 on kubelet.sock, the kubelet dials back for options, full list at once', async () => {
  const r = await dpRig(labTopology());
  try {
    await r.agent.claim(NIC, { withGroup: false, force: false });
    const dp = await r.startPlugins();
    await r.kubelet.waitFor(() => r.kubelet.view(E1000E)?.devices.length === 4, 'four devices');
    const v = r.kubelet.view(E1000E);
    assert.ok(v);
    assert.equal(v.reg.version, 'v1beta1');
    assert.equal(v.reg.endpoint, 'passthru-intel.com-82574L_GIGABIT_NETWORK_CONNECTION.sock');
    assert.ok(fs.statSync(path.join(r.dir, v.reg.endpoint)).isSocket());
    assert.deepEqual(v.reg.optionsDuringRegister, {
      pre_start_required: true,
      get_preferred_allocation_available: true,
    });
    // The first message already carries every device.
    assert.equal(v.messages[0]?.devices.length, 4);
    assert.deepEqual(
      v.devices.map((d) => [d.ID, d.health, d.topology?.nodes.map((n) => n.ID)]),
      NIC.map((a) => [a, 'Healthy', [0]]),
    );
    assert.equal(dp.counters.get(E1000E, 'registrations'), 1);
    assert.equal(r.kubelet.registrations.length, 1);
  } finally {
    await r.close();
  }
});

test('device plugin: a device without NUMA information is sent without topology', async () => {
  const r = await dpRig(labTopology());
  try {
    await r.agent.claim([EDU], { withGroup: false, force: false });
    await r.startPlugins();
    const name = 'unknown.com/11e8';
    await r.kubelet.waitFor(() => r.kubelet.view(name)?.devices.length === 1, 'the edu device');
    const d = r.kubelet.view(name)?.devices[0];
    assert.equal(d?.ID, EDU);
    assert.equal(d.health, 'Healthy');
    assert.equal(d.topology, null);
  } finally {
    await r.close();
  }
});

test('field failure through ListAndWatch: Unhealthy within 1 s of the removal, Healthy again once recovery is verified', async (t) => {
  // Paced like the real kernel: modprobe 400 ms, module uevents 250 ms after the removal.
  const r = await dpRig(labTopology(), { timing: { modprobeMs: 400, ueventMs: 250 } });
  try {
    await r.agent.claim(NIC.slice(0, 2), { withGroup: false, force: false });
    const dp = await r.startPlugins();
    // With paced modprobes the claims become ready as simulated time passes.
    await r.stepUntil(() => allHealth(dp.lastSent(E1000E)?.devices, 'Healthy'), 5_000);
    await r.kubelet.waitFor(() => allHealth(r.kubelet.view(E1000E)?.devices, 'Healthy'), 'healthy');
    const before = r.kubelet.view(E1000E)?.messages.length ?? 0;

    const removedAt = r.clock.now();
    const flips0 = dp.counters.get(E1000E, 'health_flips_unhealthy');
    const back0 = dp.counters.get(E1000E, 'health_flips_healthy');
    for (const m of ['vfio_pci', 'vfio_pci_core', 'vfio_virqfd']) r.kernel.rmmod(m);
    const sent = (): { health: string }[] | undefined => dp.lastSent(E1000E)?.devices;
    const toUnhealthy = await r.stepUntil(() => allHealth(sent(), 'Unhealthy'), 5_000);
    assert.ok(allHealth(sent(), 'Unhealthy'), 'the plugin sent Unhealthy');
    assert.ok(toUnhealthy <= 1_000, `Unhealthy sent ${toUnhealthy} simulated ms after the removal`);
    await r.kubelet.waitFor(
      () => allHealth(r.kubelet.view(E1000E)?.devices, 'Unhealthy'),
      'Unhealthy on the stream',
    );

    const toHealthy = await r.stepUntil(() => allHealth(sent(), 'Healthy'), 10_000);
    assert.ok(allHealth(sent(), 'Healthy'), 'the plugin sent Healthy again');
    // Healthy only once the devices are verified back on vfio-pci.
    assert.ok(onVfio(r.kernel, NIC.slice(0, 2)));
    const st = await r.agent.status();
    const rec = st.keeper.recoveries.find((x) => x.detectedAt >= removedAt);
    assert.ok(rec?.reboundAt !== null && rec?.reboundAt !== undefined, 'a completed recovery');
    assert.ok(
      (dp.lastSent(E1000E)?.at ?? 0) >= rec.reboundAt,
      'Healthy was not sent before the rebind was verified',
    );
    await r.kubelet.waitFor(
      () => allHealth(r.kubelet.view(E1000E)?.devices, 'Healthy'),
      'Healthy on the stream',
    );
    // Full lists only, and the same stream throughout (no re-registration was needed).
    const msgs = r.kubelet.view(E1000E)?.messages.slice(before) ?? [];
    assert.ok(msgs.every((m) => m.devices.length === 2));
    assert.equal(r.kubelet.registrations.length, 1);
    assert.equal(dp.counters.get(E1000E, 'health_flips_unhealthy') - flips0, 2);
    assert.equal(dp.counters.get(E1000E, 'health_flips_healthy') - back0, 2);
    t.diagnostic(
      `removal to Unhealthy sent: ${toUnhealthy} ms; Unhealthy to Healthy: ${toHealthy} ms (simulated)`,
    );
  } finally {
    await r.close();
  }
});

for (const twice of [false, true]) {
  test(`kubelet restart${twice ? ' twice in a row' : ''} seen by the folder watch: socket served again, re-registered, list re-sent`, async () => {
    const r = await dpRig(labTopology());
    try {
      await r.agent.claim(NIC.slice(0, 2), { withGroup: false, force: false });
      const dp = await r.startPlugins();
      await r.kubelet.waitFor(() => r.kubelet.view(E1000E)?.devices.length === 2, 'devices');
      await r.kubelet.restart();
      if (twice) await r.kubelet.restart();
      const last = r.kubelet.instance;
      // No simulated time passes: only the watch can have noticed.
      await r.kubelet.waitFor(
        () =>
          r.kubelet.view(E1000E)?.reg.instance === last &&
          allHealth(r.kubelet.view(E1000E)?.devices, 'Healthy') &&
          r.kubelet.view(E1000E)?.devices.length === 2,
        'registration with the new kubelet',
      );
      const v = r.kubelet.view(E1000E);
      assert.ok(v?.open);
      assert.ok(fs.statSync(path.join(r.dir, v.reg.endpoint)).isSocket());
      assert.ok(dp.counters.get(E1000E, 'registrations') >= 2);
      // The new kubelet can use the plugin.
      const { ids } = await r.kubelet.allocate(E1000E, 1, VM);
      assert.equal(ids.length, 1);
    } finally {
      await r.close();
    }
  });
}

test('the kubelet starting after the plugins (boot race): they serve, wait, and register once kubelet.sock appears', async () => {
  const r = await dpRig(labTopology());
  try {
    await r.agent.claim(NIC.slice(0, 2), { withGroup: false, force: false });
    await r.kubelet.down();
    const dp = await r.startPlugins();
    assert.deepEqual(
      dp.resources().map((x) => [x.resourceName, x.registered]),
      [[E1000E, false]],
    );
    assert.ok(fs.statSync(path.join(r.dir, dp.resources()[0]!.endpoint)).isSocket(), 'served');
    await r.clock.advance(2_000);
    await dp.settled();
    assert.equal(r.kubelet.registrations.length, 0);
    await r.kubelet.start();
    await r.kubelet.waitFor(
      () => r.kubelet.view(E1000E)?.devices.length === 2,
      'registration once the kubelet is up',
    );
    assert.equal(dp.counters.get(E1000E, 'registrations'), 1);
  } finally {
    await r.close();
  }
});

test('a refused Register is counted and retried on the next poll until it succeeds', async () => {
  const r = await dpRig(labTopology());
  try {
    await r.agent.claim([NIC[0]!], { withGroup: false, force: false });
    r.kubelet.rejectRegistrations = 2;
    // Without the watch (our own socket's creation would trigger an early retry).
    const dp = await r.startPlugins({ watch: false });
    assert.equal(dp.counters.get(E1000E, 'registration_failures'), 1);
    const ms = await r.stepUntil(() => dp.resources()[0]?.registered === true, 5_000, 100);
    assert.equal(dp.counters.get(E1000E, 'registration_failures'), 2);
    assert.equal(dp.counters.get(E1000E, 'registrations'), 1);
    assert.ok(ms <= 1_000, `registered ${ms} simulated ms later (two 500 ms polls)`);
    await r.kubelet.waitFor(() => r.kubelet.view(E1000E)?.devices.length === 1, 'the list');
  } finally {
    await r.close();
  }
});

test('a claimed device unbound from vfio-pci behind the agent (drift) turns Unhealthy within 1 s, Healthy once re-bound', async () => {
  const r = await dpRig(labTopology());
  try {
    await r.agent.claim(NIC.slice(0, 2), { withGroup: false, force: false });
    const dp = await r.startPlugins();
    const health = (a: string): string | undefined =>
      dp.lastSent(E1000E)?.devices.find((d) => d.ID === a)?.health;
    await r.stepUntil(() => health(NIC[0]!) === 'Healthy', 2_000);
    await r.kernel.port().unbindDevice(NIC[0]!);
    const ms = await r.stepUntil(() => health(NIC[0]!) === 'Unhealthy', 5_000);
    assert.equal(health(NIC[0]!), 'Unhealthy');
    assert.equal(health(NIC[1]!), 'Healthy', 'the other device is untouched');
    assert.ok(ms <= 1_000, `Unhealthy ${ms} simulated ms after the unbind`);
    await r.stepUntil(() => health(NIC[0]!) === 'Healthy', 10_000);
    assert.equal(r.kernel.driverOf(NIC[0]!), 'vfio-pci');
    await r.kubelet.waitFor(
      () => allHealth(r.kubelet.view(E1000E)?.devices, 'Healthy'),
      'Healthy on the stream',
    );
  } finally {
    await r.close();
  }
});

test('kubelet restart seen by the poll alone (no watch): re-registered within 1 s of simulated time', async (t) => {
  const r = await dpRig(labTopology());
  try {
    await r.agent.claim(NIC.slice(0, 2), { withGroup: false, force: false });
    await r.startPlugins({ watch: false });
    await r.kubelet.waitFor(() => r.kubelet.view(E1000E)?.devices.length === 2, 'devices');
    await r.kubelet.restart();
    await r.kubelet.restart();
    const last = r.kubelet.instance;
    const ms = await r.stepUntil(() => r.kubelet.view(E1000E)?.reg.instance === last, 5_000, 50);
    assert.equal(r.kubelet.view(E1000E)?.reg.instance, last, 'registered with the newest kubelet');
    assert.ok(ms <= 1_000, `re-registered after ${ms} simulated ms`);
    await r.kubelet.waitFor(
      () => r.kubelet.view(E1000E)?.devices.length === 2,
      'the list on the new stream',
    );
    t.diagnostic(`poll-only re-registration: ${ms} simulated ms`);
  } finally {
    await r.close();
  }
});

test('a VM asking for two devices of one resource gets exactly those two, in request order', async () => {
  const r = await dpRig(labTopology());
  try {
    await r.agent.claim(NIC, { withGroup: false, force: false });
    const dp = await r.startPlugins();
    await r.kubelet.waitFor(() => r.kubelet.view(E1000E)?.devices.length === 4, 'devices');
    const env = 'PCI_RESOURCE_INTEL_COM_82574L_GIGABIT_NETWORK_CONNECTION';

    const order = [NIC[3]!, NIC[1]!];
    const res = await r.kubelet.allocateIds(E1000E, order, VM);
    assert.deepEqual(res.envs, { [env]: `${NIC[3]},${NIC[1]}` });
    assert.deepEqual(
      res.devices.map((d) => [d.host_path, d.container_path, d.permissions]),
      [
        ['/dev/vfio/vfio', '/dev/vfio/vfio', 'mrw'],
        ['/dev/vfio/13', '/dev/vfio/13', 'mrw'],
        ['/dev/vfio/11', '/dev/vfio/11', 'mrw'],
      ],
    );

    // Through the kubelet's own path: preference, Allocate, PreStartContainer.
    const vm2 = { ...VM, name: 'virt-launcher-vm2-fghij' };
    const got = await r.kubelet.allocate(E1000E, 2, vm2);
    assert.equal(got.ids.length, 2);
    assert.ok(got.ids.every((id) => id === NIC[0] || id === NIC[2]));
    assert.deepEqual(got.response.envs, { [env]: got.ids.join(',') });
    assert.deepEqual(r.kubelet.preStarts.at(-1)?.ids, got.ids);

    // Each response is its own object: the second did not change the first.
    assert.deepEqual(r.kubelet.responses[0]?.response.envs, { [env]: `${NIC[3]},${NIC[1]}` });
    assert.equal(dp.counters.get(E1000E, 'allocations'), 2);

    // Pod-resources tells which pod holds which address.
    const uses = await dp.podDevices();
    assert.deepEqual(await listPodDevices(r.kubelet.podResourcesSocket, new Set([E1000E])), uses);
    assert.deepEqual(
      uses.map((u) => [u.address, u.pod]).sort(),
      [[NIC[3], VM.name], [NIC[1], VM.name], ...got.ids.map((id) => [id, vm2.name])].sort(),
    );
  } finally {
    await r.close();
  }
});

test('NUMA hints on the 2-socket GPU server: topology per device, preferred pairs on one node, vfio cdevs in Allocate', async () => {
  const r = await dpRig(await gpuServer());
  try {
    const claims = await r.agent.claim(GPUS, { withGroup: true, force: false });
    assert.ok(claims.every((c) => c.state === 'ready'));
    await r.startPlugins();
    await r.kubelet.waitFor(
      () => r.kubelet.view(L40S)?.devices.length === 4 && r.kubelet.view(AD102_AUDIO) !== undefined,
      'GPU and audio resources',
    );
    assert.deepEqual(
      r.kubelet.view(L40S)?.devices.map((d) => [d.ID, d.topology?.nodes.map((n) => n.ID)]),
      [
        ['0000:17:00.0', [0]],
        ['0000:31:00.0', [0]],
        ['0000:98:00.0', [1]],
        ['0000:b1:00.0', [1]],
      ],
    );
    // Node 0 has one GPU left: a pair must come from node 1.
    const pair = await r.kubelet.preferred(
      L40S,
      ['0000:17:00.0', '0000:98:00.0', '0000:b1:00.0'],
      [],
      2,
    );
    assert.deepEqual(pair, ['0000:98:00.0', '0000:b1:00.0']);
    // Must-include on node 0 keeps the rest on node 0.
    const withMust = await r.kubelet.preferred(L40S, GPUS, ['0000:31:00.0'], 2);
    assert.deepEqual(withMust, ['0000:31:00.0', '0000:17:00.0']);
    // A pod pinned to node 1 by Topology Manager.
    const got = await r.kubelet.allocate(L40S, 2, VM, 1);
    assert.deepEqual(got.ids, ['0000:98:00.0', '0000:b1:00.0']);
    // 6.8 has vfio cdevs: each device's /dev/vfio/devices/vfioN is passed too.
    const paths = got.response.devices.map((d) => d.host_path);
    assert.equal(paths[0], '/dev/vfio/vfio');
    assert.ok(paths.includes('/dev/vfio/11') && paths.includes('/dev/vfio/13'));
    assert.equal(paths.filter((p) => p.startsWith('/dev/vfio/devices/vfio')).length, 2);
  } finally {
    await r.close();
  }
});

test('Allocate and PreStartContainer on a device that is not ready fail with PT_ERR_DEVICE_NOT_READY', async () => {
  const r = await dpRig(labTopology(), { timing: { modprobeMs: 400, ueventMs: 250 } });
  try {
    await r.agent.claim(NIC.slice(0, 2), { withGroup: false, force: false });
    const dp = await r.startPlugins();
    // With paced modprobes the claims become ready as simulated time passes.
    await r.stepUntil(() => allHealth(dp.lastSent(E1000E)?.devices, 'Healthy'), 5_000);
    await r.kubelet.waitFor(() => allHealth(r.kubelet.view(E1000E)?.devices, 'Healthy'), 'healthy');
    // The module goes; no simulated time passes, so the agent has not noticed yet: the plugin
    // still lists the devices Healthy, and must not trust that list.
    r.kernel.rmmod('vfio_pci');
    await assert.rejects(
      r.kubelet.allocateIds(E1000E, [NIC[0]!], VM),
      (e: Error & { code?: number }) => {
        assert.equal(e.code, 9); // FAILED_PRECONDITION
        assert.match(
          e.message,
          /PT_ERR_DEVICE_NOT_READY: 0000:01:00.0 is on no driver, not vfio-pci/,
        );
        return true;
      },
    );
    await assert.rejects(r.kubelet.preStart(E1000E, [NIC[1]!]), /PT_ERR_DEVICE_NOT_READY/);
    // Once the plugin knows, the refusal names the reason it knows.
    await r.stepUntil(() => allHealth(dp.lastSent(E1000E)?.devices, 'Unhealthy'), 1_000);
    await assert.rejects(
      r.kubelet.allocateIds(E1000E, [NIC[1]!], VM),
      /PT_ERR_DEVICE_NOT_READY: 0000:02:00.0: /,
    );
    // An address that is not one of this resource's devices.
    await assert.rejects(r.kubelet.allocateIds(E1000E, [NIC[3]!], VM), /PT_ERR_DEVICE_NOT_FOUND/);
    assert.equal(r.kubelet.allocations.length, 0);
    assert.equal(dp.counters.get(E1000E, 'allocation_failures'), 3);
    assert.equal(dp.counters.get(E1000E, 'prestart_failures'), 1);
  } finally {
    await r.close();
  }
});

test('releasing the last claim of a resource stops its plugin: an empty list first, then the socket goes', async () => {
  const r = await dpRig(labTopology());
  try {
    await r.agent.claim([NIC[0]!], { withGroup: false, force: false });
    await r.startPlugins();
    await r.kubelet.waitFor(() => r.kubelet.view(E1000E)?.devices.length === 1, 'one device');
    const endpoint = r.kubelet.view(E1000E)?.reg.endpoint ?? '';
    await r.agent.release([NIC[0]!]);
    await r.plugins?.settled();
    await r.kubelet.waitFor(() => r.kubelet.view(E1000E)?.open === false, 'the stream to end');
    const msgs = r.kubelet.view(E1000E)?.messages ?? [];
    assert.deepEqual(msgs.at(-1)?.devices, [], 'the last message is an empty list');
    assert.equal(fs.existsSync(path.join(r.dir, endpoint)), false);
    assert.deepEqual(r.plugins?.resources(), []);
  } finally {
    await r.close();
  }
});

test('stopping the plugins sends each resource an empty list before closing', async () => {
  const r = await dpRig(labTopology());
  await r.agent.claim(NIC.slice(0, 2), { withGroup: false, force: false });
  const dp = await r.startPlugins();
  await r.kubelet.waitFor(() => r.kubelet.view(E1000E)?.devices.length === 2, 'devices');
  await dp.stop();
  await r.kubelet.waitFor(() => r.kubelet.view(E1000E)?.open === false, 'the stream to end');
  assert.deepEqual(r.kubelet.view(E1000E)?.messages.at(-1)?.devices, []);
  r.plugins = null;
  await r.close();
});

test('a resource is served only while it has claimed devices: none before the claim, registered within 1 s after', async () => {
  const r = await dpRig(labTopology());
  try {
    const dp = await r.startPlugins();
    assert.deepEqual(dp.resources(), []);
    assert.deepEqual(
      fs.readdirSync(r.dir).filter((f) => f !== 'kubelet.sock'),
      [],
      'no plugin socket without claims',
    );
    await r.agent.claim([NIC[2]!], { withGroup: false, force: false });
    // The claim's status is final only after the engine's pass; the resync picks it up.
    const ms = await r.stepUntil(() => dp.resources().some((x) => x.registered), 2_000, 50);
    assert.ok(ms <= 1_000, `plugin registered ${ms} simulated ms after the claim`);
    await r.kubelet.waitFor(
      () => allHealth(r.kubelet.view(E1000E)?.devices, 'Healthy'),
      'a plugin for it',
    );
    assert.deepEqual(
      dp.resources().map((x) => [x.resourceName, x.registered, x.devices.map((d) => d.address)]),
      [[E1000E, true, [NIC[2]]]],
    );
  } finally {
    await r.close();
  }
});

test('per-device resource names: one plugin per chosen device, each registered; the others pooled', async () => {
  const r = await dpRig(labTopology(), {
    source: { perDeviceNode: 'node1', perDevice: (a) => a !== NIC[2] },
  });
  try {
    await r.agent.claim(NIC.slice(0, 3), { withGroup: false, force: false });
    await r.startPlugins();
    const names = ['intel.com/node1-000001000', 'intel.com/node1-000002000'];
    await r.kubelet.waitFor(
      () => names.every((n) => r.kubelet.view(n)?.devices.length === 1),
      'two per-device resources',
    );
    assert.equal(r.kubelet.view(names[1]!)?.devices[0]?.ID, NIC[1]);
    await r.kubelet.waitFor(() => r.kubelet.view(E1000E)?.devices.length === 1, 'pooled one');
    assert.equal(r.kubelet.view(E1000E)?.devices[0]?.ID, NIC[2]);
    const res = await r.kubelet.allocateIds(names[0]!, [NIC[0]!]);
    assert.deepEqual(res.envs, { 'PCI_RESOURCE_INTEL_COM_NODE1-000001000': NIC[0] });
  } finally {
    await r.close();
  }
});

test('simulated kernel: vfio cdevs on 6.6+ only, lowest free minor, gone after unbind', async () => {
  const gpu = new SimKernel(await gpuServer());
  const h = gpu.port();
  const a = GPUS[0] as PciAddress;
  const b = GPUS[1] as PciAddress;
  for (const x of [a, b]) {
    await h.writeDeviceAttr(x, 'driver_override', 'vfio-pci');
    await h.unbindDevice(x);
    await h.loadModule('vfio_pci');
    await h.probeDevice(x);
  }
  assert.equal((await h.readDeviceLinks(a)).vfioDev, 'vfio0');
  assert.equal((await h.readDeviceLinks(b)).vfioDev, 'vfio1');
  await h.unbindDevice(a);
  assert.equal((await h.readDeviceLinks(a)).vfioDev, null);
  await h.probeDevice(a);
  assert.equal((await h.readDeviceLinks(a)).vfioDev, 'vfio0', 'the freed minor is reused');

  const lab = new SimKernel(labTopology());
  const l = lab.port();
  await l.writeDeviceAttr(NIC[0]!, 'driver_override', 'vfio-pci');
  await l.unbindDevice(NIC[0]!);
  await l.loadModule('vfio_pci');
  await l.probeDevice(NIC[0]!);
  assert.equal(lab.driverOf(NIC[0]!), 'vfio-pci');
  assert.equal((await l.readDeviceLinks(NIC[0]!)).vfioDev, null, 'no cdev on 6.1');
});

test('Linux host: readDeviceLinks names the vfio cdev from <dev>/vfio-dev of a device on vfio-pci, null without the folder', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'pt-vfiodev-'));
  try {
    await writeSysfsTree(await loadTopology('qemu-guest'), root);
    const h = new LinuxHost({ root, uevents: false });
    const a = NIC[0]!;
    assert.equal((await h.readDeviceLinks(a)).vfioDev, null);
    // As the kernel leaves it: bound to vfio-pci, which registered the vfio device.
    const dev = fs.realpathSync(path.join(root, 'sys/bus/pci/devices', a));
    const vfioPci = path.join(root, 'sys/bus/pci/drivers/vfio-pci');
    fs.mkdirSync(vfioPci, { recursive: true });
    fs.rmSync(path.join(dev, 'driver'));
    fs.symlinkSync(path.relative(dev, vfioPci), path.join(dev, 'driver'));
    fs.mkdirSync(path.join(dev, 'vfio-dev/vfio7'), { recursive: true });
    assert.equal((await h.readDeviceLinks(a)).vfioDev, 'vfio7');
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
