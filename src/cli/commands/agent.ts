import { Option, type Command } from 'commander';
import type { AgentEnv } from '../agent-commands.js';
import { parseListenAddress, type ListenAddress } from '../../http/listen-address.js';
import { msOption } from '../options.js';
import type { CommandContext } from '../program.js';

const HOUR = 3_600_000;

export function addAgentCommand(program: Command, ctx: CommandContext, aenv: AgentEnv): void {
  program
    .command('agent')
    .description('run the engine and the vfio module keeper on this host until SIGTERM/SIGINT')
    .option(
      '--poll-ms <ms>',
      'module and device poll interval (10 to 60000)',
      msOption('--poll-ms', 10, 60_000),
      250,
    )
    .option(
      '--resync-ms <ms>',
      'periodic full reconcile (100 to 86400000)',
      msOption('--resync-ms', 100, 24 * HOUR),
      30_000,
    )
    .option(
      '--unbind-timeout-ms <ms>',
      'give up on a blocked unbind after this long (100 to 600000)',
      msOption('--unbind-timeout-ms', 100, 600_000),
      10_000,
    )
    .option(
      '--listen <addr:port>',
      'serve the HTTP API and /metrics on TCP: 127.0.0.1:8080, [::1]:8080, 0.0.0.0:9100 (token for everything), or off (default off; with --sim 127.0.0.1:0, a free port, printed)',
      (v: string) => (v === 'off' ? 'off' : parseListenAddress(v)),
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
    .option(
      '--device-plugin',
      'serve a kubelet device plugin per resource of the claimed devices (Kubernetes nodes)',
    )
    .option(
      '--device-plugin-dir <dir>',
      "the kubelet's device-plugin folder",
      '/var/lib/kubelet/device-plugins',
    )
    .addOption(
      new Option('--fault-pause-after-unbind-ms <ms>', 'test hook: pause between unbind and probe')
        .argParser(msOption('--fault-pause-after-unbind-ms', 0, 600_000))
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
          devicePlugin?: boolean;
          devicePluginDir: string;
          kubernetes?: boolean;
          kubeconfig?: string;
          listen?: ListenAddress | 'off';
        },
        cmd: Command,
      ) => {
        const rt = await ctx.runtime(cmd);
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
        // A simulated host is a place to try things: its API is on loopback unless told not to.
        // A live host opens no port unless asked.
        const listen =
          o.listen ?? (rt.sim !== null ? parseListenAddress('127.0.0.1:0') : ('off' as const));
        await aenv.serveAgent(rt, agent, {
          ...(listen !== 'off' ? { listen } : {}),
          ...(o.devicePlugin === true ? { devicePluginDir: o.devicePluginDir } : {}),
          ...(o.kubernetes === true
            ? { kubernetes: o.kubeconfig !== undefined ? { kubeconfig: o.kubeconfig } : {} }
            : {}),
        });
      },
    );
}
