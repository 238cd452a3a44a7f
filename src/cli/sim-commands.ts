import type { Command } from 'commander';
import { PtError } from '../errors.js';
import type { AgentEnv } from './agent-commands.js';
import { CLIENT_TIMEOUTS, apiError } from './api-client.js';
import { countOption } from './options.js';
import type { CommandContext } from './program.js';

/** `passthru sim ...`: pokes of the simulated kernel under an agent started with --sim. */
export function addSimCommands(program: Command, ctx: CommandContext, aenv: AgentEnv): void {
  const sim = program
    .command('sim')
    .description(
      'poke the simulated kernel of an agent started with --sim (for demos, bug reports, tests)',
    );
  const times = (c: Command): Command =>
    c.option('--times <n>', 'how many (1 to 1000000)', countOption('--times', 1, 1_000_000), 1);
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
      const rt = await ctx.runtime(command);
      const r = await aenv.requestAgent(
        rt.socket,
        'POST',
        `/v1/sim/${name}`,
        build(positional, o),
        { timeoutMs: CLIENT_TIMEOUTS.answerMs },
      );
      if (!r)
        throw new PtError(
          'PT_ERR_AGENT_UNREACHABLE',
          `no agent listening on ${rt.socket}: start one with \`passthru --sim ${rt.opts.sim ?? 'TOPOLOGY'} agent\``,
        );
      if (r.status !== 200) throw apiError(r);
      ctx.env.out(`${JSON.stringify(r.body)}\n`);
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
    ([m], o) => ({ module: m, times: o.times }),
    times,
  );
  simPost(
    'fail-write',
    'the next N writes of OP fail with ERRNO (OP: driver_override, unbind, bind, drivers_probe, sriov_numvfs, remove)',
    ['<op>', '<errno>'],
    ([op, errno], o) => ({
      op,
      errno,
      times: o.times,
      ...(typeof o.address === 'string' ? { address: o.address } : {}),
    }),
    (c) => times(c).option('--address <addr>', 'only for this device'),
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
