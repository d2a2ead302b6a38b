/**
 * Logging: pino JSON on stderr; a readable single-line form when stderr is a terminal.
 *
 * pino-pretty (and its dependencies) is loaded only when stderr is a terminal: Podman and the
 * other callers give slipway a pipe or a file, and loading it there would only slow start-up.
 */

import { createRequire } from 'node:module';
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Create the process logger. `level` must be one of LOG_LEVELS (checked by the CLI). */
export function createLogger(level: string, name = 'slipway'): Logger {
  const opts = { name, level, base: { pid: process.pid } };
  if (process.stderr.isTTY) {
    // A plain require at run time (not an import): bundles leave it out, and it costs nothing
    // when stderr is not a terminal.
    const pretty = createRequire(import.meta.url)('pino-pretty') as (o: object) => DestinationStream;
    return pino(opts, pretty({ destination: 2, sync: true, colorize: true, ignore: 'pid,hostname,name' }));
  }
  return pino(opts, pino.destination({ fd: 2, sync: true }));
}

/** A logger that drops everything (unit tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
