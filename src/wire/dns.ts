/**
 * Minimal DNS message view (RFC 1035): the header, the first question, id rewriting, and error
 * responses built from a query. Enough for a forwarder that matches answers to queries; it never
 * parses resource records.
 */

import { readU16, writeU16 } from './bytes.js';

export const DNS_HEADER_LEN = 12;
/** Longest name in wire form, including the root label (RFC 1035 §3.1). */
export const DNS_MAX_NAME = 255;
/** Room an error response may need: header + longest name + type + class. */
export const DNS_ERROR_RESPONSE_MAX = DNS_HEADER_LEN + DNS_MAX_NAME + 4;

export const DnsRcode = {
  noError: 0,
  formErr: 1,
  servFail: 2,
  nxDomain: 3,
  notImp: 4,
  refused: 5,
} as const;

const FLAG_QR = 0x8000;
const FLAG_TC = 0x0200;
const FLAG_RD = 0x0100;
const FLAG_RA = 0x0080;
/** Compression pointers followed per name; real names need a handful. */
const MAX_POINTERS = 16;

const field = { id: 0, flags: 2, qdcount: 4, ancount: 6, nscount: 8, arcount: 10 } as const;

/** A zero-copy view over a DNS message; reuse one instance with `wrap`. */
export class DnsMessage {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  len = 0;
  /** Set by `parseQuestion`: the first question's type, class, end offset and name length. */
  qtype = 0;
  qclass = 0;
  questionEnd = 0;
  nameLen = 0;

  /** Point at a message of `len` bytes; false when shorter than the header. */
  wrap(buf: Uint8Array, off: number, len: number): boolean {
    this.buf = buf;
    this.off = off;
    this.len = len;
    return len >= DNS_HEADER_LEN && off + len <= buf.length;
  }

  get id(): number { return readU16(this.buf, this.off + field.id); }
  set id(v: number) { writeU16(this.buf, this.off + field.id, v); }
  get flags(): number { return readU16(this.buf, this.off + field.flags); }
  /** True for a response, false for a query. */
  get qr(): boolean { return (this.flags & FLAG_QR) !== 0; }
  get opcode(): number { return (this.flags >>> 11) & 0x0f; }
  get truncated(): boolean { return (this.flags & FLAG_TC) !== 0; }
  get recursionDesired(): boolean { return (this.flags & FLAG_RD) !== 0; }
  get rcode(): number { return this.flags & 0x0f; }
  get qdcount(): number { return readU16(this.buf, this.off + field.qdcount); }
  get ancount(): number { return readU16(this.buf, this.off + field.ancount); }
  get nscount(): number { return readU16(this.buf, this.off + field.nscount); }
  get arcount(): number { return readU16(this.buf, this.off + field.arcount); }

  /**
   * Parse the first question: sets `qtype`, `qclass`, `questionEnd`, `nameLen`. When `nameOut`
   * (≥ 255 bytes) is given, the name is written there in uncompressed wire form, case preserved.
   * False when there is no question or it is malformed (bad label, pointer loop, past the end).
   */
  parseQuestion(nameOut?: Uint8Array): boolean {
    if (this.qdcount === 0) return false;
    const end = readName(this.buf, this.off, this.off + this.len, this.off + DNS_HEADER_LEN, nameOut);
    if (end < 0 || end + 4 > this.off + this.len) return false;
    this.nameLen = lastNameLen;
    this.qtype = readU16(this.buf, end);
    this.qclass = readU16(this.buf, end + 2);
    this.questionEnd = end + 4;
    return true;
  }
}

let lastNameLen = 0;

/**
 * Walk the name at `pos` of the message `[msgOff, end)`, following compression pointers (which
 * must point backwards, inside the message, past the header; at most MAX_POINTERS of them).
 * Returns the offset just after the name where it is stored, or -1 when malformed. The
 * uncompressed length goes to `lastNameLen`, the bytes to `out` when given.
 */
function readName(buf: Uint8Array, msgOff: number, end: number, pos: number, out?: Uint8Array): number {
  let after = -1;
  let pointers = 0;
  let n = 0;
  for (;;) {
    if (pos >= end) return -1;
    const len = buf[pos];
    if (len === 0) {
      if (n + 1 > DNS_MAX_NAME) return -1;
      if (out) out[n] = 0;
      n++;
      if (after < 0) after = pos + 1;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (pos + 2 > end) return -1;
      const target = msgOff + (((len & 0x3f) << 8) | buf[pos + 1]);
      if (after < 0) after = pos + 2;
      if (++pointers > MAX_POINTERS || target >= pos || target < msgOff + DNS_HEADER_LEN) return -1;
      pos = target;
      continue;
    }
    if (kind !== 0) return -1; // extended label types (RFC 6891 deprecated them)
    if (pos + 1 + len > end || n + 1 + len + 1 > DNS_MAX_NAME) return -1;
    if (out) out.set(buf.subarray(pos, pos + 1 + len), n);
    n += 1 + len;
    pos += 1 + len;
  }
  lastNameLen = n;
  return after;
}

/** Compare two names in uncompressed wire form, ASCII case-insensitively (RFC 4343). */
export function dnsNamesEqual(a: Uint8Array, aLen: number, b: Uint8Array, bLen: number): boolean {
  if (aLen !== bLen) return false;
  for (let i = 0; i < aLen; i++) {
    let x = a[i];
    let y = b[i];
    if (x >= 0x41 && x <= 0x5a) x |= 0x20;
    if (y >= 0x41 && y <= 0x5a) y |= 0x20;
    if (x !== y) return false;
  }
  return true;
}

const scratchName = new Uint8Array(DNS_MAX_NAME);

/**
 * Write into `out` (≥ DNS_ERROR_RESPONSE_MAX bytes) a response to `query` carrying `rcode`: the
 * query's id, opcode and RD, its first question when it parses (else none, as fits FORMERR), no
 * records. Returns the length.
 */
export function writeDnsErrorResponse(query: DnsMessage, rcode: number, out: Uint8Array, outOff = 0): number {
  const hasQuestion = query.parseQuestion(scratchName);
  writeU16(out, outOff + field.id, query.id);
  const flags = FLAG_QR | (query.opcode << 11) | (query.flags & FLAG_RD) | FLAG_RA | (rcode & 0x0f);
  writeU16(out, outOff + field.flags, flags);
  writeU16(out, outOff + field.qdcount, hasQuestion ? 1 : 0);
  writeU16(out, outOff + field.ancount, 0);
  writeU16(out, outOff + field.nscount, 0);
  writeU16(out, outOff + field.arcount, 0);
  let pos = outOff + DNS_HEADER_LEN;
  if (hasQuestion) {
    out.set(scratchName.subarray(0, query.nameLen), pos);
    pos += query.nameLen;
    writeU16(out, pos, query.qtype);
    writeU16(out, pos + 2, query.qclass);
    pos += 4;
  }
  return pos - outOff;
}
