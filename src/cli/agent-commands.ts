import { Command, Option } from 'commander';
import { PtError, errorCodes, type ErrorCode } from '../errors.js';
import type { Agent, AgentStatus, ReleaseOutcome } from '../agent/agent.js';
import { parseAddresses } from '../agent/agent.js';
import type { ApiResponse } from '../agent/routes.js';
import type { ClaimStatus, EngineOptions } from '../engine/engine.js';
import type { KeeperOptions } from '../keeper/keeper.js';
import { requiredVfioModules } from '../keeper/modules.js';
import type { CliEnv, CommandContext, Runtime } from './program.js';
import { table } from './table.js';
import { bootConfigFiles } from './boot-config.js';

/** Side effects the agent commands need, provided by the composition root. */
export interface AgentEnv {
  /** With `exclusive`, the state folder is locked for this process (one writer at a time). */
  openAgent: (rt: Runtime, tuning: AgentTuning, exclusive?: boolean) => Promise<Agent>;
  serveAgent: (rt: Runtime, agent: Agent, kubernetes?: { kubeconfig?: string }) => Promise<void>;
  /** Throws PT_ERR_PERMISSION when `what` needs root on this host and we are not root. */
  requireRoot: (rt: Runtime, what: string) => void;
  requestAgent: (
    socket: string,
    method: string,
    url: string,
    body?: unknown,
  ) => Promise<ApiResponse | null>;
  writeFiles: (files: { path: string; content: string; mode: number }[]) => Promise<void>;
  agentCommandPath: () => string;
  demo: (rt: Runtime, keepRunning: boolean) => Promise<void>;
}

export interface AgentTuning {
  engine?: Partial<EngineOptions>;
  keeper?: Partial<KeeperOptions>;
  uevents?: boolean;
}

function int(name: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v))
      throw new PtError(
        'PT_ERR_INVALID_ARGUMENT',
        `${name} takes a whole number of milliseconds, not ${v}`,
      );
    return Number(v);
  };
}

function apiError(r: ApiResponse): PtError {
  const err = (r.body as { error?: { code?: string; message?: string } }).error;
  const code =
    err?.code !== undefined && err.code in errorCodes ? (err.code as ErrorCode) : 'PT_ERR_INTERNAL';
  return new PtError(code, err?.message ?? `agent answered ${r.status}`);
}

/** The exit code for a set of claim statuses: 0 when all are ready. */
export function claimsExitCode(claims: ClaimStatus[]): number {
  for (const c of claims) {
    if (c.state === 'ready') continue;
    return errorCodes[c.code ?? 'PT_ERR_BIND_FAILED'].exit;
  }
  return 0;
}

export function claimsText(claims: ClaimStatus[]): string {
  return `${table(
    ['CLAIM', 'STATE', 'GROUP', 'MEMBERS', 'DETAIL'],
    claims.map((c) => [
      c.address,
      c.state,
      c.group === null ? '-' : String(c.group),
      c.members
        .map((m) =>
          c.originalDrivers[m] !== undefined
            ? `${m} (was ${c.originalDrivers[m] ?? 'no driver'})`
            : m,
        )
        .join(', '),
      c.code !== undefined
        ? `${c.code}: ${c.message ?? ''}`
        : c.state === 'ready'
          ? 'on vfio-pci'
          : '',
    ]),
  )}\n`;
}

function releaseText(out: ReleaseOutcome[]): string {
  if (out.length === 0) return 'released (nothing was bound)\n';
  return `${out
    .map((o) =>
      o.ok
        ? `${o.address}  released  now on ${o.driver ?? 'no driver'}${o.note !== undefined ? ` (${o.note})` : ''}`
        : `${o.address}  FAILED    ${o.code ?? ''}: ${o.message ?? ''}`,
    )
    .join('\n')}\n`;
}

function ms(t: number | null): string {
  return t === null ? '-' : `${t} ms`;
}

export function statusText(s: AgentStatus): string {
  const lines: string[] = [`host: ${s.host}`, ''];
  lines.push(s.claims.length === 0 ? 'claims: none' : claimsText(s.claims).trimEnd());
  lines.push('');
  const k = s.keeper;
  lines.push(
    `vfio modules: ${k.healthy ? 'all loaded' : 'NOT all loaded'}${k.waiting !== null ? ` (waiting: ${k.waiting})` : ''}${k.recovering ? ' (recovering)' : ''}`,
  );
  lines.push(`  ${k.modules.map((m) => `${m.name}=${m.state}`).join('  ')}`);
  lines.push(`losses: ${k.losses}   uevents: ${k.uevents ? 'yes' : 'no (polling only)'}`);
  if (k.recoveries.length > 0) {
    lines.push('');
    lines.push(
      table(
        [
          'RECOVERY (detected)',
          'MODULES',
          'VIA',
          'ATTEMPTS',
          'RELOADED',
          'DEVICES BACK',
          'DEVICES',
        ],
        k.recoveries
          .slice(-10)
          .map((r) => [
            new Date(r.detectedAt).toISOString(),
            r.modules.join(','),
            r.via,
            String(r.attempts),
            ms(r.detectToReloadMs),
            ms(r.detectToReboundMs),
            String(r.devices),
          ]),
      ),
    );
  }
  return `${lines.join('\n')}\n`;
}

export function addAgentCommands(program: Command, ctx: CommandContext, aenv: AgentEnv): void {
  const { runtime, env } = ctx;
  const out = (t: string): void => {
    env.out(t);
  };

  program
    .command('agent')
    .description('run the engine and the vfio module keeper on this host until SIGTERM/SIGINT')
    .option('--poll-ms <ms>', 'module and device poll interval', int('--poll-ms'), 250)
    .option('--resync-ms <ms>', 'periodic full reconcile', int('--resync-ms'), 30_000)
    .option(
      '--unbind-timeout-ms <ms>',
      'give up on a blocked unbind after this long',
      int('--unbind-timeout-ms'),
      10_000,
    )
    .option('--no-uevents', 'do not use udevadm monitor as a uevent source (poll only)')
    .option(
      '--kubernetes',
      'Kubernetes mode: claims from PCIDeviceClaims, NODE_NAME names the node',
    )
    .option(
      '--kubeconfig <file>',
      'with --kubernetes: a kubeconfig instead of the in-cluster config',
    )
    .addOption(
      new Option('--fault-pause-after-unbind-ms <ms>', 'test hook: pause between unbind and probe')
        .argParser(int('--fault-pause-after-unbind-ms'))
        .default(0)
        .hideHelp(),
    )
    .action(
      async (
        o: {
          pollMs: number;
          resyncMs: number;
          unbindTimeoutMs: number;
          uevents: boolean;
          faultPauseAfterUnbindMs: number;
          kubernetes?: boolean;
          kubeconfig?: string;
        },
        cmd: Command,
      ) => {
        const rt = await runtime(cmd);
        aenv.requireRoot(rt, 'passthru agent');
        const agent = await aenv.openAgent(rt, {
          engine: {
            resyncMs: o.resyncMs,
            unbindTimeoutMs: o.unbindTimeoutMs,
            pauseAfterUnbindMs: o.faultPauseAfterUnbindMs,
          },
          keeper: { pollMs: o.pollMs },
          uevents: o.uevents,
        });
        await aenv.serveAgent(
          rt,
          agent,
          o.kubernetes === true
            ? o.kubeconfig !== undefined
              ? { kubeconfig: o.kubeconfig }
              : {}
            : undefined,
        );
      },
    );

  program
    .command('claim')
    .description(
      'bind devices to vfio-pci for passthrough (through the running agent, or directly)',
    )
    .argument('<address...>', 'PCI addresses, dddd:bb:dd.f')
    .option('--with-group', 'also claim the other endpoints of the IOMMU group')
    .option(
      '--force',
      'claim even devices the host needs (root disk, default-route NIC, boot VGA, bridges)',
    )
    .option('--json', 'print JSON')
    .action(
      async (
        addrs: string[],
        o: { withGroup?: boolean; force?: boolean; json?: boolean },
        cmd: Command,
      ) => {
        const addresses = parseAddresses(addrs);
        const rt = await runtime(cmd);
        const body = { addresses, withGroup: o.withGroup === true, force: o.force === true };
        let claims: ClaimStatus[];
        const r = await aenv.requestAgent(rt.socket, 'POST', '/v1/claims', body);
        if (r) {
          if (r.status !== 200) throw apiError(r);
          claims = (r.body as { claims: ClaimStatus[] }).claims;
        } else {
          aenv.requireRoot(rt, 'passthru claim');
          const agent = await aenv.openAgent(rt, {}, true);
          await agent.start();
          claims = await agent.claim(addresses, { withGroup: body.withGroup, force: body.force });
        }
        out(o.json ? `${JSON.stringify(claims, null, 2)}\n` : claimsText(claims));
        env.setExitCode(claimsExitCode(claims));
      },
    );

  program
    .command('release')
    .description('give claimed devices back to their original drivers')
    .argument('<address...>', 'PCI addresses of claims')
    .option('--json', 'print JSON')
    .action(async (addrs: string[], o: { json?: boolean }, cmd: Command) => {
      const addresses = parseAddresses(addrs);
      const rt = await runtime(cmd);
      let released: ReleaseOutcome[];
      const r = await aenv.requestAgent(rt.socket, 'POST', '/v1/release', { addresses });
      if (r) {
        if (r.status !== 200) throw apiError(r);
        released = (r.body as { released: ReleaseOutcome[] }).released;
      } else {
        aenv.requireRoot(rt, 'passthru release');
        const agent = await aenv.openAgent(rt, {}, true);
        await agent.start();
        released = await agent.release(addresses);
      }
      out(o.json ? `${JSON.stringify(released, null, 2)}\n` : releaseText(released));
      if (released.some((x) => !x.ok)) env.setExitCode(errorCodes.PT_ERR_RELEASE_FAILED.exit);
    });

  program
    .command('status')
    .description('claims and their state, vfio module health, recent recoveries')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const rt = await runtime(cmd);
      let st: AgentStatus;
      const r = await aenv.requestAgent(rt.socket, 'GET', '/v1/status');
      if (r) {
        if (r.status !== 200) throw apiError(r);
        st = r.body as AgentStatus;
      } else {
        st = await (await aenv.openAgent(rt, {})).inspect();
      }
      out(
        o.json
          ? `${JSON.stringify(st, null, 2)}\n`
          : `${r ? 'agent: running' : 'agent: not running (read from the store and the host)'}\n${statusText(st)}`,
      );
    });

  program
    .command('boot-config')
    .description(
      'write modules-load.d / modprobe.d entries that load vfio-pci at boot, and a systemd unit for the agent',
    )
    .option('--dry-run', 'print the files instead of writing them')
    .action(async (o: { dryRun?: boolean }, cmd: Command) => {
      const rt = await runtime(cmd);
      const agent = await aenv.openAgent(rt, {});
      const st = await agent.inspect(0);
      const files = bootConfigFiles({
        root: rt.opts.root,
        modules: await requiredVfioModules(rt.host),
        originalDrivers: [
          ...new Set(st.ledger.map((l) => l.originalDriver).filter((d): d is string => d !== null)),
        ],
        agentCommand: aenv.agentCommandPath(),
        stateDir: rt.stateDir,
      });
      if (o.dryRun) {
        for (const f of files) out(`# ${f.path}\n${f.content}\n`);
      } else {
        aenv.requireRoot(rt, 'passthru boot-config');
        await aenv.writeFiles(files);
        for (const f of files) out(`wrote ${f.path}\n`);
      }
    });

  program
    .command('demo')
    .description(
      'show the field failure and its recovery on a simulated host (what `npm start` runs)',
    )
    .option(
      '--keep-running',
      'leave the simulated agent running afterwards (its socket is printed)',
    )
    .action(async (o: { keepRunning?: boolean }, cmd: Command) => {
      const rt = await runtime(cmd);
      await aenv.demo(rt, o.keepRunning === true);
    });

  const sim = program
    .command('sim')
    .description(
      'poke the simulated kernel of an agent started with --sim (for demos, bug reports, tests)',
    );
  const simPost = (
    name: string,
    description: string,
    args: string[],
    build: (a: string[], o: Record<string, unknown>) => unknown,
    opts: (c: Command) => Command = (c) => c,
  ): void => {
    const c = sim.command(name).description(description);
    for (const a of args) c.argument(a);
    opts(c).action(async (...params: unknown[]) => {
      const command = params[params.length - 1] as Command;
      const o = params[params.length - 2] as Record<string, unknown>;
      const positional = params.slice(0, args.length).map(String);
      const rt = await runtime(command);
      const r = await aenv.requestAgent(rt.socket, 'POST', `/v1/sim/${name}`, build(positional, o));
      if (!r)
        throw new PtError(
          'PT_ERR_AGENT_UNREACHABLE',
          `no agent listening on ${rt.socket}: start one with \`passthru --sim ${rt.opts.sim ?? 'TOPOLOGY'} agent\``,
        );
      if (r.status !== 200) throw apiError(r);
      out(`${JSON.stringify(r.body)}\n`);
    });
  };
  simPost(
    'rmmod',
    'remove a module, as `rmmod` would (fails while in use)',
    ['<module>'],
    ([m], o) => ({ module: m, linger: o.linger === true }),
    (c) => c.option('--linger', 'stay listed as Unloading'),
  );
  simPost(
    'modprobe-r',
    'remove a module and its unused dependencies, as `modprobe -r`',
    ['<module>'],
    ([m]) => ({ module: m }),
  );
  simPost('modprobe', 'load a module, as another component would', ['<module>'], ([m]) => ({
    module: m,
  }));
  simPost(
    'unavailable',
    'make a module impossible to load (removed from the kernel)',
    ['<module>'],
    ([m]) => ({ module: m }),
  );
  simPost('available', 'make a module loadable again', ['<module>'], ([m]) => ({
    module: m,
    available: true,
  }));
  simPost(
    'fail-load',
    'the next N loads of a module fail',
    ['<module>'],
    ([m], o) => ({ module: m, times: Number(o.times ?? 1) }),
    (c) => c.option('--times <n>', 'how many', '1'),
  );
  simPost(
    'fail-write',
    'the next N writes of OP fail with ERRNO (OP: driver_override, unbind, bind, drivers_probe, sriov_numvfs, remove)',
    ['<op>', '<errno>'],
    ([op, errno], o) => ({
      op,
      errno,
      times: Number(o.times ?? 1),
      ...(typeof o.address === 'string' ? { address: o.address } : {}),
    }),
    (c) =>
      c.option('--times <n>', 'how many', '1').option('--address <addr>', 'only for this device'),
  );
  simPost('unplug', 'the device disappears (surprise removal)', ['<address>'], ([a]) => ({
    address: a,
  }));
  simPost(
    'vm-open',
    'a VM opens the device (its vfio-pci unbind then blocks)',
    ['<address>'],
    ([a]) => ({ address: a }),
  );
  simPost('vm-close', 'the VM lets the device go', ['<address>'], ([a]) => ({ address: a }));
  simPost(
    'block-unbind',
    'unbinding the device blocks until release-unbind',
    ['<address>'],
    ([a]) => ({ address: a }),
  );
  simPost('release-unbind', 'let a blocked unbind finish', ['<address>'], ([a]) => ({
    address: a,
  }));
}

export type { CliEnv };
