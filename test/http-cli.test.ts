import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from '../src/agent/agent.js';
import { addAgentCommands, type AgentEnv, type ServeOptions } from '../src/cli/agent-commands.js';
import { buildProgram, type CliEnv } from '../src/cli/program.js';
import { ManualClock } from '../src/host/clock.js';
import { loadTopology } from '../src/host/files.js';
import { SimKernel } from '../src/host/sim/kernel.js';
import { MemoryHistory } from '../src/state/history.js';
import { MemoryStore } from '../src/state/model.js';
import { silentLogger } from '../src/util/logger.js';

/** Runs `passthru ARGS` with fakes; what `agent` would serve, and what was printed. */
async function cli(
  args: string[],
  sim: boolean,
): Promise<{ serve: ServeOptions | null; out: string }> {
  const kernel = new SimKernel(await loadTopology('qemu-guest'), new ManualClock(1_000));
  let serve: ServeOptions | null = null;
  let out = '';
  const aenv = {
    openAgent: (rt) =>
      Promise.resolve(
        new Agent({
          host: rt.host,
          store: new MemoryStore(),
          history: new MemoryHistory(),
          clock: kernel.clock,
          logger: rt.logger,
        }),
      ),
    serveAgent: (_rt, _agent, s) => {
      serve = s ?? {};
      return Promise.resolve();
    },
    requireRoot: () => undefined,
    apiToken: () => Promise.resolve('T'.repeat(43)),
  } as Partial<AgentEnv> as AgentEnv;
  const env: CliEnv = {
    out: (t) => {
      out += t;
    },
    makeRuntime: (opts) =>
      Promise.resolve({
        host: kernel.port(),
        names: { vendor: () => undefined, device: () => undefined } as never,
        sim: sim ? kernel : null,
        logger: silentLogger(),
        opts,
        stateDir: '/tmp/x',
        socket: '/tmp/x/agent.sock',
      }),
    writeOutput: () => Promise.resolve(),
    setExitCode: () => undefined,
    extend: (program, ctx) => {
      addAgentCommands(program, ctx, aenv);
    },
  };
  await buildProgram(env)
    .exitOverride()
    .parseAsync(['node', 'passthru', ...args]);
  return { serve, out };
}

test('agent --listen defaults: 127.0.0.1 on a free port with --sim, none on a live host; off turns it off; an address is parsed with its loopback flag', async () => {
  assert.deepEqual((await cli(['agent'], true)).serve?.listen, {
    host: '127.0.0.1',
    port: 0,
    loopback: true,
  });
  assert.equal((await cli(['agent'], false)).serve?.listen, undefined);
  assert.equal((await cli(['agent', '--listen', 'off'], true)).serve?.listen, undefined);
  assert.deepEqual((await cli(['agent', '--listen', '0.0.0.0:9100'], false)).serve?.listen, {
    host: '0.0.0.0',
    port: 9100,
    loopback: false,
  });
  await assert.rejects(cli(['agent', '--listen', 'example.com:80'], false), {
    code: 'PT_ERR_INVALID_ARGUMENT',
  });
});

test('token prints the token of the state folder and a newline', async () => {
  assert.equal((await cli(['token'], true)).out, `${'T'.repeat(43)}\n`);
});
