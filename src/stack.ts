/**
 * Stack: the frame path from the tap to the flows. Theory of operation:
 *
 * The native Tap hands us batches of frames in a reused ring. Each frame is classified in place
 * with the wire views (no copies, no per-frame objects): ARP goes to the responder, IPv4 is
 * validated (version, IHL, length, checksum; fragments reassembled within a bound), then:
 *   - ICMP echo to the virtual hosts is answered here; echo elsewhere goes out by ping socket;
 *   - UDP to the DNS address goes to the forwarder, to 67 to the DHCP server, else to UDP NAT;
 *   - TCP goes to the flow table (one TcpFlow per guest connection, ending in a host socket).
 * Every frame that is not used is counted by the reason it was dropped; nothing here throws on
 * bad input. After a batch, the TCP flows flush their pending ACKs, so a burst of segments
 * costs one ACK, not one per segment.
 *
 * Addresses the guest sees and where they lead:
 *   gateway (.2) → host 127.0.0.1 (same port), unless disableHostLoopback;
 *   DNS (.3)     → the DNS forwarder (UDP) / first upstream's port 53 (TCP), unless disableDns,
 *                  in which case nothing answers there at all;
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
import { TcpFlowTable, type TcpFlow, type TcpFlowEnv } from './flows/tcp.js';
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
}

/** Why frames were dropped; every key is a counter the API reports. */
export type DropReason =
  | 'runt' | 'not-for-us' | 'ethertype' | 'ipv6-unsupported'
  | 'ipv4-truncated' | 'ipv4-version' | 'ipv4-ihl' | 'ipv4-length' | 'ipv4-checksum'
  | 'ipv4-source' | 'fragment-pending' | 'fragment-dropped' | 'ttl' | 'broadcast' | 'protocol'
  | 'udp-malformed' | 'udp-checksum' | 'tcp-malformed' | 'tcp-checksum' | 'icmp-malformed' | 'icmp-checksum'
  | 'icmp-type' | 'virtual-host' | 'host-loopback-disabled' | 'dns-disabled';

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
  private readonly outboundAddress?: string;
  private readonly broadcast: number;

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
    this.sink = new FrameSink(deps.writer, this.config.gatewayMac, (a) => this.neighbours.lookup(a));
    this.arp = new ArpResponder(this.sink, this.neighbours, (a) => this.isVirtualHost(a));
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
      toGuest: (src, dst, sp, dp, payload) => this.sink.udp4(src, dst, sp, dp, payload, 0, payload.length),
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
    this.tcp = new TcpFlowTable(this.tcpEnv(), { mtu: this.config.mtu });
  }

  /** Whether ARP/ICMP should answer for `addr`: the gateway, and the DNS address unless disabled. */
  isVirtualHost(addr: number): boolean {
    const v4 = this.config.ipv4;
    return addr === v4.gateway || (addr === v4.dns && !this.config.disableDns);
  }

  /** Handle a batch from the tap: frame i is at ring[i*slotSize] with lengths[i] bytes. */
  onFrames(ring: Uint8Array, slotSize: number, lengths: Int32Array, count: number): void {
    for (let i = 0; i < count; i++) this.input(ring, i * slotSize, lengths[i]);
    this.tcp.flushAcks();
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
        return this.arp.input(buf, eth.payloadOff, eth.payloadLen);
      case ETHERTYPE_IPV4:
        return this.ipv4(buf, eth.payloadOff, eth.payloadLen, off + 6);
      case ETHERTYPE_IPV6:
        return this.drop('ipv6-unsupported');
      default:
        return this.drop('ethertype');
    }
  }

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
    if (u.checksumField !== 0) {
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
    let s = pseudoSum4(ip.src, ip.dst, PROTO_TCP, len);
    s = partialSum(ip.buf, ip.payloadOff, len, s);
    if (s !== 0xffff) return this.drop('tcp-checksum');
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
        this.sink.tcp4(flow.remoteAddr as number, flow.guestAddr as number, flow.remotePort, flow.guestPort,
          seq, ack, flags, window, payload, off, len, synOpts);
      },
      connect: (flow) => this.connectHost(flow),
      unreachable: (flow, err) => {
        const code = unreachableCodeFor(err.code);
        if (code === null) return;
        this.unreachable(code, synthesizeOriginal4(PROTO_TCP, flow.guestAddr as number, flow.remoteAddr as number,
          flow.guestPort, flow.remotePort, flow.guestIsn));
      },
      closed: () => {},
      log: this.log,
    };
  }

  private connectHost(flow: TcpFlow): net.Socket | null {
    const host = this.hostAddressFor(flow.remoteAddr as number, flow.remotePort);
    if (host === null) return null;
    const opts: net.TcpNetConnectOpts = { host, port: flow.remotePort, noDelay: true };
    if (this.outboundAddress && host !== '127.0.0.1') opts.localAddress = this.outboundAddress;
    return net.connect(opts);
  }

  /** Stop everything: host sockets, timers. */
  close(): void {
    this.tcp.closeAll();
    this.udp.closeAll();
    this.ping?.closeAll();
    this.dns?.close();
  }

  /** Counters for logs and the API. */
  stats(): object {
    return {
      frames: { rx: this.counters.rxFrames, rxBytes: this.counters.rxBytes, tx: this.sink.sent, txDropped: this.sink.dropped },
      drops: { total: this.counters.droppedTotal, ...this.counters.drops },
      fragments: { completed: this.reassembler.completed, inProgress: this.reassembler.inProgress, ...this.reassembler.drops },
      tcp: this.tcp.stats(),
      udp: { active: this.udp.active, ...this.udp.counters },
      icmp: this.ping ? { active: this.ping.active, ...this.ping.counters } : null,
      dhcp: this.dhcp.counters,
    };
  }
}
