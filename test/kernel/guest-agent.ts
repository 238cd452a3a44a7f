/**
 * The project's CLI and agent as child processes inside the guest, and what they leave behind
 * (state.json, the kernel log). Every CLI call and status request is asynchronous, so latencies
 * measured with these are the agent's, not this process's own stalls.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AgentStatus } from '../../src/agent/agent.js';
import { requestAgent } from '../../src/process/socket-client.js';
import { check, deadline, waitFor } from './guest-helpers.js';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const MAIN = path.join(repo, 'dist/bundle/passthru.js');
export const STATE = '/tmp/pt-state';
export const SOCKET = '/tmp/pt-run/agent.sock';
export const BASE = ['--state-dir', STATE, '--socket', SOCKET];

export interface CliResult {
  code: number | null;
  out: string;
  ms: number;
}

/** CLI children still running: killed when a scenario ends, so the guest can power off. */
const children = new Set<ChildProcess>();
export function killStragglers(): void {
  for (const c of children) c.kill('SIGKILL');
  children.clear();
}

/** The real CLI as a child process; resolves when it exits. */
export function cliStart(args: string[]): { child: ChildProcess; done: Promise<CliResult> } {
  const t0 = performance.now();
  const child = spawn(process.execPath, [MAIN, ...BASE, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (c: string) => (out += c));
  child.stderr.on('data', (c: string) => (out += c));
  const done = new Promise<CliResult>((r) =>
    child.on('close', (code) => {
      children.delete(child);
      r({ code, out, ms: Math.round(performance.now() - t0) });
    }),
  );
  return { child, done };
}

export async function cli(args: string[], allowFail = false): Promise<CliResult> {
  const { child, done } = cliStart(args);
  const r = await Promise.race([done, deadline(300_000)]);
  if (r === null) {
    child.kill('SIGKILL');
    throw new Error(`passthru ${args.join(' ')} did not exit within 300 s`);
  }
  if (r.code !== 0 && !allowFail)
    throw new Error(`passthru ${args.join(' ')} exited ${String(r.code)}: ${r.out}`);
  return r;
}

export interface Agent {
  child: ChildProcess;
  exited: Promise<number | null>;
  isRunning(): boolean;
}

export function startAgent(ctx: { jobDir: string }, extra: string[], logName: string): Agent {
  fs.rmSync(SOCKET, { force: true });
  const logFd = fs.openSync(path.join(ctx.jobDir, logName), 'a');
  const child = spawn(process.execPath, [MAIN, ...BASE, '--log-level', 'info', 'agent', ...extra], {
    stdio: ['ignore', logFd, logFd],
  });
  fs.closeSync(logFd);
  let running = true;
  const exited = new Promise<number | null>((r) =>
    child.on('exit', (code) => {
      running = false;
      r(code);
    }),
  );
  return { child, exited, isRunning: () => running };
}

/** GET /v1/status over the control socket, with its latency. */
export async function statusOnce(): Promise<{ st: AgentStatus; ms: number }> {
  const t0 = performance.now();
  const r = await requestAgent(SOCKET, 'GET', '/v1/status');
  const ms = performance.now() - t0;
  if (r === null) throw new Error('no agent on the socket');
  return { st: r.body as AgentStatus, ms };
}

export async function waitForRunning(agent: Agent): Promise<number> {
  const t0 = performance.now();
  let last = 'no answer yet';
  const ok = await waitFor(
    async () => {
      if (!agent.isRunning()) return true;
      try {
        const phase = (await statusOnce()).st.phase;
        last = `phase ${phase}`;
        return phase === 'running';
      } catch (e) {
        last = e instanceof Error ? e.message : String(e);
        return false;
      }
    },
    120_000,
    50,
  );
  check(agent.isRunning(), `the agent exited while starting (${last})`);
  check(ok !== null, `agent answered with phase running within 120 s (last: ${last})`);
  return Math.round(performance.now() - t0);
}

/** Stops the agent with SIGTERM and returns how long it took to exit. */
export async function stopAgent(a: Agent): Promise<number> {
  if (!a.isRunning()) return 0;
  const t0 = performance.now();
  a.child.kill('SIGTERM');
  const r = await Promise.race([a.exited, deadline(15_000)]);
  if (r === null) {
    a.child.kill('SIGKILL');
    await a.exited;
    throw new Error('the agent did not exit within 15 s of SIGTERM');
  }
  return Math.round(performance.now() - t0);
}

export interface StateFile {
  claims: Record<string, unknown>;
  ledger: Record<string, { originalDriver: string | null }>;
}
export function stateFile(): StateFile {
  return JSON.parse(fs.readFileSync(path.join(STATE, 'state.json'), 'utf8')) as StateFile;
}

/** Kernel log lines that mention the device or the drivers this suite moves it between. */
export function dmesgFor(addr: string): string[] {
  const r = spawnSync('dmesg', [], { encoding: 'utf8', timeout: 10_000 });
  return r.stdout.split('\n').filter((l) => l.includes(addr) || /vfio|e1000e:/i.test(l));
}
