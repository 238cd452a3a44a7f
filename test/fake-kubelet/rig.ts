import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ManualClock } from '../../src/host/clock.js';
import type { HostPort } from '../../src/host/port.js';
import { SimKernel, type SimTiming } from '../../src/host/sim/kernel.js';
import type { Topology } from '../../src/topology/format.js';
import { parsePciIds } from '../../src/pci/pciids.js';
import type { Agent } from '../../src/agent/agent.js';
import { MemoryStore } from '../../src/state/model.js';
import { silentLogger } from '../../src/util/logger.js';
import { AgentDeviceSource, type AgentSourceOptions } from '../../src/deviceplugin/agent-source.js';
import {
  startDevicePlugins,
  type DevicePluginOptions,
  type DevicePlugins,
} from '../../src/deviceplugin/manager.js';
import { FsPluginDir, type PluginDirPort } from '../../src/process/plugin-dir.js';
import { makeAgent, pollingOnly } from '../helpers.js';
import { FakeKubelet } from './kubelet.js';

/** The names the scenarios need, so resource names do not depend on the host's pci.ids. */
export const TEST_PCI_IDS = parsePciIds(
  [
    '8086  Intel Corporation',
    '\t100e  82540EM Gigabit Ethernet Controller',
    '\t10d3  82574L Gigabit Network Connection',
    '10de  NVIDIA Corporation',
    '\t22ba  AD102 High Definition Audio Controller',
    '\t26b9  AD102GL [L40S]',
    '',
  ].join('\n'),
);

export const E1000E = 'intel.com/82574L_GIGABIT_NETWORK_CONNECTION';
export const L40S = 'nvidia.com/AD102GL_L40S';
export const AD102_AUDIO = 'nvidia.com/AD102_HIGH_DEFINITION_AUDIO_CONTROLLER';

export interface DpRig {
  clock: ManualClock;
  kernel: SimKernel;
  agent: Agent;
  kubelet: FakeKubelet;
  plugins: DevicePlugins | null;
  dir: string;
  root: string;
  ac: AbortController;
  running: Promise<void>;
  /** Starts the plugins (after the test has claimed what it needs). */
  startPlugins(opts?: {
    watch?: boolean;
    options?: Partial<DevicePluginOptions>;
  }): Promise<DevicePlugins>;
  /** Advance simulated time in steps, letting the plugins finish their I/O after each. */
  stepUntil(pred: () => boolean, maxMs: number, stepMs?: number): Promise<number>;
  close(): Promise<void>;
}

export interface DpRigOptions {
  timing?: SimTiming;
  /** Without a uevent source the keeper relies on its poll alone (default true). */
  uevents?: boolean;
  source?: AgentSourceOptions;
}

/**
 * The agent on the simulated kernel with a manual clock, a fake kubelet on real unix sockets in
 * a short temporary folder (sun_path holds 107 bytes), and the plugins between them.
 */
export async function dpRig(topo: Topology, o: DpRigOptions = {}): Promise<DpRig> {
  const clock = new ManualClock(1_000_000);
  const kernel = new SimKernel(topo, clock, o.timing ? { timing: o.timing } : {});
  const host: HostPort = o.uevents === false ? pollingOnly(kernel.port()) : kernel.port();
  const { agent } = makeAgent(kernel, clock, new MemoryStore(), host, { names: TEST_PCI_IDS });
  // With paced modprobes the start waits on the manual clock: move it along.
  let started = false;
  const starting = agent.start().finally(() => {
    started = true;
  });
  await clock.advanceUntil(() => started, 10_000, 50);
  await starting;
  const ac = new AbortController();
  const running = agent.run(ac.signal);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'ptdp-'));
  const dir = path.join(root, 'dp');
  fs.mkdirSync(dir);
  const kubelet = new FakeKubelet(dir, path.join(root, 'pr.sock'));
  await kubelet.start();
  const r: DpRig = {
    clock,
    kernel,
    agent,
    kubelet,
    plugins: null,
    dir,
    root,
    ac,
    running,
    async startPlugins(so = {}) {
      const real = new FsPluginDir(dir);
      const port: PluginDirPort =
        so.watch === false
          ? Object.assign(Object.create(real) as PluginDirPort, { watch: () => null })
          : real;
      r.plugins = await startDevicePlugins({
        source: new AgentDeviceSource(agent, host, { names: TEST_PCI_IDS, ...o.source }),
        host,
        dir: port,
        clock,
        logger: silentLogger(),
        podResourcesSocket: kubelet.podResourcesSocket,
        ...(so.options ? { options: so.options } : {}),
      });
      return r.plugins;
    },
    async stepUntil(pred, maxMs, stepMs = 10) {
      const start = clock.now();
      await r.plugins?.settled();
      while (!pred() && clock.now() - start < maxMs) {
        await clock.advance(stepMs);
        await r.plugins?.settled();
      }
      return clock.now() - start;
    },
    async close() {
      await r.plugins?.stop();
      ac.abort();
      // A paced modprobe in flight sleeps on the manual clock: let it finish.
      let ended = false;
      const ending = running.finally(() => {
        ended = true;
      });
      await clock.advanceUntil(() => ended, 60_000, 50);
      await ending;
      await kubelet.stop();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
  return r;
}
