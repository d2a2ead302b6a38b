/**
 * FrameSink: the one way out toward the guest. It prepends Ethernet + IPv4/IPv6 headers, computes
 * checksums (the payload is summed where it lies, never copied in JS) and hands the parts to the
 * tap's writev. Header scratch space is preallocated; nothing is allocated per frame beyond the
 * small views the writev call needs.
 */

import { ETH_HEADER_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6, writeEthernetHeader } from '../wire/ethernet.js';
import { IPV6_HEADER_LEN, NH_ICMPV6, NH_TCP, NH_UDP, multicastMac, writeIpv6Header } from '../wire/ipv6.js';
import { IPV4_MIN_HEADER, PROTO_ICMP, PROTO_TCP, PROTO_UDP, writeIpv4Header } from '../wire/ipv4.js';
import { TCP_CHECKSUM_OFFSET, TCP_MIN_HEADER, writeSynOptions, writeTcpHeader } from '../wire/tcp.js';
import { UDP_HEADER_LEN, writeUdpHeader } from '../wire/udp.js';
import { finish, partialSum, pseudoSum4, pseudoSum6 } from '../wire/checksum.js';
import { writeU16 } from '../wire/bytes.js';

/** Where frames go: the native Tap, or a recorder in tests. */
export interface FrameWriter {
  write(frame: Uint8Array): boolean;
  writev(parts: Uint8Array[]): boolean;
  /**
   * Present when the tap has a vnet header: one frame whose L4 checksum field holds the
   * pseudo-header sum, completed by the kernel; with `gsoType` a TCP super-frame of
   * `gsoSize`-byte segments (see native Tap.writevOffload).
   */
  writevOffload?(parts: Uint8Array[], gsoType: number, gsoSize: number, csumStart: number, csumOffset: number, hdrLen: number): boolean;
  /**
   * The same frame as writevOffload([hdr[0, hdrLen), payload[off, off + len)], ...), without the
   * array and the views: the native Tap's per-segment call. Present only on the Tap itself;
   * wrappers (pcap, faults) leave it out, and FrameSink then uses writevOffload.
   */
  sendOffload?(
    hdr: Uint8Array, hdrLen: number, payload: Uint8Array | null, off: number, len: number,
    gsoType: number, gsoSize: number, csumStart: number, csumOffset: number,
  ): boolean;
}

/** virtio_net_hdr GSO types (linux/virtio_net.h). */
const GSO_TCPV4 = 1;
const GSO_TCPV6 = 4;
const GSO_UDP_L4 = 5;
/** The UDP checksum field's offset in its header. */
const UDP_CHECKSUM_OFFSET = 6;

const IP_OFF = ETH_HEADER_LEN;
const L4_OFF = ETH_HEADER_LEN + IPV4_MIN_HEADER;
const L4_OFF6 = ETH_HEADER_LEN + IPV6_HEADER_LEN;

/** A UDP source or destination: a uint32 IPv4 address or 16 IPv6 bytes. */
export type UdpAddr = number | Uint8Array;

export class FrameSink {
  /** Frames we could not write (tap queue full). */
  dropped = 0;
  sent = 0;
  private readonly hdr = new Uint8Array(128);
  private readonly parts: Uint8Array[] = [this.hdr, this.hdr];
  private readonly one: Uint8Array[] = [this.hdr];
  /** True when the writer takes checksum/GSO offload (tap with a vnet header). */
  readonly offload: boolean;
  /** The writer has sendOffload: header and payload go as arguments, no parts array. */
  private readonly direct: boolean;
  private readonly views = new Map<number, Uint8Array>();
  private ipId = 0;
  private readonly mcastMac = new Uint8Array(6);

  constructor(
    private readonly writer: FrameWriter,
    /** Our MAC (gateway / DNS virtual hosts). */
    readonly ourMac: Uint8Array,
    /** Returns the guest's MAC for an address (learned), or null if unknown. */
    private readonly guestMacFor: (addr: number) => Uint8Array | null,
    /** The same for IPv6 (16 bytes at addr[off]); multicast destinations need no lookup. */
    private readonly guestMacFor6: (addr: Uint8Array, off: number) => Uint8Array | null = () => null,
  ) {
    this.offload = typeof writer.writevOffload === 'function';
    this.direct = this.offload && typeof writer.sendOffload === 'function';
  }

  private hdrView(len: number): Uint8Array {
    let v = this.views.get(len);
    if (!v) {
      v = this.hdr.subarray(0, len);
      this.views.set(len, v);
    }
    return v;
  }

  /**
   * Write a TCP segment or UDP datagram whose checksum the kernel completes (vnet header
   * offload); a payload longer than `gsoSize` goes as one GSO super-frame of `gsoType`.
   */
  private putOffload(
    hdrLen: number, l4Off: number, payload: Uint8Array | null, off: number, len: number, gsoSize: number, gsoType: number, csumOffset: number = TCP_CHECKSUM_OFFSET,
  ): boolean {
    const gso = gsoSize > 0 && len > gsoSize ? gsoType : 0;
    let ok: boolean;
    try {
      if (this.direct) {
        const some = payload !== null && len > 0;
        ok = this.writer.sendOffload!(this.hdr, hdrLen, some ? payload : null, some ? off : 0, some ? len : 0, gso, gso ? gsoSize : 0, l4Off, csumOffset);
      } else {
        this.parts[0] = this.hdrView(hdrLen);
        let parts = this.one;
        if (payload && len > 0) {
          this.parts[1] = payload.subarray(off, off + len);
          parts = this.parts;
        } else {
          this.one[0] = this.parts[0];
        }
        ok = this.writer.writevOffload!(parts, gso, gso ? gsoSize : 0, l4Off, csumOffset, hdrLen);
      }
    } catch (e) {
      this.writeError(e);
      return false;
    }
    if (ok) this.sent++;
    else this.dropped++;
    return ok;
  }

  private put(hdrLen: number, payload: Uint8Array | null, off: number, len: number): boolean {
    let ok: boolean;
    try {
      if (payload && len > 0) {
        this.parts[0] = this.hdrView(hdrLen);
        this.parts[1] = payload.subarray(off, off + len);
        ok = this.writer.writev(this.parts);
      } else {
        ok = this.writer.write(this.hdrView(hdrLen));
      }
    } catch (e) {
      // EIO while the guest has the tap down (e.g. an RA before it is configured): a lost
      // frame, as on a real link, never a crash.
      this.writeError(e);
      return false;
    }
    if (ok) this.sent++;
    else this.dropped++;
    return ok;
  }

  /** Frames lost to write errors (tap down: EIO), and the last such error's code. */
  writeErrors = 0;
  lastWriteError: string | null = null;

  private writeError(e: unknown): void {
    this.dropped++;
    this.writeErrors++;
    this.lastWriteError = (e as NodeJS.ErrnoException).code ?? String(e);
  }

  /** Ethernet + IPv4 header for a frame to `dst`; false when the guest MAC is unknown. */
  private ip4(src: number, dst: number, proto: number, l4Len: number, ttl = 64): boolean {
    const mac = this.guestMacFor(dst);
    if (!mac) return false;
    writeEthernetHeader(this.hdr, 0, mac, this.ourMac, ETHERTYPE_IPV4);
    this.ipId = (this.ipId + 1) & 0xffff;
    writeIpv4Header(this.hdr, IP_OFF, src, dst, proto, l4Len, ttl, this.ipId, true);
    return true;
  }

  /**
   * The 54-byte Ethernet + IPv4 + TCP header of a segment from src:srcPort to the guest at
   * dst:dstPort, with length, id, checksums, sequence numbers, flags and window left zero: the
   * express lane's template (native/express.c). False when the guest's MAC is unknown.
   */
  tcp4Template(out: Uint8Array, src: number, dst: number, srcPort: number, dstPort: number): boolean {
    const mac = this.guestMacFor(dst);
    if (!mac || out.length < L4_OFF + TCP_MIN_HEADER) return false;
    writeEthernetHeader(out, 0, mac, this.ourMac, ETHERTYPE_IPV4);
    writeIpv4Header(out, IP_OFF, src, dst, PROTO_TCP, 0, 64, 0, true);
    out[IP_OFF + 2] = out[IP_OFF + 3] = 0;
    writeTcpHeader(out, L4_OFF, srcPort, dstPort, 0, 0, 0, 0, 0);
    return true;
  }

  /** The same for IPv6 (16-byte addresses): 74 bytes, Ethernet + IPv6 + TCP. */
  tcp6Template(out: Uint8Array, src: Uint8Array, dst: Uint8Array, srcPort: number, dstPort: number): boolean {
    const mac = dst[0] === 0xff ? null : this.guestMacFor6(dst, 0);
    if (!mac || out.length < L4_OFF6 + TCP_MIN_HEADER) return false;
    writeEthernetHeader(out, 0, mac, this.ourMac, ETHERTYPE_IPV6);
    writeIpv6Header(out, IP_OFF, src, 0, dst, 0, NH_TCP, 0, 64);
    writeTcpHeader(out, L4_OFF6, srcPort, dstPort, 0, 0, 0, 0, 0);
    return true;
  }

  /** A TCP segment to the guest. */
  tcp4(
    src: number, dst: number, srcPort: number, dstPort: number,
    seq: number, ack: number, flags: number, window: number,
    payload: Uint8Array | null, off: number, len: number,
    synOpts?: { mss: number; wscale: number },
    gsoSize = 0,
  ): boolean {
    const tcpLen = TCP_MIN_HEADER + (synOpts ? 8 : 0) + len;
    if (!this.ip4(src, dst, PROTO_TCP, tcpLen)) return false;
    return this.tcpAfterIp(L4_OFF, pseudoSum4(src, dst, PROTO_TCP, tcpLen), GSO_TCPV4,
      srcPort, dstPort, seq, ack, flags, window, payload, off, len, synOpts, gsoSize);
  }

  /**
   * The TCP header at `l4Off` (after the family's IP header) and the frame out: the checksum
   * left to the kernel with offload (the pseudo-header sum in the field), else computed here.
   */
  private tcpAfterIp(
    l4Off: number, pseudo: number, gsoType: number, srcPort: number, dstPort: number,
    seq: number, ack: number, flags: number, window: number,
    payload: Uint8Array | null, off: number, len: number,
    synOpts: { mss: number; wscale: number } | undefined, gsoSize: number,
  ): boolean {
    const optLen = synOpts ? 8 : 0;
    const tcpHdr = TCP_MIN_HEADER + optLen;
    writeTcpHeader(this.hdr, l4Off, srcPort, dstPort, seq, ack, flags, window, optLen);
    if (synOpts) writeSynOptions(this.hdr, l4Off + TCP_MIN_HEADER, synOpts.mss, synOpts.wscale);
    if (this.offload) {
      writeU16(this.hdr, l4Off + TCP_CHECKSUM_OFFSET, pseudo);
      return this.putOffload(l4Off + tcpHdr, l4Off, payload, off, len, gsoSize, gsoType);
    }
    let sum = partialSum(this.hdr, l4Off, tcpHdr, pseudo);
    if (payload && len > 0) sum = partialSum(payload, off, len, sum);
    writeU16(this.hdr, l4Off + TCP_CHECKSUM_OFFSET, finish(sum));
    return this.put(l4Off + tcpHdr, payload, off, len);
  }

  /**
   * The UDP header at `l4Off` (after the family's IP header), its checksum (left to the kernel
   * with `csumOffload` and a tap that takes it), and the frame out.
   */
  private udpAfterIp(l4Off: number, pseudo: number, srcPort: number, dstPort: number, payload: Uint8Array, off: number, len: number, csumOffload: boolean): boolean {
    writeUdpHeader(this.hdr, l4Off, srcPort, dstPort, len);
    if (csumOffload && this.offload) {
      writeU16(this.hdr, l4Off + UDP_CHECKSUM_OFFSET, pseudo);
      return this.putOffload(l4Off + UDP_HEADER_LEN, l4Off, payload, off, len, 0, 0, UDP_CHECKSUM_OFFSET);
    }
    let sum = partialSum(this.hdr, l4Off, UDP_HEADER_LEN, pseudo);
    sum = partialSum(payload, off, len, sum);
    const c = finish(sum);
    writeU16(this.hdr, l4Off + 6, c === 0 ? 0xffff : c);
    return this.put(l4Off + UDP_HEADER_LEN, payload, off, len);
  }

  /**
   * Datagrams of `segSize` bytes back to back in buf[off, +len) (the last may be shorter), all
   * from src:srcPort: one GSO_UDP_L4 frame (the guest kernel splits it) with offload, else one
   * frame each. `segSize` 0: one datagram. The family follows the addresses: uint32 IPv4, or
   * 16-byte IPv6.
   */
  udpRun(src: UdpAddr, dst: UdpAddr, srcPort: number, dstPort: number, buf: Uint8Array, off: number, len: number, segSize: number): void {
    if (segSize > 0 && len > segSize && this.offload && this.uso) {
      const ipHdr = typeof src === 'number' ? IPV4_MIN_HEADER : 0; // an IPv6 payload length excludes its header
      const most = Math.floor((0xffff - ipHdr - UDP_HEADER_LEN) / segSize) * segSize;
      while (len > segSize) {
        const k = len < most ? len : most;
        const pseudo = this.udpIp(src, dst, UDP_HEADER_LEN + k);
        if (pseudo < 0) return;
        this.gsoParts.length = 2;
        this.gsoParts[1] = buf.subarray(off, off + k);
        if (this.udpGso(src, pseudo, srcPort, dstPort, k, segSize) === 'unsupported') break;
        off += k;
        len -= k;
      }
      if (len <= 0) return;
    }
    if (segSize === 0) segSize = len;
    for (; len > 0; off += segSize, len -= segSize) this.udpOne(src, dst, srcPort, dstPort, buf, off, len < segSize ? len : segSize);
  }

  /**
   * Datagrams parts[0, count) from src:srcPort, each `segSize` bytes but the last (≤), `total`
   * in all (≤ 65000): one GSO_UDP_L4 frame with offload, else one frame each.
   */
  udpParts(src: UdpAddr, dst: UdpAddr, srcPort: number, dstPort: number, parts: Uint8Array[], count: number, segSize: number, total: number): void {
    if (count > 1 && this.offload && this.uso) {
      const pseudo = this.udpIp(src, dst, UDP_HEADER_LEN + total);
      if (pseudo < 0) return;
      this.setGsoParts(parts, count);
      if (this.udpGso(src, pseudo, srcPort, dstPort, total, segSize) !== 'unsupported') return;
    }
    for (let i = 0; i < count; i++) this.udpOne(src, dst, srcPort, dstPort, parts[i], 0, parts[i].length);
  }

  /** Ethernet + IP header of a UDP frame from src to dst; the pseudo-header sum, or -1 when the guest MAC is unknown. */
  private udpIp(src: UdpAddr, dst: UdpAddr, l4Len: number): number {
    if (typeof src === 'number') {
      const d = dst as number;
      return this.ip4(src, d, PROTO_UDP, l4Len) ? pseudoSum4(src, d, PROTO_UDP, l4Len) : -1;
    }
    const d = dst as Uint8Array;
    return this.ip6(src, 0, d, 0, NH_UDP, l4Len, 64) ? pseudoSum6(src, 0, d, 0, NH_UDP, l4Len) : -1;
  }

  /** One NAT datagram (checksum left to the kernel where the tap takes offload). */
  private udpOne(src: UdpAddr, dst: UdpAddr, srcPort: number, dstPort: number, buf: Uint8Array, off: number, len: number): void {
    if (typeof src === 'number') this.udp4(src, dst as number, srcPort, dstPort, buf, off, len, true);
    else this.udp6(src, dst as Uint8Array, srcPort, dstPort, buf, off, len, true);
  }

  private setGsoParts(parts: Uint8Array[], count: number): void {
    const g = this.gsoParts;
    g.length = count + 1;
    for (let i = 0; i < count; i++) g[i + 1] = parts[i];
  }

  /** [header, payload parts...] of the next GSO_UDP_L4 frame. */
  private readonly gsoParts: Uint8Array[] = [this.hdr];

  /** Whether GSO_UDP_L4 frames are taken (until a kernel without it refuses the first one). */
  private uso = true;
  private usoConfirmed = false;

  /**
   * One GSO_UDP_L4 frame of gsoParts, the IP header (of src's family) already in place: the checksum field holds the
   * pseudo-header sum (for the whole length), which the kernel adjusts per datagram.
   */
  private udpGso(src: UdpAddr, pseudo: number, srcPort: number, dstPort: number, len: number, segSize: number): 'ok' | 'dropped' | 'unsupported' {
    const l4Off = typeof src === 'number' ? L4_OFF : L4_OFF6;
    writeUdpHeader(this.hdr, l4Off, srcPort, dstPort, len);
    writeU16(this.hdr, l4Off + UDP_CHECKSUM_OFFSET, pseudo);
    const hdrLen = l4Off + UDP_HEADER_LEN;
    this.gsoParts[0] = this.hdrView(hdrLen);
    let ok: boolean;
    try {
      ok = this.writer.writevOffload!(this.gsoParts, GSO_UDP_L4, segSize, l4Off, UDP_CHECKSUM_OFFSET, hdrLen);
    } catch (e) {
      if (!this.usoConfirmed && (e as NodeJS.ErrnoException).code === 'EINVAL') {
        this.uso = false; // a kernel before 6.2: one frame a datagram from now on
        return 'unsupported';
      }
      this.writeError(e);
      return 'dropped';
    }
    this.usoConfirmed = true;
    if (ok) this.sent++;
    else this.dropped++;
    return ok ? 'ok' : 'dropped';
  }

  /**
   * A UDP datagram to the guest. `csumOffload`: leave the checksum to the kernel where the tap
   * takes offload: for NAT traffic, not for DHCP (its clients read raw frames and may check it).
   */
  udp4(src: number, dst: number, srcPort: number, dstPort: number, payload: Uint8Array, off: number, len: number, csumOffload = false): boolean {
    if (!this.ip4(src, dst, PROTO_UDP, UDP_HEADER_LEN + len)) return false;
    return this.udpAfterIp(L4_OFF, pseudoSum4(src, dst, PROTO_UDP, UDP_HEADER_LEN + len), srcPort, dstPort, payload, off, len, csumOffload);
  }

  /**
   * An ICMP message to the guest: `head` (8 bytes: type, code, checksum placeholder, rest) is
   * written as given; the checksum is computed over head + body.
   */
  icmp4(src: number, dst: number, head: Uint8Array, body: Uint8Array, off: number, len: number, ttl = 64): boolean {
    if (!this.ip4(src, dst, PROTO_ICMP, 8 + len, ttl)) return false;
    this.hdr.set(head.subarray(0, 8), L4_OFF);
    this.hdr[L4_OFF + 2] = 0;
    this.hdr[L4_OFF + 3] = 0;
    let sum = partialSum(this.hdr, L4_OFF, 8, 0);
    if (len > 0) sum = partialSum(body, off, len, sum);
    writeU16(this.hdr, L4_OFF + 2, finish(sum));
    return this.put(L4_OFF + 8, body, off, len);
  }

  /** Ethernet + IPv6 header for a frame to `dst`; false when the guest MAC is unknown. */
  private ip6(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number, nh: number, l4Len: number, hopLimit: number): boolean {
    const mac = dst[dstOff] === 0xff ? multicastMac(dst, dstOff, this.mcastMac) : this.guestMacFor6(dst, dstOff);
    if (!mac) return false;
    writeEthernetHeader(this.hdr, 0, mac, this.ourMac, ETHERTYPE_IPV6);
    writeIpv6Header(this.hdr, IP_OFF, src, srcOff, dst, dstOff, nh, l4Len, hopLimit);
    return true;
  }

  /** A TCP segment to the guest over IPv6 (addresses: 16 bytes each). */
  tcp6(
    src: Uint8Array, dst: Uint8Array, srcPort: number, dstPort: number,
    seq: number, ack: number, flags: number, window: number,
    payload: Uint8Array | null, off: number, len: number,
    synOpts?: { mss: number; wscale: number },
    gsoSize = 0,
  ): boolean {
    const tcpLen = TCP_MIN_HEADER + (synOpts ? 8 : 0) + len;
    if (!this.ip6(src, 0, dst, 0, NH_TCP, tcpLen, 64)) return false;
    return this.tcpAfterIp(L4_OFF6, pseudoSum6(src, 0, dst, 0, NH_TCP, tcpLen), GSO_TCPV6,
      srcPort, dstPort, seq, ack, flags, window, payload, off, len, synOpts, gsoSize);
  }

  /** A UDP datagram to the guest over IPv6. */
  udp6(src: Uint8Array, dst: Uint8Array, srcPort: number, dstPort: number, payload: Uint8Array, off: number, len: number, csumOffload = false): boolean {
    if (!this.ip6(src, 0, dst, 0, NH_UDP, UDP_HEADER_LEN + len, 64)) return false;
    return this.udpAfterIp(L4_OFF6, pseudoSum6(src, 0, dst, 0, NH_UDP, UDP_HEADER_LEN + len), srcPort, dstPort, payload, off, len, csumOffload);
  }

  /**
   * An ICMPv6 message to the guest: `head` (8 bytes) then body[off, off+len); the checksum
   * (pseudo-header included) is computed here. NDP messages go out with hop limit 255.
   */
  icmp6(
    src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number,
    head: Uint8Array, body: Uint8Array | null, off: number, len: number, hopLimit = 64,
  ): boolean {
    if (!this.ip6(src, srcOff, dst, dstOff, NH_ICMPV6, 8 + len, hopLimit)) return false;
    this.hdr.set(head.subarray(0, 8), L4_OFF6);
    this.hdr[L4_OFF6 + 2] = 0;
    this.hdr[L4_OFF6 + 3] = 0;
    let sum = pseudoSum6(src, srcOff, dst, dstOff, NH_ICMPV6, 8 + len);
    sum = partialSum(this.hdr, L4_OFF6, 8, sum);
    if (body && len > 0) sum = partialSum(body, off, len, sum);
    writeU16(this.hdr, L4_OFF6 + 2, finish(sum));
    return this.put(L4_OFF6 + 8, body, off, len);
  }

  /** A complete frame built by the caller (ARP replies, DHCP). */
  raw(frame: Uint8Array): boolean {
    let ok: boolean;
    try {
      ok = this.writer.write(frame);
    } catch (e) {
      this.writeError(e);
      return false;
    }
    if (ok) this.sent++;
    else this.dropped++;
    return ok;
  }
}
