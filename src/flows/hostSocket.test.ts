import { describe, expect, it } from 'vitest';
import net from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { HostSocket } from './hostSocket.js';
import { hostSockets } from '../native.js';

function listen(onConn: (s: net.Socket) => void): Promise<net.Server> {
  const srv = net.createServer({ allowHalfOpen: true }, onConn);
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

function portOf(srv: net.Server): number {
  return (srv.address() as net.AddressInfo).port;
}

/** Collects a HostSocket's events. */
function watch(s: HostSocket): { events: string[]; data: Buffer[]; eofWithData: boolean[]; done: Promise<void>; err?: NodeJS.ErrnoException } {
  const r: ReturnType<typeof watch> = { events: [], data: [], eofWithData: [], done: Promise.resolve() };
  r.done = new Promise((resolve) => {
    s.on('connect', () => r.events.push('connect'));
    s.on('data', (b: Buffer) => {
      r.data.push(b);
      r.eofWithData.push(s.eofWithData);
    });
    s.on('end', () => {
      r.events.push('end');
      resolve();
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      r.err = e;
      r.events.push(`error:${e.code}`);
      resolve();
    });
  });
  return r;
}

/**
 * Reads `s` to its end like a flow's send queue: the last `keep` chunks stay held (unacknowledged),
 * older ones go back through `recycle`. Every chunk's bytes are checked when it is handed back
 * and at the end (`corrupt` counts chunks whose bytes changed while held); `seen` sees each chunk.
 */
async function holdAndRecycle(s: HostSocket, keep: number, seen: (b: Buffer) => void): Promise<{ sha256: string; bytes: number; corrupt: number }> {
  const held: { b: Buffer; sum: string }[] = [];
  const sum = (b: Buffer): string => createHash('sha1').update(b).digest('hex');
  const whole = createHash('sha256');
  let bytes = 0;
  let corrupt = 0;
  await new Promise<void>((resolve) => {
    s.on('data', (b: Buffer) => {
      seen(b);
      whole.update(b);
      bytes += b.length;
      held.push({ b, sum: sum(b) });
      while (held.length > keep) {
        const h = held.shift()!;
        if (sum(h.b) !== h.sum) corrupt++;
        s.recycle(h.b);
      }
    });
    s.on('end', resolve);
  });
  for (const h of held) if (sum(h.b) !== h.sum) corrupt++;
  return { sha256: whole.digest('hex'), bytes, corrupt };
}

describe('HostSocket (native host side of a TCP flow)', () => {
  it('connects, relays both ways with half-close, and reports the last data together with EOF', async () => {
    const srv = await listen((c) => {
      const got: Buffer[] = [];
      c.on('data', (b) => got.push(b));
      c.on('end', () => c.end(Buffer.concat([Buffer.from('echo:'), ...got])));
    });
    const s = new HostSocket(4, '127.0.0.1', portOf(srv), null);
    const w = watch(s);
    expect(s.write(Buffer.from('hello '))).toBe(false); // queued while connecting
    await new Promise<void>((r) => s.on('connect', r));
    expect(s.connecting).toBe(false);
    expect(s.hostFd).toBeGreaterThanOrEqual(0);
    let cbs = 0;
    s.write(Buffer.from('world'), () => cbs++);
    s.end();
    await w.done;
    expect(Buffer.concat(w.data).toString()).toBe('echo:hello world');
    expect(w.eofWithData.at(-1)).toBe(true);
    expect(cbs).toBe(1);
    expect(s.destroyed).toBe(true); // both directions ended: closed
    srv.close();
  });

  it('ends with a FIN, not a RST, when the peer has closed first and everything was read', async () => {
    let peerEnded = false;
    let peerErr = '';
    let peerGot = '';
    const srv = await listen((c) => {
      c.on('error', (e: NodeJS.ErrnoException) => (peerErr = e.code ?? 'error'));
      c.on('end', () => (peerEnded = true));
      c.on('data', (d: Buffer) => (peerGot += d.toString()));
      c.end('reply'); // the peer closes first (half-close: it still reads)
    });
    const s = new HostSocket(4, '127.0.0.1', portOf(srv), null);
    const w = watch(s);
    await w.done;
    expect(Buffer.concat(w.data).toString()).toBe('reply');
    s.write(Buffer.from('late words'));
    s.end(); // EOF already read: closing sends the FIN
    expect(s.destroyed).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    expect(peerEnded).toBe(true);
    expect(peerGot).toBe('late words');
    expect(peerErr).toBe('');
    srv.close();
  });

  it('reports a reset that follows data as an error, never as a clean end', async () => {
    const srv = await listen((c) => {
      c.write('partial');
      c.resetAndDestroy(); // data, then RST (no FIN)
    });
    for (let i = 0; i < 5; i++) {
      const s = new HostSocket(4, '127.0.0.1', portOf(srv), null);
      const w = watch(s);
      await w.done;
      expect(w.events).toContain('error:ECONNRESET');
      expect(w.events).not.toContain('end');
    }
    srv.close();
  });

  it('moves megabytes intact with a paused reader and a full socket buffer', async () => {
    const payload = randomBytes(8 << 20);
    const srv = await listen((c) => {
      c.pipe(c); // echo, with back-pressure
    });
    const s = new HostSocket(4, '127.0.0.1', portOf(srv), null);
    const w = watch(s);
    await new Promise<void>((r) => s.on('connect', r));
    s.pause();
    for (let off = 0; off < payload.length; off += 1 << 20) s.write(payload.subarray(off, off + (1 << 20)));
    expect(s.writableLength).toBeGreaterThan(0);
    setTimeout(() => s.resume(), 50);
    s.end();
    await w.done;
    const got = Buffer.concat(w.data);
    expect(got.length).toBe(payload.length);
    expect(createHash('sha256').update(got).digest('hex')).toBe(createHash('sha256').update(payload).digest('hex'));
    srv.close();
  });

  it('reads into recycled buffers without touching chunks still held', async () => {
    const payload = randomBytes(16 << 20);
    const srv = await listen((c) => c.end(payload));
    const s = new HostSocket(4, '127.0.0.1', portOf(srv), null);
    // Hold the last few chunks like a flow's unacknowledged queue, then hand them back.
    const memory = new Set<ArrayBufferLike>();
    let reused = 0;
    const r = await holdAndRecycle(s, 4, (b) => {
      if (memory.has(b.buffer)) reused++;
      memory.add(b.buffer);
    });
    expect(r.bytes).toBe(payload.length);
    expect(r.sha256).toBe(createHash('sha256').update(payload).digest('hex'));
    expect(r.corrupt).toBe(0);
    expect(reused).toBeGreaterThan(0);
    s.destroy();
    srv.close();
  });

  it('takes back a whole send queue acknowledged at once: bursts of ACKs allocate no new buffers', async () => {
    // A flow queues host data until the guest ACKs it, up to bufferLimit (4 MiB) and one chunk
    // more; a guest that ACKs it all at once hands every chunk back in one go. The pool must hold
    // them all, or each burst drops some and the next reads allocate them again (garbage that V8
    // collects late: peak RSS grew by ~64 MB on a long download).
    const payload = randomBytes(48 << 20);
    const srv = await listen((c) => c.end(payload));
    const s = new HostSocket(4, '127.0.0.1', portOf(srv), null);
    const held: Buffer[] = [];
    let heldBytes = 0;
    let bursts = 0;
    let got = 0;
    const memory = new Set<ArrayBufferLike>();
    let afterSecondBurst = 0;
    const done = new Promise<void>((resolve) => {
      s.on('data', (b: Buffer) => {
        got += b.length;
        if (b.length < 32 * 1024) return; // copied out, not a pool buffer
        memory.add(b.buffer);
        held.push(b);
        heldBytes += b.length;
        if (heldBytes > 4 << 20) {
          for (const h of held) s.recycle(h);
          held.length = 0;
          heldBytes = 0;
          if (++bursts === 2) afterSecondBurst = memory.size;
        }
      });
      s.on('end', resolve);
    });
    await done;
    expect(got).toBe(payload.length);
    expect(bursts).toBeGreaterThanOrEqual(6);
    expect(memory.size - afterSecondBurst).toBeLessThanOrEqual(2);
    s.destroy();
    srv.close();
  });

  it('copies mid-size reads into recycled size-class buffers (no fresh buffer per read), intact', async () => {
    // Reads of 4-32 KiB are copied out; a new buffer each was garbage that only V8's collector
    // returns (it let a download from the host's loopback grow the C heap by ~33 MB).
    const sizes = [5000, 12000, 20000, 30000];
    const msgs = Array.from({ length: 160 }, (_, i) => randomBytes(sizes[i % sizes.length]!));
    const srv = await listen((c) => {
      let i = 0;
      const next = (): void => {
        if (i === msgs.length) {
          c.end();
          return;
        }
        c.write(msgs[i++]!);
        setTimeout(next, 3);
      };
      next();
    });
    const s = new HostSocket(4, '127.0.0.1', portOf(srv), null);
    const memory = new Set<ArrayBufferLike>();
    let mid = 0;
    let oversized = 0;
    const r = await holdAndRecycle(s, 4, (b) => {
      if (b.length <= 4096 || b.length >= 32 * 1024) return;
      mid++;
      memory.add(b.buffer);
      if (b.buffer.byteLength > 2 * b.length) oversized++;
    });
    expect(r.sha256).toBe(createHash('sha256').update(Buffer.concat(msgs)).digest('hex'));
    expect(r.corrupt).toBe(0);
    expect(mid).toBeGreaterThanOrEqual(100); // the reads were mid-size (else this proves nothing)
    expect(memory.size).toBeLessThanOrEqual(20); // four held, a few per class
    expect(oversized).toBe(0); // a chunk never pins more than twice its bytes
    s.destroy();
    srv.close();
  });

  it('reports a refused connect as ECONNREFUSED and resets the peer on resetAndDestroy', async () => {
    const srv = await listen(() => {});
    const port = portOf(srv);
    await new Promise<void>((r) => srv.close(() => r()));
    const refused = new HostSocket(4, '127.0.0.1', port, null);
    const w = watch(refused);
    await w.done;
    expect(w.err?.code).toBe('ECONNREFUSED');
    expect(w.err?.syscall).toBe('connect');

    let peerErr = '';
    const srv2 = await listen((c) => c.on('error', (e: NodeJS.ErrnoException) => (peerErr = e.code ?? '')));
    const s = new HostSocket(4, '127.0.0.1', portOf(srv2), null);
    await new Promise<void>((r) => s.on('connect', r));
    await new Promise((r) => setTimeout(r, 20));
    s.resetAndDestroy();
    await new Promise((r) => setTimeout(r, 50));
    expect(peerErr).toBe('ECONNRESET');
    srv2.close();
  });

  it('ends with an error marked internal when a handler throws, and the process goes on', async () => {
    const srv = await listen((c) => {
      c.on('error', () => {});
      c.write('hello');
    });
    const s = new HostSocket(4, '127.0.0.1', portOf(srv), null);
    const err = await new Promise<NodeJS.ErrnoException & { internal?: boolean }>((resolve) => {
      s.on('data', () => {
        throw new Error('boom (a bug in a data handler)');
      });
      s.on('error', resolve);
    });
    expect(err.internal).toBe(true);
    expect(err.message).toContain('boom');
    expect(s.destroyed).toBe(true);
    srv.close();
  });

  it('gives a reused native slot a new id: the id of a closed socket reaches nothing', async () => {
    const peers: net.Socket[] = [];
    const srv = await listen((c) => peers.push(c));
    const a = new HostSocket(4, '127.0.0.1', portOf(srv), null);
    await new Promise<void>((r) => a.on('connect', r));
    const oldId = a.id;
    a.destroy();
    expect(a.id).toBe(-1);
    const b = new HostSocket(4, '127.0.0.1', portOf(srv), null);
    const w = watch(b);
    await new Promise<void>((r) => b.on('connect', r));
    expect(b.id & 0xfffff).toBe(oldId & 0xfffff); // the slot is reused (LIFO)...
    expect(b.id).not.toBe(oldId); // ...under another generation
    expect(hostSockets.hostSocketWrite(oldId, Buffer.from('x'))).toBe(-9); // EBADF: not b's socket
    hostSockets.hostSocketClose(oldId, true); // nothing: b stays open
    expect(hostSockets.hostSocketShutdown(oldId)).toBe(-9);
    while (peers.length < 2) await new Promise((r) => setTimeout(r, 5));
    peers[1].end('to b');
    await w.done;
    expect(Buffer.concat(w.data).toString()).toBe('to b');
    expect(() => hostSockets.hostSocketWrite('x' as unknown as number, Buffer.alloc(1))).toThrow(/id must be a number/);
    b.destroy();
    srv.close();
  });

  it('reports an unusable address asynchronously, like net.connect', async () => {
    const s = new HostSocket(4, '127.0.0.1', 9, '192.0.2.77'); // bind to an address we do not have
    const w = watch(s);
    expect(w.events).toEqual([]);
    await w.done;
    expect(w.err?.code).toBe('EADDRNOTAVAIL');
  });
});
