/** ARP for IPv4 over Ethernet (RFC 826). */

import { readU32, writeU32 } from './bytes.js';

export const ARP_LEN = 28;
export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;

const field = { htype: 0, ptype: 2, hlen: 4, plen: 5, oper: 6, sha: 8, spa: 14, tha: 18, tpa: 24 } as const;

export class ArpPacket {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;

  /** Point at an ARP packet; false unless it is Ethernet/IPv4 ARP of full length. */
  wrap(buf: Uint8Array, off: number, len: number): boolean {
    this.buf = buf;
    this.off = off;
    if (len < ARP_LEN) return false;
    const b = buf;
    return (
      b[off] === 0 && b[off + 1] === 1 && b[off + 2] === 0x08 && b[off + 3] === 0 &&
      b[off + field.hlen] === 6 && b[off + field.plen] === 4
    );
  }
  get oper(): number {
    return (this.buf[this.off + field.oper] << 8) | this.buf[this.off + field.oper + 1];
  }
  get senderIp(): number {
    return readU32(this.buf, this.off + field.spa);
  }
  get targetIp(): number {
    return readU32(this.buf, this.off + field.tpa);
  }
  senderMac(): Uint8Array {
    return this.buf.slice(this.off + field.sha, this.off + field.sha + 6);
  }
}

/** Write a full ARP packet at `off`. */
export function writeArp(
  buf: Uint8Array,
  off: number,
  oper: number,
  sha: Uint8Array,
  spa: number,
  tha: Uint8Array,
  tpa: number,
): void {
  buf[off] = 0; buf[off + 1] = 1; buf[off + 2] = 0x08; buf[off + 3] = 0;
  buf[off + 4] = 6; buf[off + 5] = 4;
  buf[off + 6] = 0; buf[off + 7] = oper;
  buf.set(sha, off + field.sha);
  writeU32(buf, off + field.spa, spa);
  buf.set(tha, off + field.tha);
  writeU32(buf, off + field.tpa, tpa);
}
