/** UDP datagram view (RFC 768). */

import { readU16, writeU16 } from './bytes.js';

export const UDP_HEADER_LEN = 8;

export class UdpDatagram {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;

  /** Point at a datagram with `avail` bytes from the IP payload; false when the header or length is bad. */
  wrap(buf: Uint8Array, off: number, avail: number): boolean {
    this.buf = buf;
    this.off = off;
    if (avail < UDP_HEADER_LEN) return false;
    const l = this.length;
    return l >= UDP_HEADER_LEN && l <= avail;
  }
  get srcPort(): number { return readU16(this.buf, this.off); }
  get dstPort(): number { return readU16(this.buf, this.off + 2); }
  get length(): number { return readU16(this.buf, this.off + 4); }
  get checksumField(): number { return readU16(this.buf, this.off + 6); }
  get payloadOff(): number { return this.off + UDP_HEADER_LEN; }
  get payloadLen(): number { return this.length - UDP_HEADER_LEN; }
}

/** Write a UDP header at `off` with checksum field zero (caller fills it). */
export function writeUdpHeader(buf: Uint8Array, off: number, srcPort: number, dstPort: number, payloadLen: number): void {
  writeU16(buf, off, srcPort);
  writeU16(buf, off + 2, dstPort);
  writeU16(buf, off + 4, UDP_HEADER_LEN + payloadLen);
  buf[off + 6] = 0;
  buf[off + 7] = 0;
}
