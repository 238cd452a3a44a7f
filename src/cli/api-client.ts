import type { ApiResponse } from '../process/socket-client.js';
import { PtError, errorCodes, type ErrorCode } from '../errors.js';
import type { AgentEnv } from './agent-commands.js';
import type { Runtime } from './program.js';

/** The agent's error answer as the PtError it carries (its code, so its exit status). */
export function apiError(r: ApiResponse): PtError {
  const err = (r.body as { error?: { code?: string; message?: string } } | null)?.error;
  const code =
    err?.code !== undefined && err.code in errorCodes ? (err.code as ErrorCode) : 'PT_ERR_INTERNAL';
  return new PtError(code, err?.message ?? `agent answered ${r.status}`);
}

export const CLIENT_TIMEOUTS = {
  /** Any answer at all: a health check, status, a sim poke. */
  answerMs: 5_000,
  /** The outcome of a claim or release, once the agent has answered a health check. */
  outcomeMs: 60_000,
} as const;

/** A read from the running agent: its body, or null when no agent listens. */
export async function agentRead(aenv: AgentEnv, rt: Runtime, url: string): Promise<unknown> {
  const r = await aenv.requestAgent(rt.socket, 'GET', url, undefined, {
    timeoutMs: CLIENT_TIMEOUTS.answerMs,
  });
  if (r === null) return null;
  if (r.status !== 200) throw apiError(r);
  return r.body;
}

/**
 * A write through the running agent, or null when no agent listens. A health check first
 * (5 s): a wedged agent fails fast with PT_ERR_AGENT_UNRESPONSIVE; then the write itself gets
 * the longer outcome deadline, since binds may legitimately take seconds.
 */
export async function agentWrite(
  aenv: AgentEnv,
  rt: Runtime,
  url: string,
  body: unknown,
  timeoutMs: number = CLIENT_TIMEOUTS.outcomeMs,
): Promise<unknown> {
  if ((await agentRead(aenv, rt, '/v1/health')) === null) return null;
  const r = await aenv.requestAgent(rt.socket, 'POST', url, body, { timeoutMs });
  if (r === null) return null;
  if (r.status !== 200) throw apiError(r);
  return r.body;
}
