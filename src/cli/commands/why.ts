import type { Command } from 'commander';
import type { DeviceStory } from '../../events/story.js';
import { parsePciAddress, type PciAddress } from '../../pci/address.js';
import type { AgentEnv } from '../agent-commands.js';
import { agentRead } from '../api-client.js';
import type { CommandContext } from '../program.js';
import { parseSince } from '../since.js';

function when(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${String(n)} ${n === 1 ? one : many}`;
}

/** `passthru why` for people: the entries, the counts, then where it stands and the fix. */
export function storyText(s: DeviceStory, agentRunning: boolean): string {
  const lines = [
    `${s.address}${s.since !== null ? ` since ${when(s.since)}` : ''} (${agentRunning ? 'from the running agent' : 'agent not running: read from the history file'})`,
  ];
  if (s.entries.length === 0) lines.push('  nothing in the history');
  for (const e of s.entries)
    lines.push(`  ${when(e.at)}  ${e.text}${e.code !== undefined ? ` [${e.code}]` : ''}`);
  const c = s.counts;
  const refusals = Object.entries(c.refusals).map(([k, v]) => `${k} x${String(v)}`);
  lines.push(
    `in all: ${plural(c.claims, 'claim')}, ${plural(c.binds, 'bind')}, ${plural(c.losses, 'module loss', 'module losses')}, ${plural(c.drifts, 'drift')}, ${plural(c.releases, 'release')}, refusals: ${refusals.length > 0 ? refusals.join(', ') : 'none'}`,
  );
  const n = s.now;
  const claim =
    n.claim === null
      ? 'not claimed'
      : `claim ${n.claim} ${n.state ?? '?'}${n.source !== null ? ` (asked by ${n.source})` : ''}`;
  lines.push(`now: ${n.present ? `on ${n.driver ?? 'no driver'}` : 'not on the bus'}; ${claim}`);
  if (!n.ok) {
    if (n.reason !== null) lines.push(`why: ${n.reason}`);
    if (n.fix !== null) lines.push(`fix: ${n.fix}`);
  }
  return `${lines.join('\n')}\n`;
}

export function addWhyCommand(program: Command, ctx: CommandContext, aenv: AgentEnv): void {
  program
    .command('why')
    .description(
      "one device's story from the history: claims, binds, refusals, module losses, drift, releases; then where it stands and the fix",
    )
    .argument('<address>', 'PCI address, dddd:bb:dd.f')
    .option('--since <when>', 'only events since then: a duration back (2h, 7d) or a timestamp')
    .option('--json', 'print JSON')
    .action(async (addr: string, o: { since?: string; json?: boolean }, cmd: Command) => {
      const address = parsePciAddress(addr);
      const rt = await ctx.runtime(cmd);
      const since = o.since === undefined ? null : parseSince(o.since, rt.host.clock.now());
      const url = `/v1/devices/${address}/story${since === null ? '' : `?since=${String(since)}`}`;
      const answer = (await agentRead(aenv, rt, url)) as DeviceStory | null;
      const story = answer ?? (await storyWithoutAgent(aenv, rt, address, since));
      ctx.env.out(
        o.json ? `${JSON.stringify(story, null, 2)}\n` : storyText(story, answer !== null),
      );
      if (!story.now.ok) ctx.env.setExitCode(1);
    });
}

/**
 * Without an agent: the store and the history are read, nothing is locked or written. The
 * agent's modules load only then (issue 11: start-up).
 */
async function storyWithoutAgent(
  aenv: AgentEnv,
  rt: Awaited<ReturnType<CommandContext['runtime']>>,
  address: PciAddress,
  since: number | null,
): Promise<DeviceStory> {
  const { deviceStory } = await import('../../agent/story-source.js');
  const agent = await aenv.openAgent(rt, {});
  await agent.inspect(0);
  return deviceStory(agent, address, since, false);
}
