/** IPv4 header view (RFC 791). Addresses are unsigned 32-bit numbers. */

import ipaddr from 'ipaddr.js';
import { checksum, partialSum } from './checksum.js';
import { readU16, readU32, writeU16, writeU32 } from './bytes.js';

export const IPV4_MIN_HEADER = 20;
export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_ICMPV6 = 58;

const field = {
  verIhl: 0, tos: 1, totalLength: 2, id: 4, flagsFrag: 6, ttl: 8, protocol: 9, checksum: 10, src: 12, dst: 16,
} as const;

/** Why a packet was rejected by `Ipv4Packet.check`. */
export type Ipv4Defect = 'ipv4-truncated' | 'ipv4-version' | 'ipv4-ihl' | 'ipv4-length' | 'ipv4-checksum';

export class Ipv4Packet {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  /** Bytes available in the buffer for this packet (may exceed totalLength: Ethernet padding). */
  avail = 0;

  wrap(buf: Uint8Array, off: number, avail: number): this {
    this.buf = buf;
    this.off = off;
    this.avail = avail;
    return this;
  }

  /** Validate version, IHL, total length and header checksum; returns a defect or null. */
  check(): Ipv4Defect | null {
    if (this.avail < IPV4_MIN_HEADER) return 'ipv4-truncated';
    const b = this.buf[this.off];
    if (b >> 4 !== 4) return 'ipv4-version';
    const hl = (b & 0x0f) * 4;
    if (hl < IPV4_MIN_HEADER || hl > this.avail) return 'ipv4-ihl';
    const tl = this.totalLength;
    if (tl < hl || tl > this.avail) return 'ipv4-length';
    if (partialSum(this.buf, this.off, hl, 0) !== 0xffff) return 'ipv4-checksum';
    return null;
  }

  get headerLen(): number { return (this.buf[this.off] & 0x0f) * 4; }
  get tos(): number { return this.buf[this.off + field.tos]; }
  get totalLength(): number { return readU16(this.buf, this.off + field.totalLength); }
  get id(): number { return readU16(this.buf, this.off + field.id); }
  get dontFragment(): boolean { return (this.buf[this.off + field.flagsFrag] & 0x40) !== 0; }
  get moreFragments(): boolean { return (this.buf[this.off + field.flagsFrag] & 0x20) !== 0; }
  /** Fragment offset in bytes. */
  get fragmentOffset(): number { return (readU16(this.buf, this.off + field.flagsFrag) & 0x1fff) * 8; }
  get isFragment(): boolean { return this.moreFragments || this.fragmentOffset !== 0; }
  get ttl(): number { return this.buf[this.off + field.ttl]; }
  get protocol(): number { return this.buf[this.off + field.protocol]; }
  get src(): number { return readU32(this.buf, this.off + field.src); }
  get dst(): number { return readU32(this.buf, this.off + field.dst); }
  get payloadOff(): number { return this.off + this.headerLen; }
  get payloadLen(): number { return this.totalLength - this.headerLen; }
}

/**
 * Write a 20-byte IPv4 header (no options) at `off`, checksum included.
 * `payloadLen` is the length of what follows the header.
 */
export function writeIpv4Header(
  buf: Uint8Array,
  off: number,
  src: number,
  dst: number,
  protocol: number,
  payloadLen: number,
  ttl = 64,
  id = 0,
  dontFragment = true,
): void {
  buf[off] = 0x45;
  buf[off + field.tos] = 0;
  writeU16(buf, off + field.totalLength, IPV4_MIN_HEADER + payloadLen);
  writeU16(buf, off + field.id, id);
  buf[off + field.flagsFrag] = dontFragment ? 0x40 : 0;
  buf[off + field.flagsFrag + 1] = 0;
  buf[off + field.ttl] = ttl;
  buf[off + field.protocol] = protocol;
  buf[off + field.checksum] = 0;
  buf[off + field.checksum + 1] = 0;
  writeU32(buf, off + field.src, src);
  writeU32(buf, off + field.dst, dst);
  writeU16(buf, off + field.checksum, checksum(buf, off, IPV4_MIN_HEADER));
}

/** "a.b.c.d" → uint32 (parsed by ipaddr.js); throws on bad input. */
export function parseIpv4(text: string): number {
  if (!ipaddr.IPv4.isValidFourPartDecimal(text)) throw new Error(`invalid IPv4 address "${text}"`);
  const b = ipaddr.IPv4.parse(text).octets;
  return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
}

export function formatIpv4(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}
