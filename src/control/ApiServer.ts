/**
 * ApiServer: the control API on a UNIX stream socket (`--api-socket PATH`), slirp4netns framing:
 * the client writes one JSON request and shuts down its write side; we answer one JSON object and
 * close. The socket is created mode 0600 (umask while binding, then chmod).
 *
 * It can never stall forwarding: requests are handled on the event loop like any other I/O, each
 * connection has a deadline (`timeoutMs`) and a size cap (4096 bytes, as slirp4netns), and at
 * most `maxConnections` clients are served at once.
 */

import fs from 'node:fs';
import net from 'node:net';
import type { Logger } from 'pino';
import { handleRequest, MAX_REQUEST_BYTES, DESC, type ApiBackend } from './protocol.js';

/** sun_path is 108 bytes including the terminating NUL. */
export const SUN_PATH_MAX = 107;

export interface ApiServerOptions {
  timeoutMs?: number;
  maxConnections?: number;
}

/** Throws with a clear message when PATH cannot be a UNIX socket path. */
export function checkSocketPath(path: string): void {
  const n = Buffer.byteLength(path);
  if (n === 0) throw new Error('--api-socket: the path is empty');
  if (n > SUN_PATH_MAX) {
    throw new Error(
      `--api-socket ${path}: the path is ${n} bytes, but a UNIX socket path can have at most ${SUN_PATH_MAX} ` +
        '(sun_path is 108 bytes with the NUL); use a shorter path, e.g. under $XDG_RUNTIME_DIR',
    );
  }
}

export class ApiServer {
  private readonly server: net.Server;
  private readonly clients = new Set<net.Socket>();
  private readonly timeoutMs: number;
  private listening = false;

  constructor(
    readonly path: string,
    private readonly backend: ApiBackend,
    private readonly log: Logger,
    opts: ApiServerOptions = {},
  ) {
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.server = net.createServer({ allowHalfOpen: true }, (s) => this.serve(s));
    this.server.maxConnections = opts.maxConnections ?? 64;
  }

  /** Bind and listen; throws an actionable Error. */
  async listen(): Promise<void> {
    checkSocketPath(this.path);
    try {
      // A stale socket from an earlier run is replaced (slirp4netns does the same); anything else is not ours.
      if (fs.lstatSync(this.path).isSocket()) fs.unlinkSync(this.path);
      else throw new Error(`--api-socket ${this.path}: exists and is not a socket; remove it or choose another path`);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const old = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        const onError = (e: NodeJS.ErrnoException): void => reject(new Error(`--api-socket ${this.path}: cannot listen: ${e.message}`));
        this.server.once('error', onError);
        this.server.listen(this.path, () => {
          this.server.off('error', onError);
          resolve();
        });
      });
    } finally {
      process.umask(old);
    }
    fs.chmodSync(this.path, 0o600);
    this.listening = true;
    this.server.on('error', (e) => this.log.warn({ err: e.message }, 'api socket error'));
  }

  close(): void {
    for (const c of this.clients) c.destroy();
    this.clients.clear();
    this.server.close();
    if (this.listening) {
      this.listening = false;
      try {
        fs.unlinkSync(this.path);
      } catch {
        /* already gone */
      }
    }
  }

  private serve(sock: net.Socket): void {
    this.clients.add(sock);
    const chunks: Buffer[] = [];
    let size = 0;
    let answered = false;
    sock.setTimeout(this.timeoutMs, () => sock.destroy());
    sock.on('error', () => {});
    sock.on('close', () => this.clients.delete(sock));
    const answer = (raw: Buffer | null): void => {
      if (answered) return;
      answered = true;
      sock.pause();
      const reply = raw === null ? Promise.resolve({ error: { desc: DESC.tooLarge } }) : handleRequest(raw, this.backend);
      void reply.then((r) => {
        if (sock.destroyed) return;
        this.log.debug({ request: raw?.toString('utf8').slice(0, 200), reply: r }, 'api request');
        sock.end(JSON.stringify(r));
      });
    };
    sock.on('data', (b: Buffer) => {
      if (answered) return;
      size += b.length;
      if (size >= MAX_REQUEST_BYTES) return answer(null);
      chunks.push(b);
      // Clients that do not shut down their write side: answer as soon as a whole object arrived.
      const raw = Buffer.concat(chunks);
      if (raw[raw.length - 1] === 0x7d /* } */) {
        try {
          JSON.parse(raw.toString('utf8'));
          answer(raw);
        } catch {
          /* incomplete: wait for more or for EOF */
        }
      }
    });
    sock.on('end', () => answer(Buffer.concat(chunks)));
  }
}
