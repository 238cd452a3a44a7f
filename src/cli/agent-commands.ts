import type { Command } from 'commander';
import type { ListenAddress } from '../http/listen-address.js';
import type { Agent } from '../agent/agent.js';
import type { ApiResponse, RequestOptions } from '../process/socket-client.js';
import type { EngineOptions } from '../engine/engine.js';
import type { KeeperOptions } from '../keeper/keeper.js';
import { addAgentCommand } from './commands/agent.js';
import { addBootConfigCommand } from './commands/boot-config.js';
import { addClaimCommand } from './commands/claim.js';
import { addDemoCommand } from './commands/demo.js';
import { addReleaseCommand } from './commands/release.js';
import { addStatusCommand } from './commands/status.js';
import { addTokenCommand } from './commands/token.js';
import { addWhyCommand } from './commands/why.js';
import type { CliEnv, CommandContext, Runtime } from './program.js';
import { addSimCommands } from './sim-commands.js';

/** Side effects the agent commands need, provided by the composition root. */
/** What `passthru agent` serves besides the control socket. */
export interface ServeOptions {
  /** Kubelet device plugins, one per resource, in this folder. */
  devicePluginDir?: string;
  /** Kubernetes mode; a kubeconfig for development, else the in-cluster config. */
  kubernetes?: { kubeconfig?: string };
  /** The HTTP API's TCP listener (`--listen`); absent: none. */
  listen?: ListenAddress;
}

export interface AgentEnv {
  /** With `exclusive`, the state folder is locked for this process (one writer at a time). */
  openAgent: (rt: Runtime, tuning: AgentTuning, exclusive?: boolean) => Promise<Agent>;
  serveAgent: (rt: Runtime, agent: Agent, serve?: ServeOptions) => Promise<void>;
  /** Throws PT_ERR_PERMISSION when `what` needs root on this host and we are not root. */
  requireRoot: (rt: Runtime, what: string) => void;
  requestAgent: (
    socket: string,
    method: string,
    url: string,
    body?: unknown,
    opts?: RequestOptions,
  ) => Promise<ApiResponse | null>;
  writeFiles: (files: { path: string; content: string; mode: number }[]) => Promise<void>;
  /** argv that starts this passthru (node and its script), for the systemd unit. */
  agentCommand: () => string[];
  demo: (rt: Runtime, keepRunning: boolean) => Promise<void>;
  /** The HTTP API's bearer token of this state folder, made (0600) when missing. */
  apiToken: (rt: Runtime) => Promise<string>;
}

export interface AgentTuning {
  engine?: Partial<EngineOptions>;
  keeper?: Partial<KeeperOptions>;
  uevents?: boolean;
}

/** The commands that act through the agent (or directly, without one), and `sim`. */
export function addAgentCommands(program: Command, ctx: CommandContext, aenv: AgentEnv): void {
  addAgentCommand(program, ctx, aenv);
  addClaimCommand(program, ctx, aenv);
  addReleaseCommand(program, ctx, aenv);
  addStatusCommand(program, ctx, aenv);
  addTokenCommand(program, ctx, aenv);
  addWhyCommand(program, ctx, aenv);
  addBootConfigCommand(program, ctx, aenv);
  addDemoCommand(program, ctx, aenv);
  addSimCommands(program, ctx, aenv);
}

export type { CliEnv };
