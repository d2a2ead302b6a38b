import { describe, expect, it } from 'vitest';
import ipaddr from 'ipaddr.js';
import {
  Ipv6Packet, MAX_EXTENSION_HEADERS, NH_DSTOPTS, NH_FRAGMENT, NH_HOPOPTS, NH_ROUTING, NH_UDP, formatIpv6, parseIpv6,
  solicitedNode,
} from './ipv6.js';
import { concat, extHeader, fragmentHeader, ip6, ipv6Frame, udp6Frame } from '../testing/frames6.js';
import { NdpOptionCursor, buildRouterAdvertisement, NDP_OPT_MTU, NDP_OPT_PREFIX_INFO, NDP_OPT_RDNSS, NDP_OPT_DNSSL, NDP_OPT_SOURCE_LLADDR } from './ndp.js';

const A = ip6('fd00::100');
const B = ip6('2001:db8:2::10');

function view(f: Uint8Array, avail = f.length - 14): Ipv6Packet {
  return new Ipv6Packet().wrap(f, 14, avail);
}

describe('IPv6 header', () => {
  it('reads a UDP packet', () => {
    const f = udp6Frame(A, B, 1000, 7, new Uint8Array([1, 2, 3]));
    const p = view(f);
    expect(p.check()).toBeNull();
    expect(p.walk()).toBeNull();
    expect(p.upperProto).toBe(NH_UDP);
    expect(p.upperLen).toBe(11);
    expect(p.isFragment).toBe(false);
    expect(formatIpv6(f, p.srcOff)).toBe('fd00::100');
    expect(formatIpv6(f, p.dstOff)).toBe('2001:db8:2::10');
  });
  it('reports truncation, version and payload length defects', () => {
    const f = udp6Frame(A, B, 1000, 7, new Uint8Array(3));
    expect(view(f, 39).check()).toBe('ipv6-truncated');
    const v = f.slice(); v[14] = 0x40;
    expect(view(v).check()).toBe('ipv6-version');
    const l = f.slice(); l[19] = 200;
    expect(view(l).check()).toBe('ipv6-payload-length');
    const jumbo = ipv6Frame(A, B, NH_HOPOPTS, new Uint8Array(8), { payloadLength: 0 });
    expect(view(jumbo).check()).toBe('ipv6-payload-length');
  });
});

describe('extension header walker', () => {
  const udp = new Uint8Array(8);
  it('walks hop-by-hop, routing and destination options to the upper layer', () => {
    const ext = concat(extHeader(NH_ROUTING), extHeader(NH_DSTOPTS, 1), extHeader(NH_UDP));
    const p = view(ipv6Frame(A, B, NH_HOPOPTS, udp, { ext }));
    expect(p.check()).toBeNull();
    expect(p.walk()).toBeNull();
    expect(p.upperProto).toBe(NH_UDP);
    expect(p.upperOff).toBe(14 + 40 + 8 + 16 + 8);
    expect(p.upperLen).toBe(8);
  });
  it('rejects hop-by-hop anywhere but first', () => {
    const ext = concat(extHeader(NH_HOPOPTS), extHeader(NH_UDP));
    expect(view(ipv6Frame(A, B, NH_DSTOPTS, udp, { ext })).walk()).toBe('ipv6-ext-order');
  });
  it('bounds a chain of destination options (a loop)', () => {
    const parts: Uint8Array[] = [];
    for (let i = 0; i < 40; i++) parts.push(extHeader(NH_DSTOPTS));
    const p = view(ipv6Frame(A, B, NH_DSTOPTS, udp, { ext: concat(...parts) }));
    expect(p.check()).toBeNull();
    expect(p.walk()).toBe('ipv6-ext-loop');
    const ok: Uint8Array[] = [];
    for (let i = 0; i < MAX_EXTENSION_HEADERS - 1; i++) ok.push(extHeader(NH_DSTOPTS));
    ok.push(extHeader(NH_UDP));
    expect(view(ipv6Frame(A, B, NH_DSTOPTS, udp, { ext: concat(...ok) })).walk()).toBeNull();
  });
  it('rejects a header that claims bytes past the packet', () => {
    const h = extHeader(NH_UDP, 200);
    const f = ipv6Frame(A, B, NH_DSTOPTS, udp, { ext: h.subarray(0, 16) });
    expect(view(f).walk()).toBe('ipv6-ext-truncated');
    const short = ipv6Frame(A, B, NH_DSTOPTS, new Uint8Array(4));
    expect(view(short).walk()).toBe('ipv6-ext-truncated');
    const frag = ipv6Frame(A, B, NH_FRAGMENT, new Uint8Array(6));
    expect(view(frag).walk()).toBe('ipv6-ext-truncated');
  });
  it('stops at a fragment header and reads its fields; an atomic fragment is a whole packet', () => {
    const p = view(ipv6Frame(A, B, NH_FRAGMENT, new Uint8Array(16), { ext: fragmentHeader(NH_UDP, 1448, true, 0xdeadbeef) }));
    expect(p.walk()).toBeNull();
    expect(p.isFragment).toBe(true);
    expect(p.fragmentOffset).toBe(1448);
    expect(p.moreFragments).toBe(true);
    expect(p.fragmentId).toBe(0xdeadbeef);
    expect(p.upperProto).toBe(NH_UDP);
    expect(p.upperLen).toBe(16);
    const atomic = view(ipv6Frame(A, B, NH_FRAGMENT, udp, { ext: fragmentHeader(NH_UDP, 0, false, 1) }));
    expect(atomic.walk()).toBeNull();
    expect(atomic.isFragment).toBe(false);
    expect(atomic.upperProto).toBe(NH_UDP);
  });
  it('never throws on random bytes', () => {
    let seed = 7;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
    const p = new Ipv6Packet();
    for (let i = 0; i < 5000; i++) {
      const f = Uint8Array.from({ length: 14 + 40 + (rnd() % 120) }, rnd);
      f[14] = 0x60;
      f[18] = 0;
      f[19] = Math.min(f.length - 54, rnd());
      p.wrap(f, 14, f.length - 14);
      if (p.check() === null) p.walk();
    }
  });
});

describe('IPv6 addresses', () => {
  it('formats like ipaddr.js / Node (RFC 5952)', () => {
    for (const t of ['::', '::1', 'fd00::2', 'fe80::5055:aff:fe00:202', '2001:db8:0:0:1:0:0:1', '2001:0:0:1::1', '1:2:3:4:5:6:7:8', '1::']) {
      const b = parseIpv6(t);
      expect(formatIpv6(b)).toBe(ipaddr.fromByteArray([...b]).toString());
    }
    // Node shows IPv4-mapped addresses with a dotted tail.
    expect(formatIpv6(parseIpv6('::ffff:1.2.3.4'))).toBe('::ffff:1.2.3.4');
  });
  it('makes solicited-node addresses', () => {
    expect(formatIpv6(solicitedNode(ip6('fd00::1:2:3')))).toBe('ff02::1:ff02:3');
  });
});

describe('NDP options', () => {
  it('builds a router advertisement whose options walk cleanly', () => {
    const mac = new Uint8Array([0x52, 0x55, 0x0a, 0, 2, 2]);
    const m = buildRouterAdvertisement({
      routerLifetime: 1800, prefix: ip6('fd00::'), validLifetime: 86400, preferredLifetime: 14400, mtu: 1500,
      mac, dns: [ip6('fd00::3')], dnsLifetime: 1800, search: ['example.test'], otherConfig: true,
    });
    expect(m[0]).toBe(134);
    const c = new NdpOptionCursor().reset(m, 16, m.length - 16);
    const types: number[] = [];
    while (c.next()) types.push(c.type);
    expect(c.valid).toBe(true);
    expect(types).toEqual([NDP_OPT_SOURCE_LLADDR, NDP_OPT_PREFIX_INFO, NDP_OPT_MTU, NDP_OPT_RDNSS, NDP_OPT_DNSSL]);
  });
  it('marks zero-length and overrunning options invalid', () => {
    const z = new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]);
    expect(new NdpOptionCursor().reset(z, 0, 8).findLinkLayer(1)).toBe(-2);
    const o = new Uint8Array([1, 2, 0, 0, 0, 0, 0, 0]);
    expect(new NdpOptionCursor().reset(o, 0, 8).findLinkLayer(1)).toBe(-2);
    const ok = new Uint8Array([1, 1, 1, 2, 3, 4, 5, 6]);
    expect(new NdpOptionCursor().reset(ok, 0, 8).findLinkLayer(1)).toBe(2);
  });
});
