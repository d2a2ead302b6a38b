/**
 * TcpForward: one TCP port-forward rule: host listeners → the container.
 *
 * Splice mode (default): each accepted host socket is paired with a socket the namespace agent
 * connects *inside* the container netns, and the two are relayed by a native SpliceRelay
 * (zero-copy, half-close and RST propagated; see native/splice.c). Target choice: the rule's
 * explicit guest address first when the API gave one; otherwise the netns loopback (127.0.0.1 /
 * ::1) first, then the guest address (bound as the local address, so it is only tried when it
 * really is local in the netns), then the other family's loopback (::1 for an IPv4 rule). So
 * services bound to 0.0.0.0, to loopback only (either family), or to the container's own address
 * are all reachable. Refused everywhere → the host client gets a RST.
 *
 * Tap mode (--forward-mode tap): the accepted socket becomes a TcpFlow of the stack's TCP
 * endpoint; the guest sees a connection from the gateway (10.0.2.2) to its address, like
 * slirp4netns/libslirp hostfwd.
 */

import net from 'node:net';
import type { Logger } from 'pino';
import { guarded, reportInternalError } from '../internalError.js';
import { SpliceRelay, dupFd, resetClose, type SpliceRelay as SpliceRelayHandle } from '../native.js';
import { NetnsSockets } from './netnsSockets.js';
import { hostPort } from '../ip/endpoint.js';
import { describeEndpoint, listenAddresses, listenTcp, noIpv6 } from './listen.js';
import type { ForwardCounters, ForwardRule } from './rule.js';

/** A live tap-mode forwarded connection. */
export interface TapFlowInfo {
  rule: ForwardRule | undefined;
  /** The host client. */
  peer: string;
  /** Guest address:port. */
  target: string;
  /** What the guest sees as the source (gateway:ephemeral). */
  source: string;
  state: string;
  ageMs: number;
}

/** What tap mode needs from the stack. */
export interface TapOpener {
  /** Open a connection toward the guest for an accepted socket; false when it could not (socket destroyed). */
  openToGuest(guestAddress: string, guestPort: number, socket: net.Socket, rule?: ForwardRule): boolean;
  /** Live connections it opened (for the flow listing). */
  flows?(): TapFlowInfo[];
}

export interface TcpForwardEnv {
  sockets: NetnsSockets;
  mode: 'splice' | 'tap';
  tap: TapOpener | null;
  log: Logger;
  counters: ForwardCounters;
  /** Per-rule connection cap. */
  maxConnections?: number;
  /** Listen on `::` too when the API said 0.0.0.0 (slirp4netns semantics with IPv6 on). */
  alsoIpv6?: boolean;
}

/** One live forwarded connection (for the flow listing). */
export interface ForwardConnection {
  peer: string;
  target: string;
  relay: SpliceRelayHandle | null;
  since: number;
}

export class TcpForward {
  private readonly servers: net.Server[] = [];
  readonly connections = new Set<ForwardConnection>();
  private closed = false;

  constructor(
    readonly rule: ForwardRule,
    private readonly env: TcpForwardEnv,
  ) {}

  /** Listen on every address of the rule; on failure nothing stays open. */
  async start(): Promise<void> {
    const r = this.rule;
    if (this.env.mode === 'splice') this.env.sockets.warm(net.isIPv6(r.guestAddress) ? 6 : 4);
    try {
      for (const la of listenAddresses(r.hostAddress, this.env.alsoIpv6)) {
        const srv = this.server();
        try {
          await listenTcp(srv, 'tcp', la, r.hostPort);
        } catch (e) {
          if (r.hostAddress === null && la.address === '::' && noIpv6(e)) {
            await listenTcp(srv, 'tcp', { address: '0.0.0.0', ipv6Only: false }, r.hostPort);
          } else {
            throw e;
          }
        }
        this.servers.push(srv);
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** Addresses actually listened on. */
  addresses(): string[] {
    return this.servers.map((s) => {
      const a = s.address() as net.AddressInfo | null;
      return a ? describeEndpoint('tcp', a.address, a.port) : '?';
    });
  }

  /** Close the listeners. Existing connections keep running unless `connectionsToo`. */
  close(connectionsToo = false): void {
    this.closed = true;
    for (const s of this.servers) s.close();
    this.servers.length = 0;
    if (connectionsToo) {
      for (const c of this.connections) c.relay?.close();
      this.connections.clear();
    }
  }

  private server(): net.Server {
    const srv = net.createServer({ pauseOnConnect: true, noDelay: true }, (sock) => {
      try {
        this.accepted(sock);
      } catch (e) {
        this.internalError(sock, e);
      }
    });
    srv.on('error', (e) => this.env.log.warn({ err: e.message, rule: this.rule.text }, 'forward listener error'));
    return srv;
  }

  private accepted(sock: net.Socket): void {
    const c = this.env.counters;
    sock.on('error', () => {});
    if (this.closed || this.connections.size >= (this.env.maxConnections ?? 4096)) {
      c.tcpRejected++;
      sock.resetAndDestroy();
      return;
    }
    c.tcpAccepted++;
    if (this.env.mode === 'tap') {
      if (!this.env.tap || !this.env.tap.openToGuest(this.rule.guestAddress, this.rule.guestPort, sock, this.rule)) c.tcpFailed++;
      return;
    }
    this.splice(sock).catch((e: unknown) => this.internalError(sock, e));
  }

  /** Handling an accepted connection threw (a bug): the client gets a RST, the rest goes on. */
  private internalError(sock: net.Socket, e: unknown): void {
    if (!sock.destroyed) sock.resetAndDestroy();
    reportInternalError(this.env.log, this.env.counters, 'a connection to a TCP forward', e);
  }

  /** Targets in order (see the header). */
  private targets(): { family: 4 | 6; address: string; bindLocal: boolean }[] {
    const r = this.rule;
    const family: 4 | 6 = net.isIPv6(r.guestAddress) ? 6 : 4;
    const lo = { family, address: family === 6 ? '::1' : '127.0.0.1', bindLocal: false };
    const guest = { family, address: r.guestAddress, bindLocal: true };
    // Last, the other family's loopback: a service bound only to [::1] (or to 127.0.0.1 for an
    // IPv6 rule) is reachable too, as with pasta.
    const other = { family: (family === 6 ? 4 : 6) as 4 | 6, address: family === 6 ? '127.0.0.1' : '::1', bindLocal: false };
    return r.guestAddressExplicit ? [guest, lo, other] : [lo, guest, other];
  }

  private async splice(sock: net.Socket): Promise<void> {
    const c = this.env.counters;
    const r = this.rule;
    const peer = hostPort(sock.remoteAddress ?? '?', sock.remotePort ?? 0);
    let fd = -1;
    let target = '';
    let lastErr: { code?: string; message: string } | null = null;
    for (const t of this.targets()) {
      try {
        fd = await this.env.sockets.connectStream(t.family, t.address, r.guestPort, { bindLocal: t.bindLocal });
        target = hostPort(t.address, r.guestPort);
        break;
      } catch (e) {
        lastErr = e as Error & { code?: string };
        const code = lastErr.code;
        // Try the next target only when this one is not there; other errors are final.
        if (code !== 'ECONNREFUSED' && code !== 'EADDRNOTAVAIL' && code !== 'ENETUNREACH' && code !== 'EHOSTUNREACH' && code !== 'EAFNOSUPPORT') break;
      }
    }
    if (fd < 0) {
      c.tcpFailed++;
      this.env.log.debug({ rule: r.text, peer, err: lastErr?.message }, 'forward: container refused the connection');
      if (!sock.destroyed) sock.resetAndDestroy();
      return;
    }
    const handle = (sock as unknown as { _handle?: { fd?: number } })._handle;
    if (sock.destroyed || !handle || typeof handle.fd !== 'number' || handle.fd < 0) {
      // The host client went away while we connected: pass that on.
      resetClose(fd);
      return;
    }
    let hostFd: number;
    try {
      hostFd = dupFd(handle.fd);
    } catch {
      c.tcpFailed++;
      sock.resetAndDestroy();
      resetClose(fd);
      return;
    }
    // The socket was never read or polled by libuv (pauseOnConnect): closing its fd while the
    // dup keeps the connection is safe.
    sock.destroy();
    const conn: ForwardConnection = { peer, target, relay: null, since: Date.now() };
    this.connections.add(conn);
    c.tcpActive++;
    try {
      conn.relay = new SpliceRelay(hostFd, fd, guarded(this.env.log, c, 'the end of a spliced connection', (err: string | null, stats: { aToB: number; bToA: number }) => {
        this.connections.delete(conn);
        c.tcpActive--;
        c.bytesIn += stats.aToB;
        c.bytesOut += stats.bToA;
        if (err) c.tcpResets++;
        else c.tcpCompleted++;
      }));
    } catch (e) {
      this.connections.delete(conn);
      c.tcpActive--;
      c.tcpFailed++;
      resetClose(hostFd);
      resetClose(fd);
      this.env.log.warn({ err: (e as Error).message, rule: r.text }, 'forward: cannot start a splice relay');
    }
  }
}
