import { errorCodes, type ErrorCode } from '../errors.js';
import type { DryRunDeps, DryRunPlan, PlanStep } from '../preview/dry-run.js';
import type { AgentEnv } from './agent-commands.js';
import type { CommandContext, Runtime } from './program.js';

function stepText(s: PlanStep): string {
  if (s.op === 'modprobe') return `modprobe ${s.value}`;
  const value = s.value === '\n' ? '(an empty line: clears it)' : JSON.stringify(s.value);
  const left = s.op === 'unbind' && s.from != null ? `  (leaves ${s.from})` : '';
  return `write ${value} to ${s.path ?? '?'}${left}`;
}

function stepsText(steps: PlanStep[]): string[] {
  return steps.map((s, i) => `  ${String(i + 1).padStart(2)}. ${stepText(s)}`);
}

/** `claim --dry-run` / `release --dry-run` for people. */
export function dryRunText(p: DryRunPlan): string {
  const lines = [`${p.kind} --dry-run ${p.addresses.join(' ')} on ${p.host}: nothing was written`];
  if (p.refusals.length > 0) {
    lines.push('refused:');
    for (const r of p.refusals) lines.push(`  ${r.address ?? '*'} ${r.code}: ${r.message}`);
  }
  for (const c of p.companions)
    lines.push(`takes along ${c.members.join(', ')} (IOMMU group of ${c.address})`);
  if (p.unbinds.length > 0) {
    lines.push('unbinds:');
    for (const u of p.unbinds)
      lines.push(
        `  ${u.address} from ${u.driver}${u.serves.length > 0 ? `, which serves: ${u.serves.join('; ')}` : ', which serves nothing the host was seen using'}`,
      );
  }
  if (p.repairs.length > 0) {
    lines.push('first, re-applying the existing claims and ledger:');
    lines.push(...stepsText(p.repairs));
  }
  if (p.steps.length === 0) lines.push('steps: none');
  else {
    lines.push('steps, in order:');
    lines.push(...stepsText(p.steps));
  }
  for (const c of p.claims ?? [])
    lines.push(
      `then ${c.address} is ${c.state}${c.message !== undefined ? ` (${c.message})` : ''}`,
    );
  for (const r of p.released ?? [])
    lines.push(
      `then ${r.address} is ${r.state}${r.driver !== null ? ` on ${r.driver}` : ''}${r.message !== undefined ? ` (${r.message})` : ''}`,
    );
  return `${lines.join('\n')}\n`;
}

/** The exit status of the request the plan previews: its first refusal's, else 0. */
export function dryRunExitCode(p: DryRunPlan): number {
  const code = p.refusals[0]?.code;
  if (code === undefined) return 0;
  return code in errorCodes ? errorCodes[code as ErrorCode].exit : 1;
}

/**
 * Without a running agent: the store is read, not locked (a dry run changes nothing, and must
 * not stop a claim that runs meanwhile). The rehearsal's modules load only then: a plan the
 * agent answers needs none of them (issue 11: start-up).
 */
export async function directDeps(aenv: AgentEnv, rt: Runtime): Promise<DryRunDeps> {
  const { dryRunDeps } = await import('../preview/dry-run.js');
  const agent = await aenv.openAgent(rt, {}, false);
  await agent.engine.start();
  return { ...dryRunDeps(agent), names: rt.names };
}

export function printPlan(ctx: CommandContext, plan: DryRunPlan, json: boolean): void {
  ctx.env.out(json ? `${JSON.stringify(plan, null, 2)}\n` : dryRunText(plan));
  ctx.env.setExitCode(dryRunExitCode(plan));
}
