/**
 * Internal errors: an exception where slipway handles an event is a bug in slipway, not bad
 * input (that is counted and dropped where it is parsed). Thrown from a socket, timer or promise
 * callback it would end the process, and with it the container's whole network. Instead the
 * event is dropped, counted in the component's `internalErrors` counter (get_stats), and logged
 * at error level with the stack: the first ten, then at powers of two, so a bug hit on every
 * datagram cannot flood the log.
 */

/** The part of a pino logger used here. */
export interface ErrorLog {
  error(obj: object, msg?: string): void;
}

export interface InternalErrorCounters {
  internalErrors: number;
}

/**
 * Count one internal error of `counters` and log it (throttled). `what` names the event,
 * `outcome` what became of it.
 */
export function reportInternalError(
  log: ErrorLog, counters: InternalErrorCounters, what: string, err: unknown, fields: object = {}, outcome = 'dropped',
): void {
  const n = ++counters.internalErrors;
  if (n <= 10 || (n & (n - 1)) === 0) {
    const e = err as Error | undefined;
    log.error({ ...fields, err: e?.message ?? String(err), stack: e?.stack, count: n }, `internal error while handling ${what} (${outcome}; please report)`);
  }
}

/**
 * `fn` for use as a callback: a throw is reported as an internal error of `counters` instead of
 * reaching the event loop.
 */
export function guarded<A extends unknown[]>(log: ErrorLog, counters: InternalErrorCounters, what: string, fn: (...args: A) => void): (...args: A) => void {
  return (...args: A): void => {
    try {
      fn(...args);
    } catch (e) {
      reportInternalError(log, counters, what, e);
    }
  };
}

/** Report a rejection of `p` (a fire-and-forget async step) as an internal error. */
export function catchInternal(log: ErrorLog, counters: InternalErrorCounters, what: string, p: Promise<unknown>): void {
  p.catch((e: unknown) => reportInternalError(log, counters, what, e));
}
