import type { Command } from 'commander';
import type { AgentEnv } from '../agent-commands.js';
import type { CommandContext } from '../program.js';

export function addDemoCommand(program: Command, ctx: CommandContext, aenv: AgentEnv): void {
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
      const rt = await ctx.runtime(cmd);
      await aenv.demo(rt, o.keepRunning === true);
    });
}
