#!/usr/bin/env node
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent } from './agent/agent.js';
import { handleRequest } from './agent/routes.js';
import { requestAgent, startControlServer } from './agent/socket-server.js';
import { addAgentCommands, type AgentEnv, type AgentTuning } from './cli/agent-commands.js';
import { runDemo } from './cli/demo.js';
import {
  buildProgram,
  DEFAULTS,
  type CliEnv,
  type GlobalOptions,
  type Runtime,
} from './cli/program.js';
import { PtError, errorCodes, isPtError } from './errors.js';
import { systemClock } from './host/clock.js';
import { loadPciIds, loadTopology, writeFileAtomic } from './host/files.js';
import { LinuxHost } from './host/linux.js';
import type { HostPort } from './host/port.js';
import { SimKernel } from './host/sim/kernel.js';
import { FileHistory } from './state/file-history.js';
import { FileStore } from './state/file-store.js';
import { acquireStateLock } from './state/file-lock.js';
import { MemoryHistory } from './state/history.js';
import { MemoryStore } from './state/model.js';
import { makeLogger } from './util/logger.js';
import { kubernetesAdapter } from './k8s/run.js';

/** The composition root: the only place that builds real adapters. */
async function makeRuntime(opts: GlobalOptions): Promise<Runtime> {
  const logger = makeLogger(opts.logLevel, opts.logFormat);
  const { names } = await loadPciIds(opts.pciIds);
  if (opts.sim !== undefined) {
    const topo = await loadTopology(opts.sim);
    const sim = new SimKernel(topo, systemClock);
    // A simulated host never shares state with the real one.
    const stateDir = opts.stateDir ?? path.join(os.tmpdir(), 'passthru-sim', topo.name);
    return {
      host: sim.port(),
      names,
      sim,
      logger,
      opts,
      stateDir,
      socket: opts.socket ?? path.join(stateDir, 'agent.sock'),
    };
  }
  const host = new LinuxHost({ root: opts.root, modprobePath: opts.modprobe });
  return {
    host,
    names,
    sim: null,
    logger,
    opts,
    stateDir: opts.stateDir ?? DEFAULTS.stateDir,
    socket: opts.socket ?? DEFAULTS.socket,
  };
}

function hostFor(rt: Runtime, tuning: AgentTuning): HostPort {
  if (rt.sim || tuning.uevents !== false) return rt.host;
  return new LinuxHost({ root: rt.opts.root, modprobePath: rt.opts.modprobe, uevents: false });
}

const agentEnv: AgentEnv = {
  openAgent: (rt, tuning, exclusive) => {
    if (exclusive === true) acquireStateLock(rt.stateDir);
    return Promise.resolve(
      new Agent({
        host: hostFor(rt, tuning),
        store: new FileStore(rt.stateDir),
        history: new FileHistory(rt.stateDir),
        clock: systemClock,
        logger: rt.logger,
        names: rt.names,
        ...(tuning.engine ? { engine: tuning.engine } : {}),
        ...(tuning.keeper ? { keeper: tuning.keeper } : {}),
      }),
    );
  },
  serveAgent: async (rt, agent, kubernetes) => {
    const ac = new AbortController();
    const stop = (): void => {
      rt.logger.info('stopping');
      ac.abort();
    };
    // Before touching anything: a second agent would fight the first over the same devices.
    if ((await requestAgent(rt.socket, 'GET', '/v1/status')) !== null) {
      throw new PtError('PT_ERR_INVALID_ARGUMENT', `an agent is already running on ${rt.socket}`);
    }
    acquireStateLock(rt.stateDir);
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
    await agent.start();
    const server = await startControlServer(
      rt.socket,
      (m, u, b) => handleRequest(agent, rt.sim, m, u, b),
      rt.logger,
    );
    rt.logger.info(
      { host: rt.host.description, stateDir: rt.stateDir, socket: rt.socket },
      'agent running',
    );
    const k8s =
      kubernetes === undefined
        ? null
        : kubernetesAdapter(agent, rt.host, rt.names, systemClock, rt.logger, {
            node: process.env.NODE_NAME,
            kubeconfig: kubernetes.kubeconfig,
          });
    try {
      await Promise.all([agent.run(ac.signal), k8s?.run(ac.signal)]);
    } finally {
      await server.close();
    }
  },
  requestAgent,
  requireRoot: (rt, what) => {
    // Simulated hosts and trees under --root need no privilege; the live host does.
    if (rt.sim || path.resolve(rt.opts.root) !== '/' || process.getuid?.() === 0) return;
    throw new PtError(
      'PT_ERR_PERMISSION',
      `${what} writes to sysfs and ${rt.stateDir}: run it as root`,
    );
  },
  writeFiles: async (files) => {
    for (const f of files) await writeFileAtomic(f.path, f.content, f.mode);
  },
  agentCommandPath: () => `${process.execPath} ${fileURLToPath(import.meta.url)}`,
  demo: async (rt, keepRunning) => {
    const topo = await loadTopology(rt.opts.sim ?? 'qemu-guest');
    // Paced like the real kernel under QEMU (real-kernel-lab.md), so the timings mean something.
    const sim = new SimKernel(topo, systemClock, { timing: { modprobeMs: 400, ueventMs: 250 } });
    // The narration tells the story; the log would repeat it on stderr.
    const logger = rt.logger.child({}, { level: 'error' });
    const agent = new Agent({
      host: sim.port(),
      store: new MemoryStore(),
      history: new MemoryHistory(),
      clock: systemClock,
      logger,
      names: rt.names,
    });
    await agent.start();
    const ac = new AbortController();
    const loops = agent.run(ac.signal);
    const realHost = rt.sim ? rt.host : new LinuxHost({ root: rt.opts.root, uevents: false });
    await runDemo({ realHost, sim, agent, clock: systemClock, names: rt.names, out: env.out });
    if (keepRunning) {
      const socket = path.join(os.tmpdir(), 'passthru-sim', topo.name, 'agent.sock');
      const server = await startControlServer(
        socket,
        (m, u, b) => handleRequest(agent, sim, m, u, b),
        rt.logger,
      );
      env.out(
        `\nThe simulated agent keeps running (Ctrl-C stops it). Try:\n  passthru --sim ${topo.name} claim 0000:03:00.0\n  passthru --sim ${topo.name} sim modprobe-r vfio_pci\n  passthru --sim ${topo.name} status\n`,
      );
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await server.close();
    }
    ac.abort();
    await loops;
  },
};

const env: CliEnv = {
  out: (text) => {
    process.stdout.write(text);
  },
  makeRuntime,
  writeOutput: (file, text) => writeFileAtomic(file, text, 0o644),
  setExitCode: (code) => {
    process.exitCode = code;
  },
  extend: (program, ctx) => {
    addAgentCommands(program, ctx, agentEnv);
  },
};

try {
  await buildProgram(env).parseAsync(process.argv);
} catch (e) {
  if (isPtError(e)) {
    process.stderr.write(`passthru: ${e.code}: ${e.message}\n`);
    process.exitCode = errorCodes[e.code].exit;
  } else {
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`passthru: PT_ERR_INTERNAL: ${msg}\n`);
    if (process.env.PASSTHRU_DEBUG === '1' && e instanceof Error)
      process.stderr.write(`${e.stack ?? ''}\n`);
    process.exitCode = errorCodes.PT_ERR_INTERNAL.exit;
  }
}
