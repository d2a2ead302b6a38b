// UdpNat over real loopback sockets: guest datagrams held for one batch go out together (one
// segmented send), and host datagrams read together reach the guest together, each intact.
import dgram from 'node:dgram';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { UdpNat } from './udp.js';
import { parseIpv4 } from '../wire/ipv4.js';
import { silentLogger } from '../log.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

const GUEST = parseIpv4('10.0.2.100');
const GW = parseIpv4('10.0.2.2');

function datagram(i: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  b.writeUInt32BE(i, 0);
  for (let k = 4; k < len; k++) b[k] = (i * 13 + k) & 0xff;
  return b;
}

async function server(): Promise<{ sock: dgram.Socket; port: number; got: Buffer[]; peers: dgram.RemoteInfo[] }> {
  const sock = dgram.createSocket('udp4');
  const got: Buffer[] = [];
  const peers: dgram.RemoteInfo[] = [];
  sock.on('message', (m, r) => {
    got.push(m);
    peers.push(r);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  cleanups.push(() => sock.close());
  return { sock, port: sock.address().port, got, peers };
}

async function until(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function nat(delivered: { parts: number; datagrams: Buffer[] }): UdpNat {
  const n = new UdpNat({
    toGuest: (_s, _d, _sp, _dp, buf, off, len, seg) => {
      const step = seg > 0 ? seg : len;
      for (let o = 0; o < len; o += step) delivered.datagrams.push(Buffer.from(buf.subarray(off + o, off + Math.min(len, o + step))));
    },
    toGuestParts: (_s, _d, _sp, _dp, parts, count) => {
      delivered.parts++;
      for (let i = 0; i < count; i++) delivered.datagrams.push(Buffer.from(parts[i]));
    },
    route: () => '127.0.0.1',
    unroute: () => GW,
    unreachable: () => {},
    log: silentLogger(),
  });
  cleanups.push(() => n.closeAll());
  return n;
}

describe('UdpNat batching', () => {
  it('sends a tap batch of one flow as one segmented send, every datagram intact and in order', async () => {
    const srv = await server();
    const delivered = { parts: 0, datagrams: [] as Buffer[] };
    const n = nat(delivered);
    // A "tap ring": 20 datagrams of 1200 bytes (the last 500), each in its own slot.
    const ring = Buffer.alloc(21 * 2048);
    const sent: Buffer[] = [];
    n.batchBegin(ring);
    for (let i = 0; i < 21; i++) {
      const d = datagram(i, i === 20 ? 500 : 1200);
      d.copy(ring, i * 2048 + 42);
      sent.push(d);
      n.input(GUEST, GW, 40000, srv.port, ring, i * 2048 + 42, d.length);
    }
    expect(n.counters.hostSends).toBe(0); // held until the batch ends
    n.batchEnd();
    ring.fill(0); // the ring is reused after the batch: nothing may be read from it later
    await until(() => srv.got.length === 21);
    expect(n.counters.hostSends).toBe(1);
    expect(srv.got.map((b) => b.readUInt32BE(0))).toEqual(sent.map((_, i) => i));
    for (let i = 0; i < 21; i++) expect(srv.got[i].equals(sent[i])).toBe(true);
    // Outside a batch (or from another buffer): sent at once.
    const one = datagram(99, 300);
    n.input(GUEST, GW, 40000, srv.port, one, 0, one.length);
    expect(n.counters.hostSends).toBe(2);
    await until(() => srv.got.length === 22);
    expect(srv.got[21].equals(one)).toBe(true);
  });

  it('hands host datagrams read together to the guest together, each intact and in order', async () => {
    const srv = await server();
    const delivered = { parts: 0, datagrams: [] as Buffer[] };
    const n = nat(delivered);
    const hello = Buffer.from('hello');
    n.input(GUEST, GW, 40001, srv.port, hello, 0, hello.length);
    await until(() => srv.peers.length === 1);
    const back: Buffer[] = [];
    for (let i = 0; i < 40; i++) back.push(datagram(i, i % 10 === 9 ? 333 : 1400));
    // All sent before the loop polls our socket: read in batches.
    for (const b of back) srv.sock.send(b, srv.peers[0].port, '127.0.0.1');
    await until(() => delivered.datagrams.length === 40);
    expect(delivered.parts).toBeGreaterThan(0);
    expect(delivered.datagrams.map((b) => b.readUInt32BE(0))).toEqual(back.map((_, i) => i));
    for (let i = 0; i < 40; i++) expect(delivered.datagrams[i].equals(back[i])).toBe(true);
    expect(n.counters.toGuest).toBe(40);
  });
});

describe('UdpNat host socket failures', () => {
  it('drops and counts datagrams whose host socket cannot be opened, logging at powers of two', () => {
    const warned: number[] = [];
    const log = { ...silentLogger(), warn: (o: { count: number }) => warned.push(o.count) } as unknown as ReturnType<typeof silentLogger>;
    const n = new UdpNat({
      toGuest: () => {},
      route: () => '127.0.0.1',
      unroute: () => GW,
      unreachable: () => {},
      bindAddress: '192.0.2.77', // not an address of this host: bind fails (EADDRNOTAVAIL)
      log,
    });
    cleanups.push(() => n.closeAll());
    const d = Buffer.from('x');
    for (let i = 0; i < 9; i++) expect(() => n.input(GUEST, GW, 40000 + i, 9, d, 0, 1)).not.toThrow();
    expect(n.counters.socketErrors).toBe(9);
    expect(n.counters.dropped).toBe(9);
    expect(n.active).toBe(0);
    expect(warned).toEqual([1, 2, 4, 8]);
  });
});

describe('UdpNat table order', () => {
  it('evicts the least recently used binding, not one in steady use', async () => {
    const srv = await server();
    vi.useFakeTimers({ toFake: ['Date'] });
    cleanups.push(() => vi.useRealTimers());
    vi.setSystemTime(0);
    const n = new UdpNat({ toGuest: () => {}, route: () => '127.0.0.1', unroute: () => GW, unreachable: () => {}, log: silentLogger() }, 2);
    cleanups.push(() => n.closeAll());
    const d = Buffer.from('x');
    const send = (port: number): void => n.input(GUEST, GW, port, srv.port, d, 0, 1);
    send(40000); // A, used every half second from here on
    vi.setSystemTime(100);
    send(40001); // B, used once
    for (let t = 500; t <= 3000; t += 500) {
      vi.setSystemTime(t);
      send(40000);
    }
    send(40002); // C: the table is full, B goes
    expect(n.counters.evicted).toBe(1);
    expect(n.list().map((b) => b.guest).sort()).toEqual([`${GUEST}:40000`, `${GUEST}:40002`]);
  });
});
