/** Building the "original datagram" part of ICMP errors, and mapping socket errors to ICMP codes. */

import { IPV4_MIN_HEADER, writeIpv4Header } from '../wire/ipv4.js';
import { writeU16, writeU32 } from '../wire/bytes.js';
import { UNREACH_ADMIN, UNREACH_HOST, UNREACH_NET, UNREACH_PORT } from '../wire/icmp.js';

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
