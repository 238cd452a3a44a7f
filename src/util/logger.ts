import { pino, type DestinationStream, type Logger } from 'pino';

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
const destinations: ReturnType<typeof pino.destination>[] = [];

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
  const d = pino.destination({
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
export async function makeLogger(level: LogLevel, format: LogFormat): Promise<Logger> {
  if (format === 'pretty') {
    const { default: pretty } = await import('pino-pretty');
    return pino(
      { level, base: { name: 'passthru' } },
      pretty({ destination: stderrDestination(), colorize: false }),
    );
  }
  return pino({ level, base: { name: 'passthru' } }, stderrDestination());
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
