#!/usr/bin/env node
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent } from './agent/agent.js';
import { AgentLifecycle } from './agent/routes.js';
import { composeAgent, serveAgent, type AgentProcessDeps } from './process/serve.js';
import { UDEV_RULES_PATH } from './agent/udev-rules.js';
import { requestAgent } from './process/socket-client.js';
import { buildApiServer } from './process/socket-server.js';
import { addAgentCommands, type AgentEnv, type AgentTuning } from './cli/agent-commands.js';
import { runDemo } from './cli/demo.js';
import {
  buildProgram,
  DEFAULTS,
  type CliEnv,
  type GlobalOptions,
  type Runtime,
} from './cli/program.js';
import { PtError, errnoOf, errorCodes, isPtError } from './errors.js';
import { systemClock } from './host/clock.js';
import { loadPciIds, loadTopology } from './host/files.js';
import { LinuxHost } from './host/linux/host.js';
import type { HostPort } from './host/port.js';
import { SimKernel } from './host/sim/kernel.js';
import { writeFileAtomic } from './process/file-atomic.js';
import { loadOrCreateToken } from './process/file-token.js';
import { HttpAuth } from './http/auth.js';
import { parseListenAddress } from './http/listen-address.js';
import { AgentMetrics } from './http/metrics.js';
import { registerWebPage } from './web/page.js';
import { LIVE_LOCK_DIR } from './process/file-lock.js';
import { MemoryHistory } from './state/history.js';
import { MemoryStore } from './state/model.js';
import {
  checkPrivateDir,
  currentUid,
  ensureOneLevel,
  ensurePrivateDir,
  simBaseDir,
} from './process/file-private-dir.js';
import { LOG_LEVELS, makeLogger } from './util/logger.js';

/**
 * Where a simulated host keeps its state when no --state-dir is given: a per-user folder
 * ($XDG_RUNTIME_DIR/passthru-sim, else passthru-sim-<uid> under the temp dir), never a shared
 * one: another user could plant symlinks there (adversarial finding 3). Created and checked
 * by prepareStateDir, not here: `list` needs no state.
 */
function simStateDir(name: string): { base: string; dir: string } {
  const xdg = process.env.XDG_RUNTIME_DIR;
  const base =
    xdg !== undefined && path.isAbsolute(xdg)
      ? path.join(xdg, 'passthru-sim')
      : path.join(os.tmpdir(), `passthru-sim-${currentUid()}`);
  return { base, dir: path.join(base, name) };
}

/** How each runtime's state folder is made safe before the agent uses it. */
const stateDirPreparers = new WeakMap<Runtime, (create: boolean) => Promise<void>>();

async function prepareStateDir(rt: Runtime, create: boolean): Promise<void> {
  await stateDirPreparers.get(rt)?.(create);
}

function checkLogOptions(opts: GlobalOptions): void {
  // Commander checks the flags' choices; values from the environment arrive unchecked.
  if (!(LOG_LEVELS as readonly string[]).includes(opts.logLevel))
    throw new PtError(
      'PT_ERR_INVALID_ARGUMENT',
      `log level must be one of ${LOG_LEVELS.join(', ')}, not ${JSON.stringify(opts.logLevel)}`,
    );
  const format: string = opts.logFormat;
  if (format !== 'json' && format !== 'pretty')
    throw new PtError(
      'PT_ERR_INVALID_ARGUMENT',
      `log format must be json or pretty, not ${JSON.stringify(format)}`,
    );
}

/** The composition root: the only place that builds real adapters. */
async function makeRuntime(opts: GlobalOptions): Promise<Runtime> {
  checkLogOptions(opts);
  const logger = await makeLogger(opts.logLevel, opts.logFormat);
  const { names } = await loadPciIds(opts.pciIds);
  const uid = currentUid();
  const explicit = (create: boolean, dir: string) => async (): Promise<void> => {
    const rule = {
      uid,
      privateToOwner: false,
      followSymlink: true,
      what: '--state-dir',
      allowRootOwner: !create,
    };
    if (create) await ensurePrivateDir(dir, rule);
    else await checkPrivateDir(dir, rule).catch(ignoreMissing);
  };
  if (opts.sim !== undefined) {
    const topo = await loadTopology(opts.sim);
    let sim: SimKernel;
    try {
      sim = new SimKernel(topo, systemClock);
    } catch (e) {
      if (isPtError(e)) throw e;
      // The topology passed validation but the simulated kernel met a shape it cannot model.
      throw new PtError(
        'PT_ERR_TOPOLOGY_INVALID',
        `topology ${topo.name} cannot be simulated: ${e instanceof Error ? e.message : String(e)}`,
      );
    }
    // A simulated host never shares state with the real one.
    const def = simStateDir(topo.name);
    const stateDir = opts.stateDir !== undefined ? path.resolve(opts.stateDir) : def.dir;
    const rt: Runtime = {
      host: sim.port(),
      names,
      sim,
      logger,
      opts,
      stateDir,
      socket:
        opts.socket !== undefined ? path.resolve(opts.socket) : path.join(stateDir, 'agent.sock'),
    };
    stateDirPreparers.set(rt, async (create) => {
      if (opts.stateDir !== undefined) return explicit(create, stateDir)();
      const rule = {
        uid,
        privateToOwner: true,
        followSymlink: false,
        what: 'simulated-host folder',
      };
      if (!create) {
        await checkPrivateDir(def.base, rule).catch(ignoreMissing);
        await checkPrivateDir(def.dir, rule).catch(ignoreMissing);
        return;
      }
      await simBaseDir({ xdgRuntimeDir: process.env.XDG_RUNTIME_DIR, tmpDir: os.tmpdir(), uid });
      await ensureOneLevel(def.dir, rule);
    });
    return rt;
  }
  const root = path.resolve(opts.root);
  const host = new LinuxHost({ root: opts.root, modprobePath: opts.modprobe });
  // A tree under --root is not the live host: its state and socket live in the tree.
  const under = (p: string): string => (root === '/' ? p : path.join(root, p));
  const stateDir =
    opts.stateDir !== undefined ? path.resolve(opts.stateDir) : under(DEFAULTS.stateDir);
  const rt: Runtime = {
    host,
    names,
    sim: null,
    logger,
    opts,
    stateDir,
    socket: opts.socket !== undefined ? path.resolve(opts.socket) : under(DEFAULTS.socket),
  };
  stateDirPreparers.set(rt, (create) => explicit(create, stateDir)());
  return rt;
}

function ignoreMissing(e: unknown): void {
  if (errnoOf(e) !== 'ENOENT') throw e;
}

/** An output file the user named (snapshot -o, boot-config): errors with a documented code. */
async function writeUserFile(file: string, text: string, mode: number): Promise<void> {
  const st = await fs.lstat(file).catch(() => null);
  if (st?.isDirectory())
    throw new PtError('PT_ERR_INVALID_ARGUMENT', `${file} is a directory, not a file to write`);
  try {
    await writeFileAtomic(file, text, mode);
  } catch (e) {
    if (isPtError(e)) throw e;
    const errno = errnoOf(e);
    if (errno === 'EACCES' || errno === 'EPERM')
      throw new PtError('PT_ERR_PERMISSION', `cannot write ${file}: ${errno}`);
    if (errno === 'ENOSPC' || errno === 'EIO' || errno === 'EROFS' || errno === 'EDQUOT')
      throw new PtError('PT_ERR_STORE_IO', `cannot write ${file}: ${errno}`);
    throw new PtError('PT_ERR_INVALID_ARGUMENT', `cannot write ${file}: ${errno ?? String(e)}`);
  }
}

function hostFor(rt: Runtime, tuning: AgentTuning): HostPort {
  if (rt.sim || tuning.uevents !== false) return rt.host;
  return new LinuxHost({ root: rt.opts.root, modprobePath: rt.opts.modprobe, uevents: false });
}

/** The live host's lock lives in /run (tmpfs); simulated hosts and --root trees keep theirs. */
function processDeps(rt: Runtime, tuning: AgentTuning): AgentProcessDeps {
  const live = rt.sim === null && path.resolve(rt.opts.root) === '/';
  return {
    host: hostFor(rt, tuning),
    stateDir: rt.stateDir,
    socket: rt.socket,
    lockDir: live ? LIVE_LOCK_DIR : undefined,
    clock: systemClock,
    logger: rt.logger,
    names: rt.names,
    sim: rt.sim,
    engine: tuning.engine,
    keeper: tuning.keeper,
    // boot-config refuses --sim: a simulated host has no rules to keep.
    udevRules: rt.sim === null ? path.join(rt.opts.root, UDEV_RULES_PATH) : undefined,
  };
}

/** `agent --kubernetes`: the adapter runs beside the agent's loops. */
function k8sLoop(
  rt: Runtime,
  k: { kubeconfig?: string },
): (agent: Agent, signal: AbortSignal) => Promise<void> {
  return async (agent, signal) => {
    // Loaded only in Kubernetes mode: the client library is a large share of the agent's memory.
    const { kubernetesAdapter } = await import('./k8s/run.js');
    await kubernetesAdapter(agent, rt.host, rt.names, systemClock, rt.logger, {
      node: process.env.NODE_NAME,
      kubeconfig: k.kubeconfig,
    }).run(signal);
  };
}

const agentEnv: AgentEnv = {
  openAgent: async (rt, tuning, exclusive) => {
    await prepareStateDir(rt, exclusive === true);
    return composeAgent(processDeps(rt, tuning), exclusive === true);
  },
  serveAgent: async (rt, agent, serve = {}) => {
    await prepareStateDir(rt, true);
    await serveAgent(
      {
        ...processDeps(rt, {}),
        ...(serve.devicePluginDir !== undefined
          ? { devicePlugins: { dir: serve.devicePluginDir } }
          : {}),
        ...(serve.kubernetes !== undefined ? { alongside: k8sLoop(rt, serve.kubernetes) } : {}),
        listen: serve.listen,
        announce: env.out,
      },
      agent,
    );
  },
  requestAgent,
  apiToken: async (rt) => {
    await prepareStateDir(rt, true);
    return loadOrCreateToken(rt.stateDir);
  },
  requireRoot: (rt, what) => {
    // Simulated hosts and trees under --root need no privilege; the live host does.
    if (rt.sim || path.resolve(rt.opts.root) !== '/' || process.getuid?.() === 0) return;
    throw new PtError(
      'PT_ERR_PERMISSION',
      `${what} writes to sysfs and ${rt.stateDir}: run it as root`,
    );
  },
  writeFiles: async (files) => {
    for (const f of files) await writeUserFile(f.path, f.content, f.mode);
  },
  agentCommand: () => [process.execPath, fileURLToPath(import.meta.url)],
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
    await agent.start({ loadModules: true });
    const ac = new AbortController();
    const loops = agent.run(ac.signal);
    const uid = currentUid();
    const { dir } = simStateDir(topo.name);
    await simBaseDir({ xdgRuntimeDir: process.env.XDG_RUNTIME_DIR, tmpDir: os.tmpdir(), uid });
    await ensureOneLevel(dir, {
      uid,
      privateToOwner: true,
      followSymlink: false,
      what: 'simulated-host folder',
    });
    const lifecycle = new AgentLifecycle();
    lifecycle.running();
    const metrics = new AgentMetrics(agent);
    // The same token `passthru --sim <topology> token` prints: the simulated host's folder.
    const auth = new HttpAuth({
      token: await loadOrCreateToken(dir),
      now: () => systemClock.now(),
    });
    const apiCtx = { agent, sim, lifecycle, logger: rt.logger };
    const api = await buildApiServer(
      apiCtx,
      {},
      {
        auth,
        plugins: [
          (app) => {
            metrics.register(app);
          },
          (app) => {
            registerWebPage(app, {
              api: apiCtx,
              host: sim.port(),
              names: rt.names,
              clock: systemClock,
              auth,
            });
          },
        ],
      },
    );
    const tcp = await api.listenTcp(parseListenAddress('127.0.0.1:0'));
    env.out(
      `The agent's page: ${tcp.url} (HTTP API ${tcp.url}v1/status, metrics ${tcp.url}metrics)\n\n`,
    );
    const realHost = rt.sim ? rt.host : new LinuxHost({ root: rt.opts.root, uevents: false });
    await runDemo({ realHost, sim, agent, clock: systemClock, names: rt.names, out: env.out });
    if (keepRunning) {
      await api.listenUnix(path.join(dir, 'agent.sock'));
      env.out(
        `\nThe simulated agent keeps running (Ctrl-C stops it), its HTTP API on ${tcp.url}. Try:\n  passthru --sim ${topo.name} claim 0000:03:00.0\n  passthru --sim ${topo.name} sim modprobe-r vfio_pci\n  passthru --sim ${topo.name} status\n`,
      );
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
    } else {
      env.out(
        `\nThe HTTP API closes with the demo; \`passthru demo --keep-running\` keeps it open.\n`,
      );
    }
    await api.close();
    metrics.close();
    ac.abort();
    await loops;
  },
};

const env: CliEnv = {
  out: (text) => {
    process.stdout.write(text);
  },
  makeRuntime,
  writeOutput: (file, text) => writeUserFile(file, text, 0o644),
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

// Log lines still queued for a stderr pipe nobody reads would keep the process alive forever
// (the logger retries the full pipe): give them a second, then exit.
setTimeout(() => {
  process.exit();
}, 1_000).unref();
