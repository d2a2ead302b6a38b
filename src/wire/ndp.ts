/**
 * Neighbour Discovery (RFC 4861) message layouts, an option cursor and builders for the
 * messages slipway sends (neighbour and router advertisements). Offsets are relative to the
 * start of the ICMPv6 message. Options whose length is 0 or runs past the message make the whole
 * message invalid, as RFC 4861 §4.6 requires.
 */

import { writeU16, writeU32 } from './bytes.js';
import { NDP_NEIGHBOUR_ADVERT, NDP_ROUTER_ADVERT } from './icmpv6.js';

export const NDP_OPT_SOURCE_LLADDR = 1;
export const NDP_OPT_TARGET_LLADDR = 2;
export const NDP_OPT_PREFIX_INFO = 3;
export const NDP_OPT_MTU = 5;
export const NDP_OPT_RDNSS = 25;
export const NDP_OPT_DNSSL = 31;

/** Fixed part lengths: options start after them. */
export const NS_FIXED_LEN = 24;
export const NA_FIXED_LEN = 24;
export const RS_FIXED_LEN = 8;
export const RA_FIXED_LEN = 16;
/** Target address offset in NS/NA. */
export const ND_TARGET_OFF = 8;

export const NA_FLAG_ROUTER = 0x80;
export const NA_FLAG_SOLICITED = 0x40;
export const NA_FLAG_OVERRIDE = 0x20;
export const RA_FLAG_MANAGED = 0x80;
export const RA_FLAG_OTHER = 0x40;
export const PREFIX_FLAG_ONLINK = 0x80;
export const PREFIX_FLAG_AUTO = 0x40;

/** Walks NDP options in buf[off, off+len). Reuse one instance with `reset`. */
export class NdpOptionCursor {
  buf: Uint8Array = new Uint8Array(0);
  private pos = 0;
  private end = 0;
  /** Current option: type, offset of its first byte in `buf`, total length in bytes. */
  type = 0;
  optOff = 0;
  optLen = 0;
  /** False once an option with a bad length was met (the message must be dropped). */
  valid = true;

  reset(buf: Uint8Array, off: number, len: number): this {
    this.buf = buf;
    this.pos = off;
    this.end = off + len;
    this.valid = true;
    return this;
  }

  /** Advance to the next option; false at the end or on a malformed one (then `valid` is false). */
  next(): boolean {
    if (this.pos >= this.end) return false;
    if (this.pos + 2 > this.end) {
      this.valid = false;
      return false;
    }
    const l = this.buf[this.pos + 1] * 8;
    if (l === 0 || this.pos + l > this.end) {
      this.valid = false;
      return false;
    }
    this.type = this.buf[this.pos];
    this.optOff = this.pos;
    this.optLen = l;
    this.pos += l;
    return true;
  }

  /**
   * Find the link-layer address option of `type` (source or target), checking all options.
   * Returns the offset of the 6 MAC bytes, -1 when absent, -2 when the options are malformed.
   */
  findLinkLayer(type: number): number {
    let found = -1;
    while (this.next()) {
      if (this.type === type && this.optLen >= 8 && found === -1) found = this.optOff + 2;
    }
    return this.valid ? found : -2;
  }
}

/**
 * A neighbour advertisement for `target` (the ICMPv6 message, checksum 0): our MAC as target
 * link-layer address.
 */
export function buildNeighbourAdvertisement(target: Uint8Array, targetOff: number, mac: Uint8Array, flags: number): Uint8Array {
  const m = new Uint8Array(NA_FIXED_LEN + 8);
  m[0] = NDP_NEIGHBOUR_ADVERT;
  m[4] = flags;
  m.set(target.subarray(targetOff, targetOff + 16), ND_TARGET_OFF);
  m[NA_FIXED_LEN] = NDP_OPT_TARGET_LLADDR;
  m[NA_FIXED_LEN + 1] = 1;
  m.set(mac, NA_FIXED_LEN + 2);
  return m;
}

export interface RouterAdvertisementSpec {
  /** Router lifetime in seconds (0: not a default router). */
  routerLifetime: number;
  /** The /64 prefix (16 bytes, host part zero). */
  prefix: Uint8Array;
  validLifetime: number;
  preferredLifetime: number;
  mtu: number;
  /** Our MAC (source link-layer address option). */
  mac: Uint8Array;
  /** RDNSS addresses (16 bytes each); none: no option. */
  dns: Uint8Array[];
  dnsLifetime: number;
  /** DNSSL domains; none: no option. */
  search: string[];
  /** Set the O flag: DNS settings are also available from stateless DHCPv6. */
  otherConfig: boolean;
}

/** Encode domain names in DNS wire format (RFC 1035 §3.1), as DNSSL wants them. */
function encodeNames(names: string[]): number[] {
  const out: number[] = [];
  for (const n of names) {
    for (const label of n.replace(/\.$/, '').split('.')) {
      if (label.length === 0 || label.length > 63) continue;
      out.push(label.length, ...Array.from(label, (c) => c.charCodeAt(0) & 0x7f));
    }
    out.push(0);
  }
  return out;
}

/** A router advertisement (the ICMPv6 message, checksum 0). */
export function buildRouterAdvertisement(s: RouterAdvertisementSpec): Uint8Array {
  const names = s.search.length > 0 ? encodeNames(s.search) : [];
  const dnsslLen = names.length > 0 ? Math.ceil((8 + names.length) / 8) * 8 : 0;
  const rdnssLen = s.dns.length > 0 ? 8 + 16 * s.dns.length : 0;
  const len = RA_FIXED_LEN + 8 + 32 + 8 + rdnssLen + dnsslLen;
  const m = new Uint8Array(len);
  m[0] = NDP_ROUTER_ADVERT;
  m[4] = 64; // current hop limit suggestion
  m[5] = s.otherConfig ? RA_FLAG_OTHER : 0;
  writeU16(m, 6, s.routerLifetime);
  // reachable time and retrans timer: 0 = unspecified
  let o = RA_FIXED_LEN;
  m[o] = NDP_OPT_SOURCE_LLADDR;
  m[o + 1] = 1;
  m.set(s.mac, o + 2);
  o += 8;
  m[o] = NDP_OPT_PREFIX_INFO;
  m[o + 1] = 4;
  m[o + 2] = 64;
  m[o + 3] = PREFIX_FLAG_ONLINK | PREFIX_FLAG_AUTO;
  writeU32(m, o + 4, s.validLifetime);
  writeU32(m, o + 8, s.preferredLifetime);
  m.set(s.prefix.subarray(0, 16), o + 16);
  o += 32;
  m[o] = NDP_OPT_MTU;
  m[o + 1] = 1;
  writeU32(m, o + 4, s.mtu);
  o += 8;
  if (rdnssLen > 0) {
    m[o] = NDP_OPT_RDNSS;
    m[o + 1] = rdnssLen / 8;
    writeU32(m, o + 4, s.dnsLifetime);
    s.dns.forEach((a, i) => m.set(a.subarray(0, 16), o + 8 + 16 * i));
    o += rdnssLen;
  }
  if (dnsslLen > 0) {
    m[o] = NDP_OPT_DNSSL;
    m[o + 1] = dnsslLen / 8;
    writeU32(m, o + 4, s.dnsLifetime);
    m.set(names, o + 8);
    o += dnsslLen;
  }
  return m;
}
