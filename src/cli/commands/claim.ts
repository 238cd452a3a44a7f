import type { Command } from 'commander';
import type { ClaimStatus } from '../../engine/engine.js';
import type { AgentEnv } from '../agent-commands.js';
import { agentWrite } from '../api-client.js';
import type { CommandContext } from '../program.js';
import { claimsExitCode, claimsText } from '../render.js';
import type { DryRunPlan } from '../../preview/dry-run.js';
import { directDeps, printPlan } from '../dry-run-text.js';

export function addClaimCommand(program: Command, ctx: CommandContext, aenv: AgentEnv): void {
  program
    .command('claim')
    .description(
      'bind devices to vfio-pci for passthrough (through the running agent, or directly)',
    )
    .argument('<address...>', 'PCI addresses, dddd:bb:dd.f')
    .option('--with-group', 'also claim the other endpoints of the IOMMU group')
    .option(
      '--force',
      'claim even devices the host needs (mounted disk, swap, NIC with an address, boot VGA, platform function) or that an untraced mount may use; never bridges',
    )
    .option(
      '--accept-change',
      'a different card now sits at a claimed address: take it (records its ids)',
    )
    .option(
      '--dry-run',
      'print the exact plan (every sysfs write, modprobe, companion, unbind and refusal) and write nothing',
    )
    .option('--json', 'print JSON')
    .action(
      async (
        addrs: string[],
        o: {
          withGroup?: boolean;
          force?: boolean;
          acceptChange?: boolean;
          dryRun?: boolean;
          json?: boolean;
        },
        cmd: Command,
      ) => {
        // The agent's modules load when the command runs, not for every command line (issue 11).
        const { parseAddresses } = await import('../../agent/agent.js');
        const addresses = parseAddresses(addrs);
        const rt = await ctx.runtime(cmd);
        const body = {
          addresses,
          withGroup: o.withGroup === true,
          force: o.force === true,
          acceptChange: o.acceptChange === true,
          source: 'cli' as const,
        };
        if (o.dryRun === true) {
          let plan = (await agentWrite(aenv, rt, '/v1/claims/dry-run', body)) as DryRunPlan | null;
          if (plan === null) {
            const { dryRunClaim } = await import('../../preview/dry-run.js');
            plan = await dryRunClaim(await directDeps(aenv, rt), addresses, body);
          }
          printPlan(ctx, plan, o.json === true);
          return;
        }
        let claims: ClaimStatus[];
        const answer = (await agentWrite(aenv, rt, '/v1/claims', body)) as {
          claims: ClaimStatus[];
        } | null;
        if (answer) {
          claims = answer.claims;
        } else {
          aenv.requireRoot(rt, 'passthru claim');
          const agent = await aenv.openAgent(rt, {}, true);
          await agent.start();
          claims = await agent.claim(addresses, {
            withGroup: body.withGroup,
            force: body.force,
            acceptChange: body.acceptChange,
            source: 'cli',
          });
        }
        ctx.env.out(o.json ? `${JSON.stringify(claims, null, 2)}\n` : claimsText(claims));
        ctx.env.setExitCode(claimsExitCode(claims));
      },
    );
}
