// SpliceRelay over real loopback TCP: bytes both ways, half-close, RST, a large transfer.
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DgramBatch, SpliceRelay, dupFd } from '../native.js';

interface Pair {
  client: net.Socket;
  fd: number;
}

const servers: net.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A connected loopback pair: `client` is a node socket, `fd` the accepted end (ours to own). */
async function pair(): Promise<Pair> {
  const accepted = new Promise<net.Socket>((resolve) => {
    const srv = net.createServer({ pauseOnConnect: true }, resolve);
    servers.push(srv);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      client = net.connect(port, '127.0.0.1');
    });
  });
  let client!: net.Socket;
  const s = await accepted;
  await new Promise<void>((r) => (client.connecting ? client.once('connect', () => r()) : r()));
  const fd = dupFd((s as unknown as { _handle: { fd: number } })._handle.fd);
  s.destroy();
  return { client, fd };
}

function collect(s: net.Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  s.on('data', (b: Buffer) => parts.push(b));
  return new Promise((resolve, reject) => {
    s.once('end', () => resolve(Buffer.concat(parts)));
    s.once('error', reject);
  });
}

describe('SpliceRelay', () => {
  it('relays both ways and propagates half-close, then reports done with byte counts', async () => {
    const a = await pair();
    const b = await pair();
    let done: { err: string | null; aToB: number; bToA: number } | null = null;
    const finished = new Promise<void>((resolve) => {
      new SpliceRelay(a.fd, b.fd, (err, st) => {
        done = { err, ...st };
        resolve();
      });
    });
    b.client.allowHalfOpen = true;
    const atB = collect(b.client);
    a.client.end('hello from a');
    expect((await atB).toString()).toBe('hello from a');
    // a's write side is closed, b can still answer
    const atA = collect(a.client);
    b.client.end('reply from b');
    expect((await atA).toString()).toBe('reply from b');
    await finished;
    expect(done).toEqual({ err: null, aToB: 12, bToA: 12 });
  });

  it('turns a reset on one side into a reset on the other', async () => {
    const a = await pair();
    const b = await pair();
    const result = new Promise<string | null>((resolve) => new SpliceRelay(a.fd, b.fd, (err) => resolve(err)));
    const bErr = new Promise<string>((resolve) => b.client.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? '')));
    a.client.write('x');
    await new Promise((r) => setTimeout(r, 50));
    a.client.resetAndDestroy();
    expect(await result).toBe('ECONNRESET');
    expect(await bErr).toBe('ECONNRESET');
  });

  it('moves 64 MiB intact through its default 256 KiB pipes', async () => {
    const a = await pair();
    const b = await pair();
    const r = new SpliceRelay(a.fd, b.fd, () => {});
    expect(r.stats().pipeSize).toBe(256 << 10);
    const h = createHash('sha256');
    const got = createHash('sha256');
    let n = 0;
    b.client.on('data', (d: Buffer) => {
      got.update(d);
      n += d.length;
    });
    const ended = new Promise<void>((r) => b.client.once('end', () => r()));
    const chunk = randomBytes(1 << 20);
    for (let i = 0; i < 64; i++) {
      h.update(chunk);
      if (!a.client.write(chunk)) await new Promise((r) => a.client.once('drain', r));
    }
    a.client.end();
    await ended;
    expect(n).toBe(64 << 20);
    expect(got.digest('hex')).toBe(h.digest('hex'));
    b.client.end();
  });

  it('close() resets both sides', async () => {
    const a = await pair();
    const b = await pair();
    const r = new SpliceRelay(a.fd, b.fd, () => {
      throw new Error('onDone must not be called after close()');
    });
    const errs = [a, b].map((p) => new Promise<string>((resolve) => {
      p.client.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? ''));
      p.client.once('end', () => resolve('end'));
    }));
    r.close();
    expect(await Promise.all(errs)).toEqual(['ECONNRESET', 'ECONNRESET']);
    expect(r.stats().open).toBe(false);
  });

  it('never hands a pipe that still held bytes to the next relay (pipe pool)', async () => {
    // Relay 1 ends abortively while its a->b pipe holds bytes b never took.
    const a = await pair();
    const b = await pair();
    b.client.pause();
    const r = new SpliceRelay(a.fd, b.fd, () => {});
    a.client.on('error', () => {});
    b.client.on('error', () => {});
    const chunk = Buffer.alloc(1 << 20, 0x78);
    for (let i = 0; i < 48; i++) a.client.write(chunk);
    await new Promise((res) => setTimeout(res, 300));
    r.close();
    // Many short relays after it: each sees exactly its own bytes.
    for (let i = 0; i < 20; i++) {
      const c = await pair();
      const d = await pair();
      const done = new Promise<string | null>((resolve) => new SpliceRelay(c.fd, d.fd, (err) => resolve(err)));
      d.client.allowHalfOpen = true;
      const got = collect(d.client);
      c.client.end(`relay ${i}`);
      expect((await got).toString()).toBe(`relay ${i}`);
      d.client.end();
      await collect(c.client);
      expect(await done).toBe(null);
    }
  });
});

describe('DgramBatch.relayTo', () => {
  it('sends a received batch from another socket to a peer, datagram boundaries kept', async () => {
    const bindUdp = (): Promise<dgram.Socket> =>
      new Promise((resolve) => {
        const s = dgram.createSocket('udp4');
        s.bind(0, '127.0.0.1', () => resolve(s));
      });
    const [inner, sender, host, peer] = await Promise.all([bindUdp(), bindUdp(), bindUdp(), bindUdp()]);
    const port = (s: dgram.Socket) => s.address().port;
    // `inner` plays the container-side socket: connected to `sender`, read by DgramBatch.
    await new Promise<void>((r) => inner.connect(port(sender), '127.0.0.1', () => r()));
    const innerPort = port(inner);
    const fd = dupFd((inner as unknown as { _handle: { fd: number } })._handle.fd);
    inner.close();
    const hostFd = (host as unknown as { _handle: { fd: number } })._handle.fd;
    let relayed = 0;
    const b = new DgramBatch(fd, 2048, 16, (n) => {
      relayed += b.relayTo(hostFd, n, '127.0.0.1', port(peer));
    });
    const got: string[] = [];
    const all = new Promise<void>((resolve) =>
      peer.on('message', (m, rinfo) => {
        expect(rinfo.port).toBe(port(host));
        got.push(m.toString());
        if (got.length === 40) resolve();
      }),
    );
    for (let i = 0; i < 40; i++) sender.send(`datagram ${i}`, innerPort, '127.0.0.1');
    await all;
    expect(got.sort()).toEqual(Array.from({ length: 40 }, (_, i) => `datagram ${i}`).sort());
    expect(relayed).toBe(40);
    b.close();
    for (const s of [sender, host, peer]) s.close();
  });
});
