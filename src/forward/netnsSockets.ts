/**
 * Sockets made inside the container netns for forwards: a bounded queue in front of the agent
 * (its channel is one SEQPACKET socket: a burst of 500 accepts must not overflow it), a small pool
 * of pre-made unconnected stream sockets, and the wait for a non-blocking connect to finish.
 *
 * The pool takes the agent round trip (two process wake-ups and an fd passed over SCM_RIGHTS) off
 * each forwarded connection: a socket keeps the netns it was created in, so the main process can
 * bind and connect a pooled socket itself, and the netns's routes and loopback apply. The pool is
 * refilled in the background, a few sockets per agent request burst.
 */

import { ConnectWatch, closeFd, connectFd } from '../native.js';
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
  /** Pre-made unconnected stream sockets, by family. */
  private readonly pool = new Map<4 | 6, number[]>();
  private readonly refilling = new Set<4 | 6>();

  constructor(
    private readonly agent: SocketMaker,
    private readonly limit = 32,
    /** Pooled stream sockets kept per family (0: no pool). */
    private readonly poolSize = 16,
  ) {}

  /** Fill the stream socket pool of a family (a forward that will need it starts). */
  warm(family: 4 | 6): void {
    if (this.poolSize > 0 && !this.pool.has(family)) this.pool.set(family, []);
    this.refill(family);
  }

  private refill(family: 4 | 6): void {
    const p = this.pool.get(family);
    if (!p || this.closed || this.refilling.has(family) || p.length > this.poolSize / 2) return;
    this.refilling.add(family);
    const want = this.poolSize - p.length;
    const reqs: Promise<void>[] = [];
    for (let i = 0; i < want; i++) {
      reqs.push(
        this.open({ family, type: 'stream' }).then(
          (fd) => {
            if (this.closed || p.length >= this.poolSize) closeFd(fd);
            else p.push(fd);
          },
          () => {},
        ),
      );
    }
    void Promise.all(reqs).then(() => this.refilling.delete(family));
  }

  /** Pooled sockets on hand (tests). */
  pooled(family: 4 | 6): number {
    return this.pool.get(family)?.length ?? 0;
  }

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
    const pooled = this.pool.get(family)?.pop();
    if (pooled !== undefined) {
      this.refill(family);
      const err = connectFd(pooled, address, port, opts.bindLocal ? address : null);
      if (err === null) return pooled;
      if (err !== 'EINPROGRESS') {
        closeFd(pooled);
        throw new ConnectError(`connect to ${address} port ${port} in the netns failed: ${err}`, err);
      }
      try {
        await connected(pooled, opts.timeoutMs ?? 10_000);
      } catch (e) {
        closeFd(pooled);
        throw e;
      }
      return pooled;
    }
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
    for (const p of this.pool.values()) for (const fd of p.splice(0)) closeFd(fd);
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
