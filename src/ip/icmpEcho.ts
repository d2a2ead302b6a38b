/**
 * ICMP echo toward the outside world through unprivileged ping sockets
 * (SOCK_DGRAM/IPPROTO_ICMP or IPPROTO_ICMPV6, both allowed by net.ipv4.ping_group_range). One
 * relay per family; one `PingSession` per guest (source address, echo identifier): the kernel
 * gives the socket its own identifier, so replies are rewritten back to the guest's identifier
 * before they are delivered. Sessions close after `idleMs` without traffic; the table is bounded.
 * Addresses are the family's guest-visible form (uint32 for IPv4, text for IPv6); `AddressCodec`
 * turns them into what the socket API wants and back.
 */

import type { Logger } from 'pino';
import { formatIpv4, parseIpv4 } from '../wire/ipv4.js';
import { writeU16 } from '../wire/bytes.js';
import { reportInternalError } from '../internalError.js';

/** How a relay's addresses map to socket address text. */
export interface AddressCodec<A> {
  family: 4 | 6;
  /** The echo reply type: 0 (ICMP) or 129 (ICMPv6). */
  replyType: number;
  format(a: A): string;
  /** Host text → guest-visible address; null to drop. */
  parse(text: string): A | null;
}

export const IPV4_CODEC: AddressCodec<number> = {
  family: 4,
  replyType: 0,
  format: formatIpv4,
  parse: (t) => {
    try {
      return parseIpv4(t);
    } catch {
      return null;
    }
  },
};

/** The native ping socket surface this module needs. */
export interface PingSocketLike {
  send(dst: string, msg: Uint8Array): void;
  close(): void;
}
export type PingSocketFactory = (family: 4 | 6, onReply: (data: Buffer, from: string) => void) => PingSocketLike;

interface PingSession<A> {
  key: string;
  guest: A;
  guestId: number;
  socket: PingSocketLike;
  lastUsed: number;
}

export class PingRelay<A = number> {
  private readonly sessions = new Map<string, PingSession<A>>();
  private unavailable: string | null = null;
  private readonly sweep: NodeJS.Timeout;
  readonly counters = { sent: 0, replies: 0, dropped: 0, sendErrors: 0, internalErrors: 0 };

  constructor(
    private readonly factory: PingSocketFactory,
    /** Deliver an echo reply (message bytes, checksum to be computed) to the guest. */
    private readonly toGuest: (src: A, dst: A, msg: Uint8Array) => void,
    private readonly log: Logger,
    private readonly limit = 256,
    private readonly idleMs = 60_000,
    private readonly codec: AddressCodec<A> = IPV4_CODEC as unknown as AddressCodec<A>,
  ) {
    this.sweep = setInterval(() => this.expire(), 10_000);
    this.sweep.unref();
  }

  /** An echo request from the guest to `dst` (a real address); `msg` is the ICMP message. */
  request(src: A, dst: A, buf: Uint8Array, off: number, len: number, echoId: number): void {
    if (this.unavailable) {
      this.counters.dropped++;
      return;
    }
    const key = `${src}:${echoId}`;
    let s = this.sessions.get(key);
    if (!s) {
      if (this.sessions.size >= this.limit) {
        const oldest = this.sessions.values().next().value as PingSession<A>;
        this.close(oldest);
      }
      let socket: PingSocketLike;
      try {
        const session = { key, guest: src, guestId: echoId } as PingSession<A>;
        socket = this.factory(this.codec.family, (data, from) => this.reply(session, data, from));
        session.socket = socket;
        session.lastUsed = Date.now();
        s = session;
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if (e.code === 'EACCES' || e.code === 'EPERM') {
          this.unavailable = e.code;
          this.log.warn(
            { err: e.message },
            'ICMP echo to outside addresses is disabled: this user may not open ping sockets. ' +
              'Allow it with: sysctl -w net.ipv4.ping_group_range="0 2147483647" (in the namespace slipway runs in)',
          );
        } else {
          this.log.warn({ err: e.message }, 'cannot open a ping socket');
        }
        this.counters.dropped++;
        return;
      }
      this.sessions.set(key, s);
    } else {
      this.sessions.delete(key);
      this.sessions.set(key, s);
    }
    s.lastUsed = Date.now();
    try {
      s.socket.send(this.codec.format(dst), buf.subarray(off, off + len));
      this.counters.sent++;
    } catch (err) {
      this.counters.sendErrors++;
      this.log.debug({ err: (err as Error).message, dst: this.codec.format(dst) }, 'ping send failed');
    }
  }

  private reply(s: PingSession<A>, data: Buffer, from: string): void {
    try {
      this.deliver(s, data, from);
    } catch (e) {
      reportInternalError(this.log, this.counters, 'an ICMP echo reply', e);
    }
  }

  private deliver(s: PingSession<A>, data: Buffer, from: string): void {
    if (data.length < 8 || data[0] !== this.codec.replyType) {
      this.counters.dropped++;
      return;
    }
    s.lastUsed = Date.now();
    writeU16(data, 4, s.guestId);
    this.counters.replies++;
    const src = this.codec.parse(from);
    if (src === null) {
      this.counters.dropped++;
      return;
    }
    this.toGuest(src, s.guest, data);
  }

  private expire(): void {
    const cutoff = Date.now() - this.idleMs;
    for (const s of this.sessions.values()) if (s.lastUsed < cutoff) this.close(s);
  }

  private close(s: PingSession<A>): void {
    this.sessions.delete(s.key);
    s.socket.close();
  }

  closeAll(): void {
    clearInterval(this.sweep);
    for (const s of [...this.sessions.values()]) this.close(s);
  }

  get active(): number {
    return this.sessions.size;
  }
}
