/**
 * Device plugin figures, over real unix sockets between the plugins and the fake kubelet:
 * - Allocate latency (real ms) over N calls for two devices of one resource, each call
 *   re-verifying both devices on the simulated host;
 * - time from a vfio module loss to Unhealthy on the ListAndWatch stream, over R losses:
 *   simulated ms from the removal (the kernel paced as measured on the real one: uevents
 *   250 ms after removal, modprobe 400 ms), and real ms from the agent noticing (module.lost)
 *   to the kubelet receiving the list.
 * Prints figures; asserts nothing. Usage: node dist/bench/deviceplugin.js [calls] [losses]
 */
import { performance } from 'node:perf_hooks';
import { labTopology, NIC } from '../test/helpers.js';
import { dpRig, E1000E } from '../test/fake-kubelet/rig.js';

const calls = Number(process.argv[2] ?? 1000);
const losses = Number(process.argv[3] ?? 50);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
}

const f = (x: number): string => x.toFixed(2);

async function allocateLatency(): Promise<number[]> {
  const r = await dpRig(labTopology());
  try {
    await r.agent.claim(NIC, { withGroup: false, force: false });
    await r.startPlugins();
    await r.kubelet.waitFor(() => r.kubelet.view(E1000E)?.devices.length === 4, 'devices');
    const ids = [NIC[2]!, NIC[0]!];
    for (let i = 0; i < 50; i++) await r.kubelet.allocateIds(E1000E, ids); // warm-up
    const out: number[] = [];
    for (let i = 0; i < calls; i++) {
      const t0 = performance.now();
      await r.kubelet.allocateIds(E1000E, ids);
      out.push(performance.now() - t0);
    }
    return out;
  } finally {
    await r.close();
  }
}

async function lossToUnhealthy(
  uevents: boolean,
): Promise<{ simMs: number[]; realMs: number[]; ok: number }> {
  const r = await dpRig(labTopology(), { timing: { modprobeMs: 400, ueventMs: 250 }, uevents });
  const simMs: number[] = [];
  const realMs: number[] = [];
  let ok = 0;
  try {
    await r.agent.claim(NIC, { withGroup: false, force: false });
    const dp = await r.startPlugins();
    const health = (h: string): boolean =>
      (r.kubelet.view(E1000E)?.devices ?? []).every((d) => d.health === h);
    await r.stepUntil(
      () => (dp.lastSent(E1000E)?.devices ?? []).every((d) => d.health === 'Healthy'),
      5_000,
    );
    await r.kubelet.waitFor(() => health('Healthy'), 'healthy');
    let noticedAt = 0;
    r.agent.bus.subscribe((e) => {
      if (e.type === 'module.lost') noticedAt = performance.now();
    });
    for (let i = 0; i < losses; i++) {
      // Remove at a varying phase of the agent's 250 ms poll.
      await r.clock.advance((i * 37) % 250);
      await dp.settled();
      for (const m of ['vfio_pci', 'vfio_pci_core', 'vfio_virqfd']) r.kernel.rmmod(m);
      const sent = (): boolean =>
        (dp.lastSent(E1000E)?.devices ?? []).every((d) => d.health === 'Unhealthy');
      const ms = await r.stepUntil(sent, 5_000, 5);
      await r.kubelet.waitFor(() => health('Unhealthy'), 'Unhealthy on the stream');
      realMs.push(performance.now() - noticedAt);
      simMs.push(ms);
      await r.stepUntil(
        () => (dp.lastSent(E1000E)?.devices ?? []).every((d) => d.health === 'Healthy'),
        10_000,
        10,
      );
      await r.kubelet.waitFor(() => health('Healthy'), 'Healthy on the stream');
      ok++;
    }
  } finally {
    await r.close();
  }
  return { simMs, realMs, ok };
}

const a = await allocateLatency();
process.stdout.write(
  `Allocate (2 devices, re-verified on the host), ${calls} calls over a unix socket: ` +
    `p50 ${f(pct(a, 50))} ms  p99 ${f(pct(a, 99))} ms  max ${f(Math.max(...a))} ms (real)\n`,
);
for (const uevents of [true, false]) {
  const l = await lossToUnhealthy(uevents);
  process.stdout.write(
    `module loss to Unhealthy on ListAndWatch, ${l.ok} losses, ${uevents ? 'uevents (250 ms late)' : 'polling only (250 ms)'}:\n` +
      `  removal to Unhealthy sent: p50 ${pct(l.simMs, 50)}  p99 ${pct(l.simMs, 99)}  max ${Math.max(...l.simMs)} simulated ms (5 ms steps)\n` +
      `  agent noticed to kubelet received: p50 ${f(pct(l.realMs, 50))}  p99 ${f(pct(l.realMs, 99))} ms (real)\n`,
  );
}
