/**
 * IPv6 header view (RFC 8200) and the extension-header walker. Addresses stay bytes in the frame
 * (16 at `srcOff`/`dstOff`); text is made only where a socket API needs it.
 *
 * The walker follows the Next Header chain through hop-by-hop, routing, fragment and destination
 * options headers with a bound on how many it will visit and a length check on each, so a
 * crafted chain (loops of destination options, a header claiming bytes past the packet,
 * hop-by-hop anywhere but first) is rejected with a named defect instead of being trusted.
 */

import ipaddr from 'ipaddr.js';
import { readU16, readU32, writeU16, writeU32 } from './bytes.js';

export const IPV6_HEADER_LEN = 40;
export const NH_HOPOPTS = 0;
export const NH_TCP = 6;
export const NH_UDP = 17;
export const NH_ROUTING = 43;
export const NH_FRAGMENT = 44;
export const NH_ESP = 50;
export const NH_AH = 51;
export const NH_ICMPV6 = 58;
export const NH_NONE = 59;
export const NH_DSTOPTS = 60;
export const FRAGMENT_HEADER_LEN = 8;
/** Most extension headers we walk before calling the chain a loop (real stacks send 0–3). */
export const MAX_EXTENSION_HEADERS = 8;

const field = { verTcFl: 0, payloadLength: 4, nextHeader: 6, hopLimit: 7, src: 8, dst: 24 } as const;

/** Why a packet was rejected by `Ipv6Packet.check` or `walk`. */
export type Ipv6Defect =
  | 'ipv6-truncated' | 'ipv6-version' | 'ipv6-payload-length'
  | 'ipv6-ext-truncated' | 'ipv6-ext-loop' | 'ipv6-ext-order';

/** A zero-copy IPv6 view; reuse one instance with `wrap`. After `walk`, the upper-layer fields are set. */
export class Ipv6Packet {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  /** Bytes available (may exceed 40 + payload length: Ethernet padding). */
  avail = 0;

  /** Upper-layer protocol after the extension headers (NH_NONE when there is none). */
  upperProto = NH_NONE;
  /** Offset in `buf` and length of the upper-layer data. */
  upperOff = 0;
  upperLen = 0;
  /** Offset in `buf` of the fragment header, or -1 when the packet is not a fragment. */
  fragmentHeaderOff = -1;
  /** Offset in `buf` of the byte holding the Next Header value that points at the fragment header. */
  fragmentNhOff = -1;

  wrap(buf: Uint8Array, off: number, avail: number): this {
    this.buf = buf;
    this.off = off;
    this.avail = avail;
    return this;
  }

  /** Validate version and payload length; returns a defect or null. */
  check(): Ipv6Defect | null {
    if (this.avail < IPV6_HEADER_LEN) return 'ipv6-truncated';
    if (this.buf[this.off] >> 4 !== 6) return 'ipv6-version';
    // Payload length 0 with a hop-by-hop header would be a jumbogram: never on a tap.
    const pl = this.payloadLength;
    if (IPV6_HEADER_LEN + pl > this.avail) return 'ipv6-payload-length';
    if (pl === 0 && this.nextHeader === NH_HOPOPTS) return 'ipv6-payload-length';
    return null;
  }

  get payloadLength(): number { return readU16(this.buf, this.off + field.payloadLength); }
  get nextHeader(): number { return this.buf[this.off + field.nextHeader]; }
  get hopLimit(): number { return this.buf[this.off + field.hopLimit]; }
  get srcOff(): number { return this.off + field.src; }
  get dstOff(): number { return this.off + field.dst; }
  /** 40 + payload length: the packet without Ethernet padding. */
  get totalLength(): number { return IPV6_HEADER_LEN + this.payloadLength; }
  get payloadOff(): number { return this.off + IPV6_HEADER_LEN; }
  get isFragment(): boolean { return this.fragmentHeaderOff >= 0; }
  /** Fragment offset in bytes (fragments only). */
  get fragmentOffset(): number { return readU16(this.buf, this.fragmentHeaderOff + 2) & 0xfff8; }
  get moreFragments(): boolean { return (this.buf[this.fragmentHeaderOff + 3] & 1) === 1; }
  get fragmentId(): number { return readU32(this.buf, this.fragmentHeaderOff + 4); }
  /** Whether the destination is multicast (ff00::/8). */
  get dstIsMulticast(): boolean { return this.buf[this.off + field.dst] === 0xff; }

  /**
   * Walk the extension headers of a checked packet. Sets upperProto/upperOff/upperLen and, for
   * a fragment, fragmentHeaderOff (the walk stops there: what follows is only whole after
   * reassembly). Returns a defect or null.
   */
  walk(): Ipv6Defect | null {
    const b = this.buf;
    const end = this.off + this.totalLength;
    let nh = this.nextHeader;
    let nhOff = this.off + field.nextHeader;
    let p = this.payloadOff;
    this.fragmentHeaderOff = -1;
    this.fragmentNhOff = -1;
    for (let n = 0; ; n++) {
      if (nh === NH_HOPOPTS && n !== 0) return 'ipv6-ext-order';
      switch (nh) {
        case NH_HOPOPTS:
        case NH_ROUTING:
        case NH_DSTOPTS: {
          if (n >= MAX_EXTENSION_HEADERS) return 'ipv6-ext-loop';
          if (p + 8 > end) return 'ipv6-ext-truncated';
          const len = (b[p + 1] + 1) * 8;
          if (p + len > end) return 'ipv6-ext-truncated';
          nhOff = p;
          nh = b[p];
          p += len;
          continue;
        }
        case NH_FRAGMENT:
          if (n >= MAX_EXTENSION_HEADERS) return 'ipv6-ext-loop';
          if (p + FRAGMENT_HEADER_LEN > end) return 'ipv6-ext-truncated';
          this.fragmentHeaderOff = p;
          this.fragmentNhOff = nhOff;
          this.upperProto = b[p];
          this.upperOff = p + FRAGMENT_HEADER_LEN;
          this.upperLen = end - this.upperOff;
          // An atomic fragment (offset 0, no more) is a whole packet: carry on past it.
          if ((readU16(b, p + 2) & 0xfff9) === 0) {
            this.fragmentHeaderOff = -1;
            this.fragmentNhOff = -1;
            nhOff = p;
            nh = b[p];
            p += FRAGMENT_HEADER_LEN;
            continue;
          }
          return null;
        default:
          this.upperProto = nh;
          this.upperOff = p;
          this.upperLen = end - p;
          return null;
      }
    }
  }
}

/** Write a 40-byte IPv6 header at `off` (traffic class and flow label 0). */
export function writeIpv6Header(
  buf: Uint8Array, off: number,
  src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number,
  nextHeader: number, payloadLen: number, hopLimit = 64,
): void {
  writeU32(buf, off, 0x60000000);
  writeU16(buf, off + field.payloadLength, payloadLen);
  buf[off + field.nextHeader] = nextHeader;
  buf[off + field.hopLimit] = hopLimit;
  buf.set(src.subarray(srcOff, srcOff + 16), off + field.src);
  buf.set(dst.subarray(dstOff, dstOff + 16), off + field.dst);
}

/** Text → 16 bytes (parsed by ipaddr.js); throws on bad input. */
export function parseIpv6(text: string): Uint8Array {
  return Uint8Array.from(ipaddr.IPv6.parse(text).toByteArray());
}

/** 16 bytes → RFC 5952 text, as Node's socket APIs report addresses. */
export function formatIpv6(buf: Uint8Array, off = 0): string {
  // Find the longest run (≥ 2) of zero groups.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (buf[off + 2 * i] === 0 && buf[off + 2 * i + 1] === 0) {
      let j = i;
      while (j < 8 && buf[off + 2 * j] === 0 && buf[off + 2 * j + 1] === 0) j++;
      if (j - i > bestLen) {
        bestStart = i;
        bestLen = j - i;
      }
      i = j;
    } else {
      i++;
    }
  }
  if (bestLen < 2) bestStart = -1;
  let s = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      s += i === 0 ? '::' : ':';
      i += bestLen - 1;
      continue;
    }
    s += ((buf[off + 2 * i] << 8) | buf[off + 2 * i + 1]).toString(16);
    if (i < 7) s += ':';
  }
  // ipaddr/Node render an IPv4-mapped address with a dotted tail; keep those consistent.
  if (bestStart === 0 && bestLen === 5 && buf[off + 10] === 0xff && buf[off + 11] === 0xff) {
    return `::ffff:${buf[off + 12]}.${buf[off + 13]}.${buf[off + 14]}.${buf[off + 15]}`;
  }
  return s;
}

/** Whether 16 bytes at `a[ao]` equal those at `b[bo]`. */
export function ipv6Equals(a: Uint8Array, ao: number, b: Uint8Array, bo: number): boolean {
  for (let i = 0; i < 16; i++) if (a[ao + i] !== b[bo + i]) return false;
  return true;
}

/** Whether the first 8 bytes (the /64) match. */
export function inPrefix64(addr: Uint8Array, off: number, prefix: Uint8Array): boolean {
  for (let i = 0; i < 8; i++) if (addr[off + i] !== prefix[i]) return false;
  return true;
}

/** fe80::/10 */
export function isLinkLocal(b: Uint8Array, off: number): boolean {
  return b[off] === 0xfe && (b[off + 1] & 0xc0) === 0x80;
}

export function isUnspecified(b: Uint8Array, off: number): boolean {
  for (let i = 0; i < 16; i++) if (b[off + i] !== 0) return false;
  return true;
}

/** Solicited-node multicast address ff02::1:ffXX:XXXX for a target. */
export function solicitedNode(target: Uint8Array, off = 0): Uint8Array {
  const a = parseIpv6('ff02::1:ff00:0');
  a[13] = target[off + 13];
  a[14] = target[off + 14];
  a[15] = target[off + 15];
  return a;
}

/** The Ethernet multicast MAC for an IPv6 multicast address: 33:33 + its last 4 bytes. */
export function multicastMac(addr: Uint8Array, off: number, out: Uint8Array): Uint8Array {
  out[0] = 0x33;
  out[1] = 0x33;
  out[2] = addr[off + 12];
  out[3] = addr[off + 13];
  out[4] = addr[off + 14];
  out[5] = addr[off + 15];
  return out;
}
