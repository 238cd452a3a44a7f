import * as posix from 'node:path/posix';
import type { Command } from 'commander';
import { PtError } from '../../errors.js';
import type { PciAddress } from '../../pci/address.js';
import type { AgentEnv } from '../agent-commands.js';
import type { CommandContext, Runtime } from '../program.js';

/** The state dir as the booted host sees it: under --root TREE, without the TREE prefix. */
function stateDirOnHost(rt: Runtime): string {
  const root = posix.resolve(rt.opts.root);
  const dir = posix.resolve(rt.stateDir);
  if (root !== '/' && (dir === root || dir.startsWith(`${root}/`)))
    return `/${posix.relative(root, dir)}`;
  return dir;
}

export function addBootConfigCommand(program: Command, ctx: CommandContext, aenv: AgentEnv): void {
  program
    .command('boot-config')
    .description(
      'write udev rules that keep claimed devices off their host drivers from boot, modules-load.d / modprobe.d entries for vfio-pci, and a systemd unit for the agent',
    )
    .option('--dry-run', 'print the files instead of writing them')
    .action(async (o: { dryRun?: boolean }, cmd: Command) => {
      const rt = await ctx.runtime(cmd);
      if (rt.sim)
        throw new PtError(
          'PT_ERR_INVALID_ARGUMENT',
          'boot-config configures a real host: with --sim it would write simulated claims into /etc (use --root TREE to write into a tree)',
        );
      const [{ requiredVfioModules }, { bootConfigFiles }] = await Promise.all([
        import('../../keeper/modules.js'),
        import('../boot-config.js'),
      ]);
      const agent = await aenv.openAgent(rt, {});
      const st = await agent.inspect(0);
      const claimed = new Set<PciAddress>();
      for (const c of st.claims) for (const m of [c.address, ...c.members]) claimed.add(m);
      const files = bootConfigFiles({
        root: rt.opts.root,
        modules: await requiredVfioModules(rt.host),
        originalDrivers: [
          ...new Set(st.ledger.map((l) => l.originalDriver).filter((d): d is string => d !== null)),
        ],
        claimed: [...claimed],
        agentCommand: aenv.agentCommand(),
        stateDir: stateDirOnHost(rt),
      });
      if (o.dryRun) {
        for (const f of files) ctx.env.out(`# ${f.path}\n${f.content}\n`);
      } else {
        aenv.requireRoot(rt, 'passthru boot-config');
        await aenv.writeFiles(files);
        for (const f of files) ctx.env.out(`wrote ${f.path}\n`);
      }
    });
}
