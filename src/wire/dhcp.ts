/**
 * DHCPv4 message view and reply writer (RFC 2131 message format, RFC 2132 options).
 *
 * `DhcpMessage` is a zero-copy view over a BOOTP message: the fixed 236-byte header, the magic
 * cookie, then options. `DhcpOptionCursor` walks the options without allocating; option overload
 * (option 52: options continued in `sname`/`file`) is not honoured — a server never needs it for
 * the handful of options clients send, and it is rarely used in practice. `DhcpWriter` builds a
 * reply into a caller's buffer.
 */

import { readU16, readU32, writeU16, writeU32 } from './bytes.js';

/** Fixed BOOTP header (236 bytes) plus the 4-byte magic cookie. */
export const DHCP_MIN_LEN = 240;
/** RFC 1542: BOOTP relays and old clients expect messages of at least 300 bytes. */
export const BOOTP_MIN_LEN = 300;
/** A reply this size fits the 576-byte IP datagram every client must accept (576 - 20 - 8). */
export const DHCP_SAFE_LEN = 548;
export const DHCP_MAGIC_COOKIE = 0x63825363;

export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;
export const HTYPE_ETHERNET = 1;
export const DHCP_FLAG_BROADCAST = 0x8000;

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;

/** DHCP message types (option 53). */
export const DhcpMessageType = {
  discover: 1,
  offer: 2,
  request: 3,
  decline: 4,
  ack: 5,
  nak: 6,
  release: 7,
  inform: 8,
} as const;

/** Option codes used by slipway (RFC 2132, RFC 3397 for 119). */
export const DhcpOption = {
  pad: 0,
  subnetMask: 1,
  router: 3,
  dnsServers: 6,
  hostName: 12,
  domainName: 15,
  interfaceMtu: 26,
  broadcastAddress: 28,
  requestedAddress: 50,
  leaseTime: 51,
  overload: 52,
  messageType: 53,
  serverId: 54,
  parameterList: 55,
  message: 56,
  maxMessageSize: 57,
  renewalTime: 58,
  rebindingTime: 59,
  clientId: 61,
  domainSearch: 119,
  end: 255,
} as const;

const field = {
  op: 0, htype: 1, hlen: 2, hops: 3, xid: 4, secs: 8, flags: 10,
  ciaddr: 12, yiaddr: 16, siaddr: 20, giaddr: 24, chaddr: 28, sname: 44, file: 108, cookie: 236,
  options: 240,
} as const;

/** A zero-copy view over a DHCP message; reuse one instance with `wrap`. */
export class DhcpMessage {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  len = 0;
  private readonly cursor = new DhcpOptionCursor();
  /** Length of the data of the option last found by `findOption`. */
  foundLen = 0;

  /** Point at a message of `len` bytes; false when shorter than the fixed part or the cookie is wrong. */
  wrap(buf: Uint8Array, off: number, len: number): boolean {
    this.buf = buf;
    this.off = off;
    this.len = len;
    if (len < DHCP_MIN_LEN || off + len > buf.length) return false;
    return readU32(buf, off + field.cookie) === DHCP_MAGIC_COOKIE;
  }

  get op(): number { return this.buf[this.off + field.op]; }
  get htype(): number { return this.buf[this.off + field.htype]; }
  get hlen(): number { return this.buf[this.off + field.hlen]; }
  get hops(): number { return this.buf[this.off + field.hops]; }
  get xid(): number { return readU32(this.buf, this.off + field.xid); }
  get secs(): number { return readU16(this.buf, this.off + field.secs); }
  get flags(): number { return readU16(this.buf, this.off + field.flags); }
  /** The client asked for broadcast replies (it cannot receive unicast before it is configured). */
  get broadcast(): boolean { return (this.flags & DHCP_FLAG_BROADCAST) !== 0; }
  get ciaddr(): number { return readU32(this.buf, this.off + field.ciaddr); }
  get yiaddr(): number { return readU32(this.buf, this.off + field.yiaddr); }
  get siaddr(): number { return readU32(this.buf, this.off + field.siaddr); }
  get giaddr(): number { return readU32(this.buf, this.off + field.giaddr); }
  /** Offset of the 16-byte client hardware address field in `buf` (first `hlen` bytes used). */
  get chaddrOff(): number { return this.off + field.chaddr; }
  get optionsOff(): number { return this.off + field.options; }
  get end(): number { return this.off + this.len; }

  /** Start walking the options with `cursor`. */
  options(cursor: DhcpOptionCursor): DhcpOptionCursor {
    return cursor.reset(this.buf, this.optionsOff, this.end);
  }

  /**
   * Offset in `buf` of the data of the first option `code`, its length in `foundLen`; -1 when
   * absent or when the options are malformed before it.
   */
  findOption(code: number): number {
    const c = this.options(this.cursor);
    while (c.next()) {
      if (c.code === code) {
        this.foundLen = c.dataLen;
        return c.dataOff;
      }
    }
    return -1;
  }

  /** Whether the whole option area walks cleanly to END (or to the end of the message). */
  optionsWellFormed(): boolean {
    const c = this.options(this.cursor);
    while (c.next()) { /* walk */ }
    return !c.malformed;
  }

  /** The message type (option 53), or 0 when missing or malformed. */
  messageType(): number {
    const o = this.findOption(DhcpOption.messageType);
    return o >= 0 && this.foundLen === 1 ? this.buf[o] : 0;
  }

  /** A 4-byte address option, or null when missing or of the wrong length. */
  addressOption(code: number): number | null {
    const o = this.findOption(code);
    return o >= 0 && this.foundLen === 4 ? readU32(this.buf, o) : null;
  }
}

/**
 * Walks options: skips PAD, stops at END, at the end of the buffer, or at an option whose length
 * runs past the end (then `malformed` is set). No allocation.
 */
export class DhcpOptionCursor {
  buf: Uint8Array = new Uint8Array(0);
  pos = 0;
  end = 0;
  code = 0;
  dataOff = 0;
  dataLen = 0;
  malformed = false;
  done = false;

  reset(buf: Uint8Array, off: number, end: number): this {
    this.buf = buf;
    this.pos = off;
    this.end = Math.min(end, buf.length);
    this.malformed = false;
    this.done = false;
    return this;
  }

  /** Advance to the next option; false at END, end of data, or a malformed option. */
  next(): boolean {
    if (this.done) return false;
    const b = this.buf;
    while (this.pos < this.end && b[this.pos] === DhcpOption.pad) this.pos++;
    if (this.pos >= this.end || b[this.pos] === DhcpOption.end) {
      this.done = true;
      return false;
    }
    if (this.pos + 2 > this.end) return this.fail();
    const len = b[this.pos + 1];
    if (this.pos + 2 + len > this.end) return this.fail();
    this.code = b[this.pos];
    this.dataOff = this.pos + 2;
    this.dataLen = len;
    this.pos += 2 + len;
    return true;
  }

  private fail(): false {
    this.malformed = true;
    this.done = true;
    return false;
  }
}

/**
 * Builds a DHCP message into a caller's buffer: `begin`, header fields, options, `finish`.
 * Throws RangeError when the buffer is too small — replies are built from configuration the
 * server validated, so an overflow is a bug, not a network event.
 */
export class DhcpWriter {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  pos = 0;
  limit = 0;

  /** Zero the fixed part, write the cookie and `op`/`htype`/`hlen`; options start after it. */
  begin(buf: Uint8Array, off: number, capacity: number, op = BOOTREPLY): this {
    if (capacity < DHCP_MIN_LEN + 1 || off + capacity > buf.length) {
      throw new RangeError(`DHCP writer needs at least ${DHCP_MIN_LEN + 1} bytes`);
    }
    this.buf = buf;
    this.off = off;
    this.limit = off + capacity;
    buf.fill(0, off, off + DHCP_MIN_LEN);
    buf[off + field.op] = op;
    buf[off + field.htype] = HTYPE_ETHERNET;
    buf[off + field.hlen] = 6;
    writeU32(buf, off + field.cookie, DHCP_MAGIC_COOKIE);
    this.pos = off + field.options;
    return this;
  }

  xid(v: number): this { writeU32(this.buf, this.off + field.xid, v); return this; }
  flags(v: number): this { writeU16(this.buf, this.off + field.flags, v); return this; }
  ciaddr(v: number): this { writeU32(this.buf, this.off + field.ciaddr, v); return this; }
  yiaddr(v: number): this { writeU32(this.buf, this.off + field.yiaddr, v); return this; }
  siaddr(v: number): this { writeU32(this.buf, this.off + field.siaddr, v); return this; }
  giaddr(v: number): this { writeU32(this.buf, this.off + field.giaddr, v); return this; }
  /** Copy `len` (≤ 16) hardware-address bytes, e.g. the request's chaddr. */
  chaddr(src: Uint8Array, srcOff: number, len = 6): this {
    const n = Math.min(len, 16);
    this.buf.set(src.subarray(srcOff, srcOff + n), this.off + field.chaddr);
    this.buf[this.off + field.hlen] = n;
    return this;
  }

  /**
   * Append option `code` with `data`. Data longer than 255 bytes is split over consecutive
   * instances of the option, which the client concatenates (RFC 3396).
   */
  option(code: number, data: Uint8Array): this {
    let at = 0;
    do {
      const n = Math.min(255, data.length - at);
      this.reserve(2 + n);
      this.buf[this.pos] = code;
      this.buf[this.pos + 1] = n;
      this.buf.set(data.subarray(at, at + n), this.pos + 2);
      this.pos += 2 + n;
      at += n;
    } while (at < data.length);
    return this;
  }

  optionU8(code: number, v: number): this {
    this.reserve(3);
    this.buf[this.pos] = code; this.buf[this.pos + 1] = 1; this.buf[this.pos + 2] = v;
    this.pos += 3;
    return this;
  }

  optionU16(code: number, v: number): this {
    this.reserve(4);
    this.buf[this.pos] = code; this.buf[this.pos + 1] = 2;
    writeU16(this.buf, this.pos + 2, v);
    this.pos += 4;
    return this;
  }

  optionU32(code: number, v: number): this {
    this.reserve(6);
    this.buf[this.pos] = code; this.buf[this.pos + 1] = 4;
    writeU32(this.buf, this.pos + 2, v);
    this.pos += 6;
    return this;
  }

  /** An option holding a list of IPv4 addresses (at most 63 fit one option). */
  optionAddresses(code: number, addrs: readonly number[]): this {
    if (addrs.length === 0) return this;
    if (addrs.length > 63) throw new RangeError(`DHCP option ${code}: at most 63 addresses`);
    this.reserve(2 + 4 * addrs.length);
    this.buf[this.pos] = code; this.buf[this.pos + 1] = 4 * addrs.length;
    for (let i = 0; i < addrs.length; i++) writeU32(this.buf, this.pos + 2 + 4 * i, addrs[i]);
    this.pos += 2 + 4 * addrs.length;
    return this;
  }

  /** Write END, pad to the BOOTP minimum of 300 bytes when room allows; returns the length. */
  finish(): number {
    this.reserve(1);
    this.buf[this.pos++] = DhcpOption.end;
    const minEnd = Math.min(this.off + BOOTP_MIN_LEN, this.limit);
    if (this.pos < minEnd) {
      this.buf.fill(0, this.pos, minEnd);
      this.pos = minEnd;
    }
    return this.pos - this.off;
  }

  private reserve(n: number): void {
    // Keep one byte for END.
    if (this.pos + n + 1 > this.limit) {
      throw new RangeError(`DHCP message does not fit in ${this.limit - this.off} bytes`);
    }
  }
}

/**
 * Encode domain names for option 119 (RFC 3397: DNS wire format, here without compression).
 * Throws on a label longer than 63 bytes or a name longer than 255.
 */
export function encodeDomainSearch(names: readonly string[]): Uint8Array {
  const parts: number[] = [];
  for (const name of names) encodeDnsName(name, parts);
  return Uint8Array.from(parts);
}

function encodeDnsName(name: string, out: number[]): void {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  const start = out.length;
  if (trimmed.length > 0) {
    for (const label of trimmed.split('.')) {
      const bytes = new TextEncoder().encode(label);
      if (bytes.length === 0 || bytes.length > 63) {
        throw new Error(`invalid domain name "${name}": labels must be 1 to 63 bytes`);
      }
      out.push(bytes.length, ...bytes);
    }
  }
  out.push(0);
  if (out.length - start > 255) throw new Error(`invalid domain name "${name}": longer than 255 bytes`);
}
