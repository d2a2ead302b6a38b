import { describe, expect, it } from 'vitest';
import { Stack } from './stack.js';
import { planIpv4, planIpv6, DEFAULT_GATEWAY_MAC, type StackConfig } from './config.js';
import { silentLogger } from './log.js';
import { EthernetFrame, ETHERTYPE_IPV6 } from './wire/ethernet.js';
import { Ipv6Packet, NH_DSTOPTS, NH_FRAGMENT, NH_HOPOPTS, NH_ICMPV6, NH_UDP, formatIpv6 } from './wire/ipv6.js';
import { partialSum, pseudoSum6 } from './wire/checksum.js';
import { RecordingWriter, GUEST_MAC } from './testing/frames.js';
import {
  concat, echoRequest6, extHeader, fragmentHeader, icmp6Frame, ip6, ipv6Frame, neighbourSolicit, routerSolicit, udp6Frame,
} from './testing/frames6.js';
import { MSG_INFORMATION_REQUEST, MSG_REPLY } from './services/dhcpv6.js';

const GUEST_LL = ip6('fe80::1');
const GUEST = ip6('fd00::100');
const GW = ip6('fd00::2');
const DNS = ip6('fd00::3');
const ROUTER = ip6('fe80::2');
const WORLD = ip6('2001:db8:2::10');

function makeStack(over: Partial<StackConfig> = {}) {
  const writer = new RecordingWriter();
  const config: StackConfig = {
    ipv4: planIpv4('10.0.2.0/24'), ipv6: planIpv6('fd00::/64'), ipv4Enabled: true, mtu: 1500, guestMac: null,
    gatewayMac: DEFAULT_GATEWAY_MAC, disableHostLoopback: false, dnsUpstreams: [], disableDns: false, ...over,
  };
  const stack = new Stack({ config, writer, log: silentLogger(), pingFactory: null, dns: null });
  return { stack, writer, feed: (f: Uint8Array) => stack.input(f, 0, f.length) };
}

/** Parse a frame we sent: an IPv6 packet with a valid upper-layer checksum. */
function sent(frame: Uint8Array): Ipv6Packet {
  const eth = new EthernetFrame();
  eth.wrap(frame, 0, frame.length);
  expect(eth.ethertype).toBe(ETHERTYPE_IPV6);
  const p = new Ipv6Packet().wrap(frame, 14, frame.length - 14);
  expect(p.check()).toBeNull();
  expect(p.walk()).toBeNull();
  const s = partialSum(frame, p.upperOff, p.upperLen, pseudoSum6(frame, p.srcOff, frame, p.dstOff, p.upperProto, p.upperLen));
  expect(s).toBe(0xffff);
  return p;
}

describe('Stack over IPv6', () => {
  it('answers a neighbour solicitation for the gateway with an NA carrying our MAC', () => {
    const { stack, writer, feed } = makeStack();
    feed(icmp6Frame(GUEST_LL, ip6('ff02::1:ff00:2'), neighbourSolicit(GW), { hopLimit: 255 }));
    expect(writer.frames).toHaveLength(1);
    const f = writer.frames[0];
    const p = sent(f);
    expect(f.subarray(0, 6)).toEqual(GUEST_MAC);
    expect(formatIpv6(f, p.srcOff)).toBe('fd00::2');
    expect(formatIpv6(f, p.dstOff)).toBe('fe80::1');
    expect(p.hopLimit).toBe(255);
    expect(f[p.upperOff]).toBe(136);
    expect(formatIpv6(f, p.upperOff + 8)).toBe('fd00::2');
    expect(f.subarray(p.upperOff + 26, p.upperOff + 32)).toEqual(DEFAULT_GATEWAY_MAC);
    stack.close();
  });

  it('does not answer NS for other addresses, nor with a hop limit below 255', () => {
    const { stack, writer, feed } = makeStack();
    feed(icmp6Frame(GUEST_LL, ip6('ff02::1:ff00:50'), neighbourSolicit(ip6('fd00::50')), { hopLimit: 255 }));
    feed(icmp6Frame(GUEST_LL, ip6('ff02::1:ff00:2'), neighbourSolicit(GW), { hopLimit: 64 }));
    expect(writer.frames).toHaveLength(0);
    expect(stack.ndp!.counters.invalid).toBe(1);
    stack.close();
  });

  it('answers a router solicitation with an RA for the prefix, to all nodes', () => {
    const { stack, writer, feed } = makeStack();
    feed(icmp6Frame(GUEST_LL, ip6('ff02::2'), routerSolicit(), { hopLimit: 255 }));
    expect(writer.frames).toHaveLength(1);
    const f = writer.frames[0];
    const p = sent(f);
    expect([...f.subarray(0, 6)]).toEqual([0x33, 0x33, 0, 0, 0, 1]);
    expect(formatIpv6(f, p.srcOff)).toBe('fe80::2');
    expect(formatIpv6(f, p.dstOff)).toBe('ff02::1');
    expect(f[p.upperOff]).toBe(134);
    stack.start();
    expect(writer.frames).toHaveLength(2); // the unsolicited one at start
    stack.close();
  });

  it('answers echo to the gateway locally', () => {
    const { stack, writer, feed } = makeStack();
    const data = new TextEncoder().encode('ping6-payload');
    feed(icmp6Frame(GUEST, GW, echoRequest6(0x4242, 3, data)));
    expect(writer.frames).toHaveLength(1);
    const f = writer.frames[0];
    const p = sent(f);
    expect(f[p.upperOff]).toBe(129);
    expect((f[p.upperOff + 4] << 8) | f[p.upperOff + 5]).toBe(0x4242);
    expect(new TextDecoder().decode(f.subarray(p.upperOff + 8))).toBe('ping6-payload');
    expect(formatIpv6(f, p.srcOff)).toBe('fd00::2');
    expect(stack.guestAddress6()).toBe('fd00::100');
    stack.close();
  });

  it('counts MLD and multicast without answering', () => {
    const { stack, writer, feed } = makeStack();
    const mld = new Uint8Array(28);
    mld[0] = 143;
    const hbh = new Uint8Array([NH_ICMPV6, 0, 5, 2, 0, 0, 1, 0]); // router alert
    feed(ipv6Frame(GUEST_LL, ip6('ff02::16'), NH_HOPOPTS, (() => {
      const m = mld.slice();
      const s = partialSum(m, 0, m.length, pseudoSum6(GUEST_LL, 0, ip6('ff02::16'), 0, NH_ICMPV6, m.length));
      m[2] = (~s >> 8) & 0xff;
      m[3] = ~s & 0xff;
      return m;
    })(), { ext: hbh, hopLimit: 1 }));
    feed(udp6Frame(GUEST_LL, ip6('ff02::fb'), 5353, 5353, new Uint8Array(12)));
    expect(writer.frames).toHaveLength(0);
    expect(stack.counters6.mld).toBe(1);
    expect(stack.counters6.multicast).toBe(1);
    expect(stack.counters.droppedTotal).toBe(0);
    stack.close();
  });

  it('answers a DHCPv6 INFORMATION-REQUEST from the router link-local address', () => {
    const { stack, writer, feed } = makeStack();
    const req = Uint8Array.from([MSG_INFORMATION_REQUEST, 1, 2, 3, 0, 1, 0, 4, 0, 3, 0, 1]);
    feed(udp6Frame(GUEST_LL, ip6('ff02::1:2'), 546, 547, req));
    expect(writer.frames).toHaveLength(1);
    const f = writer.frames[0];
    const p = sent(f);
    expect(p.upperProto).toBe(NH_UDP);
    expect(formatIpv6(f, p.srcOff)).toBe('fe80::2');
    expect(formatIpv6(f, p.dstOff)).toBe('fe80::1');
    expect(f[p.upperOff + 8]).toBe(MSG_REPLY);
    stack.close();
  });

  it('sends Time Exceeded for hop limit 1 and Packet Too Big above the MTU', () => {
    const { stack, writer, feed } = makeStack();
    feed(ipv6Frame(GUEST, WORLD, NH_UDP, new Uint8Array(8), { hopLimit: 1 }));
    expect(writer.frames).toHaveLength(1);
    let f = writer.frames[0];
    let p = sent(f);
    expect(f[p.upperOff]).toBe(3);
    feed(udp6Frame(GUEST, WORLD, 1000, 7, new Uint8Array(1500)));
    expect(writer.frames).toHaveLength(2);
    f = writer.frames[1];
    p = sent(f);
    expect(f[p.upperOff]).toBe(2);
    expect((f[p.upperOff + 6] << 8) | f[p.upperOff + 7]).toBe(1500);
    expect(p.totalLength).toBeLessThanOrEqual(1280);
    expect(stack.counters.drops['ipv6-too-big']).toBe(1);
    stack.close();
  });

  it('drops and counts malformed packets by reason', () => {
    const { stack, feed } = makeStack();
    const good = udp6Frame(GUEST, WORLD, 1000, 7, new Uint8Array(4));
    const badLen = good.slice();
    badLen[19] = 250;
    feed(badLen);
    feed(good.subarray(0, 40));
    const loop: Uint8Array[] = [];
    for (let i = 0; i < 20; i++) loop.push(extHeader(NH_DSTOPTS));
    feed(ipv6Frame(GUEST, WORLD, NH_DSTOPTS, new Uint8Array(8), { ext: concat(...loop) }));
    feed(ipv6Frame(GUEST, WORLD, NH_DSTOPTS, new Uint8Array(8), { ext: concat(extHeader(NH_HOPOPTS), extHeader(NH_UDP)) }));
    const badSum = good.slice();
    badSum[good.length - 1] ^= 0xff;
    feed(badSum);
    feed(udp6Frame(ip6('2001:db8::bad'), WORLD, 1, 2, new Uint8Array(1)));
    feed(ipv6Frame(GUEST, WORLD, NH_FRAGMENT, new Uint8Array(16), { ext: fragmentHeader(NH_UDP, 0, true, 1) }));
    const d = stack.counters.drops;
    expect(d['ipv6-payload-length']).toBe(1);
    expect(d['ipv6-truncated']).toBe(1);
    expect(d['ipv6-ext-loop']).toBe(1);
    expect(d['ipv6-ext-order']).toBe(1);
    expect(d['udp-checksum']).toBe(1);
    expect(d['ipv6-source']).toBe(1);
    expect(d['fragment-pending']).toBe(1);
    stack.close();
  });

  it('survives a tap that refuses writes (guest has it down: EIO) when sending its first RA', () => {
    const config: StackConfig = {
      ipv4: planIpv4('10.0.2.0/24'), ipv6: planIpv6('fd00::/64'), ipv4Enabled: true, mtu: 1500, guestMac: null,
      gatewayMac: DEFAULT_GATEWAY_MAC, disableHostLoopback: false, dnsUpstreams: [], disableDns: false,
    };
    const eio = (): boolean => {
      throw Object.assign(new Error('writev: Input/output error'), { code: 'EIO' });
    };
    const stack = new Stack({ config, writer: { write: eio, writev: eio }, log: silentLogger(), pingFactory: null, dns: null });
    expect(() => stack.start()).not.toThrow();
    expect(stack.sink.writeErrors).toBe(1);
    expect(stack.sink.lastWriteError).toBe('EIO');
    stack.close();
  });

  it('drops every IPv6 frame with --ipv4-only and every IPv4 frame with --ipv6-only', () => {
    const a = makeStack({ ipv6: null });
    a.feed(icmp6Frame(GUEST, GW, echoRequest6(1, 1, new Uint8Array(4))));
    expect(a.writer.frames).toHaveLength(0);
    expect(a.stack.counters.drops['ipv6-disabled']).toBe(1);
    a.stack.close();
  });
});
