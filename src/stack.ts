/**
 * Stack: the frame path from the tap to the flows. Theory of operation:
 *
 * The native Tap hands us batches of frames in a reused ring. Each frame is classified in place
 * with the wire views (no copies, no per-frame objects): ARP goes to the responder, IPv4 is
 * validated (version, IHL, length, checksum; fragments reassembled within a bound), then:
 *   - ICMP echo to the virtual hosts is answered here; echo elsewhere goes out by ping socket;
 *   - UDP to the DNS address goes to the forwarder, to 67 to the DHCP server, else to UDP NAT;
 *   - TCP goes to the flow table (one TcpFlow per guest connection, ending in a host socket).
 * IPv6 takes the same shape with its own views: the header is checked (version, payload length),
 * the source must be unspecified, link-local or in our /64 (not ours), then the extension
 * headers are walked with a bound (hop-by-hop first only, at most 8 headers, each inside the
 * packet) and fragments are reassembled within a bound. Then:
 *   - NDP (RS, NS, NA) goes to NeighbourDiscovery, which answers for the virtual hosts and asks
 *     the RouterAdvertiser for an RA (prefix A+L, MTU, RDNSS; also sent at start and
 *     periodically), so guests configure themselves by SLAAC; MLD and other multicast is counted
 *     and otherwise ignored; UDP to ff02::1:2 port 547 goes to the stateless DHCPv6 server;
 *   - ICMPv6 echo, UDP (DNS forwarder on ::3, NAT through udp6 sockets) and TCP (the same flow
 *     table, IPv6 flows keyed by address text) as for IPv4.
 *   - a packet longer than our MTU gets Packet Too Big; hop limit 1 gets Time Exceeded; a host
 *     connect or send failing gets Destination Unreachable, as IPv4 gets its ICMP errors.
 * IPv6 address text is made through a small cache of the last addresses seen, so a bulk flow
 * does not format its addresses per segment.
 * Every frame that is not used is counted by the reason it was dropped; nothing here throws on
 * bad input. After a batch, the TCP flows flush their pending ACKs, so a burst of segments
 * costs one ACK, not one per segment. --ipv4-only / --ipv6-only drop the other family's frames
 * (counted as ipv6-disabled / ipv4-disabled).
 *
 * Addresses the guest sees and where they lead:
 *   gateway (.2, ::2) → host 127.0.0.1 / ::1 (same port), unless disableHostLoopback;
 *   DNS (.3, ::3)     → the DNS forwarder (UDP) / first upstream's port 53 (TCP), unless
 *                       disableDns, in which case nothing answers there at all;
 *   router fe80::2    → the guest's IPv6 default router (NDP, RA source, DHCPv6 server) only;
 *   other addresses in the virtual network → dropped; everything else → the real address.
 */

import net from 'node:net';
import type { Logger } from 'pino';
import type { StackConfig } from './config.js';
import { inNetwork } from './config.js';
import { FrameSink, type FrameWriter } from './link/sink.js';
import { NeighbourTable } from './link/neighbours.js';
import { ArpResponder } from './link/arp.js';
import { EthernetFrame, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from './wire/ethernet.js';
import { Ipv4Packet, PROTO_ICMP, PROTO_TCP, PROTO_UDP, formatIpv4 } from './wire/ipv4.js';
import { UdpDatagram } from './wire/udp.js';
import { TcpSegment } from './wire/tcp.js';
import { IcmpMessage, ICMP_DEST_UNREACH, ICMP_ECHO_REQUEST, ICMP_TIME_EXCEEDED, UNREACH_ADMIN, UNREACH_PORT, UNREACH_PROTOCOL } from './wire/icmp.js';
import { partialSum, pseudoSum4 } from './wire/checksum.js';
import { Ipv4Reassembler } from './ip/reassembly.js';
import { ICMP_ORIGINAL_MAX, synthesizeOriginal4, unreachableCodeFor } from './ip/icmpErrors.js';
import { PingRelay, type PingSocketFactory } from './ip/icmpEcho.js';
import { UdpNat } from './flows/udp.js';
import { Ipv6Reassembler } from './ip/reassembly6.js';
import { ICMP6_ORIGINAL_MAX, synthesizeOriginal6, unreachableCode6For } from './ip/icmpErrors.js';
import { NeighbourDiscovery } from './link/ndp.js';
import { RouterAdvertiser } from './services/ra.js';
import { DHCP6_CLIENT_PORT, DHCP6_SERVER_PORT, Dhcpv6Server } from './services/dhcpv6.js';
import {
  Ipv6Packet, NH_ICMPV6, NH_TCP, NH_UDP, formatIpv6, inPrefix64, ipv6Equals, isLinkLocal, isUnspecified, parseIpv6,
} from './wire/ipv6.js';
import {
  ICMP6_DEST_UNREACH, ICMP6_ECHO_REQUEST, ICMP6_PACKET_TOO_BIG, ICMP6_TIME_EXCEEDED, NDP_REDIRECT, NDP_ROUTER_SOLICIT,
  UNREACH6_ADMIN, UNREACH6_PORT, isMld,
} from './wire/icmpv6.js';
import { pseudoSum6 } from './wire/checksum.js';
import { writeU32 } from './wire/bytes.js';
import { VNET_F_DATA_VALID, VNET_F_NEEDS_CSUM, VNET_HDR_LEN } from './wire/vnet.js';
import { TcpFlowTable, type HostSide, type TcpFlow, type TcpFlowEnv } from './flows/tcp.js';
import { dropReadPool, HostSocket } from './flows/hostSocket.js';
import { type Tap, writeSlices } from './native.js';
import { reportInternalError } from './internalError.js';
import { DhcpServer } from './services/dhcp.js';
import type { DnsForwarder } from './services/dns.js';

export interface StackDeps {
  config: StackConfig;
  writer: FrameWriter;
  log: Logger;
  /** Opens unprivileged ping sockets (native); null disables echo to outside addresses. */
  pingFactory: PingSocketFactory | null;
  /** The DNS forwarder (null with --disable-dns). */
  dns: DnsForwarder | null;
  /** Bind address for outgoing host sockets (--outbound-addr). */
  outboundAddress?: string;
  /** Bind address for outgoing IPv6 host sockets (--outbound-addr6). */
  outboundAddress6?: string;
  /** DNS search domains announced by RA (DNSSL) and DHCPv6. */
  dnsSearch?: string[];
}

/** The router's link-local address: the guest's IPv6 default router (libslirp uses it too). */
export const ROUTER_LINK_LOCAL = 'fe80::2';

/** The IPv6 plan as bytes and text, resolved once. */
interface V6Addresses {
  prefix: Uint8Array;
  gateway: Uint8Array;
  dns: Uint8Array;
  router: Uint8Array;
  gatewayText: string;
  dnsText: string;
  routerText: string;
}

/**
 * The last few IPv6 addresses turned into text, so a flow's packets reuse the same strings (the
 * TCP and UDP tables key IPv6 by text) instead of formatting both addresses per segment.
 */
class Ipv6TextCache {
  private readonly keys = [new Uint8Array(16), new Uint8Array(16), new Uint8Array(16), new Uint8Array(16)];
  private readonly texts = ['', '', '', ''];
  private next = 0;

  text(b: Uint8Array, off: number): string {
    for (let i = 0; i < 4; i++) if (this.texts[i] !== '' && ipv6Equals(this.keys[i], 0, b, off)) return this.texts[i];
    const t = formatIpv6(b, off);
    const k = this.keys[this.next];
    for (let j = 0; j < 16; j++) k[j] = b[off + j];
    this.texts[this.next] = t;
    this.next = (this.next + 1) & 3;
    return t;
  }
}

/** Why frames were dropped; every key is a counter the API reports. */
export type DropReason =
  | 'runt' | 'not-for-us' | 'ethertype' | 'ipv6-disabled' | 'ipv4-disabled'
  | 'ipv6-truncated' | 'ipv6-version' | 'ipv6-payload-length' | 'ipv6-ext-truncated' | 'ipv6-ext-loop'
  | 'ipv6-ext-order' | 'ipv6-source' | 'ipv6-destination' | 'ipv6-too-big' | 'ndp-fragmented'
  | 'ipv4-truncated' | 'ipv4-version' | 'ipv4-ihl' | 'ipv4-length' | 'ipv4-checksum'
  | 'ipv4-source' | 'fragment-pending' | 'fragment-dropped' | 'ttl' | 'broadcast' | 'protocol'
  | 'udp-malformed' | 'udp-checksum' | 'tcp-malformed' | 'tcp-checksum' | 'icmp-malformed' | 'icmp-checksum'
  | 'icmp-type' | 'virtual-host' | 'host-loopback-disabled' | 'dns-disabled'
  /** Handling the frame threw: a bug in slipway (logged at error level with the stack). */
  | 'internal-error';

/** Largest TCP payload in one super-frame: an IPv4 datagram's 65535 bytes less IP and TCP headers. */
const GSO_MAX_PAYLOAD = 65535 - 20 - 20;
/** SLIPWAY_NET_SOCKET_FLOWS=1: host sockets of guest connections as net.Socket (A/B, fallback). */
const NET_SOCKET_FLOWS = process.env['SLIPWAY_NET_SOCKET_FLOWS'] === '1';

export class Stack {
  readonly config: StackConfig;
  readonly neighbours = new NeighbourTable();
  readonly sink: FrameSink;
  readonly counters = { rxFrames: 0, rxBytes: 0, drops: {} as Record<string, number>, droppedTotal: 0 };
  readonly reassembler = new Ipv4Reassembler();
  readonly udp: UdpNat;
  readonly tcp: TcpFlowTable;
  readonly ping: PingRelay | null;
  readonly dhcp: DhcpServer;
  private readonly arp: ArpResponder;
  private readonly log: Logger;
  private readonly dns: DnsForwarder | null;
  /** Set per frame from its vnet header: the guest kernel vouches for the TCP/UDP checksum. */
  private l4ChecksumTrusted = false;
  private readonly outboundAddress?: string;
  private readonly broadcast: number;

  // IPv6 (all null with --ipv4-only).
  readonly reassembler6 = new Ipv6Reassembler();
  readonly udp6: UdpNat<string> | null = null;
  readonly ping6: PingRelay<string> | null = null;
  readonly ndp: NeighbourDiscovery | null = null;
  readonly ra: RouterAdvertiser | null = null;
  readonly dhcp6: Dhcpv6Server | null = null;
  /** IPv6 traffic handled without a reply (multicast listener reports, other multicast). */
  readonly counters6 = { rxPackets: 0, mld: 0, multicast: 0, packetTooBig: 0 };
  private readonly v6: V6Addresses | null = null;
  private readonly outboundAddress6?: string;
  private readonly ip6 = new Ipv6Packet();
  private readonly text6 = new Ipv6TextCache();
  private readonly bytes6Cache = new Map<string, Uint8Array>();
  private readonly icmp6Head = new Uint8Array(8);

  // Reused views: classification allocates nothing per frame.
  private readonly eth = new EthernetFrame();
  private readonly ip = new Ipv4Packet();
  private readonly udpView = new UdpDatagram();
  private readonly tcpView = new TcpSegment();
  private readonly icmpView = new IcmpMessage();

  constructor(deps: StackDeps) {
    this.config = deps.config;
    this.log = deps.log;
    this.dns = deps.dns;
    this.outboundAddress = deps.outboundAddress;
    const v4 = this.config.ipv4;
    this.broadcast = (v4.network | (0xffffffff >>> v4.prefixLength)) >>> 0;
    this.sink = new FrameSink(deps.writer, this.config.gatewayMac, (a) => this.neighbours.lookup(a),
      (a, off) => this.neighbours.lookup6(a, off));
    // ARP and NDP answer for the DNS address even with DNS disabled: a connection there then
    // times out (as with slirp4netns) instead of failing at once with "no route to host".
    this.arp = new ArpResponder(this.sink, this.neighbours, (a) => a === this.config.ipv4.gateway || a === this.config.ipv4.dns);
    this.dhcp = new DhcpServer({
      network: v4.network,
      prefixLength: v4.prefixLength,
      serverAddress: v4.gateway,
      router: v4.gateway,
      dns: this.config.disableDns ? [] : [v4.dns],
      rangeStart: v4.dhcpStart,
      rangeEnd: v4.dhcpEnd,
      leaseSeconds: 86400,
      mtu: this.config.mtu,
    });
    this.udp = new UdpNat({
      toGuest: (src, dst, sp, dp, buf, off, len, seg) => this.sink.udpRun(src, dst, sp, dp, buf, off, len, seg),
      toGuestParts: (src, dst, sp, dp, parts, n, seg, total) => this.sink.udpParts(src, dst, sp, dp, parts, n, seg, total),
      route: (dst, port) => this.hostAddressFor(dst, port),
      unroute: (address) => this.guestAddressFor(address),
      unreachable: (guest, gport, dst, dport, err) => {
        const code = unreachableCodeFor(err.code);
        if (code !== null) this.unreachable(code, synthesizeOriginal4(PROTO_UDP, guest, dst, gport, dport, 0));
      },
      bindAddress: this.outboundAddress,
      log: this.log,
    });
    this.ping = deps.pingFactory
      ? new PingRelay(deps.pingFactory, (src, dst, msg) => this.sink.icmp4(src, dst, msg, msg, 8, msg.length - 8), this.log)
      : null;
    // With offload, host data goes to the guest as super-frames of up to 64 KiB whatever the MTU.
    this.tcp = new TcpFlowTable(this.tcpEnv(), { mtu: this.config.mtu, gsoMaxPayload: this.sink.offload ? GSO_MAX_PAYLOAD : 0 });
    const plan6 = this.config.ipv6;
    if (plan6) {
      this.outboundAddress6 = deps.outboundAddress6;
      const v6: V6Addresses = {
        prefix: parseIpv6(plan6.prefix),
        gateway: parseIpv6(plan6.gateway),
        dns: parseIpv6(plan6.dns),
        router: parseIpv6(ROUTER_LINK_LOCAL),
        gatewayText: formatIpv6(parseIpv6(plan6.gateway)),
        dnsText: formatIpv6(parseIpv6(plan6.dns)),
        routerText: ROUTER_LINK_LOCAL,
      };
      this.v6 = v6;
      const dns6 = this.config.disableDns ? [] : [v6.dnsText];
      this.ra = new RouterAdvertiser({
        sink: this.sink, routerAddress: v6.router, prefix: plan6.prefix, mtu: this.config.mtu, dns: dns6, search: deps.dnsSearch,
      });
      this.ndp = new NeighbourDiscovery(this.sink, this.neighbours, (a, off) => this.isVirtualHost6(a, off) || ipv6Equals(a, off, this.v6!.dns, 0), () => this.ra!.solicited());
      this.dhcp6 = new Dhcpv6Server({ mac: this.config.gatewayMac, dns: dns6, search: deps.dnsSearch });
      this.udp6 = new UdpNat<string>({
        family: 6,
        toGuest: (src, dst, sp, dp, buf, off, len, seg) => this.sink.udpRun(this.bytes6(src), this.bytes6(dst), sp, dp, buf, off, len, seg),
        toGuestParts: (src, dst, sp, dp, parts, n, seg, total) => this.sink.udpParts(this.bytes6(src), this.bytes6(dst), sp, dp, parts, n, seg, total),
        route: (dst, port) => this.hostAddressFor6(dst, port),
        unroute: (address) => this.guestAddressFor6(address),
        unreachable: (guest, gport, dst, dport, err) => {
          const code = unreachableCode6For(err.code);
          if (code !== null) this.unreachable6(code, synthesizeOriginal6(NH_UDP, this.bytes6(guest), this.bytes6(dst), gport, dport, 0));
        },
        bindAddress: this.outboundAddress6,
        log: this.log,
      });
      this.ping6 = deps.pingFactory
        ? new PingRelay<string>(deps.pingFactory, (src, dst, msg) => {
          this.sink.icmp6(this.bytes6(src), 0, this.bytes6(dst), 0, msg, msg, 8, msg.length - 8);
        }, this.log, 256, 60_000, {
          family: 6,
          replyType: 129,
          format: (a) => a,
          parse: (t) => this.guestAddressFor6(t),
        })
        : null;
    }
  }

  /** Start what runs on its own: the first router advertisement and the periodic ones. */
  /** The tap the express lane runs on (`useExpressLane`), or null. */
  private expressTap: Tap | null = null;
  private readonly expressHdr = new Uint8Array(54);
  private readonly expressHdr6 = new Uint8Array(74);

  /**
   * Run the express lane (native/express.c) on `tap`, which must be the tap this stack's frames
   * come from and go to with a vnet header, and no middleware (pcap, faults) between: the lane
   * reads and writes the tap itself.
   */
  useExpressLane(tap: Tap): void {
    tap.expressStart(() => this.tcp.expressTimer(), this.tcp.config.pushAckDelayMs);
    this.expressTap = tap;
  }

  start(): void {
    this.ra?.start();
  }

  /**
   * The guest's IPv6 address in our prefix (SLAAC), as last seen in its traffic, or null before
   * it has used one. For inbound forwards that must address the guest over the tap.
   */
  guestAddress6(): string | null {
    const v6 = this.v6;
    if (!v6) return null;
    const a = this.neighbours.latest6((x) => inPrefix64(x, 0, v6.prefix));
    return a ? formatIpv6(a) : null;
  }

  /** Whether NDP/ICMPv6 should answer for the 16 bytes at a[off]: gateway, DNS (unless disabled), router. */
  isVirtualHost6(a: Uint8Array, off: number): boolean {
    const v6 = this.v6;
    if (!v6) return false;
    return ipv6Equals(a, off, v6.gateway, 0) || ipv6Equals(a, off, v6.router, 0)
      || (!this.config.disableDns && ipv6Equals(a, off, v6.dns, 0));
  }

  /** Whether ARP/ICMP should answer for `addr`: the gateway, and the DNS address unless disabled. */
  isVirtualHost(addr: number): boolean {
    const v4 = this.config.ipv4;
    return addr === v4.gateway || (addr === v4.dns && !this.config.disableDns);
  }

  /** Handle a batch from the tap: frame i is at ring[i*slotSize] with lengths[i] bytes. */
  onFrames(ring: Uint8Array, slotSize: number, lengths: Int32Array, count: number, vnet: Uint8Array | null = null): void {
    this.tcp.batchBegin();
    this.udp.batchBegin(ring);
    this.udp6?.batchBegin(ring);
    try {
      for (let i = 0; i < count; i++) {
        // With a vnet header, the guest kernel tells us when the L4 checksum is partial (to be
        // completed by "hardware": us, and we need not) or already verified.
        this.l4ChecksumTrusted = vnet !== null && (vnet[i * VNET_HDR_LEN] & (VNET_F_NEEDS_CSUM | VNET_F_DATA_VALID)) !== 0;
        try {
          this.input(ring, i * slotSize, lengths[i]);
        } catch (e) {
          this.internalError(e);
        }
      }
    } finally {
      this.l4ChecksumTrusted = false;
      // UDP first: what it holds points into the ring, which the next read reuses.
      this.udpBatchEnd(this.udp);
      if (this.udp6) this.udpBatchEnd(this.udp6);
      this.tcp.batchEnd();
    }
  }

  private udpBatchEnd(u: UdpNat<number> | UdpNat<string>): void {
    try {
      u.batchEnd();
    } catch (e) {
      this.internalError(e);
    }
  }

  /** Handle one frame. Never throws on bad input: drops and counts. */
  input(buf: Uint8Array, off: number, len: number): void {
    this.counters.rxFrames++;
    this.counters.rxBytes += len;
    const eth = this.eth;
    if (!eth.wrap(buf, off, len)) return this.drop('runt');
    if (!eth.isGroupDst && !eth.dstIs(this.sink.ourMac)) return this.drop('not-for-us');
    switch (eth.ethertype) {
      case ETHERTYPE_ARP:
        if (!this.config.ipv4Enabled) return this.drop('ipv4-disabled');
        return this.arp.input(buf, eth.payloadOff, eth.payloadLen);
      case ETHERTYPE_IPV4:
        if (!this.config.ipv4Enabled) return this.drop('ipv4-disabled');
        return this.ipv4(buf, eth.payloadOff, eth.payloadLen, off + 6);
      case ETHERTYPE_IPV6:
        if (!this.v6) return this.drop('ipv6-disabled');
        return this.ipv6(buf, eth.payloadOff, eth.payloadLen, off + 6);
      default:
        return this.drop('ethertype');
    }
  }

  /** A frame whose handling threw: count it as dropped, log the first ones, go on with the rest. */
  private internalError(err: unknown): void {
    this.drop('internal-error');
    reportInternalError(this.log, this.frameErrors, 'a frame from the container', err);
  }

  /** Frames dropped because handling them threw (also `drops['internal-error']`). */
  private readonly frameErrors = { internalErrors: 0 };

  private drop(reason: DropReason): void {
    const d = this.counters.drops;
    d[reason] = (d[reason] ?? 0) + 1;
    this.counters.droppedTotal++;
  }

  private ipv4(buf: Uint8Array, off: number, avail: number, srcMacOff: number): void {
    const ip = this.ip.wrap(buf, off, avail);
    const defect = ip.check();
    if (defect) return this.drop(defect);
    const v4 = this.config.ipv4;
    const src = ip.src;
    if (src === 0) {
      // Only DHCP may come from 0.0.0.0.
      if (ip.protocol !== PROTO_UDP) return this.drop('ipv4-source');
      this.neighbours.learnMac(buf, srcMacOff);
    } else if (!inNetwork(v4, src) || src === v4.gateway || src === v4.dns || src === this.broadcast) {
      return this.drop('ipv4-source');
    } else {
      this.neighbours.learn(src, buf, srcMacOff);
    }
    if (ip.isFragment) {
      const whole = this.reassembler.add(ip);
      if (!whole) return this.drop('fragment-pending');
      this.ip.wrap(whole, 0, whole.length);
      return this.ipv4Datagram(this.ip, srcMacOff, buf);
    }
    this.ipv4Datagram(ip, srcMacOff, buf);
  }

  private ipv4Datagram(ip: Ipv4Packet, srcMacOff: number, frameBuf: Uint8Array): void {
    const v4 = this.config.ipv4;
    const dst = ip.dst;
    const isBroadcast = dst === 0xffffffff || dst === this.broadcast || dst >>> 28 === 0xe;
    if (isBroadcast) {
      if (ip.protocol === PROTO_UDP) return this.udpBroadcast(ip, frameBuf, srcMacOff);
      return this.drop('broadcast');
    }
    if (ip.ttl <= 1 && !this.isVirtualHost(dst)) {
      const n = Math.min(ip.totalLength, ICMP_ORIGINAL_MAX);
      this.icmpError(ICMP_TIME_EXCEEDED, 0, ip.buf, ip.off, n, ip.src);
      return this.drop('ttl');
    }
    if (inNetwork(v4, dst) && !this.isVirtualHost(dst)) {
      if (!(dst === v4.dns && this.config.disableDns)) this.drop('virtual-host');
      else this.drop('dns-disabled');
      return;
    }
    switch (ip.protocol) {
      case PROTO_TCP:
        return this.tcpInput(ip);
      case PROTO_UDP:
        return this.udpInput(ip);
      case PROTO_ICMP:
        return this.icmpInput(ip);
      default:
        this.icmpError(ICMP_DEST_UNREACH, UNREACH_PROTOCOL, ip.buf, ip.off, Math.min(ip.totalLength, ICMP_ORIGINAL_MAX), ip.src);
        return this.drop('protocol');
    }
  }

  private udpBroadcast(ip: Ipv4Packet, frameBuf: Uint8Array, srcMacOff: number): void {
    const u = this.udpView;
    if (!u.wrap(ip.buf, ip.payloadOff, ip.payloadLen)) return this.drop('udp-malformed');
    if (u.dstPort !== 67) return this.drop('broadcast');
    this.dhcpInput(ip, u, frameBuf.subarray(srcMacOff, srcMacOff + 6));
  }

  private dhcpInput(ip: Ipv4Packet, u: UdpDatagram, clientMac: Uint8Array): void {
    const res = this.dhcp.handle(u.buf.subarray(u.payloadOff, u.payloadOff + u.payloadLen), clientMac);
    if (!res) return;
    this.sink.udp4(this.config.ipv4.gateway, res.dst, 67, 68, res.reply, 0, res.reply.length);
  }

  private udpInput(ip: Ipv4Packet): void {
    const u = this.udpView;
    if (!u.wrap(ip.buf, ip.payloadOff, ip.payloadLen)) return this.drop('udp-malformed');
    if (u.checksumField !== 0 && !this.l4ChecksumTrusted) {
      let s = pseudoSum4(ip.src, ip.dst, PROTO_UDP, u.length);
      s = partialSum(u.buf, u.off, u.length, s);
      if (s !== 0xffff) return this.drop('udp-checksum');
    }
    const v4 = this.config.ipv4;
    const dst = ip.dst;
    if (dst === v4.dns) {
      if (u.dstPort === 53 && this.dns) {
        const guest = ip.src;
        const port = u.srcPort;
        this.dns.query(u.buf.subarray(u.payloadOff, u.payloadOff + u.payloadLen), (resp) => {
          this.sink.udp4(v4.dns, guest, 53, port, resp, 0, resp.length);
        });
        return;
      }
      this.icmpError(ICMP_DEST_UNREACH, UNREACH_PORT, ip.buf, ip.off, Math.min(ip.totalLength, ICMP_ORIGINAL_MAX), ip.src, dst);
      return this.drop('virtual-host');
    }
    if (dst === v4.gateway && u.dstPort === 67) {
      return this.dhcpInput(ip, u, this.neighbours.lookup(ip.src) ?? new Uint8Array(6));
    }
    if (dst === v4.gateway && this.config.disableHostLoopback) {
      this.icmpError(ICMP_DEST_UNREACH, UNREACH_ADMIN, ip.buf, ip.off, Math.min(ip.totalLength, ICMP_ORIGINAL_MAX), ip.src, dst);
      return this.drop('host-loopback-disabled');
    }
    this.udp.input(ip.src, dst, u.srcPort, u.dstPort, u.buf, u.payloadOff, u.payloadLen);
  }

  private tcpInput(ip: Ipv4Packet): void {
    const seg = this.tcpView;
    const len = ip.payloadLen;
    if (!seg.wrap(ip.buf, ip.payloadOff, len)) return this.drop('tcp-malformed');
    if (!this.l4ChecksumTrusted) {
      let s = pseudoSum4(ip.src, ip.dst, PROTO_TCP, len);
      s = partialSum(ip.buf, ip.payloadOff, len, s);
      if (s !== 0xffff) return this.drop('tcp-checksum');
    }
    // Destinations with no host side (DNS address off port 53, loopback disabled) are
    // refused by connectHost returning null: the flow answers RST.
    this.tcp.input(4, ip.src, ip.dst, seg);
  }

  private icmpInput(ip: Ipv4Packet): void {
    const m = this.icmpView;
    if (!m.wrap(ip.buf, ip.payloadOff, ip.payloadLen)) return this.drop('icmp-malformed');
    if (partialSum(ip.buf, ip.payloadOff, ip.payloadLen, 0) !== 0xffff) return this.drop('icmp-checksum');
    if (m.type !== ICMP_ECHO_REQUEST) return this.drop('icmp-type');
    const dst = ip.dst;
    if (this.isVirtualHost(dst)) {
      const head = ip.buf.slice(ip.payloadOff, ip.payloadOff + 8);
      head[0] = 0;
      this.sink.icmp4(dst, ip.src, head, ip.buf, ip.payloadOff + 8, ip.payloadLen - 8);
      return;
    }
    if (!this.ping) return this.drop('icmp-type');
    this.ping.request(ip.src, dst, ip.buf, ip.payloadOff, ip.payloadLen, m.echoId);
  }

  /** Send an ICMP error about an original datagram (header + leading payload) to the guest. */
  private icmpError(type: number, code: number, orig: Uint8Array, off: number, len: number, to: number, from?: number): void {
    const head = new Uint8Array(8);
    head[0] = type;
    head[1] = code;
    this.sink.icmp4(from ?? this.config.ipv4.gateway, to, head, orig, off, len);
  }

  /** Destination unreachable for a synthesized original (see synthesizeOriginal4). */
  private unreachable(code: number, original: Uint8Array): void {
    const to = (original[12] << 24 | original[13] << 16 | original[14] << 8 | original[15]) >>> 0;
    this.icmpError(ICMP_DEST_UNREACH, code, original, 0, original.length, to);
  }

  // ---------------------------------------------------------------------------------------
  // IPv6

  private ipv6(buf: Uint8Array, off: number, avail: number, srcMacOff: number): void {
    const ip = this.ip6.wrap(buf, off, avail);
    const defect = ip.check();
    if (defect) return this.drop(defect);
    this.counters6.rxPackets++;
    const v6 = this.v6!;
    const s = ip.srcOff;
    if (buf[s] === 0xff) return this.drop('ipv6-source');
    const unspecified = isUnspecified(buf, s);
    if (!unspecified) {
      if (isLinkLocal(buf, s)) {
        if (ipv6Equals(buf, s, v6.router, 0)) return this.drop('ipv6-source');
      } else if (!inPrefix64(buf, s, v6.prefix) || ipv6Equals(buf, s, v6.gateway, 0) || ipv6Equals(buf, s, v6.dns, 0)) {
        return this.drop('ipv6-source');
      }
      this.neighbours.learn6(buf, s, buf, srcMacOff);
    }
    const walked = ip.walk();
    if (walked) return this.drop(walked);
    if (ip.totalLength > this.config.mtu) {
      // The guest's link MTU is larger than ours: tell it ours, as a router on the path would.
      if (!unspecified && !ip.dstIsMulticast && !isIcmp6ErrorPacket(ip)) {
        this.icmp6Error(ICMP6_PACKET_TOO_BIG, 0, this.config.mtu, buf, off, ip.totalLength, buf, s);
        this.counters6.packetTooBig++;
      }
      return this.drop('ipv6-too-big');
    }
    if (ip.isFragment) {
      const whole = this.reassembler6.add(ip);
      if (!whole) return this.drop('fragment-pending');
      ip.wrap(whole, 0, whole.length);
      if (ip.walk() !== null || ip.isFragment) return this.drop('fragment-dropped');
      return this.ipv6Datagram(ip, unspecified, srcMacOff, true);
    }
    this.ipv6Datagram(ip, unspecified, srcMacOff, false);
  }

  private ipv6Datagram(ip: Ipv6Packet, unspecified: boolean, srcMacOff: number, reassembled: boolean): void {
    const b = ip.buf;
    const d = ip.dstOff;
    const proto = ip.upperProto;
    if (proto === NH_ICMPV6) {
      if (ip.upperLen < 8) return this.drop('icmp-malformed');
      if (!this.checksum6(ip, NH_ICMPV6)) return this.drop('icmp-checksum');
      const type = b[ip.upperOff];
      if (type >= NDP_ROUTER_SOLICIT && type <= NDP_REDIRECT) {
        // RFC 6980: neighbour discovery is never fragmented.
        if (reassembled) return this.drop('ndp-fragmented');
        return this.ndp!.input(ip, ip.upperOff, ip.upperLen, srcMacOff);
      }
      if (isMld(type)) {
        this.counters6.mld++;
        return;
      }
    }
    if (ip.dstIsMulticast) {
      if (proto === NH_UDP && !unspecified && this.isDhcp6Server(b, d)) return this.udp6Input(ip, true);
      this.counters6.multicast++;
      return;
    }
    if (unspecified) return this.drop('ipv6-source');
    const local = this.isVirtualHost6(b, d);
    if (!local) {
      const v6 = this.v6!;
      if (isLinkLocal(b, d)) return this.drop('not-for-us');
      if (inPrefix64(b, d, v6.prefix)) {
        return this.drop(ipv6Equals(b, d, v6.dns, 0) && this.config.disableDns ? 'dns-disabled' : 'virtual-host');
      }
      if (isSpecialDestination(b, d)) return this.drop('ipv6-destination');
      if (ip.hopLimit <= 1) {
        if (!isIcmp6ErrorPacket(ip)) this.icmp6Error(ICMP6_TIME_EXCEEDED, 0, 0, b, ip.off, ip.totalLength, b, ip.srcOff);
        return this.drop('ttl');
      }
    }
    switch (proto) {
      case NH_TCP:
        return this.tcp6Input(ip);
      case NH_UDP:
        return this.udp6Input(ip, false);
      case NH_ICMPV6:
        return this.icmp6Input(ip, local);
      default:
        return this.drop('protocol');
    }
  }

  /** ff02::1:2 (all DHCP relay agents and servers). */
  private isDhcp6Server(b: Uint8Array, d: number): boolean {
    return b[d] === 0xff && b[d + 1] === 0x02 && b[d + 13] === 0x01 && b[d + 14] === 0x00 && b[d + 15] === 0x02
      && b[d + 11] === 0x00 && b[d + 12] === 0x00 && isZero(b, d + 2, 9);
  }

  private checksum6(ip: Ipv6Packet, proto: number): boolean {
    if (this.l4ChecksumTrusted) return true;
    let s = pseudoSum6(ip.buf, ip.srcOff, ip.buf, ip.dstOff, proto, ip.upperLen);
    s = partialSum(ip.buf, ip.upperOff, ip.upperLen, s);
    return s === 0xffff;
  }

  private tcp6Input(ip: Ipv6Packet): void {
    const seg = this.tcpView;
    if (!seg.wrap(ip.buf, ip.upperOff, ip.upperLen)) return this.drop('tcp-malformed');
    if (!this.checksum6(ip, NH_TCP)) return this.drop('tcp-checksum');
    this.tcp.input(6, this.text6.text(ip.buf, ip.srcOff), this.text6.text(ip.buf, ip.dstOff), seg);
  }

  private udp6Input(ip: Ipv6Packet, multicast: boolean): void {
    const u = this.udpView;
    const b = ip.buf;
    if (!u.wrap(b, ip.upperOff, ip.upperLen)) return this.drop('udp-malformed');
    // The UDP checksum is mandatory over IPv6.
    if ((u.checksumField === 0 && !this.l4ChecksumTrusted) || !this.checksum6(ip, NH_UDP)) return this.drop('udp-checksum');
    const v6 = this.v6!;
    const d = ip.dstOff;
    if (multicast || ipv6Equals(b, d, v6.router, 0)) {
      if (u.dstPort === DHCP6_SERVER_PORT && u.srcPort === DHCP6_CLIENT_PORT) {
        const reply = this.dhcp6!.handle(b.subarray(u.payloadOff, u.payloadOff + u.payloadLen));
        if (reply) this.sink.udp6(v6.router, b.slice(ip.srcOff, ip.srcOff + 16), DHCP6_SERVER_PORT, DHCP6_CLIENT_PORT, reply, 0, reply.length);
        return;
      }
      if (multicast) {
        this.counters6.multicast++;
        return;
      }
      this.icmp6Error(ICMP6_DEST_UNREACH, UNREACH6_PORT, 0, b, ip.off, ip.totalLength, b, ip.srcOff, b, d);
      return this.drop('virtual-host');
    }
    if (ipv6Equals(b, d, v6.dns, 0)) {
      if (u.dstPort === 53 && this.dns) {
        const guest = b.slice(ip.srcOff, ip.srcOff + 16);
        const port = u.srcPort;
        this.dns.query(b.subarray(u.payloadOff, u.payloadOff + u.payloadLen), (resp) => {
          this.sink.udp6(v6.dns, guest, 53, port, resp, 0, resp.length);
        });
        return;
      }
      this.icmp6Error(ICMP6_DEST_UNREACH, UNREACH6_PORT, 0, b, ip.off, ip.totalLength, b, ip.srcOff, b, d);
      return this.drop('virtual-host');
    }
    if (ipv6Equals(b, d, v6.gateway, 0) && this.config.disableHostLoopback) {
      this.icmp6Error(ICMP6_DEST_UNREACH, UNREACH6_ADMIN, 0, b, ip.off, ip.totalLength, b, ip.srcOff, b, d);
      return this.drop('host-loopback-disabled');
    }
    this.udp6!.input(this.text6.text(b, ip.srcOff), this.text6.text(b, d), u.srcPort, u.dstPort, b, u.payloadOff, u.payloadLen);
  }

  private icmp6Input(ip: Ipv6Packet, local: boolean): void {
    const b = ip.buf;
    const off = ip.upperOff;
    const type = b[off];
    // Errors, replies and anything else from the guest have no host socket to go to.
    if (type !== ICMP6_ECHO_REQUEST) return this.drop('icmp-type');
    if (local) {
      const head = this.icmp6Head;
      head.set(b.subarray(off, off + 8));
      head[0] = 129;
      this.sink.icmp6(b, ip.dstOff, b, ip.srcOff, head, b, off + 8, ip.upperLen - 8);
      return;
    }
    if (!this.ping6) return this.drop('icmp-type');
    this.ping6.request(this.text6.text(b, ip.srcOff), this.text6.text(b, ip.dstOff), b, off, ip.upperLen, (b[off + 4] << 8) | b[off + 5]);
  }

  /**
   * Send an ICMPv6 error about an original packet (as much as fits in 1280 bytes) to the guest at
   * to[toOff], from `from` (default: the gateway address).
   */
  private icmp6Error(
    type: number, code: number, param: number, orig: Uint8Array, off: number, len: number,
    to: Uint8Array, toOff: number, from?: Uint8Array, fromOff = 0,
  ): void {
    const head = new Uint8Array(8);
    head[0] = type;
    head[1] = code;
    writeU32(head, 4, param);
    const n = Math.min(len, ICMP6_ORIGINAL_MAX, orig.length - off);
    this.sink.icmp6(from ?? this.v6!.gateway, from ? fromOff : 0, to, toOff, head, orig, off, n);
  }

  /** Destination unreachable for a synthesized original (see synthesizeOriginal6). */
  private unreachable6(code: number, original: Uint8Array): void {
    this.icmp6Error(ICMP6_DEST_UNREACH, code, 0, original, 0, original.length, original, 8);
  }

  /** Bytes for an IPv6 address text (cached: flows reuse the same strings). */
  private bytes6(text: string): Uint8Array {
    let b = this.bytes6Cache.get(text);
    if (!b) {
      if (this.bytes6Cache.size >= 4096) this.bytes6Cache.clear();
      b = parseIpv6(text);
      this.bytes6Cache.set(text, b);
    }
    return b;
  }

  /** Where a guest-visible IPv6 destination leads on the host; null when nothing may answer. */
  hostAddressFor6(dst: string, port: number): string | null {
    const v6 = this.v6;
    if (!v6) return null;
    if (dst === v6.gatewayText) return this.config.disableHostLoopback ? null : '::1';
    if (dst === v6.dnsText) {
      if (this.config.disableDns || port !== 53) return null;
      return this.config.dnsUpstreams[0]?.address ?? null;
    }
    if (dst === v6.routerText) return null;
    return dst;
  }

  /** The guest-visible IPv6 address for a host-side peer address (null: not deliverable). */
  guestAddressFor6(address: string): string | null {
    if (address === '::1') return this.config.disableHostLoopback || !this.v6 ? null : this.v6.gatewayText;
    if (address.includes('%') || address.includes('.') || !address.includes(':')) return null;
    return address;
  }

  /** Where a guest-visible destination leads on the host; null when nothing may answer. */
  hostAddressFor(dst: number, port: number): string | null {
    const v4 = this.config.ipv4;
    if (dst === v4.gateway) return this.config.disableHostLoopback ? null : '127.0.0.1';
    if (dst === v4.dns) {
      if (this.config.disableDns || port !== 53) return null;
      return this.config.dnsUpstreams[0]?.address ?? null;
    }
    return formatIpv4(dst);
  }

  /** The guest-visible address for a host-side peer address. */
  guestAddressFor(address: string): number | null {
    if (address === '127.0.0.1') return this.config.disableHostLoopback ? null : this.config.ipv4.gateway;
    const parts = address.split('.');
    if (parts.length !== 4) return null;
    const v = ((+parts[0] << 24) | (+parts[1] << 16) | (+parts[2] << 8) | +parts[3]) >>> 0;
    return Number.isNaN(v) ? null : v;
  }

  private tcpEnv(): TcpFlowEnv {
    return {
      emit: (flow, flags, seq, ack, window, payload, off, len, synOpts) => {
        if (flow.family === 6) {
          this.sink.tcp6(this.bytes6(flow.remoteAddr as string), this.bytes6(flow.guestAddr as string), flow.remotePort,
            flow.guestPort, seq, ack, flags, window, payload, off, len, synOpts, len > 0 ? (flow as TcpFlow).sndMss : 0);
          return;
        }
        this.sink.tcp4(flow.remoteAddr as number, flow.guestAddr as number, flow.remotePort, flow.guestPort,
          seq, ack, flags, window, payload, off, len, synOpts, len > 0 ? (flow as TcpFlow).sndMss : 0);
      },
      connect: (flow) => this.connectHost(flow),
      unreachable: (flow, err) => {
        if (flow.family === 6) {
          const code6 = unreachableCode6For(err.code);
          if (code6 === null) return;
          this.unreachable6(code6, synthesizeOriginal6(NH_TCP, this.bytes6(flow.guestAddr as string),
            this.bytes6(flow.remoteAddr as string), flow.guestPort, flow.remotePort, flow.guestIsn));
          return;
        }
        const code = unreachableCodeFor(err.code);
        if (code === null) return;
        this.unreachable(code, synthesizeOriginal4(PROTO_TCP, flow.guestAddr as number, flow.remoteAddr as number,
          flow.guestPort, flow.remotePort, flow.guestIsn));
      },
      closed: () => {},
      writeSlices,
      express: (flow) => {
        const tap = this.expressTap;
        const sock = flow.socket;
        if (tap === null || !(sock instanceof HostSocket)) return null;
        if (flow.family === 6) {
          const hdr6 = this.expressHdr6;
          if (!this.sink.tcp6Template(hdr6, this.bytes6(flow.remoteAddr as string), this.bytes6(flow.guestAddr as string), flow.remotePort, flow.guestPort)) return null;
          return sock.express(tap, hdr6);
        }
        const hdr = this.expressHdr;
        if (!this.sink.tcp4Template(hdr, flow.remoteAddr as number, flow.guestAddr as number, flow.remotePort, flow.guestPort)) return null;
        return sock.express(tap, hdr);
      },
      log: this.log,
    };
  }

  private connectHost(flow: TcpFlow): HostSide | null {
    let host: string | null;
    let bind: string | undefined;
    if (flow.family === 6) {
      host = this.hostAddressFor6(flow.remoteAddr as string, flow.remotePort);
      if (host === null) return null;
      if (this.outboundAddress6 && host !== '::1' && host.includes(':')) bind = this.outboundAddress6;
    } else {
      host = this.hostAddressFor(flow.remoteAddr as number, flow.remotePort);
      if (host === null) return null;
      if (this.outboundAddress && host !== '127.0.0.1') bind = this.outboundAddress;
    }
    // A native socket per flow (flows/hostSocket.ts); net.Socket for names and on request.
    const fam = net.isIP(host);
    if (fam !== 0 && !NET_SOCKET_FLOWS) {
      if (bind !== undefined && net.isIP(bind) !== fam) bind = undefined;
      return new HostSocket(fam as 4 | 6, host, flow.remotePort, bind ?? null);
    }
    const opts: net.TcpNetConnectOpts = { host, port: flow.remotePort, noDelay: true };
    if (bind !== undefined) opts.localAddress = bind;
    return net.connect(opts);
  }

  /** Stop everything: host sockets, timers. */
  close(): void {
    this.tcp.closeAll();
    this.udp.closeAll();
    this.ping?.closeAll();
    this.ra?.stop();
    this.udp6?.closeAll();
    this.ping6?.closeAll();
    this.dns?.close();
  }

  /** Traffic went quiet: drop the buffers kept for reuse under load (read pool, spare slab). */
  releaseIdleBuffers(): void {
    this.tcp.dropSpares();
    dropReadPool();
  }

  /** Counters for logs and the API. */
  stats(): object {
    const tcp = this.tcp.stats();
    return {
      // frames the JS stack handled; the express lane's segments are tcp.expressIn/expressOut,
      // and the tap's own counters (`tap` in the API's stats) count every frame
      frames: { rx: this.counters.rxFrames, rxBytes: this.counters.rxBytes, tx: this.sink.sent, txDropped: this.sink.dropped, txErrors: this.sink.writeErrors, lastTxError: this.sink.lastWriteError },
      drops: { total: this.counters.droppedTotal, ...this.counters.drops },
      fragments: { completed: this.reassembler.completed, inProgress: this.reassembler.inProgress, ...this.reassembler.drops },
      tcp,
      udp: { active: this.udp.active, ...this.udp.counters },
      icmp: this.ping ? { active: this.ping.active, ...this.ping.counters } : null,
      dhcp: this.dhcp.counters,
      dns: this.dns ? { inFlight: this.dns.inFlight, ...this.dns.counters } : null,
      ipv6: this.v6
        ? {
          ...this.counters6,
          fragments: { completed: this.reassembler6.completed, inProgress: this.reassembler6.inProgress, ...this.reassembler6.drops },
          udp: { active: this.udp6!.active, ...this.udp6!.counters },
          icmp: this.ping6 ? { active: this.ping6.active, ...this.ping6.counters } : null,
          ndp: this.ndp!.counters,
          ra: this.ra!.counters,
          dhcp: this.dhcp6!.counters,
        }
        : null,
    };
  }
}

/** RFC 4443 §2.4(e): never answer an ICMPv6 error with an error. */
function isIcmp6ErrorPacket(ip: Ipv6Packet): boolean {
  return ip.upperProto === NH_ICMPV6 && ip.upperLen > 0 && !ip.isFragment && ip.buf[ip.upperOff] < 128;
}

/** Destinations no host socket should be asked to reach: unspecified, loopback, IPv4-mapped/compatible. */
function isSpecialDestination(b: Uint8Array, d: number): boolean {
  if (!isZero(b, d, 10)) return false;
  // ::, ::1, ::ffff:a.b.c.d, ::a.b.c.d
  return (b[d + 10] === 0 && b[d + 11] === 0) || (b[d + 10] === 0xff && b[d + 11] === 0xff);
}

function isZero(b: Uint8Array, off: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (b[off + i] !== 0) return false;
  return true;
}
