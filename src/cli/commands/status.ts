import type { Command } from 'commander';
import type { AgentEnv } from '../agent-commands.js';
import { agentRead } from '../api-client.js';
import type { CommandContext } from '../program.js';
import { statusText, type StatusView } from '../render.js';

export function addStatusCommand(program: Command, ctx: CommandContext, aenv: AgentEnv): void {
  program
    .command('status')
    .description('claims and their state, vfio module health, recent recoveries')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }, cmd: Command) => {
      const rt = await ctx.runtime(cmd);
      const answer = (await agentRead(aenv, rt, '/v1/status')) as StatusView | null;
      const st: StatusView = answer ?? (await (await aenv.openAgent(rt, {})).inspect());
      ctx.env.out(
        o.json
          ? `${JSON.stringify(st, null, 2)}\n`
          : `${answer ? 'agent: running' : 'agent: not running (read from the store and the host)'}\n${statusText(st)}`,
      );
    });
}
