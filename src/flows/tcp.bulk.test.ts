// Bulk transfers through a TcpFlow between a scripted guest and a real loopback socket
// (127.0.0.1 only): proves flow control both ways keeps data moving with bounded buffers.
import { createHash } from 'node:crypto';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { ACK, PSH, SYN, TcpSegment, writeSynOptions, writeTcpHeader } from '../wire/tcp.js';
import { TcpFlowTable, type TcpEndpoints, type TcpFlowEnv } from './tcp.js';

const GUEST = 0x0a000264;
const REMOTE = 0x0a000202;
const ISN = 5000;
const TOTAL = 8 << 20;

function seg(seq: number, ack: number, flags: number, window: number, data?: Uint8Array, syn = false): TcpSegment {
  const optLen = syn ? 8 : 0;
  const len = data?.length ?? 0;
  const buf = new Uint8Array(20 + optLen + len);
  writeTcpHeader(buf, 0, 40000, 8080, seq, ack, flags, window, optLen);
  if (syn) writeSynOptions(buf, 20, 1460, 7);
  if (data) buf.set(data, 20 + optLen);
  const v = new TcpSegment();
  v.wrap(buf, 0, buf.length);
  return v;
}

function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + (i >> 13)) & 0xff;
  return b;
}

interface Guest {
  env: TcpFlowEnv;
  table: TcpFlowTable;
  iss: number;
  received: Buffer[];
  lastWindow: number;
  lastAck: number;
  /** Next sequence number the guest sends. */
  guestSeq: number;
  onEmit: (() => void) | null;
}

async function connect(port: number, bufferLimit: number): Promise<Guest> {
  const g = {} as Guest;
  g.received = [];
  g.lastWindow = 0;
  g.lastAck = 0;
  g.onEmit = null;
  let expected = 0;
  let ackQueued = false;
  let synAck: (() => void) | null = null;
  const env: TcpFlowEnv = {
    emit(_f: TcpEndpoints, flags, seq, ack, window, payload, off, len) {
      if (flags & SYN) {
        g.iss = seq;
        g.lastAck = ack;
        g.lastWindow = window; // unscaled in a SYN-ACK
        expected = (seq + 1) >>> 0;
        synAck?.();
        return;
      }
      g.lastWindow = window * 2 ** ((_f as { rcvShift?: number }).rcvShift ?? 0);
      g.lastAck = ack;
      if (len > 0 && payload && seq === expected) {
        g.received.push(Buffer.from(payload.subarray(off, off + len)));
        expected = (expected + len) >>> 0;
        if (!ackQueued) {
          ackQueued = true;
          setImmediate(() => {
            ackQueued = false;
            // The guest's window: 1 MiB (shift 7).
            g.table.input(4, GUEST, REMOTE, seg(g.guestSeq, expected, ACK, 8192));
            g.table.flushAcks();
          });
        }
      }
      g.onEmit?.();
    },
    connect: () => net.connect({ host: '127.0.0.1', port }),
    unreachable: () => {},
    closed: () => {},
    log: { debug() {}, info() {}, warn() {}, error() {} },
  };
  g.guestSeq = ISN + 1;
  g.env = env;
  g.table = new TcpFlowTable(env, { mtu: 1500, bufferLimit });
  const ready = new Promise<void>((r) => { synAck = r; });
  g.table.input(4, GUEST, REMOTE, seg(ISN, 0, SYN, 65535, undefined, true));
  await ready;
  g.table.input(4, GUEST, REMOTE, seg(ISN + 1, (g.iss + 1) >>> 0, ACK, 8192));
  g.table.flushAcks();
  return g;
}

describe('bulk transfer over loopback', () => {
  it('host → guest: 8 MiB arrive intact with bounded queueing', async () => {
    const data = pattern(TOTAL);
    const server = net.createServer((s) => {
      s.on('error', () => {});
      s.end(data);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const g = await connect((server.address() as net.AddressInfo).port, 256 << 10);
      const flow = g.table.lookup(4, GUEST, 40000, REMOTE, 8080)!;
      let maxQueued = 0;
      await new Promise<void>((resolve) => {
        g.onEmit = () => {
          maxQueued = Math.max(maxQueued, flow.queue.bytes);
          if (g.received.reduce((a, b) => a + b.length, 0) === TOTAL) resolve();
        };
      });
      const got = Buffer.concat(g.received);
      expect(createHash('sha256').update(got).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
      expect(maxQueued).toBeLessThanOrEqual((256 << 10) + (64 << 10));
      g.table.closeAll();
    } finally {
      server.close();
    }
  }, 60_000);

  it('guest → host: 8 MiB arrive intact, paced by the advertised window', async () => {
    const data = pattern(TOTAL);
    const hash = createHash('sha256');
    let count = 0;
    let done: () => void = () => {};
    const finished = new Promise<void>((r) => { done = r; });
    let sawZero = false;
    const server = net.createServer((s) => {
      s.on('error', () => {});
      // A reader that stops at first: once the kernel's buffers are full the window must close
      // (waiting for that, not a fixed time: how much the kernel absorbs depends on timing), then
      // reopen when it reads again.
      s.pause();
      const started = Date.now();
      const check = setInterval(() => {
        if (!sawZero && Date.now() - started < 5000) return;
        clearInterval(check);
        s.resume();
      }, 5);
      s.on('data', (d) => {
        hash.update(d);
        count += d.length;
        if (count === TOTAL) done();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const limit = 256 << 10;
      const g = await connect((server.address() as net.AddressInfo).port, limit);
      const gg = g;
      let sent = 0;
      const pump = (): void => {
        // Send what the last advertised window allows, as one batch.
        let budget = ((g.lastAck + g.lastWindow - (ISN + 1 + sent)) | 0);
        if (budget <= 0) sawZero = true;
        while (budget > 0 && sent < TOTAL) {
          const n = Math.min(1460, budget, TOTAL - sent);
          g.table.input(4, GUEST, REMOTE, seg(gg.guestSeq, (g.iss + 1) >>> 0, ACK | PSH, 8192, data.subarray(sent, sent + n)));
          gg.guestSeq = (gg.guestSeq + n) >>> 0;
          sent += n;
          budget -= n;
        }
        g.table.flushAcks();
      };
      g.onEmit = () => setImmediate(pump);
      pump();
      await finished;
      expect(hash.digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
      expect(sawZero).toBe(true);
      g.table.closeAll();
    } finally {
      server.close();
    }
  }, 60_000);
});
