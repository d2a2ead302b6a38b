/** ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) message views: type, code, checksum, rest-of-header. */

import { readU16 } from './bytes.js';

export const ICMP_ECHO_REPLY = 0;
export const ICMP_DEST_UNREACH = 3;
export const ICMP_ECHO_REQUEST = 8;
export const ICMP_TIME_EXCEEDED = 11;
/** Destination-unreachable codes. */
export const UNREACH_NET = 0;
export const UNREACH_HOST = 1;
export const UNREACH_PROTOCOL = 2;
export const UNREACH_PORT = 3;
export const UNREACH_NEEDFRAG = 4;
export const UNREACH_ADMIN = 13;

export const ICMP_HEADER_LEN = 8;

export class IcmpMessage {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  len = 0;

  wrap(buf: Uint8Array, off: number, len: number): boolean {
    this.buf = buf;
    this.off = off;
    this.len = len;
    return len >= ICMP_HEADER_LEN;
  }
  get type(): number { return this.buf[this.off]; }
  get code(): number { return this.buf[this.off + 1]; }
  get checksumField(): number { return readU16(this.buf, this.off + 2); }
  /** Echo identifier / sequence (echo messages only). */
  get echoId(): number { return readU16(this.buf, this.off + 4); }
  get echoSeq(): number { return readU16(this.buf, this.off + 6); }
}
