/**
 * ICMPv6 (RFC 4443) constants. Messages are read with the shared `IcmpMessage` view (same
 * 8-byte layout); the checksum covers the IPv6 pseudo-header (see `pseudoSum6`).
 */

export const ICMP6_DEST_UNREACH = 1;
export const ICMP6_PACKET_TOO_BIG = 2;
export const ICMP6_TIME_EXCEEDED = 3;
export const ICMP6_PARAM_PROBLEM = 4;
export const ICMP6_ECHO_REQUEST = 128;
export const ICMP6_ECHO_REPLY = 129;
export const MLD_QUERY = 130;
export const MLD_REPORT = 131;
export const MLD_DONE = 132;
export const NDP_ROUTER_SOLICIT = 133;
export const NDP_ROUTER_ADVERT = 134;
export const NDP_NEIGHBOUR_SOLICIT = 135;
export const NDP_NEIGHBOUR_ADVERT = 136;
export const NDP_REDIRECT = 137;
export const MLD2_REPORT = 143;

/** Destination-unreachable codes. */
export const UNREACH6_NOROUTE = 0;
export const UNREACH6_ADMIN = 1;
export const UNREACH6_ADDR = 3;
export const UNREACH6_PORT = 4;

/** Parameter-problem codes. */
export const PARAM6_HEADER = 0;
export const PARAM6_NEXT_HEADER = 1;

/** Whether an ICMPv6 type is an error (errors are never answered with errors). */
export function isIcmp6Error(type: number): boolean {
  return type < 128;
}

/** Whether an ICMPv6 type is multicast listener discovery (v1 or v2). */
export function isMld(type: number): boolean {
  return type === MLD_QUERY || type === MLD_REPORT || type === MLD_DONE || type === MLD2_REPORT;
}
