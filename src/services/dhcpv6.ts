/**
 * Stateless DHCPv6 server (RFC 8415 §6.1, RFC 3646). Guests configure addresses by SLAAC from our
 * router advertisements; DHCPv6 only tells them the DNS servers and search list. So:
 *   INFORMATION-REQUEST → REPLY with DNS servers, search list and an information refresh time;
 *   SOLICIT             → ADVERTISE whose IAs say NoAddrsAvail (clients then ignore us for
 *                         addresses: RFC 8415 §18.2.9) but which still carries the DNS options;
 *   REQUEST             → REPLY, IAs NoAddrsAvail;  RENEW/REBIND → REPLY, IAs NoBinding;
 *   RELEASE/DECLINE     → REPLY, Success;           anything else → no answer.
 * Messages naming another server (Server Identifier) are not for us. Parsing is bounds-checked;
 * a malformed message gets no answer and is counted.
 */

import { readU16, writeU32 } from '../wire/bytes.js';
import { parseIpv6 } from '../wire/ipv6.js';

export const DHCP6_CLIENT_PORT = 546;
export const DHCP6_SERVER_PORT = 547;

export const MSG_SOLICIT = 1;
export const MSG_ADVERTISE = 2;
export const MSG_REQUEST = 3;
export const MSG_CONFIRM = 4;
export const MSG_RENEW = 5;
export const MSG_REBIND = 6;
export const MSG_REPLY = 7;
export const MSG_RELEASE = 8;
export const MSG_DECLINE = 9;
export const MSG_INFORMATION_REQUEST = 11;

export const OPT_CLIENTID = 1;
export const OPT_SERVERID = 2;
export const OPT_IA_NA = 3;
export const OPT_IA_TA = 4;
export const OPT_STATUS_CODE = 13;
export const OPT_DNS_SERVERS = 23;
export const OPT_DOMAIN_LIST = 24;
export const OPT_IA_PD = 25;
export const OPT_INFORMATION_REFRESH_TIME = 32;

export const STATUS_SUCCESS = 0;
export const STATUS_NO_ADDRS_AVAIL = 2;
export const STATUS_NO_BINDING = 3;

/** Largest message we look at (a client message is far smaller). */
const MAX_MESSAGE = 1500;
const MAX_OPTIONS = 64;

export interface Dhcpv6ServerOptions {
  /** Our MAC: the server DUID is DUID-LL from it. */
  mac: Uint8Array;
  /** DNS server addresses (text); empty: no option. */
  dns: string[];
  search?: string[];
  /** Information refresh time (seconds). */
  refreshSeconds?: number;
}

interface Parsed {
  type: number;
  xid: Uint8Array;
  clientId: Uint8Array | null;
  serverId: Uint8Array | null;
  /** IA_NA / IA_TA / IA_PD options: code and IAID (4 bytes). */
  ias: { code: number; iaid: Uint8Array }[];
}

export class Dhcpv6Server {
  readonly duid: Uint8Array;
  readonly counters = { informationRequests: 0, solicits: 0, replies: 0, ignored: 0, malformed: 0 };
  private readonly dns: Uint8Array[];
  private readonly search: Uint8Array;
  private readonly refresh: number;

  constructor(o: Dhcpv6ServerOptions) {
    // DUID-LL: type 3, hardware type 1 (Ethernet), MAC.
    this.duid = new Uint8Array([0, 3, 0, 1, ...o.mac]);
    this.dns = o.dns.map(parseIpv6);
    this.search = encodeNames(o.search ?? []);
    this.refresh = o.refreshSeconds ?? 86400;
  }

  /** Handle a client message (UDP payload). Returns the reply payload, or null for no answer. */
  handle(msg: Uint8Array): Uint8Array | null {
    const p = parse(msg);
    if (!p) {
      this.counters.malformed++;
      return null;
    }
    if (p.serverId && !sameBytes(p.serverId, this.duid)) {
      this.counters.ignored++;
      return null;
    }
    switch (p.type) {
      case MSG_INFORMATION_REQUEST:
        this.counters.informationRequests++;
        return this.reply(MSG_REPLY, p, null, true);
      case MSG_SOLICIT:
        if (!p.clientId) break;
        this.counters.solicits++;
        return this.reply(MSG_ADVERTISE, p, STATUS_NO_ADDRS_AVAIL, true);
      case MSG_REQUEST:
        if (!p.clientId || !p.serverId) break;
        return this.reply(MSG_REPLY, p, STATUS_NO_ADDRS_AVAIL, true);
      case MSG_RENEW:
        if (!p.clientId || !p.serverId) break;
        return this.reply(MSG_REPLY, p, STATUS_NO_BINDING, true);
      case MSG_REBIND:
        if (!p.clientId) break;
        return this.reply(MSG_REPLY, p, STATUS_NO_BINDING, true);
      case MSG_RELEASE:
      case MSG_DECLINE:
        if (!p.clientId || !p.serverId) break;
        return this.reply(MSG_REPLY, p, null, false, STATUS_SUCCESS);
      default:
        break;
    }
    this.counters.ignored++;
    return null;
  }

  private reply(type: number, p: Parsed, iaStatus: number | null, withDns: boolean, topStatus?: number): Uint8Array {
    const out: number[] = [type, p.xid[0], p.xid[1], p.xid[2]];
    const opt = (code: number, body: ArrayLike<number>): void => {
      out.push(code >> 8, code & 0xff, body.length >> 8, body.length & 0xff, ...Array.from(body));
    };
    opt(OPT_SERVERID, this.duid);
    if (p.clientId) opt(OPT_CLIENTID, p.clientId);
    if (topStatus !== undefined) opt(OPT_STATUS_CODE, statusBody(topStatus));
    if (iaStatus !== null) {
      for (const ia of p.ias) {
        const status = statusBody(iaStatus);
        const st = [OPT_STATUS_CODE >> 8, OPT_STATUS_CODE & 0xff, status.length >> 8, status.length & 0xff, ...status];
        // IA_NA and IA_PD carry IAID, T1, T2; IA_TA only the IAID.
        const head = ia.code === OPT_IA_TA ? [...ia.iaid] : [...ia.iaid, 0, 0, 0, 0, 0, 0, 0, 0];
        opt(ia.code, [...head, ...st]);
      }
    }
    if (withDns) {
      if (this.dns.length > 0) {
        const body: number[] = [];
        for (const a of this.dns) body.push(...a);
        opt(OPT_DNS_SERVERS, body);
      }
      if (this.search.length > 0) opt(OPT_DOMAIN_LIST, this.search);
      if (type === MSG_REPLY && p.type === MSG_INFORMATION_REQUEST) {
        const t = new Uint8Array(4);
        writeU32(t, 0, this.refresh);
        opt(OPT_INFORMATION_REFRESH_TIME, t);
      }
    }
    this.counters.replies++;
    return Uint8Array.from(out);
  }
}

function statusBody(code: number): number[] {
  const text = code === STATUS_NO_ADDRS_AVAIL ? 'addresses come from SLAAC'
    : code === STATUS_NO_BINDING ? 'no bindings here' : 'ok';
  return [code >> 8, code & 0xff, ...Array.from(text, (c) => c.charCodeAt(0))];
}

/** Parse a client message; null when malformed (options overrunning, too many, relay messages). */
export function parse(msg: Uint8Array): Parsed | null {
  if (msg.length < 4 || msg.length > MAX_MESSAGE) return null;
  const type = msg[0];
  if (type === 12 || type === 13) return null; // relay messages: there is no relay on a tap
  const p: Parsed = { type, xid: msg.subarray(1, 4), clientId: null, serverId: null, ias: [] };
  let o = 4;
  let n = 0;
  while (o < msg.length) {
    if (++n > MAX_OPTIONS || o + 4 > msg.length) return null;
    const code = readU16(msg, o);
    const len = readU16(msg, o + 2);
    const body = o + 4;
    if (body + len > msg.length) return null;
    switch (code) {
      case OPT_CLIENTID:
        if (len < 2 || len > 130) return null;
        p.clientId = msg.slice(body, body + len);
        break;
      case OPT_SERVERID:
        if (len < 2 || len > 130) return null;
        p.serverId = msg.slice(body, body + len);
        break;
      case OPT_IA_NA:
      case OPT_IA_PD:
        if (len < 12) return null;
        if (p.ias.length < 8) p.ias.push({ code, iaid: msg.slice(body, body + 4) });
        break;
      case OPT_IA_TA:
        if (len < 4) return null;
        if (p.ias.length < 8) p.ias.push({ code, iaid: msg.slice(body, body + 4) });
        break;
      default:
        break;
    }
    o = body + len;
  }
  return p;
}

/** Domain names in DNS wire format (RFC 1035 §3.1), uncompressed, as option 24 wants them. */
export function encodeNames(names: string[]): Uint8Array {
  const out: number[] = [];
  for (const n of names) {
    const labels = n.replace(/\.$/, '').split('.').filter((l) => l.length > 0 && l.length <= 63);
    if (labels.length === 0) continue;
    for (const l of labels) out.push(l.length, ...Array.from(l, (c) => c.charCodeAt(0) & 0x7f));
    out.push(0);
  }
  return Uint8Array.from(out);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

