import dgram from 'node:dgram';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DnsMessage, DnsRcode } from '../wire/dns.js';
import { DnsForwarder, parseResolvConf, readResolvConf, type DnsForwarderOptions } from './dns.js';
import { answer, buildQuery } from '../testing/dns.js';

type Behaviour = (msg: Buffer, rinfo: dgram.RemoteInfo, sock: dgram.Socket) => void;

interface FakeUpstream {
  port: number;
  received: Buffer[];
  sock: dgram.Socket;
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

async function upstream(behaviour: Behaviour): Promise<FakeUpstream> {
  const sock = dgram.createSocket('udp4');
  const received: Buffer[] = [];
  sock.on('message', (msg, rinfo) => {
    received.push(Buffer.from(msg));
    behaviour(msg, rinfo, sock);
  });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  cleanups.push(() => sock.close());
  return { port: sock.address().port, received, sock };
}

/** Answers every A query with 192.0.2.x where x is the first label's length. */
const honest: Behaviour = (msg, rinfo, sock) => {
  sock.send(answer(msg, [192, 0, 2, msg[12]]), rinfo.port, rinfo.address);
};
const silent: Behaviour = () => {};

function forwarder(ups: FakeUpstream[], extra: Partial<DnsForwarderOptions> = {}): DnsForwarder {
  const f = new DnsForwarder({
    upstreams: ups.map((u) => ({ address: '127.0.0.1', port: u.port })),
    timeoutMs: 100,
    ...extra,
  });
  cleanups.push(() => f.close());
  return f;
}

function ask(f: DnsForwarder, q: Uint8Array, timeoutMs = 3000): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no reply')), timeoutMs);
    f.query(q, (r) => {
      clearTimeout(t);
      resolve(Uint8Array.from(r));
    });
  });
}

function view(b: Uint8Array): DnsMessage {
  const m = new DnsMessage();
  expect(m.wrap(b, 0, b.length)).toBe(true);
  return m;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('DnsForwarder', () => {
  it('forwards and returns the answer with the client id', async () => {
    const up = await upstream(honest);
    const f = forwarder([up]);
    const q = buildQuery(0x1111, 'abc.example.test');
    const pending = ask(f, q);
    q.fill(0); // the caller's buffer is not retained
    const r = view(await pending);
    expect(r.id).toBe(0x1111);
    expect(r.qr).toBe(true);
    expect(r.ancount).toBe(1);
    expect(Array.from((await pending).slice(-4))).toEqual([192, 0, 2, 3]);
    expect(up.received.length).toBe(1);
    expect(f.counters).toMatchObject({ queries: 1, sent: 1, answered: 1, servfails: 0 });
    expect(f.inFlight).toBe(0);
  });

  it('accepts the answer whatever the case of the echoed name', async () => {
    const up = await upstream((msg, rinfo, sock) => {
      const r = answer(msg, [192, 0, 2, 1]);
      for (let i = 13; i < 16; i++) r[i] ^= 0x20; // 0x20-style case change
      sock.send(r, rinfo.port, rinfo.address);
    });
    const f = forwarder([up]);
    expect(view(await ask(f, buildQuery(7, 'abc.test'))).rcode).toBe(0);
  });

  it('ignores replies with a wrong id, wrong question or wrong source', async () => {
    const other = dgram.createSocket('udp4');
    await new Promise<void>((r) => other.bind(0, '127.0.0.1', r));
    cleanups.push(() => other.close());
    const up = await upstream((msg, rinfo, sock) => {
      const wrongId = answer(msg, [6, 6, 6, 6]);
      wrongId.writeUInt16BE(msg.readUInt16BE(0) ^ 0x5555, 0);
      sock.send(wrongId, rinfo.port, rinfo.address);
      const wrongName = answer(msg, [6, 6, 6, 6]);
      wrongName[13] = 0x7a;
      sock.send(wrongName, rinfo.port, rinfo.address);
      const wrongType = answer(msg, [6, 6, 6, 6]);
      wrongType[msg.length - 3] = 28;
      sock.send(wrongType, rinfo.port, rinfo.address);
      // Right everything, but from another port: spoofed.
      other.send(answer(msg, [6, 6, 6, 6]), rinfo.port, rinfo.address);
      setTimeout(() => sock.send(answer(msg, [192, 0, 2, 1]), rinfo.port, rinfo.address), 30);
    });
    const f = forwarder([up], { timeoutMs: 1000 });
    const r = await ask(f, buildQuery(0x2222, 'abc.test'));
    expect(view(r).id).toBe(0x2222);
    expect(Array.from(r.slice(-4))).toEqual([192, 0, 2, 1]);
    expect(f.counters.unmatched).toBe(1);
    expect(f.counters.mismatched).toBe(3);
    expect(f.counters.answered).toBe(1);
  });

  it('tries the second upstream when the first times out', async () => {
    const dead = await upstream(silent);
    const live = await upstream(honest);
    const f = forwarder([dead, live]);
    const r = view(await ask(f, buildQuery(0x3333, 'ab.test')));
    expect(r.id).toBe(0x3333);
    expect(r.rcode).toBe(0);
    expect(dead.received.length).toBe(1);
    expect(live.received.length).toBe(1);
    expect(f.counters.retries).toBe(1);
  });

  it('moves on at once when an upstream answers SERVFAIL', async () => {
    const failing = await upstream((msg, rinfo, sock) => sock.send(answer(msg, [], DnsRcode.servFail), rinfo.port, rinfo.address));
    const live = await upstream(honest);
    const f = forwarder([failing, live], { timeoutMs: 5000 });
    const started = Date.now();
    const r = view(await ask(f, buildQuery(9, 'x.test')));
    expect(r.rcode).toBe(0);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('answers SERVFAIL when every upstream stays silent', async () => {
    const a = await upstream(silent);
    const b = await upstream(silent);
    const f = forwarder([a, b], { timeoutMs: 50 });
    const q = buildQuery(0x4444, 'slow.example.test', 28);
    const r = await ask(f, q);
    const m = view(r);
    expect(m.id).toBe(0x4444);
    expect(m.qr).toBe(true);
    expect(m.rcode).toBe(DnsRcode.servFail);
    expect(m.parseQuestion()).toBe(true);
    expect(m.qtype).toBe(28);
    expect(Array.from(r.subarray(12))).toEqual(Array.from(q.subarray(12)));
    // Two rounds over two servers.
    expect(a.received.length + b.received.length).toBe(4);
    expect(f.counters.servfails).toBe(1);
    expect(f.inFlight).toBe(0);
  });

  it('answers many concurrent queries with colliding client ids correctly', async () => {
    // The upstream answers out of order, each after a random delay.
    const N = 300;
    const up = await upstream((msg, rinfo, sock) => {
      setTimeout(() => sock.send(answer(msg, [192, 0, 2, msg[12]]), rinfo.port, rinfo.address), Math.random() * 30);
    });
    // A burst this size can overflow a loopback socket buffer: retries cover the losses.
    const f = forwarder([up], { timeoutMs: 200, attempts: 20 });
    const jobs: Promise<void>[] = [];
    for (let i = 0; i < N; i++) {
      const id = i % 3; // heavy collisions
      const label = 'x'.repeat(1 + (i % 60));
      jobs.push(ask(f, buildQuery(id, `${label}.test`), 8000).then((r) => {
        const m = view(r);
        expect(m.id).toBe(id);
        expect(r[12]).toBe(label.length); // the question is the one we asked
        expect(r[r.length - 1]).toBe(label.length); // and so is the answer
      }));
    }
    await Promise.all(jobs);
    const ids = new Set(up.received.map((b) => b.readUInt16BE(0)));
    expect(ids.size).toBe(N); // one upstream id per query, unique while in flight
    expect(f.counters.answered).toBe(N);
  }, 15_000);

  it('forwards to an IPv6 upstream (on ::1) through its own socket', async (ctx) => {
    const sock = dgram.createSocket('udp6');
    sock.on('message', (msg, rinfo) => sock.send(answer(msg, [192, 0, 2, 6]), rinfo.port, rinfo.address));
    const bound = await new Promise<boolean>((resolve) => {
      sock.once('error', () => resolve(false));
      sock.bind(0, '::1', () => resolve(true));
    });
    cleanups.push(() => sock.close());
    if (!bound) return ctx.skip(); // no IPv6 loopback here
    const v4 = await upstream(silent);
    const f = new DnsForwarder({
      upstreams: [{ address: '127.0.0.1', port: v4.port }, { address: '0:0:0:0:0:0:0:1', port: sock.address().port }],
      timeoutMs: 50,
    });
    cleanups.push(() => f.close());
    const r = await ask(f, buildQuery(0x6666, 'six.test'));
    expect(view(r).id).toBe(0x6666);
    expect(Array.from(r.slice(-4))).toEqual([192, 0, 2, 6]);
  });

  it('counts a reply callback that throws as an internal error and keeps answering', async () => {
    const up = await upstream(honest);
    const f = forwarder([up]);
    f.query(buildQuery(0x2222, 'first.test'), () => {
      throw new Error('boom (a bug while answering the container)');
    });
    const r = view(await ask(f, buildQuery(0x3333, 'second.test')));
    expect(r.id).toBe(0x3333);
    await sleep(20);
    expect(f.counters).toMatchObject({ answered: 2, internalErrors: 1 });
  });

    it('drops malformed queries and counts them', async () => {
    const up = await upstream(honest);
    const f = forwarder([up]);
    const replies: Uint8Array[] = [];
    const response = buildQuery(1, 'a.test');
    response[2] |= 0x80;
    const noQuestion = buildQuery(1, 'a.test');
    noQuestion[5] = 0;
    for (const bad of [new Uint8Array(5), buildQuery(1, 'a.test').subarray(0, 11), response, noQuestion, buildQuery(1, 'a.test').subarray(0, 16)]) {
      f.query(bad, (r) => replies.push(r));
    }
    await sleep(50);
    expect(replies).toEqual([]);
    expect(f.counters.malformed).toBe(5);
    expect(up.received.length).toBe(0);
  });

  it('bounds the queries in flight', async () => {
    const up = await upstream(silent);
    const f = forwarder([up], { maxPending: 4, timeoutMs: 5000 });
    for (let i = 0; i < 10; i++) f.query(buildQuery(i, 'a.test'), () => {});
    expect(f.inFlight).toBe(4);
    expect(f.counters.overflow).toBe(6);
    f.close();
    expect(f.inFlight).toBe(0);
    f.query(buildQuery(1, 'a.test'), () => {}); // after close: ignored
  });

  it('refuses bad upstreams with clear errors', () => {
    expect(() => new DnsForwarder({ upstreams: [] })).toThrow(/no upstream/);
    expect(() => new DnsForwarder({ upstreams: [{ address: 'dns.example', port: 53 }] })).toThrow(/not an IP address/);
    expect(() => new DnsForwarder({ upstreams: [{ address: '127.0.0.1', port: 0 }] })).toThrow(/invalid port/);
  });
});

describe('resolv.conf', () => {
  it('parses nameserver lines, IPv4 and IPv6, with comments and scopes', () => {
    const text = [
      '# generated by something',
      'search example.test',
      'nameserver 192.0.2.53',
      '  nameserver   2001:db8::53   # inline comment',
      '; nameserver 198.51.100.1',
      '#nameserver 198.51.100.2',
      'nameserver fe80::1%eth0',
      'nameserver not-an-address',
      'nameserver 192.0.2.53',
      'nameserver',
      'options edns0',
      'nameserver 2001:DB8:0:0::53',
    ].join('\n');
    expect(parseResolvConf(text)).toEqual([
      { address: '192.0.2.53', port: 53 },
      { address: '2001:db8::53', port: 53 },
      { address: 'fe80::1', port: 53 },
    ]);
  });

  it('reads a file, and names the path when it is missing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'slipway-dns-'));
    const path = join(dir, 'resolv.conf');
    writeFileSync(path, 'nameserver 127.0.0.53\n');
    expect(readResolvConf(path)).toEqual([{ address: '127.0.0.53', port: 53 }]);
    expect(() => readResolvConf(join(dir, 'missing.conf'))).toThrow(new RegExp(`${join(dir, 'missing.conf')}: no such file`));
  });
});
