#!/usr/bin/env node
import { errorCodes, isPtError } from './errors.js';
import { loadPciIds, loadTopology, writeFileAtomic } from './host/files.js';
import { LinuxHost } from './host/linux.js';
import { SimKernel } from './host/sim/kernel.js';
import { buildProgram, type CliEnv, type GlobalOptions, type Runtime } from './cli/program.js';
import { makeLogger } from './util/logger.js';

/** The composition root: the only place that builds real adapters. */
async function makeRuntime(opts: GlobalOptions): Promise<Runtime> {
  const logger = makeLogger(opts.logLevel, opts.logFormat);
  const { names } = await loadPciIds(opts.pciIds);
  if (opts.sim !== undefined) {
    const sim = new SimKernel(await loadTopology(opts.sim));
    return { host: sim.port(), names, sim, logger, opts };
  }
  const host = new LinuxHost({ root: opts.root, modprobePath: opts.modprobe });
  return { host, names, sim: null, logger, opts };
}

const env: CliEnv = {
  out: (text) => {
    process.stdout.write(text);
  },
  makeRuntime,
  writeOutput: (file, text) => writeFileAtomic(file, text, 0o644),
  setExitCode: (code) => {
    process.exitCode = code;
  },
};

try {
  await buildProgram(env).parseAsync(process.argv);
} catch (e) {
  if (isPtError(e)) {
    process.stderr.write(`passthru: ${e.code}: ${e.message}\n`);
    process.exitCode = errorCodes[e.code].exit;
  } else {
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`passthru: PT_ERR_INTERNAL: ${msg}\n`);
    if (process.env.PASSTHRU_DEBUG === '1' && e instanceof Error)
      process.stderr.write(`${e.stack ?? ''}\n`);
    process.exitCode = errorCodes.PT_ERR_INTERNAL.exit;
  }
}
