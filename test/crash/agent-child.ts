// The agent process of the crash harness: composed by src/process/serve.ts exactly as
// `passthru agent` composes it (FileStore, FileHistory, the state lock, the control socket,
// Agent), on a HostPort that forwards to the simulated kernel in the harness's process.
import { pino } from 'pino';
import { composeAgent, serveAgent, type AgentProcessDeps } from '../../src/process/serve.js';
import { systemClock } from '../../src/host/clock.js';
import { emptyPciIds } from '../../src/pci/pciids.js';
import { RemoteHost } from './host-bridge.js';

export interface ChildConfig {
  bridge: string;
  stateDir: string;
  socket: string;
  /** Tuning passed through untyped, so engine option renames do not break the harness. */
  engine: Record<string, number>;
  keeper: Record<string, number>;
}

// Modules are loaded before the configuration arrives on stdin: the harness keeps one such
// process warm, so a restart after SIGKILL costs the agent's start, not Node's.
const cfg = await new Promise<ChildConfig>((resolve) => {
  let buf = '';
  process.stdin.on('data', (c: Buffer) => {
    buf += c.toString('utf8');
    const nl = buf.indexOf('\n');
    if (nl >= 0) {
      process.stdin.pause();
      resolve(JSON.parse(buf.slice(0, nl)) as ChildConfig);
    }
  });
  // The harness went away before using this process.
  process.stdin.on('end', () => process.exit(0));
});
const host = await RemoteHost.connect(cfg.bridge, 'sim');
const deps: AgentProcessDeps = {
  host,
  stateDir: cfg.stateDir,
  socket: cfg.socket,
  clock: systemClock,
  // Errors only, synchronously to stderr: the harness shows them with a failing round.
  logger: pino({ level: 'error', base: null }, pino.destination({ dest: 2, sync: true })),
  names: emptyPciIds,
  sim: null,
  engine: cfg.engine,
  keeper: cfg.keeper,
};
await serveAgent(deps, composeAgent(deps, false));
// The socket to the machine would keep the process alive after a clean stop.
process.exit(0);
