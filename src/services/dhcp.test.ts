import { describe, expect, it } from 'vitest';
import { BOOTREQUEST, DhcpMessage, DhcpMessageType as T, DhcpOption as O, DhcpOptionCursor, DhcpWriter } from '../wire/dhcp.js';
import { parseIpv4 } from '../wire/ipv4.js';
import { DhcpServer, OFFER_HOLD_MS, type DhcpServerOptions } from './dhcp.js';

const ip = parseIpv4;
const MAC_A = Uint8Array.from([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
const MAC_B = Uint8Array.from([0x52, 0x54, 0, 0xab, 0xcd, 0xef]);

function server(extra: Partial<DhcpServerOptions> = {}, clock = { t: 1_000_000 }): DhcpServer {
  return new DhcpServer({
    network: ip('10.0.2.0'),
    prefixLength: 24,
    serverAddress: ip('10.0.2.2'),
    router: ip('10.0.2.2'),
    dns: [ip('10.0.2.3')],
    rangeStart: ip('10.0.2.15'),
    rangeEnd: ip('10.0.2.30'),
    leaseSeconds: 3600,
    mtu: 1500,
    now: () => clock.t,
    ...extra,
  });
}

interface Msg {
  type: number;
  mac?: Uint8Array;
  xid?: number;
  ciaddr?: number;
  broadcast?: boolean;
  requested?: number;
  serverId?: number;
  clientId?: boolean;
}

/** What busybox udhcpc sends: 53, 61 (type 1 + MAC), 57 (576), 55, plus 50/54 on REQUEST. */
function udhcpc(m: Msg): Uint8Array {
  const mac = m.mac ?? MAC_A;
  const buf = new Uint8Array(576);
  const w = new DhcpWriter().begin(buf, 0, buf.length, BOOTREQUEST);
  w.xid(m.xid ?? 0x1234abcd).flags(m.broadcast ? 0x8000 : 0).ciaddr(m.ciaddr ?? 0).chaddr(mac, 0);
  w.optionU8(O.messageType, m.type);
  if (m.clientId !== false) w.option(O.clientId, Uint8Array.from([1, ...mac]));
  if (m.requested !== undefined) w.optionU32(O.requestedAddress, m.requested);
  if (m.serverId !== undefined) w.optionU32(O.serverId, m.serverId);
  w.optionU16(O.maxMessageSize, 576);
  w.option(O.parameterList, Uint8Array.from([1, 3, 6, 12, 15, 28, 42, 51, 58, 59, 119]));
  return buf.slice(0, w.finish());
}

interface Parsed {
  type: number;
  xid: number;
  yiaddr: number;
  ciaddr: number;
  chaddr: number[];
  options: Map<number, number[]>;
}

function parse(reply: Uint8Array): Parsed {
  const m = new DhcpMessage();
  expect(m.wrap(reply, 0, reply.length)).toBe(true);
  expect(m.op).toBe(2);
  expect(reply.length).toBeLessThanOrEqual(548);
  const options = new Map<number, number[]>();
  const c = m.options(new DhcpOptionCursor());
  while (c.next()) options.set(c.code, Array.from(reply.subarray(c.dataOff, c.dataOff + c.dataLen)));
  expect(c.malformed).toBe(false);
  return {
    type: m.messageType(), xid: m.xid, yiaddr: m.yiaddr, ciaddr: m.ciaddr,
    chaddr: Array.from(reply.subarray(m.chaddrOff, m.chaddrOff + 6)), options,
  };
}

const u32 = (v: number): number[] => [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];

describe('DhcpServer', () => {
  it('DISCOVER → OFFER → REQUEST → ACK like busybox udhcpc', () => {
    const s = server({ domainName: 'example.test', searchDomains: ['example.test', 'corp.test'] });
    const offer = s.handle(udhcpc({ type: T.discover }), MAC_A)!;
    expect(offer).not.toBeNull();
    expect(offer.broadcast).toBe(false);
    expect(offer.yiaddr).toBe(ip('10.0.2.15'));
    expect(offer.dst).toBe(ip('10.0.2.15'));
    const o = parse(offer.reply);
    expect(o.type).toBe(T.offer);
    expect(o.xid).toBe(0x1234abcd);
    expect(o.yiaddr).toBe(ip('10.0.2.15'));
    expect(o.chaddr).toEqual(Array.from(MAC_A));
    expect(o.options.get(O.serverId)).toEqual(u32(ip('10.0.2.2')));
    expect(o.options.get(O.leaseTime)).toEqual(u32(3600));
    expect(o.options.get(O.renewalTime)).toEqual(u32(1800));
    expect(o.options.get(O.rebindingTime)).toEqual(u32(3150));
    expect(o.options.get(O.subnetMask)).toEqual([255, 255, 255, 0]);
    expect(o.options.get(O.router)).toEqual(u32(ip('10.0.2.2')));
    expect(o.options.get(O.dnsServers)).toEqual(u32(ip('10.0.2.3')));
    expect(o.options.get(O.broadcastAddress)).toEqual([10, 0, 2, 255]);
    expect(o.options.get(O.interfaceMtu)).toEqual([0x05, 0xdc]);
    expect(String.fromCharCode(...o.options.get(O.domainName)!)).toBe('example.test');
    expect(o.options.get(O.domainSearch)!.length).toBe(14 + 11);

    const ack = s.handle(udhcpc({ type: T.request, requested: offer.yiaddr, serverId: ip('10.0.2.2') }), MAC_A)!;
    expect(ack.broadcast).toBe(false);
    const a = parse(ack.reply);
    expect(a.type).toBe(T.ack);
    expect(a.yiaddr).toBe(ip('10.0.2.15'));
    expect(a.options.get(O.leaseTime)).toEqual(u32(3600));
    expect(s.counters).toMatchObject({ offers: 1, acks: 1, naks: 0, malformed: 0 });
    expect(s.leases()).toEqual([
      expect.objectContaining({ address: ip('10.0.2.15'), mac: '52:54:00:12:34:56', state: 'bound', clientId: '01525400123456' }),
    ]);
  });

  it('honours the broadcast flag', () => {
    const s = server();
    const offer = s.handle(udhcpc({ type: T.discover, broadcast: true }), MAC_A)!;
    expect(offer.broadcast).toBe(true);
    expect(offer.dst).toBe(0xffffffff);
    expect(parse(offer.reply).options.has(O.domainName)).toBe(false);
  });

  it('gives the same address on re-DISCOVER and distinct addresses to distinct clients', () => {
    const s = server();
    const a1 = s.handle(udhcpc({ type: T.discover }), MAC_A)!.yiaddr;
    const b1 = s.handle(udhcpc({ type: T.discover, mac: MAC_B }), MAC_B)!.yiaddr;
    expect(b1).not.toBe(a1);
    s.handle(udhcpc({ type: T.request, requested: a1, serverId: ip('10.0.2.2') }), MAC_A);
    expect(s.handle(udhcpc({ type: T.discover }), MAC_A)!.yiaddr).toBe(a1);
    expect(s.handle(udhcpc({ type: T.discover, mac: MAC_B }), MAC_B)!.yiaddr).toBe(b1);
  });

  it('keys leases by client id, else by MAC', () => {
    const s = server();
    const a = s.handle(udhcpc({ type: T.discover, clientId: false }), MAC_A)!.yiaddr;
    expect(s.handle(udhcpc({ type: T.discover, clientId: false }), MAC_A)!.yiaddr).toBe(a);
    // Same MAC, but now with a client id: a different client.
    expect(s.handle(udhcpc({ type: T.discover }), MAC_A)!.yiaddr).not.toBe(a);
  });

  it('runs out of addresses and recovers when offers lapse', () => {
    const clock = { t: 0 };
    const s = server({ rangeEnd: ip('10.0.2.16') }, clock);
    const mac = (i: number): Uint8Array => Uint8Array.from([2, 0, 0, 0, 0, i]);
    expect(s.handle(udhcpc({ type: T.discover, mac: mac(1) }), mac(1))).not.toBeNull();
    expect(s.handle(udhcpc({ type: T.discover, mac: mac(2) }), mac(2))).not.toBeNull();
    expect(s.handle(udhcpc({ type: T.discover, mac: mac(3) }), mac(3))).toBeNull();
    expect(s.counters.exhausted).toBe(1);
    clock.t += OFFER_HOLD_MS + 1;
    expect(s.handle(udhcpc({ type: T.discover, mac: mac(3) }), mac(3))!.yiaddr).toBe(ip('10.0.2.15'));
  });

  it('reclaims expired leases, but a returning client keeps its address if still free', () => {
    const clock = { t: 0 };
    const s = server({ rangeEnd: ip('10.0.2.15') }, clock);
    const a = s.handle(udhcpc({ type: T.discover }), MAC_A)!.yiaddr;
    s.handle(udhcpc({ type: T.request, requested: a, serverId: ip('10.0.2.2') }), MAC_A);
    expect(s.handle(udhcpc({ type: T.discover, mac: MAC_B }), MAC_B)).toBeNull();
    clock.t += 3600_000 + 1;
    // A expired; it returns first and gets the same address.
    expect(s.handle(udhcpc({ type: T.discover }), MAC_A)!.yiaddr).toBe(a);
    clock.t += OFFER_HOLD_MS + 1;
    expect(s.handle(udhcpc({ type: T.discover, mac: MAC_B }), MAC_B)!.yiaddr).toBe(a);
  });

  it('ignores a REQUEST for another server and drops our offer', () => {
    const s = server({ rangeEnd: ip('10.0.2.15') });
    const a = s.handle(udhcpc({ type: T.discover }), MAC_A)!.yiaddr;
    expect(s.handle(udhcpc({ type: T.request, requested: a, serverId: ip('10.0.2.99') }), MAC_A)).toBeNull();
    expect(s.counters.ignored).toBe(1);
    expect(s.handle(udhcpc({ type: T.discover, mac: MAC_B }), MAC_B)!.yiaddr).toBe(a);
  });

  it('NAKs a SELECTING request for an address it did not offer', () => {
    const s = server();
    s.handle(udhcpc({ type: T.discover }), MAC_A);
    const nak = s.handle(udhcpc({ type: T.request, requested: ip('10.0.2.20'), serverId: ip('10.0.2.2') }), MAC_A)!;
    expect(nak.broadcast).toBe(true);
    expect(nak.yiaddr).toBe(0);
    const n = parse(nak.reply);
    expect(n.type).toBe(T.nak);
    expect(n.options.has(O.leaseTime)).toBe(false);
    expect(s.counters.naks).toBe(1);
  });

  it('INIT-REBOOT: ACKs a free address in the range, NAKs foreign or taken ones', () => {
    const s = server();
    const ack = s.handle(udhcpc({ type: T.request, requested: ip('10.0.2.21') }), MAC_A)!;
    expect(parse(ack.reply).type).toBe(T.ack);
    expect(ack.yiaddr).toBe(ip('10.0.2.21'));
    // Another client claims the same address.
    expect(parse(s.handle(udhcpc({ type: T.request, requested: ip('10.0.2.21'), mac: MAC_B }), MAC_B)!.reply).type).toBe(T.nak);
    // Another network entirely (the guest moved).
    expect(parse(s.handle(udhcpc({ type: T.request, requested: ip('192.168.1.50'), mac: MAC_B }), MAC_B)!.reply).type).toBe(T.nak);
    // In the subnet but outside the range.
    expect(parse(s.handle(udhcpc({ type: T.request, requested: ip('10.0.2.100'), mac: MAC_B }), MAC_B)!.reply).type).toBe(T.nak);
  });

  it('RENEWING: extends the lease, unicast to ciaddr', () => {
    const clock = { t: 0 };
    const s = server({}, clock);
    const a = s.handle(udhcpc({ type: T.discover }), MAC_A)!.yiaddr;
    s.handle(udhcpc({ type: T.request, requested: a, serverId: ip('10.0.2.2') }), MAC_A);
    clock.t += 1800_000;
    const renew = s.handle(udhcpc({ type: T.request, ciaddr: a }), MAC_A)!;
    expect(renew.broadcast).toBe(false);
    expect(renew.dst).toBe(a);
    const r = parse(renew.reply);
    expect(r.type).toBe(T.ack);
    expect(r.ciaddr).toBe(a);
    expect(s.leases()[0].expiresAt).toBe(clock.t + 3600_000);
    // After a restart (empty table) the renewal is adopted.
    const fresh = server({}, clock);
    expect(parse(fresh.handle(udhcpc({ type: T.request, ciaddr: a }), MAC_A)!.reply).type).toBe(T.ack);
  });

  it('RELEASE frees the address, keeping it for the same client', () => {
    const s = server({ rangeEnd: ip('10.0.2.15') });
    const a = s.handle(udhcpc({ type: T.discover }), MAC_A)!.yiaddr;
    s.handle(udhcpc({ type: T.request, requested: a, serverId: ip('10.0.2.2') }), MAC_A);
    expect(s.handle(udhcpc({ type: T.release, ciaddr: a, serverId: ip('10.0.2.2') }), MAC_A)).toBeNull();
    expect(s.counters.releases).toBe(1);
    expect(s.handle(udhcpc({ type: T.discover, mac: MAC_B }), MAC_B)!.yiaddr).toBe(a);
  });

  it('DECLINE takes the address out of use', () => {
    const s = server();
    const a = s.handle(udhcpc({ type: T.discover }), MAC_A)!.yiaddr;
    s.handle(udhcpc({ type: T.request, requested: a, serverId: ip('10.0.2.2') }), MAC_A);
    expect(s.handle(udhcpc({ type: T.decline, requested: a, serverId: ip('10.0.2.2') }), MAC_A)).toBeNull();
    expect(s.counters.declines).toBe(1);
    const again = s.handle(udhcpc({ type: T.discover }), MAC_A)!.yiaddr;
    expect(again).not.toBe(a);
    expect(s.handle(udhcpc({ type: T.discover, mac: MAC_B }), MAC_B)!.yiaddr).not.toBe(a);
  });

  it('INFORM → ACK with configuration and no address or lease time', () => {
    const s = server();
    const res = s.handle(udhcpc({ type: T.inform, ciaddr: ip('10.0.2.100') }), MAC_A)!;
    expect(res.yiaddr).toBe(0);
    expect(res.dst).toBe(ip('10.0.2.100'));
    const r = parse(res.reply);
    expect(r.type).toBe(T.ack);
    expect(r.yiaddr).toBe(0);
    expect(r.options.has(O.leaseTime)).toBe(false);
    expect(r.options.get(O.router)).toEqual(u32(ip('10.0.2.2')));
    expect(s.counters.informs).toBe(1);
    expect(s.leases()).toEqual([]);
  });

  it('counts malformed messages', () => {
    const s = server();
    const good = udhcpc({ type: T.discover });
    const cases: Uint8Array[] = [
      new Uint8Array(10),
      good.slice(0, 239),
      (() => { const b = good.slice(); b[0] = 2; return b; })(), // BOOTREPLY
      (() => { const b = good.slice(); b[236] ^= 1; return b; })(), // cookie
      (() => { const b = good.slice(); b[2] = 16; return b; })(), // hlen
      (() => { const b = good.slice(0, 243); b[241] = 9; return b; })(), // option past the end
      (() => { const b = good.slice(); b[240] = 255; return b; })(), // no message type
    ];
    for (const c of cases) expect(s.handle(c, MAC_A)).toBeNull();
    expect(s.counters.malformed).toBe(cases.length);
    // Random bytes never throw.
    for (let i = 0; i < 2000; i++) {
      const b = good.slice();
      for (let j = 0; j < 8; j++) b[240 + Math.floor(Math.random() * (b.length - 240))] = Math.floor(Math.random() * 256);
      s.handle(b, MAC_A);
    }
  });

  it('rejects unusable configuration with clear errors', () => {
    expect(() => server({ rangeEnd: ip('10.0.3.5') })).toThrow(/range/);
    expect(() => server({ serverAddress: ip('10.0.2.20') })).toThrow(/inside the lease range/);
    expect(() => server({ searchDomains: Array.from({ length: 40 }, (_, i) => `domain-${i}.example.test`) })).toThrow(/max 548/);
  });
});
