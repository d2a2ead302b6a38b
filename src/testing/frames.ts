/** Frame builders for tests, made with the same wire writers the stack uses. */

import { ETH_HEADER_LEN, ETHERTYPE_IPV4, ETHERTYPE_ARP, writeEthernetHeader } from '../wire/ethernet.js';
import { IPV4_MIN_HEADER, PROTO_ICMP, PROTO_TCP, PROTO_UDP, writeIpv4Header } from '../wire/ipv4.js';
import { TCP_CHECKSUM_OFFSET, TCP_MIN_HEADER, writeSynOptions, writeTcpHeader } from '../wire/tcp.js';
import { UDP_HEADER_LEN, writeUdpHeader } from '../wire/udp.js';
import { checksum, finish, partialSum, pseudoSum4 } from '../wire/checksum.js';
import { writeU16 } from '../wire/bytes.js';
import { ARP_LEN, writeArp } from '../wire/arp.js';

export const GUEST_MAC = new Uint8Array([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
export const GW_MAC = new Uint8Array([0x52, 0x55, 0x0a, 0x00, 0x02, 0x02]);

export function ipv4Frame(src: number, dst: number, proto: number, l4: Uint8Array, opts: { ttl?: number; dstMac?: Uint8Array } = {}): Uint8Array {
  const f = new Uint8Array(ETH_HEADER_LEN + IPV4_MIN_HEADER + l4.length);
  writeEthernetHeader(f, 0, opts.dstMac ?? GW_MAC, GUEST_MAC, ETHERTYPE_IPV4);
  writeIpv4Header(f, ETH_HEADER_LEN, src, dst, proto, l4.length, opts.ttl ?? 64, 1, true);
  f.set(l4, ETH_HEADER_LEN + IPV4_MIN_HEADER);
  return f;
}

export function udpFrame(src: number, dst: number, sport: number, dport: number, payload: Uint8Array, opts: { dstMac?: Uint8Array } = {}): Uint8Array {
  const u = new Uint8Array(UDP_HEADER_LEN + payload.length);
  writeUdpHeader(u, 0, sport, dport, payload.length);
  u.set(payload, UDP_HEADER_LEN);
  const c = finish(partialSum(u, 0, u.length, pseudoSum4(src, dst, PROTO_UDP, u.length)));
  writeU16(u, 6, c === 0 ? 0xffff : c);
  return ipv4Frame(src, dst, PROTO_UDP, u, opts);
}

export function tcpFrame(
  src: number, dst: number, sport: number, dport: number, seq: number, ack: number, flags: number,
  window: number, payload: Uint8Array = new Uint8Array(0), syn?: { mss: number; wscale: number },
): Uint8Array {
  const optLen = syn ? 8 : 0;
  const t = new Uint8Array(TCP_MIN_HEADER + optLen + payload.length);
  writeTcpHeader(t, 0, sport, dport, seq, ack, flags, window, optLen);
  if (syn) writeSynOptions(t, TCP_MIN_HEADER, syn.mss, syn.wscale);
  t.set(payload, TCP_MIN_HEADER + optLen);
  writeU16(t, TCP_CHECKSUM_OFFSET, finish(partialSum(t, 0, t.length, pseudoSum4(src, dst, PROTO_TCP, t.length))));
  return ipv4Frame(src, dst, PROTO_TCP, t);
}

export function icmpEchoFrame(src: number, dst: number, id: number, seq: number, data: Uint8Array, opts: { ttl?: number } = {}): Uint8Array {
  const m = new Uint8Array(8 + data.length);
  m[0] = 8;
  writeU16(m, 4, id);
  writeU16(m, 6, seq);
  m.set(data, 8);
  writeU16(m, 2, checksum(m, 0, m.length));
  return ipv4Frame(src, dst, PROTO_ICMP, m, opts);
}

export function arpRequestFrame(senderIp: number, targetIp: number): Uint8Array {
  const f = new Uint8Array(ETH_HEADER_LEN + ARP_LEN);
  writeEthernetHeader(f, 0, new Uint8Array([255, 255, 255, 255, 255, 255]), GUEST_MAC, ETHERTYPE_ARP);
  writeArp(f, ETH_HEADER_LEN, 1, GUEST_MAC, senderIp, new Uint8Array(6), targetIp);
  return f;
}

/** A FrameWriter that records what is written. */
export class RecordingWriter {
  frames: Uint8Array[] = [];
  write(frame: Uint8Array): boolean {
    this.frames.push(frame.slice());
    return true;
  }
  writev(parts: Uint8Array[]): boolean {
    const len = parts.reduce((n, p) => n + p.length, 0);
    const f = new Uint8Array(len);
    let o = 0;
    for (const p of parts) {
      f.set(p, o);
      o += p.length;
    }
    this.frames.push(f);
    return true;
  }
}
