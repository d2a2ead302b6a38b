/** Building the "original datagram" part of ICMP errors, and mapping socket errors to ICMP codes. */

import { IPV4_MIN_HEADER, writeIpv4Header } from '../wire/ipv4.js';
import { writeU16, writeU32 } from '../wire/bytes.js';
import { UNREACH_ADMIN, UNREACH_HOST, UNREACH_NET, UNREACH_PORT } from '../wire/icmp.js';
import { IPV6_HEADER_LEN, writeIpv6Header } from '../wire/ipv6.js';
import { UNREACH6_ADDR, UNREACH6_ADMIN, UNREACH6_NOROUTE, UNREACH6_PORT } from '../wire/icmpv6.js';

/** RFC 1812: include as much of the original as fits in a 576-byte error; we keep it to 528 bytes. */
export const ICMP_ORIGINAL_MAX = 528;

/**
 * Synthesize the header of a datagram the guest sent (IPv4 header + first 8 transport bytes),
 * for errors raised after the original frame is gone (a failed host connect or send).
 */
export function synthesizeOriginal4(protocol: number, src: number, dst: number, srcPort: number, dstPort: number, word2: number): Uint8Array {
  const b = new Uint8Array(IPV4_MIN_HEADER + 8);
  writeIpv4Header(b, 0, src, dst, protocol, 8);
  writeU16(b, IPV4_MIN_HEADER, srcPort);
  writeU16(b, IPV4_MIN_HEADER + 2, dstPort);
  writeU32(b, IPV4_MIN_HEADER + 4, word2 >>> 0);
  return b;
}

/** The destination-unreachable code for a host socket error, or null when none fits. */
export function unreachableCodeFor(code: string | undefined): number | null {
  switch (code) {
    case 'ENETUNREACH':
    case 'ENETDOWN':
      return UNREACH_NET;
    case 'EHOSTUNREACH':
    case 'EHOSTDOWN':
    case 'ETIMEDOUT':
      return UNREACH_HOST;
    case 'ECONNREFUSED':
      return UNREACH_PORT;
    case 'EACCES':
    case 'EPERM':
      return UNREACH_ADMIN;
    default:
      return null;
  }
}

/** RFC 4443 §2.4: an ICMPv6 error carries as much of the original as fits in the minimum MTU (1280). */
export const ICMP6_ORIGINAL_MAX = 1280 - 40 - 8;

/** The IPv6 version of synthesizeOriginal4: a 40-byte header (no extensions) + 8 transport bytes. */
export function synthesizeOriginal6(protocol: number, src: Uint8Array, dst: Uint8Array, srcPort: number, dstPort: number, word2: number): Uint8Array {
  const b = new Uint8Array(IPV6_HEADER_LEN + 8);
  writeIpv6Header(b, 0, src, 0, dst, 0, protocol, 8);
  writeU16(b, IPV6_HEADER_LEN, srcPort);
  writeU16(b, IPV6_HEADER_LEN + 2, dstPort);
  writeU32(b, IPV6_HEADER_LEN + 4, word2 >>> 0);
  return b;
}

/** The ICMPv6 destination-unreachable code for a host socket error, or null when none fits. */
export function unreachableCode6For(code: string | undefined): number | null {
  switch (code) {
    case 'ENETUNREACH':
    case 'ENETDOWN':
      return UNREACH6_NOROUTE;
    case 'EHOSTUNREACH':
    case 'EHOSTDOWN':
    case 'ETIMEDOUT':
    case 'EADDRNOTAVAIL':
      return UNREACH6_ADDR;
    case 'ECONNREFUSED':
      return UNREACH6_PORT;
    case 'EACCES':
    case 'EPERM':
      return UNREACH6_ADMIN;
    default:
      return null;
  }
}
