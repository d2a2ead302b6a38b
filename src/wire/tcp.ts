/** TCP segment view (RFC 9293) with the options slipway uses: MSS, window scale, SACK-permitted, timestamps. */

import { readU16, readU32, writeU16, writeU32 } from './bytes.js';

export const TCP_MIN_HEADER = 20;
export const FIN = 0x01;
export const SYN = 0x02;
export const RST = 0x04;
export const PSH = 0x08;
export const ACK = 0x10;
export const URG = 0x20;

const field = { srcPort: 0, dstPort: 2, seq: 4, ack: 8, dataOff: 12, flags: 13, window: 14, checksum: 16, urgent: 18 } as const;

/** Options found on a segment (only meaningful on SYN for mss/wscale/sackOk). */
export interface TcpOptions {
  mss: number; // 0 when absent
  wscale: number; // -1 when absent
  sackOk: boolean;
}

export class TcpSegment {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  len = 0;

  /** Point at a segment of `len` bytes; false when the header is truncated or the data offset is bad. */
  wrap(buf: Uint8Array, off: number, len: number): boolean {
    this.buf = buf;
    this.off = off;
    this.len = len;
    if (len < TCP_MIN_HEADER) return false;
    const hl = this.headerLen;
    return hl >= TCP_MIN_HEADER && hl <= len;
  }
  get srcPort(): number { return readU16(this.buf, this.off + field.srcPort); }
  get dstPort(): number { return readU16(this.buf, this.off + field.dstPort); }
  get seq(): number { return readU32(this.buf, this.off + field.seq); }
  get ack(): number { return readU32(this.buf, this.off + field.ack); }
  get headerLen(): number { return (this.buf[this.off + field.dataOff] >> 4) * 4; }
  get flags(): number { return this.buf[this.off + field.flags]; }
  get window(): number { return readU16(this.buf, this.off + field.window); }
  get payloadOff(): number { return this.off + this.headerLen; }
  get payloadLen(): number { return this.len - this.headerLen; }

  /** Parse options into `out` (reused object: no allocation). Malformed options end the scan. */
  options(out: TcpOptions): TcpOptions {
    out.mss = 0;
    out.wscale = -1;
    out.sackOk = false;
    const b = this.buf;
    let i = this.off + TCP_MIN_HEADER;
    const end = this.off + this.headerLen;
    while (i < end) {
      const kind = b[i];
      if (kind === 0) break;
      if (kind === 1) { i++; continue; }
      if (i + 1 >= end) break;
      const l = b[i + 1];
      if (l < 2 || i + l > end) break;
      if (kind === 2 && l === 4) out.mss = readU16(b, i + 2);
      else if (kind === 3 && l === 3) out.wscale = Math.min(b[i + 2], 14);
      else if (kind === 4 && l === 2) out.sackOk = true;
      i += l;
    }
    return out;
  }
}

/**
 * Write a TCP header at `off`; `optLen` bytes of options (multiple of 4) are expected to be
 * written by the caller right after the 20 fixed bytes. The checksum field is left zero.
 */
export function writeTcpHeader(
  buf: Uint8Array,
  off: number,
  srcPort: number,
  dstPort: number,
  seq: number,
  ack: number,
  flags: number,
  window: number,
  optLen = 0,
): void {
  writeU16(buf, off + field.srcPort, srcPort);
  writeU16(buf, off + field.dstPort, dstPort);
  writeU32(buf, off + field.seq, seq >>> 0);
  writeU32(buf, off + field.ack, ack >>> 0);
  buf[off + field.dataOff] = ((TCP_MIN_HEADER + optLen) / 4) << 4;
  buf[off + field.flags] = flags;
  writeU16(buf, off + field.window, window);
  buf[off + field.checksum] = 0;
  buf[off + field.checksum + 1] = 0;
  buf[off + field.urgent] = 0;
  buf[off + field.urgent + 1] = 0;
}

export const TCP_CHECKSUM_OFFSET = field.checksum;

/** Write SYN options: MSS, then NOP + window scale; returns bytes written (8). */
export function writeSynOptions(buf: Uint8Array, off: number, mss: number, wscale: number): number {
  buf[off] = 2; buf[off + 1] = 4; writeU16(buf, off + 2, mss);
  buf[off + 4] = 1; buf[off + 5] = 3; buf[off + 6] = 3; buf[off + 7] = wscale;
  return 8;
}

/** Sequence-space comparison helpers (mod 2^32). */
export function seqLt(a: number, b: number): boolean { return ((a - b) | 0) < 0; }
export function seqLe(a: number, b: number): boolean { return ((a - b) | 0) <= 0; }
export function seqDiff(a: number, b: number): number { return (a - b) | 0; }
export function seqAdd(a: number, n: number): number { return (a + n) >>> 0; }
