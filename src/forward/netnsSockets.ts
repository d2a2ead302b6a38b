/**
 * Sockets made inside the container netns for forwards: a bounded queue in front of the agent
 * (its channel is one SEQPACKET socket: a burst of 500 accepts must not overflow it), and the
 * wait for a non-blocking connect to finish.
 */

import { ConnectWatch, closeFd } from '../native.js';
import type { SocketRequest } from '../agent/NamespaceAgent.js';

/** What forwards need from the namespace agent. */
export interface SocketMaker {
  openSocket(req: SocketRequest): Promise<number>;
}

/** An error with an errno name in `code`. */
export class ConnectError extends Error {
  readonly code: string;
  constructor(message: string, code: string) {
    super(message);
    this.name = 'ConnectError';
    this.code = code;
  }
}

/** At most `limit` agent requests in flight; the rest wait in order. EAGAIN from the channel is retried. */
export class NetnsSockets {
  private inflight = 0;
  private readonly waiting: (() => void)[] = [];
  private closed = false;

  constructor(
    private readonly agent: SocketMaker,
    private readonly limit = 32,
  ) {}

  /** Open a socket in the netns (fd owned by the caller). */
  async open(req: SocketRequest): Promise<number> {
    if (this.inflight >= this.limit) await new Promise<void>((r) => this.waiting.push(r));
    if (this.closed) throw new ConnectError('forwarding is shutting down', 'ECANCELED');
    this.inflight++;
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          return await this.agent.openSocket(req);
        } catch (e) {
          if ((e as { code?: string }).code !== 'EAGAIN' || attempt >= 50) throw e;
          await new Promise((r) => setTimeout(r, 2));
        }
      }
    } finally {
      this.inflight--;
      this.waiting.shift()?.();
    }
  }

  /**
   * Open a stream socket in the netns connected to address:port and wait for the connect to
   * finish. Rejects with a ConnectError (code ECONNREFUSED, ETIMEDOUT, ...); the fd is closed then.
   */
  async connectStream(family: 4 | 6, address: string, port: number, opts: { bindLocal?: boolean; timeoutMs?: number } = {}): Promise<number> {
    const fd = await this.open({
      family,
      type: 'stream',
      ...(opts.bindLocal ? { bind: { address, port: 0 } } : {}),
      connect: { address, port },
    });
    try {
      await connected(fd, opts.timeoutMs ?? 10_000);
    } catch (e) {
      closeFd(fd);
      throw e;
    }
    return fd;
  }

  /** Wake every waiter with an error (shutdown). */
  close(): void {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w();
  }
}

/** Resolves when the non-blocking connect on fd succeeded; rejects with its error. */
export function connected(fd: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      w.close();
      reject(new ConnectError(`connect timed out after ${timeoutMs} ms`, 'ETIMEDOUT'));
    }, timeoutMs);
    const w = new ConnectWatch(fd, (err) => {
      clearTimeout(timer);
      if (err) reject(new ConnectError(`connect failed: ${err}`, err));
      else resolve();
    });
  });
}
