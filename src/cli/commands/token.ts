import type { Command } from 'commander';
import type { AgentEnv } from '../agent-commands.js';
import type { CommandContext } from '../program.js';

export function addTokenCommand(program: Command, ctx: CommandContext, aenv: AgentEnv): void {
  program
    .command('token')
    .description(
      "print the HTTP API's bearer token (kept root-only in the state folder; made if missing)",
    )
    .action(async (_o: unknown, cmd: Command) => {
      const rt = await ctx.runtime(cmd);
      aenv.requireRoot(rt, 'passthru token');
      ctx.env.out(`${await aenv.apiToken(rt)}\n`);
    });
}
