import type { Command } from 'commander';
import type { AgentStatus, ReleaseOutcome } from '../../agent/agent.js';
import { PtError, errorCodes } from '../../errors.js';
import type { PciAddress } from '../../pci/address.js';
import type { AgentEnv } from '../agent-commands.js';
import { agentRead, agentWrite } from '../api-client.js';
import type { CommandContext } from '../program.js';
import { releaseText } from '../render.js';
import type { DryRunPlan } from '../../preview/dry-run.js';
import { directDeps, printPlan } from '../dry-run-text.js';

/** How often `release --wait` asks the agent whether the pending releases are done. */
const WAIT_POLL_MS = 250;

interface ReleaseFlags {
  json?: boolean;
  dryRun?: boolean;
  wait?: boolean;
  abandon?: boolean;
}

export function addReleaseCommand(program: Command, ctx: CommandContext, aenv: AgentEnv): void {
  program
    .command('release')
    .description('give claimed devices back to their original drivers')
    .argument('<address...>', 'PCI addresses of claims')
    .option(
      '--wait',
      'a VM still holds the device: keep the release pending and wait until it completes',
    )
    .option(
      '--abandon',
      'give up restoring: drop the ledger entries and write nothing to the devices',
    )
    .option(
      '--dry-run',
      'print the exact plan (every sysfs write, companion, unbind and refusal) and write nothing',
    )
    .option('--json', 'print JSON')
    .action(async (addrs: string[], o: ReleaseFlags, cmd: Command) => {
      // The agent's modules load when the command runs, not for every command line (issue 11).
      const { parseAddresses } = await import('../../agent/agent.js');
      const addresses = parseAddresses(addrs);
      if (o.wait === true && o.abandon === true)
        throw new PtError('PT_ERR_INVALID_ARGUMENT', '--wait and --abandon exclude each other');
      const rt = await ctx.runtime(cmd);
      const body = { addresses, wait: o.wait === true, abandon: o.abandon === true };
      if (o.dryRun === true) {
        if (o.abandon === true)
          throw new PtError(
            'PT_ERR_INVALID_ARGUMENT',
            '--abandon writes nothing: no dry run needed',
          );
        let plan = (await agentWrite(aenv, rt, '/v1/release/dry-run', {
          addresses,
          wait: body.wait,
        })) as DryRunPlan | null;
        if (plan === null) {
          const { dryRunRelease } = await import('../../preview/dry-run.js');
          plan = await dryRunRelease(await directDeps(aenv, rt), addresses, { wait: body.wait });
        }
        printPlan(ctx, plan, o.json === true);
        return;
      }
      let released: ReleaseOutcome[];
      const answer = (await agentWrite(aenv, rt, '/v1/release', body)) as {
        released: ReleaseOutcome[];
      } | null;
      if (answer) {
        released = answer.released;
        if (o.wait === true) released = await waitForReleases(aenv, ctx, rt, released);
      } else {
        aenv.requireRoot(rt, 'passthru release');
        const agent = await aenv.openAgent(rt, {}, true);
        await agent.start();
        released = await agent.release(addresses, { wait: body.wait, abandon: body.abandon });
        if (o.wait === true && released.some((r) => !r.ok))
          ctx.env.out(
            'no agent is running: a pending release completes once `passthru agent` runs\n',
          );
      }
      ctx.env.out(o.json ? `${JSON.stringify(released, null, 2)}\n` : releaseText(released));
      if (released.some((x) => !x.ok)) ctx.env.setExitCode(errorCodes.PT_ERR_RELEASE_FAILED.exit);
    });
}

/**
 * Polls the agent until every pending release has left the ledger (the original driver is
 * back) or failed for a reason other than a holder. The release itself lives in the agent: an
 * interrupted wait leaves it pending there.
 */
async function waitForReleases(
  aenv: AgentEnv,
  ctx: CommandContext,
  rt: Awaited<ReturnType<CommandContext['runtime']>>,
  first: ReleaseOutcome[],
): Promise<ReleaseOutcome[]> {
  let out = first;
  let told = false;
  for (;;) {
    const waiting = out.filter((r) => r.state === 'in-use' || r.state === 'pending');
    if (waiting.length === 0) return out;
    if (!told) {
      ctx.env.out(
        `${releaseText(waiting)}waiting for the holders to let go (Ctrl-C stops waiting; the release stays pending)\n`,
      );
      told = true;
    }
    await new Promise<void>((r) => setTimeout(r, WAIT_POLL_MS));
    const st = (await agentRead(aenv, rt, '/v1/status')) as AgentStatus | null;
    if (st === null)
      throw new PtError('PT_ERR_AGENT_UNREACHABLE', 'the agent went away while waiting');
    const ledger = new Map<PciAddress, AgentStatus['ledger'][number]>(
      st.ledger.map((l) => [l.address, l]),
    );
    out = out.map((r) => {
      if (r.state !== 'in-use' && r.state !== 'pending') return r;
      const l = ledger.get(r.address);
      if (!l) return { ...r, state: 'released', ok: true, driver: r.expected };
      if (l.code !== undefined && l.code !== 'PT_ERR_DEVICE_IN_USE')
        return {
          ...r,
          state: 'failed',
          code: l.code,
          ...(l.message !== undefined ? { message: l.message } : {}),
        };
      return r;
    });
  }
}
