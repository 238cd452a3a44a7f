import type { Command } from 'commander';
import { parseAddresses, type ReleaseOutcome } from '../../agent/agent.js';
import { errorCodes } from '../../errors.js';
import type { AgentEnv } from '../agent-commands.js';
import { agentWrite } from '../api-client.js';
import type { CommandContext } from '../program.js';
import { releaseText } from '../render.js';

export function addReleaseCommand(program: Command, ctx: CommandContext, aenv: AgentEnv): void {
  program
    .command('release')
    .description('give claimed devices back to their original drivers')
    .argument('<address...>', 'PCI addresses of claims')
    .option('--json', 'print JSON')
    .action(async (addrs: string[], o: { json?: boolean }, cmd: Command) => {
      const addresses = parseAddresses(addrs);
      const rt = await ctx.runtime(cmd);
      let released: ReleaseOutcome[];
      const answer = (await agentWrite(aenv, rt, '/v1/release', { addresses })) as {
        released: ReleaseOutcome[];
      } | null;
      if (answer) {
        released = answer.released;
      } else {
        aenv.requireRoot(rt, 'passthru release');
        const agent = await aenv.openAgent(rt, {}, true);
        await agent.start();
        released = await agent.release(addresses);
      }
      ctx.env.out(o.json ? `${JSON.stringify(released, null, 2)}\n` : releaseText(released));
      if (released.some((x) => !x.ok)) ctx.env.setExitCode(errorCodes.PT_ERR_RELEASE_FAILED.exit);
    });
}
