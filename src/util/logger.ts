import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };
export type LogFormat = 'json' | 'pretty';

/** The one logger, made at the composition root; components take children of it. */
export function makeLogger(level: string, format: LogFormat): Logger {
  if (format === 'pretty') {
    return pino(
      { level, base: { name: 'passthru' } },
      pretty({ destination: 2, colorize: false, sync: true }),
    );
  }
  return pino({ level, base: { name: 'passthru' } }, pino.destination({ dest: 2, sync: true }));
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
