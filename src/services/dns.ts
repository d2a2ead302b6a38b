/**
 * DNS forwarder for the guest's resolver address (.3), UDP only; TCP DNS reaches the upstream by
 * plain NAT to its port 53.
 *
 * Theory of operation. Each guest query is copied, given a fresh random id (unique among the
 * queries in flight) and sent from one host socket per address family — created lazily, bound to
 * an ephemeral port — to the first upstream. An answer is accepted only when its id, its source
 * (address and port of an upstream this query was sent to) and its first question (name, type,
 * class; name compared case-insensitively) all match; anything else is dropped and counted, which
 * makes blind spoofing as hard as guessing a 16-bit id *and* the source port. The guest's id is
 * put back and the answer handed to `reply`.
 *
 * A query that gets no answer within `timeoutMs` is resent to the next upstream, round-robin,
 * for `attempts` sends in total; an answer from an earlier upstream still counts if it arrives
 * late. SERVFAIL, REFUSED and NOTIMP answers also move on to the next upstream while attempts
 * remain. When the attempts are used up the guest gets a synthesized SERVFAIL, so its resolver
 * fails fast instead of waiting out its own timeouts. At most `maxPending` queries are in flight;
 * beyond that new queries are dropped (and counted) — the guest's resolver retries.
 */

import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import ipaddr from 'ipaddr.js';
import type { Logger } from 'pino';
import { reportInternalError } from '../internalError.js';
import { DnsMessage, DnsRcode, DNS_ERROR_RESPONSE_MAX, DNS_MAX_NAME, dnsNamesEqual, writeDnsErrorResponse } from '../wire/dns.js';
import { hostPort } from '../ip/endpoint.js';

/**
 * node:crypto's randomFillSync, loaded on first use: loading node:crypto at start-up cost ~7 ms of
 * CPU before the stack could signal ready. serve() calls warmRandom() once it has (off the start-up
 * path, so the first query does not wait for it).
 */
let randomFill: typeof import('node:crypto').randomFillSync | null = null;

/** node:crypto's randomFillSync (query ids), loading node:crypto now if it is not loaded yet. */
export function warmRandom(): typeof import('node:crypto').randomFillSync {
  return (randomFill ??= (createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto')).randomFillSync);
}

export interface DnsUpstream {
  address: string;
  port: number;
}

export interface DnsForwarderOptions {
  upstreams: DnsUpstream[];
  /** Wait per attempt before trying the next upstream (default 1500 ms). */
  timeoutMs?: number;
  /** Sends per query across upstreams, round-robin (default: two rounds, at least 2). */
  attempts?: number;
  /** Queries in flight at most (default 1024, at most 32768). */
  maxPending?: number;
  log?: Logger;
  /** Local addresses for the upstream sockets (default: any). */
  bindAddress?: { v4?: string; v6?: string };
}

export interface DnsCounters {
  /** Queries accepted from the guest. */
  queries: number;
  /** Datagrams sent upstream (first tries and retries). */
  sent: number;
  retries: number;
  /** Answers relayed to the guest. */
  answered: number;
  /** SERVFAILs synthesized after the last attempt. */
  servfails: number;
  /** Guest datagrams that were not a query (short, QR set, no question). */
  malformed: number;
  /** Queries dropped because `maxPending` were in flight. */
  overflow: number;
  /** Upstream datagrams with no matching query in flight (unknown id: late or spoofed). */
  unmatched: number;
  /** Upstream datagrams with a known id but the wrong source or question (spoofing). */
  mismatched: number;
  sendErrors: number;
  /** Events whose handling threw (a bug in slipway; logged with the stack). */
  internalErrors: number;
}

type Family = 4 | 6;

interface Upstream {
  address: string;
  port: number;
  family: Family;
}

interface Pending {
  upstreamId: number;
  clientId: number;
  /** Copy of the query with `upstreamId` in place. */
  query: Uint8Array;
  name: Uint8Array;
  qtype: number;
  qclass: number;
  reply: (response: Uint8Array) => void;
  /** Sends done so far; the last went to upstream `(sends - 1) % n`. */
  sends: number;
  /** Upstreams this query went to (late answers from them are accepted). */
  sentTo: Set<number>;
  timer: NodeJS.Timeout | null;
}

const DEFAULT_TIMEOUT_MS = 1500;
const DEFAULT_MAX_PENDING = 1024;
/** Keep half the id space free so a random pick rarely collides. */
const MAX_PENDING_LIMIT = 32768;

export class DnsForwarder {
  readonly counters: DnsCounters = {
    queries: 0, sent: 0, retries: 0, answered: 0, servfails: 0, malformed: 0, overflow: 0, unmatched: 0, mismatched: 0, sendErrors: 0, internalErrors: 0,
  };
  private readonly upstreams: Upstream[];
  private readonly timeoutMs: number;
  private readonly attempts: number;
  private readonly maxPending: number;
  private readonly log: Logger | undefined;
  private readonly bindAddress: { v4?: string; v6?: string };
  private readonly pending = new Map<number, Pending>();
  private readonly sockets: { 4: dgram.Socket | null; 6: dgram.Socket | null } = { 4: null, 6: null };
  private readonly view = new DnsMessage();
  private readonly nameScratch = new Uint8Array(DNS_MAX_NAME);
  private readonly random = new Uint16Array(256);
  private randomLeft = 0;
  private closed = false;

  constructor(options: DnsForwarderOptions) {
    if (options.upstreams.length === 0) throw new Error('DNS forwarder: no upstream servers (give --dns-upstream ADDR)');
    this.upstreams = options.upstreams.map((u) => {
      const address = stripScope(u.address);
      if (!isIpAddress(address)) throw new Error(`DNS forwarder: upstream "${u.address}" is not an IP address`);
      if (!Number.isInteger(u.port) || u.port < 1 || u.port > 65535) {
        throw new Error(`DNS forwarder: upstream ${u.address} has invalid port ${u.port}`);
      }
      const parsed = ipaddr.parse(address);
      return { address: parsed.toString(), port: u.port, family: parsed.kind() === 'ipv4' ? 4 : 6 };
    });
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.attempts = Math.max(1, options.attempts ?? Math.max(2, 2 * this.upstreams.length));
    this.maxPending = Math.min(MAX_PENDING_LIMIT, Math.max(1, options.maxPending ?? DEFAULT_MAX_PENDING));
    this.log = options.log;
    this.bindAddress = options.bindAddress ?? {};
  }

  /** Queries in flight. */
  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Forward one query from the guest; `reply` is called at most once with the answer (or a
   * SERVFAIL). `msg` is copied, not kept. Invalid queries are dropped without a reply.
   */
  query(msg: Uint8Array, reply: (response: Uint8Array) => void): void {
    if (this.closed) return;
    const v = this.view;
    if (!v.wrap(msg, 0, msg.length) || v.qr || v.qdcount < 1 || !v.parseQuestion(this.nameScratch)) {
      this.counters.malformed++;
      return;
    }
    if (this.pending.size >= this.maxPending) {
      this.counters.overflow++;
      return;
    }
    this.counters.queries++;
    const upstreamId = this.freshId();
    const query = msg.slice();
    const p: Pending = {
      upstreamId,
      clientId: v.id,
      query,
      name: this.nameScratch.slice(0, v.nameLen),
      qtype: v.qtype,
      qclass: v.qclass,
      reply,
      sends: 0,
      sentTo: new Set(),
      timer: null,
    };
    query[0] = upstreamId >>> 8;
    query[1] = upstreamId & 0xff;
    this.pending.set(upstreamId, p);
    this.send(p);
  }

  /** Stop: close the sockets and forget queries in flight (no replies are sent). */
  close(): void {
    this.closed = true;
    for (const p of this.pending.values()) if (p.timer) clearTimeout(p.timer);
    this.pending.clear();
    for (const f of [4, 6] as const) {
      this.sockets[f]?.close();
      this.sockets[f] = null;
    }
  }

  private send(p: Pending): void {
    const index = p.sends % this.upstreams.length;
    const up = this.upstreams[index];
    const attempt = ++p.sends;
    if (attempt > 1) this.counters.retries++;
    p.sentTo.add(index);
    if (p.timer) clearTimeout(p.timer);
    p.timer = setTimeout(() => this.advanceSafely(p, attempt), this.timeoutMs);
    p.timer.unref?.();
    const socket = this.socket(up.family);
    if (!socket) {
      this.counters.sendErrors++;
      setImmediate(() => this.advanceSafely(p, attempt));
      return;
    }
    this.counters.sent++;
    socket.send(p.query, up.port, up.address, (err) => {
      if (!err) return;
      this.counters.sendErrors++;
      this.log?.debug({ err: err.message, upstream: hostPort(up.address, up.port) }, 'dns: send to upstream failed');
      this.advanceSafely(p, attempt);
    });
  }

  /** `advance` from a timer or socket callback, where a throw would end the process. */
  private advanceSafely(p: Pending, attempt: number): void {
    try {
      this.advance(p, attempt);
    } catch (e) {
      this.internalError('a DNS retry', e);
    }
  }

  /** Attempt `attempt` of `p` failed (timeout, send error, error answer): retry or give up. */
  private advance(p: Pending, attempt: number): void {
    if (this.pending.get(p.upstreamId) !== p || p.sends !== attempt) return;
    if (p.sends < this.attempts) {
      this.send(p);
      return;
    }
    this.finish(p);
    this.counters.servfails++;
    const out = new Uint8Array(DNS_ERROR_RESPONSE_MAX);
    const v = this.view;
    v.wrap(p.query, 0, p.query.length);
    const len = writeDnsErrorResponse(v, DnsRcode.servFail, out);
    out[0] = p.clientId >>> 8;
    out[1] = p.clientId & 0xff;
    this.log?.debug({ upstreams: this.upstreams.length, attempts: p.sends }, 'dns: no upstream answered, SERVFAIL');
    this.deliver(p, out.subarray(0, len));
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const v = this.view;
    if (!v.wrap(msg, 0, msg.length) || !v.qr) {
      this.counters.unmatched++;
      return;
    }
    const p = this.pending.get(v.id);
    if (!p) {
      this.counters.unmatched++;
      return;
    }
    const from = this.upstreamIndex(rinfo.address, rinfo.port);
    if (
      from < 0 || !p.sentTo.has(from) || !v.parseQuestion(this.nameScratch) ||
      v.qtype !== p.qtype || v.qclass !== p.qclass || !dnsNamesEqual(this.nameScratch, v.nameLen, p.name, p.name.length)
    ) {
      this.counters.mismatched++;
      return;
    }
    const rcode = v.rcode;
    if (
      (rcode === DnsRcode.servFail || rcode === DnsRcode.refused || rcode === DnsRcode.notImp) &&
      p.sends < this.attempts && this.upstreams.length > 1
    ) {
      // Ask the next upstream now; a late failure from an earlier one is not a reason to
      // abandon the attempt in flight.
      if (from === (p.sends - 1) % this.upstreams.length) this.advance(p, p.sends);
      return;
    }
    this.finish(p);
    msg[0] = p.clientId >>> 8;
    msg[1] = p.clientId & 0xff;
    this.counters.answered++;
    this.deliver(p, msg);
  }

  private finish(p: Pending): void {
    if (p.timer) clearTimeout(p.timer);
    p.timer = null;
    this.pending.delete(p.upstreamId);
  }

  private deliver(p: Pending, response: Uint8Array): void {
    try {
      p.reply(response);
    } catch (err) {
      this.internalError('a DNS answer for the container', err);
    }
  }

  private internalError(what: string, err: unknown): void {
    reportInternalError(this.log ?? { error() {} }, this.counters, what, err);
  }

  private upstreamIndex(address: string, port: number): number {
    const a = normalize(address);
    for (let i = 0; i < this.upstreams.length; i++) {
      const u = this.upstreams[i];
      if (u.port === port && u.address === a) return i;
    }
    return -1;
  }

  private socket(family: Family): dgram.Socket | null {
    const existing = this.sockets[family];
    if (existing) return existing;
    let s: dgram.Socket;
    try {
      // A larger receive buffer absorbs bursts of answers (the kernel caps it at rmem_max).
      s = dgram.createSocket({ type: family === 4 ? 'udp4' : 'udp6', recvBufferSize: 1 << 20 });
      s.on('message', (msg, rinfo) => {
        try {
          this.onMessage(msg, rinfo);
        } catch (e) {
          this.internalError('a DNS datagram from an upstream', e);
        }
      });
      s.on('error', (err) => {
        this.log?.warn({ err: err.message, family }, `dns: IPv${family} upstream socket failed; a new one is made for the next query`);
        if (this.sockets[family] === s) this.sockets[family] = null;
        try { s.close(); } catch { /* already closed */ }
      });
      const bind = family === 4 ? this.bindAddress.v4 : this.bindAddress.v6;
      s.bind({ port: 0, address: bind ?? (family === 4 ? '0.0.0.0' : '::'), exclusive: true });
      s.unref();
    } catch (err) {
      this.log?.warn({ err: (err as Error).message, family }, `dns: cannot open an IPv${family} socket for the upstreams`);
      return null;
    }
    this.sockets[family] = s;
    return s;
  }

  /** A random 16-bit id no query in flight uses. */
  private freshId(): number {
    for (;;) {
      if (this.randomLeft === 0) {
        warmRandom()(this.random);
        this.randomLeft = this.random.length;
      }
      const id = this.random[--this.randomLeft];
      if (!this.pending.has(id)) return id;
    }
  }
}

function isIpAddress(text: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(text) || ipaddr.IPv6.isValid(text);
}

function stripScope(address: string): string {
  const i = address.indexOf('%');
  return i < 0 ? address : address.slice(0, i);
}

function normalize(address: string): string {
  const a = stripScope(address);
  try {
    const p = ipaddr.parse(a);
    return p.kind() === 'ipv6' && (p as ipaddr.IPv6).isIPv4MappedAddress() ? (p as ipaddr.IPv6).toIPv4Address().toString() : p.toString();
  } catch {
    return a;
  }
}

/**
 * The nameservers of a resolv.conf, port 53 each, in file order, duplicates removed. IPv6
 * addresses lose a `%scope` suffix. Lines that are not `nameserver ADDR` with a valid address are
 * ignored, as the C library does. Throws an error naming the path when the file cannot be read.
 */
export function readResolvConf(path: string): DnsUpstream[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new Error(`cannot read DNS servers from ${path}: ${why}; pass --dns-upstream ADDR or --resolv-conf PATH`);
  }
  return parseResolvConf(text);
}

/** Parse resolv.conf text; see `readResolvConf`. */
export function parseResolvConf(text: string): DnsUpstream[] {
  const out: DnsUpstream[] = [];
  const seen = new Set<string>();
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [keyword, value] = line.split(/\s+/);
    if (keyword !== 'nameserver' || !value) continue;
    const address = stripScope(value);
    if (!isIpAddress(address)) continue;
    const canonical = ipaddr.parse(address).toString();
    if (seen.has(canonical)) continue;
    seen.add(canonical);
    out.push({ address: canonical, port: 53 });
  }
  return out;
}
