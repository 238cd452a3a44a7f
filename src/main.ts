#!/usr/bin/env node
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AgentProcessDeps } from './process/serve.js';
import type { requestAgent } from './process/socket-client.js';
import type { AgentEnv, AgentTuning } from './cli/agent-commands.js';
import {
  buildProgram,
  commandOf,
  BASE_COMMANDS,
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
import type { SimKernel } from './host/sim/kernel.js';
import {
  checkPrivateDir,
  currentUid,
  ensureOneLevel,
  ensurePrivateDir,
  simBaseDir,
} from './process/file-private-dir.js';
import { LOG_LEVELS, lazyLogger } from './util/logger.js';

// Modules only some commands use are imported where they are used: `passthru list` loads
// neither the agent, the API server (fastify), the simulator, pino, the import parser nor the
// topology validator (typebox) (issue 11: start-up).

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
  const logger = lazyLogger(opts.logLevel, opts.logFormat);
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
    const { SimKernel } = await import('./host/sim/kernel.js');
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
      get logger() {
        return logger();
      },
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
    get logger() {
      return logger();
    },
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
  const { writeFileAtomic } = await import('./process/file-atomic.js');
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
async function processDeps(rt: Runtime, tuning: AgentTuning): Promise<AgentProcessDeps> {
  const [{ LIVE_LOCK_DIR }, { UDEV_RULES_PATH }] = await Promise.all([
    import('./process/file-lock.js'),
    import('./agent/udev-rules.js'),
  ]);
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

/** Kubernetes mode to the device plugins: the PCIDevice's resource name, once the adapter runs. */
interface K8sNames {
  of: ((address: string) => string | undefined) | null;
}

/** `agent --kubernetes`: the adapter runs beside the agent's loops. */
function k8sLoop(
  rt: Runtime,
  k: { kubeconfig?: string },
  names: K8sNames,
): NonNullable<AgentProcessDeps['alongside']> {
  return async (agent, signal, pods) => {
    // Loaded only in Kubernetes mode: the client library is a large share of the agent's memory.
    const { kubernetesAdapter } = await import('./k8s/run.js');
    const adapter = kubernetesAdapter(agent, rt.host, rt.names, systemClock, rt.logger, {
      node: process.env.NODE_NAME,
      kubeconfig: k.kubeconfig,
      // The pod holding each claimed device, when the device plugins run (null otherwise).
      podDevices: async () => (await pods()) ?? [],
    });
    names.of = (a) => adapter.resourceNameOf(a);
    await adapter.run(signal);
  };
}

const agentEnv: AgentEnv = {
  openAgent: async (rt, tuning, exclusive) => {
    await prepareStateDir(rt, exclusive === true);
    const { composeAgent } = await import('./process/serve.js');
    return composeAgent(await processDeps(rt, tuning), exclusive === true);
  },
  serveAgent: async (rt, agent, serve = {}) => {
    await prepareStateDir(rt, true);
    const { serveAgent } = await import('./process/serve.js');
    const k8sNames: K8sNames = { of: null };
    await serveAgent(
      {
        ...(await processDeps(rt, {})),
        ...(serve.devicePluginDir !== undefined
          ? {
              devicePlugins: {
                dir: serve.devicePluginDir,
                resourceNameOf: (a: string) => k8sNames.of?.(a),
              },
            }
          : {}),
        ...(serve.kubernetes !== undefined
          ? { alongside: k8sLoop(rt, serve.kubernetes, k8sNames) }
          : {}),
        listen: serve.listen,
        announce: env.out,
      },
      agent,
    );
  },
  requestAgent: async (...args: Parameters<typeof requestAgent>) =>
    (await import('./process/socket-client.js')).requestAgent(...args),
  apiToken: async (rt) => {
    await prepareStateDir(rt, true);
    const { loadOrCreateToken } = await import('./process/file-token.js');
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
    const [
      { SimKernel },
      { Agent },
      { MemoryStore },
      { MemoryHistory },
      { runDemo },
      { AgentLifecycle },
      { buildApiServer },
      { AgentMetrics },
      { HttpAuth },
      { parseListenAddress },
      { loadOrCreateToken },
      { registerWebPage },
    ] = await Promise.all([
      import('./host/sim/kernel.js'),
      import('./agent/agent.js'),
      import('./state/model.js'),
      import('./state/history.js'),
      import('./cli/demo.js'),
      import('./agent/routes.js'),
      import('./process/socket-server.js'),
      import('./http/metrics.js'),
      import('./http/auth.js'),
      import('./http/listen-address.js'),
      import('./process/file-token.js'),
      import('./web/page.js'),
    ]);
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
    const { packageVersion } = await import('./process/package-root.js');
    const metrics = new AgentMetrics(agent, { version: packageVersion() });
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

// The agent's commands (and what they import) load only when the command line may name one:
// not for list, groups, doctor or snapshot.
const command = commandOf(process.argv);
const agentCommands =
  command !== null && BASE_COMMANDS.has(command) ? null : await import('./cli/agent-commands.js');

// A reader that goes away (`passthru list --json | head`) is no failure: the rest of the output
// is dropped and the command finishes as it would have, with its own exit status; exiting at
// once could cut a direct-mode claim short. Any other failure to write stdout (a full disk)
// is reported once and fails the command. The agent and the demo drop their output either way:
// a controller must not stop because its stdout did (docs/cli.md).
const LONG_RUNNING = new Set(['agent', 'demo']);
let stdoutGone = false;
function stdoutFailed(e: NodeJS.ErrnoException): void {
  if (stdoutGone || (command !== null && LONG_RUNNING.has(command))) return;
  stdoutGone = true;
  if (e.code === 'EPIPE') return;
  process.stderr.write(
    `passthru: PT_ERR_STORE_IO: cannot write the output: ${e.code ?? e.message}\n`,
  );
  process.exitCode = errorCodes.PT_ERR_STORE_IO.exit;
}
process.stdout.on('error', stdoutFailed);

const env: CliEnv = {
  out: (text) => {
    process.stdout.write(text);
  },
  makeRuntime,
  writeOutput: (file, text) => writeUserFile(file, text, 0o644),
  // Only `import` reads input files: the reader loads with it.
  readLines: async (...args) => (await import('./process/read-lines.js')).readLines(...args),
  setExitCode: (code) => {
    process.exitCode = code;
  },
  extend: (program, ctx) => {
    agentCommands?.addAgentCommands(program, ctx, agentEnv);
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

// A read-only one-shot command is done once its output is out: exit now rather than let Node
// free the heap page by page on the way out (3-6 ms of a 1000-function `list --json`, issue 11).
// The exit handlers still flush the log (util/logger.ts).
// A write that failed at once (a file on a full disk) reports its error only on a later tick.
if (agentCommands === null && process.stdout.writableLength === 0) {
  const failed = process.stdout.errored;
  if (failed !== null) stdoutFailed(failed);
  process.exit();
}

// Log lines still queued for a stderr pipe nobody reads would keep the process alive forever
// (the logger retries the full pipe): give them a second, then exit.
setTimeout(() => {
  process.exit();
}, 1_000).unref();
