import { createRequire } from 'node:module';
import type { DestinationStream, Logger } from 'pino';

export type { Logger };
export type LogFormat = 'json' | 'pretty';
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Log lines buffered while stderr does not take them; past this they are dropped. A stderr
 * pipe nobody reads then costs at most this much memory, never a blocked agent: synchronous
 * writes to a full pipe froze it (adversarial finding 12).
 */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

/** Set once the process exits: from then on a full stderr pipe is given up on, not waited for. */
let exiting = false;
const destinations: ReturnType<Pino['destination']>[] = [];

type Pino = typeof import('pino').pino;
let pinoLib: Pino | undefined;

/**
 * pino, loaded on first use: a command that logs nothing (`list`) does not pay for it at start
 * (issue 11). pino is CommonJS, so require loads it synchronously and a logger can be made on
 * first access (see lazyLogger).
 */
function pino(): Pino {
  pinoLib ??= (createRequire(import.meta.url)('pino') as typeof import('pino')).pino;
  return pinoLib;
}

// Registered before any destination exists, so it runs before pino's own exit flush, which
// would otherwise retry a full pipe forever and keep the process from exiting.
process.once('exit', () => {
  exiting = true;
  for (const d of destinations) {
    try {
      d.flushSync();
    } catch {
      // The pipe is full and nobody reads it: what does not fit is dropped, by design.
    }
    d.destroy();
  }
});

function stderrDestination(): DestinationStream {
  const d = pino().destination({
    dest: 2,
    sync: false,
    maxLength: MAX_BUFFERED_BYTES,
    retryEAGAIN: () => !exiting,
  });
  destinations.push(d);
  return d;
}

/**
 * The one logger, made at the composition root; components take children of it. Writes to
 * stderr asynchronously. pino-pretty (15 packages) is loaded only for `--log-format pretty`.
 */
export function makeLogger(level: LogLevel, format: LogFormat): Logger {
  if (format === 'pretty') {
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
    return pino()(
      { level, base: { name: 'passthru' } },
      pretty.build({ destination: stderrDestination(), colorize: false }),
    );
  }
  return pino()({ level, base: { name: 'passthru' } }, stderrDestination());
}

/**
 * A logger made on first use: `get()` builds it (and loads pino) the first time it is called.
 * The composition root hands commands one of these, so commands that never log never load it.
 */
export function lazyLogger(level: LogLevel, format: LogFormat): () => Logger {
  let made: Logger | undefined;
  return () => (made ??= makeLogger(level, format));
}

export function silentLogger(): Logger {
  return pino()({ level: 'silent' });
}
