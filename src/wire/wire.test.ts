import { describe, expect, it } from 'vitest';
import { checksum, finish, fold, partialSum, pseudoSum4, setPartialSum, tsPartialSum } from './checksum.js';
import { EthernetFrame, ETHERTYPE_IPV4, formatMac, parseMac } from './ethernet.js';
import { Ipv4Packet, formatIpv4, parseIpv4, PROTO_TCP, PROTO_UDP } from './ipv4.js';
import { TcpSegment, SYN, ACK, seqLt, seqAdd, seqDiff, type TcpOptions } from './tcp.js';
import { UdpDatagram } from './udp.js';
import { ArpPacket } from './arp.js';
import { arpRequestFrame, tcpFrame, udpFrame } from '../testing/frames.js';

const A = parseIpv4('10.0.2.100');
const B = parseIpv4('198.51.100.7');

describe('checksum', () => {
  it('matches the RFC 1071 example', () => {
    const b = Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
    expect(tsPartialSum(b, 0, 8, 0)).toBe(0xddf2);
    expect(checksum(b, 0, 8)).toBe(~0xddf2 & 0xffff);
  });
  it('pads an odd trailing byte and honours offset and initial sum', () => {
    const b = Uint8Array.from([9, 9, 0xab, 0xcd, 0xef]);
    expect(tsPartialSum(b, 2, 3, 0)).toBe(fold(0xabcd + 0xef00));
    expect(tsPartialSum(b, 2, 3, 0x1234)).toBe(fold(0xabcd + 0xef00 + 0x1234));
  });
  it('pseudo-header sum folds', () => {
    expect(pseudoSum4(0xffffffff, 0xffffffff, 6, 0xffff)).toBeLessThanOrEqual(0xffff);
  });
  it('sums short ranges in TS and hands long ones to the installed implementation, same results', () => {
    const lens: number[] = [];
    setPartialSum((buf, off, len, initial) => {
      lens.push(len);
      return tsPartialSum(buf, off, len, initial);
    });
    try {
      const b = Uint8Array.from({ length: 300 }, (_, i) => (i * 131 + 7) & 0xff);
      for (const len of [0, 1, 19, 20, 63, 64, 65, 200]) {
        expect(partialSum(b, 3, len, 0xfff0), `len ${len}`).toBe(tsPartialSum(b, 3, len, 0xfff0));
      }
      expect(lens).toEqual([64, 65, 200]);
    } finally {
      setPartialSum(tsPartialSum);
    }
  });
});

describe('Ethernet', () => {
  it('parses and formats MACs, rejecting bad and multicast ones', () => {
    expect(formatMac(parseMac('52:54:00:AB:cd:01'))).toBe('52:54:00:ab:cd:01');
    expect(() => parseMac('52:54:00:ab:cd')).toThrow(/six hex pairs/);
    expect(() => parseMac('01:00:5e:00:00:01')).toThrow(/multicast/);
  });
  it('rejects runts', () => {
    expect(new EthernetFrame().wrap(new Uint8Array(13), 0, 13)).toBe(false);
  });
});

describe('IPv4', () => {
  it('round-trips a header and validates it', () => {
    const f = udpFrame(A, B, 1000, 53, new Uint8Array([1, 2, 3]));
    const eth = new EthernetFrame();
    expect(eth.wrap(f, 0, f.length)).toBe(true);
    expect(eth.ethertype).toBe(ETHERTYPE_IPV4);
    const ip = new Ipv4Packet().wrap(f, 14, f.length - 14);
    expect(ip.check()).toBeNull();
    expect(ip.src).toBe(A);
    expect(ip.dst).toBe(B);
    expect(ip.protocol).toBe(PROTO_UDP);
    expect(ip.payloadLen).toBe(11);
    expect(ip.isFragment).toBe(false);
  });
  it('reports each defect', () => {
    const f = udpFrame(A, B, 1000, 53, new Uint8Array([1, 2, 3]));
    const ip = new Ipv4Packet();
    expect(ip.wrap(f, 14, 19).check()).toBe('ipv4-truncated');
    const v = f.slice(); v[14] = 0x65;
    expect(ip.wrap(v, 14, v.length - 14).check()).toBe('ipv4-version');
    const ihl = f.slice(); ihl[14] = 0x44;
    expect(ip.wrap(ihl, 14, ihl.length - 14).check()).toBe('ipv4-ihl');
    const len = f.slice(); len[17] = 200;
    expect(ip.wrap(len, 14, len.length - 14).check()).toBe('ipv4-length');
    const sum = f.slice(); sum[24] ^= 0xff;
    expect(ip.wrap(sum, 14, sum.length - 14).check()).toBe('ipv4-checksum');
  });
  it('parses addresses strictly', () => {
    expect(formatIpv4(parseIpv4('203.0.113.10'))).toBe('203.0.113.10');
    expect(() => parseIpv4('1.2.3')).toThrow(/invalid IPv4/);
    expect(() => parseIpv4('1.2.3.256')).toThrow(/invalid IPv4/);
    expect(() => parseIpv4('0x1.2.3.4')).toThrow(/invalid IPv4/);
  });
});

describe('TCP', () => {
  it('reads fields and SYN options', () => {
    const f = tcpFrame(A, B, 40000, 80, 0xfffffff0, 0, SYN, 64240, new Uint8Array(0), { mss: 1460, wscale: 7 });
    const seg = new TcpSegment();
    expect(seg.wrap(f, 34, f.length - 34)).toBe(true);
    expect(seg.srcPort).toBe(40000);
    expect(seg.dstPort).toBe(80);
    expect(seg.seq).toBe(0xfffffff0);
    expect(seg.flags).toBe(SYN);
    expect(seg.window).toBe(64240);
    const o: TcpOptions = { mss: 0, wscale: -1, sackOk: false };
    seg.options(o);
    expect(o).toEqual({ mss: 1460, wscale: 7, sackOk: false });
    expect(finish(partialSum(f, 34, f.length - 34, pseudoSum4(A, B, PROTO_TCP, f.length - 34)))).toBe(0);
  });
  it('rejects a data offset beyond the segment and stops at malformed options', () => {
    const f = tcpFrame(A, B, 1, 2, 0, 0, ACK, 100);
    const seg = new TcpSegment();
    f[34 + 12] = 0xf0;
    expect(seg.wrap(f, 34, f.length - 34)).toBe(false);
    const g = tcpFrame(A, B, 1, 2, 0, 0, SYN, 100, new Uint8Array(0), { mss: 1460, wscale: 3 });
    g[34 + 21] = 0; // option length 0 → stop scanning
    expect(seg.wrap(g, 34, g.length - 34)).toBe(true);
    const o: TcpOptions = { mss: 0, wscale: -1, sackOk: false };
    expect(seg.options(o).mss).toBe(0);
  });
  it('compares sequence numbers modulo 2^32', () => {
    expect(seqLt(0xfffffff0, 5)).toBe(true);
    expect(seqLt(5, 0xfffffff0)).toBe(false);
    expect(seqAdd(0xffffffff, 2)).toBe(1);
    expect(seqDiff(1, 0xffffffff)).toBe(2);
  });
});

describe('UDP and ARP', () => {
  it('rejects a UDP length beyond the IP payload', () => {
    const f = udpFrame(A, B, 1, 2, new Uint8Array(4));
    const u = new UdpDatagram();
    expect(u.wrap(f, 34, 12)).toBe(true);
    expect(u.wrap(f, 34, 11)).toBe(false);
    expect(u.payloadLen).toBe(4);
  });
  it('reads an ARP request', () => {
    const f = arpRequestFrame(A, parseIpv4('10.0.2.2'));
    const p = new ArpPacket();
    expect(p.wrap(f, 14, f.length - 14)).toBe(true);
    expect(p.oper).toBe(1);
    expect(p.senderIp).toBe(A);
    expect(formatIpv4(p.targetIp)).toBe('10.0.2.2');
    expect(p.wrap(f, 14, 27)).toBe(false);
  });
});
