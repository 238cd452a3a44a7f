import { Option, type Command } from 'commander';
import type { AgentEnv } from '../agent-commands.js';
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
    .option('--no-uevents', 'do not use udevadm monitor as a uevent source (poll only)')
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
        await aenv.serveAgent(
          rt,
          agent,
          o.devicePlugin === true ? { devicePluginDir: o.devicePluginDir } : {},
        );
      },
    );
}
