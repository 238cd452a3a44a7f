import { Command } from 'commander';
import { oneOf } from './options.js';
import { PtError } from '../errors.js';
import type { HostPort } from '../host/port.js';
import type { SimKernel } from '../host/sim/kernel.js';
import type { Topology } from '../topology/format.js';
import { discover } from '../pci/discovery.js';
import type { PciIdNames } from '../pci/pciids.js';
import type { ReadLines } from '../process/read-lines.js';
import { addImportCommand } from './commands/import.js';
import { LOG_LEVELS, type Logger, type LogFormat, type LogLevel } from '../util/logger.js';
import { deviceJson, filterDevices, groupViews, groupsText, listTable } from './views.js';

export interface GlobalOptions {
  root: string;
  sim?: string;
  pciIds?: string;
  stateDir?: string;
  socket?: string;
  modprobe: string;
  logLevel: LogLevel;
  logFormat: LogFormat;
}

/** What the composition root hands to commands: built once, from the global options. */
export interface Runtime {
  host: HostPort;
  names: PciIdNames;
  sim: SimKernel | null;
  logger: Logger;
  opts: GlobalOptions;
  /**
   * Resolved and absolute. With --sim: a private per-user folder per topology; with --root
   * TREE: under the tree, never the live host's.
   */
  stateDir: string;
  socket: string;
}

/** Side effects the program needs from main.ts (so the CLI itself touches no files). */
export interface CliEnv {
  out: (text: string) => void;
  makeRuntime: (opts: GlobalOptions) => Promise<Runtime>;
  writeOutput: (file: string, text: string) => Promise<void>;
  setExitCode: (code: number) => void;
  /** Streams input files line by line (`passthru import`); absent where nothing is read. */
  readLines?: ReadLines;
  /** Commands added by later layers (agent, claims): they get the program to attach to. */
  extend?: (program: Command, ctx: CommandContext) => void;
}

export interface CommandContext {
  runtime: (cmd: Command) => Promise<Runtime>;
  env: CliEnv;
}

export const DEFAULTS = {
  root: '/',
  stateDir: '/var/lib/passthru',
  socket: '/run/passthru/agent.sock',
  modprobe: 'modprobe',
  logLevel: 'warn',
} as const;

/** The commands buildProgram itself defines: main.ts loads the agent's commands for any other. */
/**
 * How the read-only commands discover: a one-shot process may read a device's lock-taking
 * attributes in place when it is bound to a host driver (ReadDeviceOptions.inPlaceWhenBound;
 * docs/cli.md, list).
 */
const ONE_SHOT = { inPlaceWhenBound: true } as const;

export const BASE_COMMANDS: ReadonlySet<string> = new Set(['list', 'groups', 'doctor', 'snapshot']);

/**
 * The command a command line names: the first operand after the global options (whose values
 * are skipped), or null when there is none (`passthru --help`). Read before the program is
 * built, so that main.ts imports only what that command needs.
 */
export function commandOf(argv: readonly string[]): string | null {
  const takesValue = new Set<string>();
  for (const o of addGlobalOptions(new Command(), () => undefined).options) {
    if (!o.required && !o.optional) continue;
    if (o.long !== undefined) takesValue.add(o.long);
    if (o.short !== undefined) takesValue.add(o.short);
  }
  const args = argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? '';
    if (a === '--') return args[i + 1] ?? null;
    if (!a.startsWith('-') || a === '-') return a;
    if (!a.includes('=') && takesValue.has(a)) i++;
  }
  return null;
}

function addGlobalOptions(program: Command, out: (text: string) => void): Command {
  return program
    .description(
      'Dependable PCI device passthrough: discovery, safe vfio-pci binding, vfio module keeper',
    )
    .version('0.1.0')
    .option(
      '--root <dir>',
      'root of the host to read (a sysfs tree on disk for offline use)',
      process.env.PASSTHRU_ROOT ?? DEFAULTS.root,
    )
    .option(
      '--sim <topology>',
      'run against a simulated kernel: a topology JSON file, a sysfs tree directory or a shipped topology name',
      process.env.PASSTHRU_SIM,
    )
    .option(
      '--pci-ids <file>',
      'pci.ids database for names (default: the system one)',
      process.env.PASSTHRU_PCI_IDS,
    )
    .option(
      '--state-dir <dir>',
      `where claims, the ledger and history live (default ${DEFAULTS.stateDir}; with --sim, a private per-user folder per topology; with --root TREE, under TREE)`,
      process.env.PASSTHRU_STATE_DIR,
    )
    .option(
      '--socket <path>',
      `the agent's control socket (default ${DEFAULTS.socket}; with --sim, agent.sock in the state dir; with --root TREE, under TREE)`,
      process.env.PASSTHRU_SOCKET,
    )
    .option(
      '--modprobe <path>',
      'modprobe binary',
      process.env.PASSTHRU_MODPROBE ?? DEFAULTS.modprobe,
    )
    .option(
      '--log-level <level>',
      `log level on stderr: ${LOG_LEVELS.join(', ')}`,
      oneOf('--log-level', LOG_LEVELS),
      process.env.PASSTHRU_LOG_LEVEL ?? DEFAULTS.logLevel,
    )
    .option(
      '--log-format <format>',
      'log format on stderr: json or pretty',
      oneOf('--log-format', ['json', 'pretty']),
      process.env.PASSTHRU_LOG_FORMAT ?? 'json',
    )
    .showHelpAfterError()
    .configureOutput({
      writeOut: (s) => {
        out(s);
      },
    });
}

export function buildProgram(env: CliEnv): Command {
  const program = addGlobalOptions(new Command('passthru'), env.out);

  const runtime = async (cmd: Command): Promise<Runtime> =>
    env.makeRuntime(cmd.optsWithGlobals<GlobalOptions>());

  program
    .command('list')
    .description('list PCI functions with IOMMU group, driver and NUMA node (like lspci)')
    .option('--class <hex>', 'class prefix: 02 (network), 0300 (VGA), 010802 (NVMe)')
    .option('--vendor <vvvv[:dddd]>', 'vendor id, optionally with device id')
    .option('--driver <name>', "bound driver, or 'none'")
    .option('--group <n>', 'IOMMU group number')
    .option('--json', 'print a JSON array')
    .action(
      async (
        o: { class?: string; vendor?: string; driver?: string; group?: string; json?: boolean },
        cmd: Command,
      ) => {
        const rt = await runtime(cmd);
        const filter: Parameters<typeof filterDevices>[1] = {};
        if (o.class !== undefined) filter.class = o.class;
        if (o.vendor !== undefined) filter.vendor = o.vendor;
        if (o.driver !== undefined) filter.driver = o.driver;
        if (o.group !== undefined) filter.group = o.group;
        const inv = await discover(rt.host, rt.names, ONE_SHOT);
        const devices = filterDevices(inv, filter);
        env.out(
          o.json
            ? `${JSON.stringify(devices.map(deviceJson), null, 2)}\n`
            : `${listTable(devices)}\n`,
        );
      },
    );

  program
    .command('groups')
    .description('IOMMU groups: members, whether a VM could use each now, and what blocks it')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const rt = await runtime(cmd);
      const [inv, uses] = await Promise.all([
        discover(rt.host, rt.names, ONE_SHOT),
        rt.host.hostUses(),
      ]);
      const views = groupViews(inv, uses);
      if (o.json) env.out(`${JSON.stringify(views, null, 2)}\n`);
      else if (views.length === 0)
        env.out('no IOMMU groups: the IOMMU is off or absent (see `passthru doctor`)\n');
      else env.out(groupsText(views));
    });

  program
    .command('doctor')
    .description('check that this host can do PCI passthrough; exits 1 when a check fails')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const rt = await runtime(cmd);
      const { runDoctor } = await import('../doctor/doctor.js');
      const report = await runDoctor(rt.host, rt.names);
      if (o.json) {
        env.out(`${JSON.stringify(report, null, 2)}\n`);
      } else {
        for (const c of report.checks) {
          env.out(`${c.status.toUpperCase().padEnd(4)}  ${c.summary}\n`);
          if (c.hint !== undefined && c.status !== 'pass') env.out(`      fix: ${c.hint}\n`);
        }
      }
      if (!report.ok) env.setExitCode(1);
    });

  program
    .command('snapshot')
    .description("write this host's PCI topology as JSON (for bug reports, fixtures and --sim)")
    .option('-o, --output <file>', 'write to a file instead of stdout')
    .option('--name <name>', 'topology name', 'snapshot')
    .action(async (o: { output?: string; name: string }, cmd: Command) => {
      const rt = await runtime(cmd);
      const inv = await discover(rt.host, rt.names, ONE_SHOT);
      const { takeSnapshot } = await import('../pci/snapshot.js');
      const topo: Topology = await takeSnapshot(rt.host, inv, o.name);
      const text = `${JSON.stringify(topo, null, 1)}\n`;
      if (o.output !== undefined) await env.writeOutput(o.output, text);
      else env.out(text);
    });

  addImportCommand(program, { runtime, env });
  env.extend?.(program, { runtime, env });
  return program;
}

export function requireSim(rt: Runtime): SimKernel {
  if (!rt.sim) throw new PtError('PT_ERR_INVALID_ARGUMENT', 'this command needs --sim');
  return rt.sim;
}
