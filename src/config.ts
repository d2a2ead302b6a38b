/** The stack's resolved configuration: everything the CLI front ends decide, in one shape. */

import ipaddr from 'ipaddr.js';
import { parseIpv4, formatIpv4 } from './wire/ipv4.js';

export interface Ipv4Plan {
  /** Network address (uint32) and prefix length. */
  network: number;
  prefixLength: number;
  /** Virtual gateway (.2): also the host-loopback alias. */
  gateway: number;
  /** Virtual DNS server (.3). */
  dns: number;
  /** Address given to the guest by --configure (.100). */
  guest: number;
  /** DHCP range (.15–.30). */
  dhcpStart: number;
  dhcpEnd: number;
}

export interface StackConfig {
  ipv4: Ipv4Plan;
  /** IPv6 plan, or null when IPv6 is off. */
  ipv6: Ipv6Plan | null;
  /** False with --ipv6-only: IPv4 frames are dropped and the tap gets no IPv4 address. */
  ipv4Enabled: boolean;
  mtu: number;
  /** The tap's MAC inside the guest (null: kernel's choice). */
  guestMac: Uint8Array | null;
  /** Our virtual hosts' MAC. */
  gatewayMac: Uint8Array;
  disableHostLoopback: boolean;
  /** DNS upstreams; empty with disableDns. */
  dnsUpstreams: { address: string; port: number }[];
  disableDns: boolean;
}

/** slirp4netns' gateway MAC (52:55:0a:00:02:02) for the default network. */
export const DEFAULT_GATEWAY_MAC = new Uint8Array([0x52, 0x55, 0x0a, 0x00, 0x02, 0x02]);

/**
 * Plan the IPv4 addresses for a CIDR like "10.0.2.0/24": gateway .2, DNS .3, DHCP .15–.30, guest .100.
 * Throws with a message naming the problem.
 */
export function planIpv4(cidr: string, maxPrefix = 25): Ipv4Plan {
  const m = /^([^/]+)\/(\d{1,2})$/.exec(cidr);
  if (!m) throw new Error(`invalid CIDR "${cidr}": expected A.B.C.D/N, e.g. 10.0.2.0/24`);
  let net: number;
  try {
    net = parseIpv4(m[1]);
  } catch {
    throw new Error(`invalid CIDR "${cidr}": "${m[1]}" is not an IPv4 address`);
  }
  const len = Number(m[2]);
  if (len < 1 || len > maxPrefix) throw new Error(`invalid CIDR "${cidr}": prefix length needs to be 1-${maxPrefix}`);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  if ((net & mask) >>> 0 !== net) {
    throw new Error(
      `invalid CIDR "${cidr}": it needs to be a network address like ${formatIpv4((net & mask) >>> 0)}/${len}, not like ${cidr}`,
    );
  }
  return {
    network: net,
    prefixLength: len,
    gateway: (net + 2) >>> 0,
    dns: (net + 3) >>> 0,
    guest: (net + 100) >>> 0,
    dhcpStart: (net + 15) >>> 0,
    dhcpEnd: (net + 30) >>> 0,
  };
}

/** Whether `addr` is inside the planned network. */
export function inNetwork(plan: Ipv4Plan, addr: number): boolean {
  const mask = (0xffffffff << (32 - plan.prefixLength)) >>> 0;
  return ((addr & mask) >>> 0) === plan.network;
}

export interface Ipv6Plan {
  /** Prefix (text, compressed) and length (64 for SLAAC). */
  prefix: string;
  prefixLength: number;
  /** Virtual gateway (::2): also the host-loopback (::1) alias. */
  gateway: string;
  /** Virtual DNS server (::3). */
  dns: string;
}

/**
 * Plan the IPv6 addresses for a prefix like "fd00::/64": gateway ::2, DNS ::3 (slirp4netns'
 * defaults); guests configure themselves by SLAAC from our router advertisements, so the
 * prefix must be a /64. Throws with a message naming the problem.
 */
export function planIpv6(cidr6: string): Ipv6Plan {
  let addr: ipaddr.IPv6;
  let len: number;
  try {
    const parsed = ipaddr.parseCIDR(cidr6);
    if (parsed[0].kind() !== 'ipv6') throw new Error('not IPv6');
    addr = parsed[0] as ipaddr.IPv6;
    len = parsed[1];
  } catch {
    throw new Error(`invalid IPv6 prefix "${cidr6}": expected ADDR/64, e.g. fd00::/64`);
  }
  if (len !== 64) throw new Error(`invalid IPv6 prefix "${cidr6}": the prefix length must be 64 (SLAAC needs a /64)`);
  const parts = addr.toByteArray();
  if (parts.slice(8).some((b) => b !== 0)) {
    throw new Error(`invalid IPv6 prefix "${cidr6}": the interface part must be zero, like ${ipaddr.fromByteArray([...parts.slice(0, 8), 0, 0, 0, 0, 0, 0, 0, 0]).toString()}/64`);
  }
  const withHost = (n: number): string => ipaddr.fromByteArray([...parts.slice(0, 15), n]).toString();
  return { prefix: addr.toString(), prefixLength: 64, gateway: withHost(2), dns: withHost(3) };
}
