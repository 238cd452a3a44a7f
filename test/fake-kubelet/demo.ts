/**
 * Shows the device plugin end to end without a cluster: the agent on the simulated 2-socket GPU
 * server, the plugins, and the fake kubelet over real unix sockets. Prints what the kubelet sees.
 * Usage: npm run build && node dist/test/fake-kubelet/demo.js
 */
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { validateTopology } from '../../src/topology/format.js';
import { parsePciAddress } from '../../src/pci/address.js';
import { dpRig, L40S } from './rig.js';

const out = (s: string): void => {
  process.stdout.write(`${s}\n`);
};
const topo = validateTopology(
  JSON.parse(await readFile(path.join(process.cwd(), 'topologies/gpu-server-2s.json'), 'utf8')),
);
const r = await dpRig(topo, { timing: { modprobeMs: 400, ueventMs: 250 } });
const gpus = ['0000:17:00.0', '0000:31:00.0', '0000:98:00.0', '0000:b1:00.0'].map((a) =>
  parsePciAddress(a),
);
const list = (): string =>
  (r.kubelet.view(L40S)?.devices ?? [])
    .map((d) => `${d.ID} ${d.health} numa=${d.topology?.nodes.map((n) => n.ID).join(',') ?? '-'}`)
    .join('  ');
try {
  // The claim completes as simulated time passes (paced modprobe).
  const claiming = r.agent.claim(gpus, { withGroup: true, force: false });
  const dp = await r.startPlugins();
  await r.stepUntil(
    () => (dp.lastSent(L40S)?.devices ?? []).some((d) => d.health === 'Healthy'),
    5_000,
  );
  await r.kubelet.waitFor(
    () =>
      (r.kubelet.view(L40S)?.devices ?? []).every((d) => d.health === 'Healthy') &&
      r.kubelet.view(L40S)?.devices.length === 4,
    'four healthy GPUs',
  );
  await claiming;
  const reg = r.kubelet.view(L40S)?.reg;
  out(`registered: ${reg?.resourceName} at ${reg?.endpoint} (${reg?.version})`);
  out(`kubelet sees: ${list()}`);

  r.kernel.modprobeRemove('vfio_pci');
  out('someone ran: modprobe -r vfio_pci');
  const down = await r.stepUntil(
    () => (dp.lastSent(L40S)?.devices ?? []).every((d) => d.health === 'Unhealthy'),
    5_000,
  );
  await r.kubelet.waitFor(
    () => (r.kubelet.view(L40S)?.devices ?? []).every((d) => d.health === 'Unhealthy'),
    'Unhealthy',
  );
  out(`after ${down} simulated ms the kubelet sees: ${list()}`);
  const up = await r.stepUntil(
    () => (dp.lastSent(L40S)?.devices ?? []).every((d) => d.health === 'Healthy'),
    10_000,
  );
  await r.kubelet.waitFor(
    () => (r.kubelet.view(L40S)?.devices ?? []).every((d) => d.health === 'Healthy'),
    'Healthy',
  );
  out(`recovered and verified ${up} simulated ms later: ${list()}`);

  await r.kubelet.restart();
  await r.kubelet.waitFor(
    () =>
      r.kubelet.view(L40S)?.reg.instance === r.kubelet.instance &&
      r.kubelet.view(L40S)?.devices.length === 4,
    're-registration',
  );
  out(
    `kubelet restarted (all sockets deleted): plugin re-registered with kubelet #${r.kubelet.instance}`,
  );

  const vm = { namespace: 'default', name: 'virt-launcher-gpu-vm', container: 'compute' };
  const got = await r.kubelet.allocate(L40S, 2, vm, 1);
  out(`a VM asking for 2 GPUs on NUMA node 1 got: ${got.ids.join(', ')}`);
  for (const [k, v] of Object.entries(got.response.envs)) out(`  env ${k}=${v}`);
  for (const d of got.response.devices) out(`  device ${d.host_path} (${d.permissions})`);
  out(`counters: ${JSON.stringify(dp.counters.snapshot()[L40S])}`);
} finally {
  await r.close();
}
