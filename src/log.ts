/** Logging: pino JSON on stderr; a readable single-line form when stderr is a terminal. */

import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Create the process logger. `level` must be one of LOG_LEVELS (checked by the CLI). */
export function createLogger(level: string, name = 'slipway'): Logger {
  const opts = { name, level, base: { pid: process.pid } };
  if (process.stderr.isTTY) {
    return pino(opts, pretty({ destination: 2, sync: true, colorize: true, ignore: 'pid,hostname,name' }));
  }
  return pino(opts, pino.destination({ fd: 2, sync: true }));
}

/** A logger that drops everything (unit tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
