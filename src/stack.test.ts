import dgram from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { Stack } from './stack.js';
import { DnsForwarder } from './services/dns.js';
import { answer, buildQuery } from './testing/dns.js';
import { planIpv4, DEFAULT_GATEWAY_MAC, type StackConfig } from './config.js';
import { silentLogger } from './log.js';
import { parseIpv4, Ipv4Packet, PROTO_ICMP } from './wire/ipv4.js';
import { EthernetFrame, ETHERTYPE_ARP } from './wire/ethernet.js';
import { ArpPacket, ARP_REPLY } from './wire/arp.js';
import { checksum } from './wire/checksum.js';
import { arpRequestFrame, icmpEchoFrame, udpFrame, RecordingWriter, GUEST_MAC } from './testing/frames.js';

const GUEST = parseIpv4('10.0.2.100');
const GW = parseIpv4('10.0.2.2');
const DNS = parseIpv4('10.0.2.3');
const WORLD = parseIpv4('203.0.113.10');

function makeStack(over: Partial<StackConfig> = {}, dns: DnsForwarder | null = null) {
  const writer = new RecordingWriter();
  const config: StackConfig = {
    ipv4: planIpv4('10.0.2.0/24'), ipv6: null, ipv4Enabled: true, mtu: 1500, guestMac: null,
    gatewayMac: DEFAULT_GATEWAY_MAC, disableHostLoopback: false, dnsUpstreams: [], disableDns: false, ...over,
  };
  const stack = new Stack({ config, writer, log: silentLogger(), pingFactory: null, dns });
  return { stack, writer, feed: (f: Uint8Array) => stack.input(f, 0, f.length) };
}

function ip(frame: Uint8Array): Ipv4Packet {
  return new Ipv4Packet().wrap(frame, 14, frame.length - 14);
}

describe('Stack (frames in, frames out)', () => {
  it('answers ARP for the gateway and the DNS address only', () => {
    const { stack, writer, feed } = makeStack();
    feed(arpRequestFrame(GUEST, GW));
    feed(arpRequestFrame(GUEST, DNS));
    feed(arpRequestFrame(GUEST, parseIpv4('10.0.2.50')));
    feed(arpRequestFrame(0, GUEST)); // DAD probe: never answered
    expect(writer.frames).toHaveLength(2);
    const eth = new EthernetFrame();
    eth.wrap(writer.frames[0], 0, writer.frames[0].length);
    expect(eth.ethertype).toBe(ETHERTYPE_ARP);
    expect(eth.dstIs(GUEST_MAC)).toBe(true);
    const arp = new ArpPacket();
    expect(arp.wrap(writer.frames[0], 14, 28)).toBe(true);
    expect(arp.oper).toBe(ARP_REPLY);
    expect(arp.senderIp).toBe(GW);
    expect(arp.targetIp).toBe(GUEST);
    stack.close();
  });

  it('with DNS disabled, answers ARP for the DNS address but nothing above it', () => {
    const { stack, writer, feed } = makeStack({ disableDns: true });
    feed(arpRequestFrame(GUEST, DNS));
    expect(writer.frames).toHaveLength(1);
    feed(icmpEchoFrame(GUEST, DNS, 1, 1, new Uint8Array(4)));
    feed(udpFrame(GUEST, DNS, 1000, 53, new Uint8Array(12)));
    expect(writer.frames).toHaveLength(1);
    expect(stack.counters.drops['dns-disabled']).toBe(2);
    stack.close();
  });

  it('answers ICMP echo to the gateway with the same id, sequence and data', () => {
    const { stack, writer, feed } = makeStack();
    const data = new TextEncoder().encode('slipway-echo-payload');
    feed(icmpEchoFrame(GUEST, GW, 0x1234, 7, data));
    expect(writer.frames).toHaveLength(1);
    const p = ip(writer.frames[0]);
    expect(p.check()).toBeNull();
    expect([p.src, p.dst, p.protocol]).toEqual([GW, GUEST, PROTO_ICMP]);
    const m = writer.frames[0].subarray(p.payloadOff, p.payloadOff + p.payloadLen);
    expect(m[0]).toBe(0);
    expect(checksum(m, 0, m.length)).toBe(0);
    expect([(m[4] << 8) | m[5], (m[6] << 8) | m[7]]).toEqual([0x1234, 7]);
    expect(Buffer.from(m.subarray(8)).toString()).toBe('slipway-echo-payload');
    stack.close();
  });

  it('sends time-exceeded for TTL 1 toward the outside', () => {
    const { stack, writer, feed } = makeStack();
    feed(icmpEchoFrame(GUEST, WORLD, 1, 1, new Uint8Array(8), { ttl: 1 }));
    expect(writer.frames).toHaveLength(1);
    const p = ip(writer.frames[0]);
    expect(writer.frames[0][p.payloadOff]).toBe(11);
    expect(stack.counters.drops.ttl).toBe(1);
    stack.close();
  });

  it('counts and drops malformed frames of every kind without throwing', () => {
    const { stack, writer, feed } = makeStack();
    const good = udpFrame(GUEST, WORLD, 1000, 7, new Uint8Array(16));
    feed(new Uint8Array(5)); // runt
    const badSum = good.slice(); badSum[24] ^= 1; feed(badSum); // IPv4 header checksum
    const badLen = good.slice(); badLen[17] = 0xff; feed(badLen); // total length beyond frame
    const badUdp = good.slice(); badUdp[good.length - 1] ^= 0xff; feed(badUdp); // UDP checksum
    const trunc = good.slice(0, 30); feed(trunc); // truncated IPv4 header
    const spoof = udpFrame(parseIpv4('192.0.2.1'), WORLD, 1, 7, new Uint8Array(1)); feed(spoof); // source not in our network
    const other = good.slice(); other[12] = 0x88; other[13] = 0xb5; feed(other); // unknown ethertype
    let seed = 1;
    for (let i = 0; i < 2000; i++) {
      const len = (i * 37) % 200;
      const f = new Uint8Array(len);
      for (let j = 0; j < len; j++) f[j] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
      if (len >= 14 && i % 2 === 0) { f.set(good.subarray(0, 14)); }
      feed(f);
    }
    const d = stack.counters.drops;
    expect(d.runt).toBeGreaterThan(0);
    expect(d['ipv4-checksum']).toBeGreaterThan(0);
    expect(d['ipv4-length']).toBeGreaterThan(0);
    expect(d['udp-checksum']).toBe(1);
    expect(d['ipv4-truncated']).toBeGreaterThan(0);
    expect(d['ipv4-source']).toBeGreaterThan(0);
    expect(d.ethertype).toBeGreaterThan(0);
    expect(stack.counters.rxFrames).toBe(2007);
    // Nothing malformed produced output, except ICMP errors are not expected either.
    expect(writer.frames.length).toBe(0);
    stack.close();
  });

  it('serves DHCP through the frame path', () => {
    const { stack, writer, feed } = makeStack();
    // A minimal DISCOVER from 0.0.0.0 to broadcast.
    const msg = new Uint8Array(300);
    msg[0] = 1; msg[1] = 1; msg[2] = 6;
    msg.set([0xde, 0xad, 0xbe, 0xef], 4);
    msg.set(GUEST_MAC, 28);
    msg.set([99, 130, 83, 99], 236);
    msg.set([53, 1, 1, 255], 240);
    feed(udpFrame(0, 0xffffffff, 68, 67, msg, { dstMac: new Uint8Array([255, 255, 255, 255, 255, 255]) }));
    expect(writer.frames).toHaveLength(1);
    const p = ip(writer.frames[0]);
    expect(p.src).toBe(GW);
    const dhcp = writer.frames[0].subarray(p.payloadOff + 8);
    const yiaddr = (dhcp[16] << 24 | dhcp[17] << 16 | dhcp[18] << 8 | dhcp[19]) >>> 0;
    expect(yiaddr).toBeGreaterThanOrEqual(parseIpv4('10.0.2.15'));
    expect(yiaddr).toBeLessThanOrEqual(parseIpv4('10.0.2.30'));
    stack.close();
  });

  it('forwards a DNS query to the upstream, relays the answer and counts both in stats().dns', async () => {
    // A loopback upstream that answers every query with 192.0.2.1.
    const up = dgram.createSocket('udp4');
    up.on('message', (m, r) => up.send(answer(m, [192, 0, 2, 1]), r.port, r.address));
    await new Promise<void>((r) => up.bind(0, '127.0.0.1', r));
    const dns = new DnsForwarder({ upstreams: [{ address: '127.0.0.1', port: up.address().port }], timeoutMs: 1000 });
    const { stack, writer, feed } = makeStack({}, dns);
    try {
      feed(udpFrame(GUEST, DNS, 40000, 53, buildQuery(0x1234, 'world.test')));
      for (let i = 0; i < 200 && writer.frames.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
      expect(writer.frames).toHaveLength(1);
      const p = ip(writer.frames[0]);
      expect(p.src).toBe(DNS);
      expect(p.dst).toBe(GUEST);
      const reply = writer.frames[0].subarray(p.payloadOff + 8);
      expect([reply[0], reply[1]]).toEqual([0x12, 0x34]); // the guest's own id, not the upstream's
      expect([...reply.subarray(reply.length - 4)]).toEqual([192, 0, 2, 1]);
      const s = stack.stats() as { dns: Record<string, number> };
      expect(s.dns).toMatchObject({ inFlight: 0, queries: 1, sent: 1, answered: 1, retries: 0, servfails: 0 });
    } finally {
      stack.close();
      dns.close();
      up.close();
    }
  });

  it('drops and counts a frame whose handling throws, and handles the frames after it', () => {
    const { stack, writer } = makeStack();
    const arp = (stack as unknown as { arp: { input: (...a: unknown[]) => void } }).arp;
    const real = arp.input.bind(arp);
    let calls = 0;
    arp.input = (...a: unknown[]) => {
      if (calls++ === 0) throw new Error('boom (a bug)');
      real(...a);
    };
    const f = arpRequestFrame(GUEST, GW);
    const size = 128;
    const ring = new Uint8Array(2 * size);
    ring.set(f, 0);
    ring.set(f, size);
    expect(() => stack.onFrames(ring, size, Int32Array.from([f.length, f.length]), 2)).not.toThrow();
    expect(stack.counters.drops['internal-error']).toBe(1);
    expect(writer.frames).toHaveLength(1); // the second request was answered
    stack.close();
  });

  it('reports dns: null in stats() when there is no forwarder', () => {
    const { stack } = makeStack();
    expect((stack.stats() as { dns: unknown }).dns).toBeNull();
    stack.close();
  });
});
