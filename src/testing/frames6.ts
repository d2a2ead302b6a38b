/** IPv6 frame builders for tests, made with the same wire writers the stack uses. */

import { ETH_HEADER_LEN, ETHERTYPE_IPV6, writeEthernetHeader } from '../wire/ethernet.js';
import { IPV6_HEADER_LEN, NH_ICMPV6, NH_TCP, NH_UDP, multicastMac, parseIpv6, writeIpv6Header } from '../wire/ipv6.js';
import { TCP_CHECKSUM_OFFSET, TCP_MIN_HEADER, writeSynOptions, writeTcpHeader } from '../wire/tcp.js';
import { UDP_HEADER_LEN, writeUdpHeader } from '../wire/udp.js';
import { finish, partialSum, pseudoSum6 } from '../wire/checksum.js';
import { writeU16 } from '../wire/bytes.js';
import { GUEST_MAC, GW_MAC } from './frames.js';

export const ip6 = parseIpv6;

/** An IPv6 frame: header, then `ext` (extension headers, already chained), then `l4`. */
export function ipv6Frame(
  src: Uint8Array, dst: Uint8Array, nextHeader: number, l4: Uint8Array,
  opts: { hopLimit?: number; ext?: Uint8Array; payloadLength?: number } = {},
): Uint8Array {
  const ext = opts.ext ?? new Uint8Array(0);
  const f = new Uint8Array(ETH_HEADER_LEN + IPV6_HEADER_LEN + ext.length + l4.length);
  const dstMac = dst[0] === 0xff ? multicastMac(dst, 0, new Uint8Array(6)) : GW_MAC;
  writeEthernetHeader(f, 0, dstMac, GUEST_MAC, ETHERTYPE_IPV6);
  writeIpv6Header(f, ETH_HEADER_LEN, src, 0, dst, 0, nextHeader, opts.payloadLength ?? ext.length + l4.length, opts.hopLimit ?? 64);
  f.set(ext, ETH_HEADER_LEN + IPV6_HEADER_LEN);
  f.set(l4, ETH_HEADER_LEN + IPV6_HEADER_LEN + ext.length);
  return f;
}

/** An ICMPv6 message (checksum filled in) in a frame. */
export function icmp6Frame(src: Uint8Array, dst: Uint8Array, msg: Uint8Array, opts: { hopLimit?: number } = {}): Uint8Array {
  const m = msg.slice();
  m[2] = 0;
  m[3] = 0;
  writeU16(m, 2, finish(partialSum(m, 0, m.length, pseudoSum6(src, 0, dst, 0, NH_ICMPV6, m.length))));
  return ipv6Frame(src, dst, NH_ICMPV6, m, opts);
}

export function udp6Frame(src: Uint8Array, dst: Uint8Array, sport: number, dport: number, payload: Uint8Array): Uint8Array {
  const u = new Uint8Array(UDP_HEADER_LEN + payload.length);
  writeUdpHeader(u, 0, sport, dport, payload.length);
  u.set(payload, UDP_HEADER_LEN);
  const c = finish(partialSum(u, 0, u.length, pseudoSum6(src, 0, dst, 0, NH_UDP, u.length)));
  writeU16(u, 6, c === 0 ? 0xffff : c);
  return ipv6Frame(src, dst, NH_UDP, u);
}

export function tcp6Frame(
  src: Uint8Array, dst: Uint8Array, sport: number, dport: number, seq: number, ack: number, flags: number,
  window: number, payload: Uint8Array = new Uint8Array(0), syn?: { mss: number; wscale: number },
): Uint8Array {
  const optLen = syn ? 8 : 0;
  const t = new Uint8Array(TCP_MIN_HEADER + optLen + payload.length);
  writeTcpHeader(t, 0, sport, dport, seq, ack, flags, window, optLen);
  if (syn) writeSynOptions(t, TCP_MIN_HEADER, syn.mss, syn.wscale);
  t.set(payload, TCP_MIN_HEADER + optLen);
  writeU16(t, TCP_CHECKSUM_OFFSET, finish(partialSum(t, 0, t.length, pseudoSum6(src, 0, dst, 0, NH_TCP, t.length))));
  return ipv6Frame(src, dst, NH_TCP, t);
}

/** An echo request message (checksum left 0: icmp6Frame fills it). */
export function echoRequest6(id: number, seq: number, data: Uint8Array): Uint8Array {
  const m = new Uint8Array(8 + data.length);
  m[0] = 128;
  writeU16(m, 4, id);
  writeU16(m, 6, seq);
  m.set(data, 8);
  return m;
}

/** A neighbour solicitation for `target` with a source link-layer option (unless `dad`). */
export function neighbourSolicit(target: Uint8Array, dad = false): Uint8Array {
  const m = new Uint8Array(dad ? 24 : 32);
  m[0] = 135;
  m.set(target, 8);
  if (!dad) {
    m[24] = 1;
    m[25] = 1;
    m.set(GUEST_MAC, 26);
  }
  return m;
}

export function routerSolicit(): Uint8Array {
  const m = new Uint8Array(16);
  m[0] = 133;
  m[8] = 1;
  m[9] = 1;
  m.set(GUEST_MAC, 10);
  return m;
}

/** A generic extension header: next header, 8*(1+lenUnits) bytes of padding options (PadN). */
export function extHeader(next: number, lenUnits = 0): Uint8Array {
  const h = new Uint8Array(8 * (lenUnits + 1));
  h[0] = next;
  h[1] = lenUnits;
  h[2] = 1; // PadN
  h[3] = h.length - 4;
  return h;
}

/** A fragment header. */
export function fragmentHeader(next: number, offset: number, more: boolean, id: number): Uint8Array {
  const h = new Uint8Array(8);
  h[0] = next;
  writeU16(h, 2, offset | (more ? 1 : 0));
  h[4] = id >>> 24;
  h[5] = (id >>> 16) & 0xff;
  h[6] = (id >>> 8) & 0xff;
  h[7] = id & 0xff;
  return h;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
