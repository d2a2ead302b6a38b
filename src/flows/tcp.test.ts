import net from 'node:net';
import { Duplex } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ACK, FIN, PSH, RST, SYN, TcpSegment, writeSynOptions, writeTcpHeader } from '../wire/tcp.js';
import { SendQueue, TcpFlow, TcpFlowTable, type TcpConfig, type TcpEndpoints, type TcpFlowEnv, windowShiftFor } from './tcp.js';
import {
  EXPRESS_STATE_LEN, X_ACK_DELAY, X_DUE, X_EVENTS, X_FLAGS, X_INFLIGHT, X_OWED, X_RCV_NXT, X_RX_SEGS, X_SND_NXT, X_SND_UNA,
  X_TX_SEGS, X_TXLEN, XE_RX, XE_TX, XF_RX, XF_TX,
} from './express.js';

// Guest-visible addresses are plain numbers here; no packet leaves the process. Real sockets
// only ever go to 127.0.0.1.
const GUEST = 0x0a000264; // 10.0.2.100
const REMOTE = 0x0a000202; // 10.0.2.2
const GPORT = 40000;
const RPORT = 8080;
const ISN = 1000;

interface Out {
  flags: number;
  seq: number;
  ack: number;
  window: number;
  data: Buffer;
  synOpts?: { mss: number; wscale: number };
  guestPort: number;
  remotePort: number;
}

/** A host "socket" the test drives by hand: writes are recorded (and can be held). */
class FakeSocket extends Duplex {
  written: Buffer[] = [];
  hold = false;
  private pending: Array<() => void> = [];
  ended = false;
  resetCalled = false;
  connecting = true;
  constructor() {
    super({ allowHalfOpen: true });
  }
  override _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.written.push(Buffer.from(chunk));
    if (this.hold) this.pending.push(cb);
    else cb();
  }
  override _final(cb: () => void): void {
    this.ended = true;
    cb();
  }
  override _read(): void {}
  /** Let held writes complete. */
  release(): void {
    this.hold = false;
    const p = this.pending;
    this.pending = [];
    for (const cb of p) cb();
  }
  connected(): void {
    this.connecting = false;
    this.emit('connect');
  }
  resetAndDestroy(): this {
    this.resetCalled = true;
    this.destroy();
    return this;
  }
  setNoDelay(): this {
    return this;
  }
  get bytes(): Buffer {
    return Buffer.concat(this.written);
  }
}

class FakeEnv implements TcpFlowEnv {
  out: Out[] = [];
  connects: TcpFlow[] = [];
  unreachables: Array<{ flow: TcpFlow; code?: string }> = [];
  closedFlows: TcpFlow[] = [];
  onClosed: (() => void) | null = null;
  connectImpl: (flow: TcpFlow) => net.Socket | null = () => null;
  log = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
  emit(
    flow: TcpEndpoints, flags: number, seq: number, ack: number, window: number,
    payload: Uint8Array | null, off: number, len: number, synOpts?: { mss: number; wscale: number },
  ): void {
    this.out.push({
      flags, seq, ack, window,
      data: payload ? Buffer.from(payload.subarray(off, off + len)) : Buffer.alloc(0),
      synOpts: synOpts ? { ...synOpts } : undefined,
      guestPort: flow.guestPort,
      remotePort: flow.remotePort,
    });
  }
  connect(flow: TcpFlow): net.Socket | null {
    this.connects.push(flow);
    return this.connectImpl(flow);
  }
  unreachable(flow: TcpFlow, err: NodeJS.ErrnoException): void {
    this.unreachables.push({ flow, code: err.code });
  }
  closed(flow: TcpFlow): void {
    this.closedFlows.push(flow);
    this.onClosed?.();
  }
  /** Emitted segments since the last call. */
  take(): Out[] {
    const o = this.out;
    this.out = [];
    return o;
  }
}

interface SegSpec {
  seq: number;
  ack?: number;
  flags: number;
  window?: number;
  data?: Uint8Array;
  mss?: number;
  wscale?: number;
  sport?: number;
  dport?: number;
}

/** A guest segment built with the wire helpers. */
function seg(s: SegSpec): TcpSegment {
  const data = s.data ?? new Uint8Array(0);
  let optLen = 0;
  if (s.mss !== undefined && s.wscale !== undefined) optLen = 8;
  else if (s.mss !== undefined) optLen = 4;
  const buf = new Uint8Array(20 + optLen + data.length + 7); // offset + slack: views must honour off/len
  const off = 3;
  writeTcpHeader(buf, off, s.sport ?? GPORT, s.dport ?? RPORT, s.seq, s.ack ?? 0, s.flags, s.window ?? 65535, optLen);
  if (optLen === 8) writeSynOptions(buf, off + 20, s.mss!, s.wscale!);
  else if (optLen === 4) {
    buf[off + 20] = 2; buf[off + 21] = 4; buf[off + 22] = s.mss! >> 8; buf[off + 23] = s.mss! & 0xff;
  }
  buf.set(data, off + 20 + optLen);
  const v = new TcpSegment();
  if (!v.wrap(buf, off, 20 + optLen + data.length)) throw new Error('bad test segment');
  return v;
}

function bytes(n: number, start = 0): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (start + i * 7) & 0xff;
  return b;
}

const u32 = (n: number): number => n >>> 0;

function make(cfg: Partial<TcpConfig> = {}): { env: FakeEnv; table: TcpFlowTable } {
  const env = new FakeEnv();
  const table = new TcpFlowTable(env, { mtu: 1500, ...cfg });
  return { env, table };
}

/** Handshake against a FakeSocket; returns the flow, its socket and our ISS. */
function open(
  env: FakeEnv, table: TcpFlowTable,
  syn: { mss?: number; wscale?: number; window?: number } = { mss: 1460, wscale: 7 },
  ackWindow = 1000,
): { flow: TcpFlow; sock: FakeSocket; iss: number } {
  const sock = new FakeSocket();
  env.connectImpl = () => sock as unknown as net.Socket;
  table.input(4, GUEST, REMOTE, seg({ seq: ISN, flags: SYN, window: syn.window ?? 64240, mss: syn.mss, wscale: syn.wscale }));
  sock.connected();
  const [synAck] = env.take();
  expect(synAck.flags).toBe(SYN | ACK);
  const iss = synAck.seq;
  table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 1), flags: ACK, window: ackWindow }));
  table.flushAcks();
  const flow = table.lookup(4, GUEST, GPORT, REMOTE, RPORT)!;
  expect(flow.stateName).toBe('ESTABLISHED');
  expect(env.take()).toEqual([]);
  return { flow, sock, iss };
}

/**
 * Request/response on an opened flow: `request` sends a lone PSH segment of `len` bytes and ends
 * the batch; `reply` has the host answer 20 bytes, which must go out as one segment carrying the
 * ACK of everything the guest sent. `seq` is the guest's next sequence number.
 */
function exchanges(env: FakeEnv, table: TcpFlowTable, sock: FakeSocket, iss: number): { request(len?: number): void; reply(): void; readonly seq: number } {
  let seq = ISN + 1;
  let ack = iss + 1;
  return {
    request(len = 10): void {
      table.input(4, GUEST, REMOTE, seg({ seq, ack: u32(ack), flags: ACK | PSH, data: bytes(len) }));
      seq += len;
      table.flushAcks();
    },
    reply(): void {
      sock.emit('data', bytes(20));
      expect(env.take().map((o) => [o.flags, o.ack, o.data.length])).toEqual([[ACK | PSH, seq, 20]]);
      ack += 20;
    },
    get seq(): number {
      return seq;
    },
  };
}

async function ticks(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => process.nextTick(r));
}

function useFakeTimers(): void {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
}

afterEach(() => {
  vi.useRealTimers();
});

describe('handshake', () => {
  it('sends SYN-ACK only after the host connect, with MSS and window scale', () => {
    const { env, table } = make();
    const sock = new FakeSocket();
    env.connectImpl = () => sock as unknown as net.Socket;
    table.input(4, GUEST, REMOTE, seg({ seq: ISN, flags: SYN, window: 64240, mss: 1400, wscale: 7 }));
    expect(env.connects).toHaveLength(1);
    expect(env.connects[0].key).toBe(`4/${GUEST}/${GPORT}/${REMOTE}/${RPORT}`);
    table.flushAcks();
    expect(env.out).toEqual([]);
    // The guest retransmits its SYN while we connect: absorbed, no second connect.
    table.input(4, GUEST, REMOTE, seg({ seq: ISN, flags: SYN, window: 64240, mss: 1400, wscale: 7 }));
    table.flushAcks();
    expect(env.out).toEqual([]);
    expect(env.connects).toHaveLength(1);

    sock.connected();
    const out = env.take();
    expect(out).toHaveLength(1);
    expect(out[0].flags).toBe(SYN | ACK);
    expect(out[0].ack).toBe(ISN + 1);
    expect(out[0].window).toBe(65535);
    // mtu 1500 → MSS 1460; 4 MiB buffer needs a shift of 7 to be reachable.
    expect(out[0].synOpts).toEqual({ mss: 1460, wscale: 7 });
    expect(out[0].guestPort).toBe(GPORT);
    expect(out[0].remotePort).toBe(RPORT);
    const flow = table.lookup(4, GUEST, GPORT, REMOTE, RPORT)!;
    expect(flow.stateName).toBe('SYN_RCVD');
    expect(flow.guestIsn).toBe(ISN);

    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(out[0].seq + 1), flags: ACK, window: 502 }));
    expect(flow.stateName).toBe('ESTABLISHED');
    expect(flow.sndWnd).toBe(502 << 7);
    expect(flow.sndMss).toBe(1400);
    expect(table.counters.opened).toBe(1);
    expect(table.active).toBe(1);
  });

  it('uses mtu-60 for IPv6 and no scaling when the guest offers none', () => {
    const { env, table } = make();
    const sock = new FakeSocket();
    env.connectImpl = () => sock as unknown as net.Socket;
    table.input(6, 'fd00::100', 'fd00::2', seg({ seq: ISN, flags: SYN, mss: 1440 }));
    sock.connected();
    const [sa] = env.take();
    expect(sa.synOpts).toEqual({ mss: 1440, wscale: 0 });
    const flow = table.lookup(6, 'fd00::100', GPORT, 'fd00::2', RPORT)!;
    expect(flow.key.startsWith('6/')).toBe(true);
    expect(flow.rcvShift).toBe(0);
  });

  it('retransmits the SYN-ACK when the guest repeats its SYN or stays silent', () => {
    useFakeTimers();
    const { env, table } = make();
    const sock = new FakeSocket();
    env.connectImpl = () => sock as unknown as net.Socket;
    table.input(4, GUEST, REMOTE, seg({ seq: ISN, flags: SYN, mss: 1460 }));
    sock.connected();
    const [sa] = env.take();
    table.input(4, GUEST, REMOTE, seg({ seq: ISN, flags: SYN, mss: 1460 }));
    expect(env.take().map((o) => [o.flags, o.seq, o.ack])).toEqual([[SYN | ACK, sa.seq, ISN + 1]]);
    vi.advanceTimersByTime(200);
    expect(env.take().map((o) => [o.flags, o.seq])).toEqual([[SYN | ACK, sa.seq]]);
  });

  it('connects through a real loopback socket and relays both ways', async () => {
    const got: Buffer[] = [];
    let serverSock: net.Socket | null = null;
    const server = net.createServer((s) => {
      serverSock = s;
      s.on('error', () => {});
      s.on('data', (d) => got.push(d));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const { env, table } = make();
      env.connectImpl = () => net.connect({ host: '127.0.0.1', port });
      table.input(4, GUEST, REMOTE, seg({ seq: ISN, flags: SYN, mss: 1460, wscale: 7 }));
      expect(env.out).toEqual([]);
      await vi.waitFor(() => expect(env.out).toHaveLength(1));
      const [sa] = env.take();
      expect(sa.flags).toBe(SYN | ACK);
      table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(sa.seq + 1), flags: ACK | PSH, data: Buffer.from('hello') }));
      table.flushAcks();
      // A small request: its ACK waits up to pushAckDelayMs for a reply to carry it.
      expect(env.out).toEqual([]);
      await vi.waitFor(() => expect(env.out).toHaveLength(1));
      expect(env.take().map((o) => [o.flags, o.ack])).toEqual([[ACK, ISN + 6]]);
      await vi.waitFor(() => expect(Buffer.concat(got).toString()).toBe('hello'));
      await vi.waitFor(() => expect(serverSock).not.toBeNull());
      serverSock!.write('world');
      await vi.waitFor(() => expect(env.out).toHaveLength(1));
      const [d] = env.take();
      expect([d.flags, d.seq, d.ack, d.data.toString()]).toEqual([ACK | PSH, u32(sa.seq + 1), ISN + 6, 'world']);
      table.closeAll();
    } finally {
      server.close();
    }
  });
});

describe('refusal', () => {
  it('answers RST+ACK when the host refuses (closed loopback port)', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((r) => server.close(() => r()));
    const { env, table } = make();
    env.connectImpl = () => net.connect({ host: '127.0.0.1', port });
    const closed = new Promise<void>((r) => { env.onClosed = r; });
    table.input(4, GUEST, REMOTE, seg({ seq: ISN, flags: SYN, mss: 1460 }));
    await closed;
    expect(env.take().map((o) => [o.flags, o.seq, o.ack])).toEqual([[RST | ACK, 0, ISN + 1]]);
    expect(table.counters.refused).toBe(1);
    expect(table.active).toBe(0);
  });

  it('answers RST+ACK at once when the env refuses', () => {
    const { env, table } = make();
    env.connectImpl = () => null;
    table.input(4, GUEST, REMOTE, seg({ seq: ISN, flags: SYN }));
    expect(env.take().map((o) => [o.flags, o.seq, o.ack])).toEqual([[RST | ACK, 0, ISN + 1]]);
    expect(env.closedFlows).toHaveLength(1);
    expect(table.active).toBe(0);
  });

  it('reports unreachable errors to the env instead of RST', () => {
    const { env, table } = make();
    const sock = new FakeSocket();
    env.connectImpl = () => sock as unknown as net.Socket;
    table.input(4, GUEST, REMOTE, seg({ seq: ISN, flags: SYN }));
    const err: NodeJS.ErrnoException = new Error('unreachable');
    err.code = 'EHOSTUNREACH';
    sock.emit('error', err);
    expect(env.out).toEqual([]);
    expect(env.unreachables.map((u) => u.code)).toEqual(['EHOSTUNREACH']);
    expect(table.active).toBe(0);
  });
});

describe('guest → host data', () => {
  it('delivers in order and ACKs a batch once', () => {
    const { env, table } = make();
    const { sock, iss } = open(env, table);
    const a = bytes(100, 1), b = bytes(100, 2), c = bytes(100, 3);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 1), flags: ACK, data: a }));
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 101, ack: u32(iss + 1), flags: ACK, data: b }));
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 201, ack: u32(iss + 1), flags: ACK, data: c }));
    expect(env.out).toEqual([]); // no per-segment ACK inside a batch
    table.flushAcks();
    expect(sock.bytes).toEqual(Buffer.concat([a, b, c]));
    expect(env.take().map((o) => [o.flags, o.seq, o.ack])).toEqual([[ACK, u32(iss + 1), ISN + 301]]);
  });

  it('lets a reply carry the ACK of a small request, else ACKs it within pushAckDelayMs, and within pushAckQuickMs once that ran out', () => {
    useFakeTimers();
    const { env, table } = make();
    const { sock, iss } = open(env, table);
    const x = exchanges(env, table, sock, iss);
    const { request, reply } = x;
    // Request, reply within the delay: one frame, the reply with the ACK.
    request();
    expect(env.out).toEqual([]);
    reply();
    vi.advanceTimersByTime(50);
    expect(env.out).toEqual([]);
    // Request, no reply: the ACK alone after 5 ms.
    request();
    vi.advanceTimersByTime(4);
    expect(env.out).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(env.take().map((o) => [o.flags, o.ack])).toEqual([[ACK, x.seq]]);
    // From then on (replies or not in between) an unanswered request is ACKed after 1 ms.
    for (let i = 0; i < 3; i++) {
      request();
      reply();
    }
    request();
    expect(env.out).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(env.take().map((o) => [o.flags, o.ack])).toEqual([[ACK, x.seq]]);
    // A full-sized segment with PSH is acknowledged at once.
    request(1460);
    expect(env.take().map((o) => [o.flags, o.ack])).toEqual([[ACK, x.seq]]);
  });

  it('goes back to the 5 ms push-ACK wait when a late reply, not more guest data, followed the lone ACK', () => {
    useFakeTimers();
    const { env, table } = make();
    const { sock, iss } = open(env, table);
    const x = exchanges(env, table, sock, iss);
    const { request, reply } = x;
    const ackAfter = (ms: number): void => {
      vi.advanceTimersByTime(ms - 1);
      expect(env.out).toEqual([]);
      vi.advanceTimersByTime(1);
      expect(env.take().map((o) => [o.flags, o.ack])).toEqual([[ACK, x.seq]]);
    };
    // A slow host: the ACK goes alone after 5 ms, the reply comes later.
    request();
    ackAfter(5);
    reply();
    // Not a Nagle sender after all: the next unanswered request waits 5 ms again, not 1.
    request();
    ackAfter(5);
    // A Nagle sender: after the lone ACK the guest sends the rest of its write, then the reply.
    request();
    reply();
    request();
    ackAfter(1);
    request();
    reply();
    request();
    ackAfter(1); // still quick
  });

  it('delays the ACK of a lone segment without PSH', () => {
    useFakeTimers();
    const { env, table } = make();
    const { iss } = open(env, table);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 1), flags: ACK, data: bytes(10) }));
    table.flushAcks();
    expect(env.out).toEqual([]);
    vi.advanceTimersByTime(39);
    expect(env.out).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(env.take().map((o) => [o.flags, o.ack])).toEqual([[ACK, ISN + 11]]);
  });

  it('holds out-of-order data, answers with a duplicate ACK, and delivers it once the gap is filled', () => {
    const { env, table } = make();
    const { sock, iss } = open(env, table);
    const a = bytes(100, 1), b = bytes(100, 2), c = bytes(100, 3);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 101, ack: u32(iss + 1), flags: ACK, data: b }));
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 201, ack: u32(iss + 1), flags: ACK, data: c }));
    table.flushAcks();
    expect(sock.written).toEqual([]);
    expect(env.take().map((o) => [o.flags, o.ack])).toEqual([[ACK, ISN + 1]]);
    expect(table.counters.outOfOrderHeld).toBe(2);
    // The guest's fast retransmit fills the gap: everything held follows, one ACK covers it all.
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 1), flags: ACK | PSH, data: a }));
    table.flushAcks();
    expect(env.take().map((o) => o.ack)).toEqual([ISN + 301]);
    expect(sock.bytes).toEqual(Buffer.concat([a, b, c]));
    // A late retransmit of held data is old now: re-ACKed, not written twice.
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 101, ack: u32(iss + 1), flags: ACK | PSH, data: b }));
    table.flushAcks();
    expect(env.take().map((o) => o.ack)).toEqual([ISN + 301]);
    expect(sock.bytes.length).toBe(300);
  });

  it('drops out-of-order data beyond its bounded queue; the retransmit brings it', () => {
    const { env, table } = make({ bufferLimit: 4096 }); // queue bound: 1024 bytes
    const { sock, iss } = open(env, table);
    const stream = bytes(2200);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 101, ack: u32(iss + 1), flags: ACK, data: stream.subarray(100, 1100) }));
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1101, ack: u32(iss + 1), flags: ACK, data: stream.subarray(1100, 2100) }));
    table.flushAcks();
    expect([table.counters.outOfOrderHeld, table.counters.droppedOutOfOrder]).toEqual([1, 1]);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 1), flags: ACK, data: stream.subarray(0, 100) }));
    table.flushAcks();
    expect(env.take().pop()!.ack).toBe(ISN + 1101);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1101, ack: u32(iss + 1), flags: ACK | PSH, data: stream.subarray(1100, 2100) }));
    table.flushAcks();
    expect(sock.bytes).toEqual(stream.subarray(0, 2100));
  });

  it('answers a keep-alive probe (SEG.SEQ = RCV.NXT-1) with an ACK', () => {
    const { env, table } = make();
    const { iss } = open(env, table);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN, ack: u32(iss + 1), flags: ACK }));
    table.flushAcks();
    expect(env.take().map((o) => [o.flags, o.seq, o.ack])).toEqual([[ACK, u32(iss + 1), ISN + 1]]);
  });

  it('trims overlap with data already received', () => {
    const { env, table } = make();
    const { sock, iss } = open(env, table);
    const stream = bytes(300);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 1), flags: ACK, data: stream.subarray(0, 100) }));
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 51, ack: u32(iss + 1), flags: ACK, data: stream.subarray(50, 200) }));
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 1), flags: ACK, data: stream.subarray(0, 100) })); // full duplicate
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 151, ack: u32(iss + 1), flags: ACK | PSH, data: stream.subarray(150, 300) }));
    table.flushAcks();
    expect(sock.bytes).toEqual(stream);
    expect(env.take().map((o) => o.ack)).toEqual([ISN + 301]);
  });

  it('shrinks the window as the host buffer fills and sends an update after the drain', async () => {
    const { env, table } = make({ bufferLimit: 8192 });
    const { sock, iss } = open(env, table, { mss: 1460 }); // no scaling: window fields are bytes
    sock.hold = true;
    let seq = ISN + 1;
    const sendBatch = (n: number): void => {
      for (let i = 0; i < n; i++) {
        table.input(4, GUEST, REMOTE, seg({ seq, ack: u32(iss + 1), flags: ACK, data: bytes(1000, seq) }));
        seq += 1000;
      }
      table.flushAcks();
    };
    sendBatch(2);
    sendBatch(4);
    sendBatch(2);
    expect(env.take().map((o) => [o.ack, o.window])).toEqual([
      [ISN + 2001, 6192],
      [ISN + 6001, 2192],
      [ISN + 8001, 192],
    ]);
    // More than the window: only what fits is taken.
    table.input(4, GUEST, REMOTE, seg({ seq, ack: u32(iss + 1), flags: ACK, data: bytes(1000, 9) }));
    table.flushAcks();
    expect(env.take().map((o) => [o.ack, o.window])).toEqual([[ISN + 8193, 0]]);
    expect(sock.writableLength).toBe(8192);
    sock.release();
    await ticks();
    expect(env.take().map((o) => [o.flags, o.seq, o.ack, o.window])).toEqual([[ACK, u32(iss + 1), ISN + 8193, 8192]]);
    expect(sock.bytes.length).toBe(8192);
  });
});

describe('guest → host slab copies', () => {
  // 8192 counted in excess sent the old code to a negative offset (a RangeError that killed
  // slipway); 4202 (10 bytes past the slab) made it copy 10 bytes of TCP header into the stream.
  it.each([8192, 4202])('copies afresh, never with a negative room, when the slab looks over-full (stale accounting: +%i)', (excess) => {
    const { env, table } = make({ bufferLimit: 8192 });
    const { flow, sock, iss } = open(env, table, { mss: 1460 }); // no scaling: window fields are bytes
    sock.hold = true;
    const stream = bytes(6000, 5);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 1), flags: ACK, data: stream.subarray(0, 1000) }));
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1001, ack: u32(iss + 1), flags: ACK, data: stream.subarray(1000, 4000) }));
    table.flushAcks();
    expect(env.take().map((o) => o.window)).toEqual([4192]); // the guest may send 4192 more
    // The state a fresh copy in flight plus write callbacks lagging behind their completions can
    // leave (released slab runs still counted): more "in use" than the slab holds.
    const f = flow as unknown as { slabPending: number; freshPending: number };
    f.slabPending += excess;
    f.freshPending += 1;
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 4001, ack: u32(iss + 1), flags: ACK | PSH, data: stream.subarray(4000, 6000) }));
    expect(() => table.flushAcks()).not.toThrow();
    expect(table.counters.freshBytes).toBeGreaterThan(0);
    sock.release();
    expect(sock.bytes.equals(stream)).toBe(true);
  });
});

describe('internal errors', () => {
  it('resets only the flow whose event threw, counts it, and the table keeps working', () => {
    const { env, table } = make();
    const { sock, iss } = open(env, table);
    sock.write = () => {
      throw new Error('boom (a bug on the host side)');
    };
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 1), flags: ACK | PSH, data: bytes(100) }));
    expect(() => table.flushAcks()).not.toThrow();
    expect(env.take().map((o) => o.flags)).toEqual([RST | ACK]);
    expect(sock.resetCalled || sock.destroyed).toBe(true);
    expect(table.stats().internalErrors).toBe(1);
    expect(table.stats().active).toBe(0);
    // The same 4-tuple, a new connection: served normally.
    const again = open(env, table);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(again.iss + 1), flags: ACK | PSH, data: bytes(50) }));
    table.flushAcks();
    expect(again.sock.bytes).toEqual(bytes(50));
    expect(table.stats().internalErrors).toBe(1);
  });

  /** An env whose next emit throws (a bug while building the frame), once. */
  function throwOnce(env: FakeEnv): void {
    const real = env.emit.bind(env);
    env.emit = (...args: Parameters<FakeEnv['emit']>) => {
      env.emit = real;
      void args;
      throw new Error('boom (a bug while sending)');
    };
  }

  it('a throw in a timer resets that flow only, instead of reaching the event loop', () => {
    useFakeTimers();
    const { env, table } = make();
    const { sock } = open(env, table);
    sock.emit('data', bytes(100)); // sent, unacknowledged: the retransmission timer runs
    expect(env.take().map((o) => o.data.length)).toEqual([100]);
    throwOnce(env);
    expect(() => vi.advanceTimersByTime(1000)).not.toThrow();
    expect(table.stats().internalErrors).toBe(1);
    expect(table.stats().active).toBe(0);
    expect(env.take().map((o) => o.flags)).toContain(RST | ACK);
    expect(sock.resetCalled || sock.destroyed).toBe(true);
  });

  it('a throw while handling the host EOF resets that flow only', () => {
    const { env, table } = make();
    const { sock } = open(env, table);
    throwOnce(env);
    expect(() => sock.emit('end')).not.toThrow();
    expect(table.stats().internalErrors).toBe(1);
    expect(table.stats().active).toBe(0);
  });

  it('an error the host socket marks internal (a bug on our side) is counted as one, not as the network', () => {
    const { env, table } = make();
    const { sock } = open(env, table);
    sock.emit('error', Object.assign(new Error('boom (a bug in the host socket)'), { internal: true }));
    expect(table.stats().internalErrors).toBe(1);
    expect(table.stats().active).toBe(0);
    expect(env.take().map((o) => o.flags)).toEqual([RST | ACK]);
  });
});

describe('guest → host direct socket writes', () => {
  /** A FakeSocket with an fd, and an env whose writeSlices takes at most `budget` bytes. */
  function direct(budget: { n: number }, bufferLimit = 8192) {
    const { env, table } = make({ bufferLimit });
    const kernel: Buffer[] = [];
    const calls: number[] = [];
    (env as FakeEnv & Pick<TcpFlowEnv, 'writeSlices'>).writeSlices = (fd, buf, offLen, count) => {
      expect(fd).toBe(42);
      let done = 0;
      for (let i = 0; i < count; i++) {
        const k = Math.min(offLen[2 * i + 1], budget.n);
        kernel.push(Buffer.from(buf.subarray(offLen[2 * i], offLen[2 * i] + k)));
        budget.n -= k;
        done += k;
        if (k < offLen[2 * i + 1]) break;
      }
      calls.push(done);
      return done === 0 ? -11 : done;
    };
    const o = open(env, table, { mss: 1460 });
    (o.sock as unknown as { _handle: { fd: number } })._handle = { fd: 42 };
    return { env, table, kernel, calls, ...o };
  }

  it('writes a batch straight to the fd, the rest (and everything while backlogged) through the socket in order', async () => {
    const budget = { n: 2500 };
    const { table, kernel, calls, sock, iss } = direct(budget);
    const stream = bytes(6000);
    let seq = ISN + 1;
    const send = (a: number, b: number): void => {
      table.input(4, GUEST, REMOTE, seg({ seq, ack: u32(iss + 1), flags: ACK, data: stream.subarray(a, b) }));
      seq += b - a;
    };
    sock.hold = true;
    send(0, 1000);
    send(1000, 2000);
    send(2000, 3000);
    table.flushAcks();
    // Each test segment has its own buffer (a tap batch shares the ring: one call); the last
    // write is partial, its other 500 bytes go through the socket.
    expect(calls).toEqual([1000, 1000, 500]);
    expect(sock.bytes).toEqual(stream.subarray(2500, 3000));
    send(3000, 4000);
    table.flushAcks();
    expect(calls).toEqual([1000, 1000, 500]); // backlog: no direct write behind queued data
    sock.release();
    await ticks();
    budget.n = 0;
    send(4000, 5000);
    table.flushAcks(); // nothing queued, but the kernel takes nothing (EAGAIN): all copied
    await ticks();
    budget.n = 1e9;
    send(5000, 6000);
    table.flushAcks();
    await ticks();
    expect(Buffer.concat([...kernel, ...sock.written])).toHaveLength(6000);
    expect(Buffer.concat(kernel.slice(0, 1))).toEqual(stream.subarray(0, 1000));
    expect(sock.bytes).toEqual(stream.subarray(2500, 5000));
    expect(Buffer.concat(kernel.slice(-1))).toEqual(stream.subarray(5000, 6000));
    expect(table.counters.directBytes).toBe(3500);
    expect(table.counters.copiedBytes).toBe(2500);
  });

  it('reuses the slab across wraps; the window never promises more than the slab has free', async () => {
    const { env, table, sock, iss } = direct({ n: 0 }, 4096);
    const flow = table.lookup(4, GUEST, GPORT, REMOTE, RPORT) as unknown as { slabInUse(): number; slabHead: number };
    const fresh = vi.spyOn(Buffer, 'copyBytesFrom');
    const stream = bytes(30000);
    let seq = ISN + 1;
    let edge = seq + 1000; // the window of the handshake ACK
    let wrapped = false;
    for (let round = 0; seq - (ISN + 1) < stream.length; round++) {
      sock.hold = round % 3 !== 2; // let the socket drain every third round
      while (seq - (ISN + 1) < stream.length && seq < edge) {
        const pos = seq - (ISN + 1);
        const n = Math.min(700, edge - seq, stream.length - pos);
        const head = flow.slabHead;
        table.input(4, GUEST, REMOTE, seg({ seq, ack: u32(iss + 1), flags: ACK | PSH, data: stream.subarray(pos, pos + n) }));
        seq += n;
        table.flushAcks();
        if (flow.slabHead < head) wrapped = true;
        for (const a of env.take()) {
          expect(a.window).toBeLessThanOrEqual(4096 - flow.slabInUse());
          edge = Math.max(edge, a.ack + a.window);
        }
      }
      sock.release();
      await ticks();
      for (const a of env.take()) edge = Math.max(edge, a.ack + a.window);
    }
    expect(wrapped).toBe(true);
    expect(fresh).not.toHaveBeenCalled();
    fresh.mockRestore();
    expect(sock.bytes).toEqual(stream);
  });
});

describe('host → guest data', () => {
  it('segments by the guest MSS and retransmits on RTO', () => {
    useFakeTimers();
    const { env, table } = make();
    const { sock, iss } = open(env, table, { mss: 1000 }, 65535);
    const data = bytes(2500);
    sock.emit('data', data);
    const out = env.take();
    expect(out.map((o) => [o.flags, o.seq - iss, o.ack, o.data.length])).toEqual([
      [ACK, 1, ISN + 1, 1000],
      [ACK, 1001, ISN + 1, 1000],
      [ACK | PSH, 2001, ISN + 1, 500],
    ]);
    expect(Buffer.concat(out.map((o) => o.data))).toEqual(data);
    vi.advanceTimersByTime(199);
    expect(env.out).toEqual([]);
    vi.advanceTimersByTime(1);
    const rtx = env.take();
    expect(rtx.map((o) => [o.seq - iss, o.data.length])).toEqual([[1, 1000]]);
    expect(rtx[0].data).toEqual(data.subarray(0, 1000));
    expect(table.counters.retransmits).toBe(1);
    // The ACK for it brings the rest again (go-back-N).
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 1001), flags: ACK, window: 65535 }));
    expect(env.take().map((o) => [o.seq - iss, o.data.length])).toEqual([[1001, 1000], [2001, 500]]);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 2501), flags: ACK, window: 65535 }));
    expect(table.lookup(4, GUEST, GPORT, REMOTE, RPORT)!.queue.bytes).toBe(0);
    vi.advanceTimersByTime(5000);
    expect(env.take()).toEqual([]); // nothing outstanding: no more retransmits
  });

  it('emits GSO super-segments within the window when the tap takes them', () => {
    useFakeTimers();
    const { env, table } = make({ gsoMaxPayload: 65000 });
    const { sock, iss } = open(env, table, { mss: 1000 }, 30000);
    const data = bytes(40000);
    sock.emit('data', data);
    const out = env.take();
    // One 30000-byte super-segment fills the guest's window; the rest waits for its ACK.
    expect(out.map((o) => [o.seq - iss, o.data.length])).toEqual([[1, 30000]]);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 30001), flags: ACK, window: 30000 }));
    expect(env.take().map((o) => [o.seq - iss, o.data.length, o.flags])).toEqual([[30001, 10000, ACK | PSH]]);
    // An RTO retransmission resends from SND.UNA with the same super-segment size.
    vi.advanceTimersByTime(200);
    expect(env.take().map((o) => [o.seq - iss, o.data.length])).toEqual([[30001, 10000]]);
  });

  it('backs off exponentially', () => {
    useFakeTimers();
    const { env, table } = make();
    const { sock, iss } = open(env, table, { mss: 1000 }, 65535);
    sock.emit('data', bytes(10));
    env.take();
    vi.advanceTimersByTime(200);
    expect(env.take().map((o) => o.seq - iss)).toEqual([1]);
    vi.advanceTimersByTime(399);
    expect(env.out).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(env.take().map((o) => o.seq - iss)).toEqual([1]);
  });

  it('fast-retransmits on the third duplicate ACK', () => {
    useFakeTimers();
    const { env, table } = make();
    const { sock, iss } = open(env, table, { mss: 1000 }, 65535);
    const data = bytes(3000);
    sock.emit('data', data);
    expect(env.take()).toHaveLength(3);
    const dup = (): void => table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 1001), flags: ACK, window: 65535 }));
    dup(); // new ACK
    dup();
    dup();
    expect(env.out).toEqual([]);
    dup(); // third duplicate
    const out = env.take();
    expect(out.map((o) => [o.flags & ~PSH, o.seq - iss, o.data.length])).toEqual([[ACK, 1001, 1000]]);
    expect(out[0].data).toEqual(data.subarray(1000, 2000));
    expect(table.counters.retransmits).toBe(1);
  });

  it('probes a zero window and resumes when it opens', () => {
    useFakeTimers();
    const { env, table } = make();
    const { flow, sock, iss } = open(env, table, { mss: 1000 }, 0);
    const data = bytes(100);
    sock.emit('data', data);
    expect(env.out).toEqual([]);
    expect(sock.isPaused()).toBe(true);
    vi.advanceTimersByTime(200);
    let out = env.take();
    expect(out.map((o) => [o.flags, o.seq - iss, o.data.length])).toEqual([[ACK, 1, 1]]);
    expect(out[0].data[0]).toBe(data[0]);
    // Probe refused (window still 0): the next one comes after a back-off.
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 1), flags: ACK, window: 0 }));
    vi.advanceTimersByTime(399);
    expect(env.out).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(env.take().map((o) => [o.seq - iss, o.data.length])).toEqual([[1, 1]]);
    // The window opens: everything goes out.
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 1), flags: ACK, window: 4000 }));
    out = env.take();
    expect(out.map((o) => [o.seq - iss, o.data.length])).toEqual([[1, 100]]);
    expect(out[0].data).toEqual(data);
    expect(sock.isPaused()).toBe(false);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 101), flags: ACK, window: 4000 }));
    expect(flow.queue.bytes).toBe(0);
    vi.advanceTimersByTime(10_000);
    expect(env.take()).toEqual([]);
  });

  it('honours the guest window exactly and pauses the host at the buffer limit', () => {
    const { env, table } = make({ bufferLimit: 4000 });
    const { sock, iss } = open(env, table, { mss: 1000 }, 1500);
    sock.emit('data', bytes(3000));
    expect(env.take().map((o) => [o.seq - iss, o.data.length])).toEqual([[1, 1000], [1001, 500]]);
    expect(sock.isPaused()).toBe(false);
    sock.emit('data', bytes(1000));
    expect(sock.isPaused()).toBe(true); // 4000 queued+unacked = limit
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 1501), flags: ACK, window: 3000 }));
    expect(env.take().map((o) => [o.seq - iss, o.data.length])).toEqual([[1501, 1000], [2501, 500], [3001, 1000]]); // segments never span host chunks
    expect(sock.isPaused()).toBe(true); // 2500 queued+unacked > limit/2
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 4001), flags: ACK, window: 3000 }));
    expect(env.take()).toEqual([]);
    expect(sock.isPaused()).toBe(false);
  });
});

describe('resets', () => {
  it('guest RST at RCV.NXT resets the host socket; elsewhere in the window it draws a challenge ACK', () => {
    const { env, table } = make();
    const { sock, iss } = open(env, table);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 50, flags: RST }));
    table.flushAcks();
    expect(sock.resetCalled).toBe(false);
    expect(env.take().map((o) => [o.flags, o.seq, o.ack])).toEqual([[ACK, u32(iss + 1), ISN + 1]]);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, flags: RST }));
    expect(sock.resetCalled).toBe(true);
    expect(env.closedFlows).toHaveLength(1);
    expect(table.counters.resetsReceived).toBe(1);
    expect(table.active).toBe(0);
  });

  it('guest RST resets a real host connection', async () => {
    const serverErr = new Promise<string | undefined>((resolve) => {
      const server = net.createServer((s) => {
        s.on('error', (e: NodeJS.ErrnoException) => { resolve(e.code); server.close(); });
        s.on('close', () => { resolve('close'); server.close(); });
      });
      server.listen(0, '127.0.0.1', () => {
        const port = (server.address() as net.AddressInfo).port;
        const { env, table } = make();
        env.connectImpl = () => net.connect({ host: '127.0.0.1', port });
        table.input(4, GUEST, REMOTE, seg({ seq: ISN, flags: SYN, mss: 1460 }));
        const poll = setInterval(() => {
          if (env.out.length === 0) return;
          clearInterval(poll);
          const [sa] = env.take();
          table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(sa.seq + 1), flags: ACK }));
          table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, flags: RST }));
        }, 5);
      });
    });
    expect(await serverErr).toBe('ECONNRESET');
  });

  it('host reset sends RST to the guest', async () => {
    const server = net.createServer((s) => {
      s.on('error', () => {});
      s.on('data', () => s.resetAndDestroy());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const { env, table } = make();
      env.connectImpl = () => net.connect({ host: '127.0.0.1', port });
      const closed = new Promise<void>((r) => { env.onClosed = r; });
      table.input(4, GUEST, REMOTE, seg({ seq: ISN, flags: SYN, mss: 1460 }));
      await vi.waitFor(() => expect(env.out).toHaveLength(1));
      const [sa] = env.take();
      table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(sa.seq + 1), flags: ACK | PSH, data: Buffer.from('x') }));
      table.flushAcks();
      await closed;
      // The request's ACK goes out on its own only if the reset takes longer than pushAckDelayMs.
      const out = env.take().map((o) => [o.flags, o.seq, o.ack]);
      expect(out.at(-1)).toEqual([RST | ACK, u32(sa.seq + 1), ISN + 2]);
      expect(out.slice(0, -1)).toEqual(out.length === 2 ? [[ACK, u32(sa.seq + 1), ISN + 2]] : []);
      expect(table.counters.resets).toBe(1);
    } finally {
      server.close();
    }
  });

  it('host error on a fake socket (EPIPE) resets the guest', () => {
    const { env, table } = make();
    const { sock, iss } = open(env, table);
    const err: NodeJS.ErrnoException = new Error('pipe');
    err.code = 'EPIPE';
    sock.emit('error', err);
    expect(env.take().map((o) => [o.flags, o.seq, o.ack])).toEqual([[RST | ACK, u32(iss + 1), ISN + 1]]);
    expect(table.active).toBe(0);
  });
});

describe('close', () => {
  it('guest FIN half-closes toward the host; host data still flows; then FIN, closed at once (the guest holds the TIME-WAIT)', async () => {
    useFakeTimers();
    const { env, table } = make();
    const { flow, sock, iss } = open(env, table, { mss: 1000 }, 65535);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 1), flags: ACK | FIN, data: Buffer.from('bye') }));
    table.flushAcks();
    expect(env.take().map((o) => [o.flags, o.ack])).toEqual([[ACK, ISN + 5]]);
    await ticks();
    expect(sock.bytes.toString()).toBe('bye');
    expect(sock.ended).toBe(true);
    expect(flow.stateName).toBe('CLOSE_WAIT');
    sock.emit('data', bytes(300));
    expect(env.take().map((o) => [o.flags, o.seq - iss, o.ack, o.data.length])).toEqual([[ACK | PSH, 1, ISN + 5, 300]]);
    sock.emit('end');
    expect(env.take().map((o) => [o.flags, o.seq - iss, o.ack])).toEqual([[FIN | ACK, 301, ISN + 5]]);
    expect(flow.stateName).toBe('LAST_ACK');
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 5, ack: u32(iss + 302), flags: ACK }));
    expect(flow.stateName).toBe('CLOSED');
    expect(env.closedFlows).toEqual([flow]);
    expect(table.active).toBe(0);
    expect(table.timeWaiting).toBe(0);
  });

  it('host end half-closes toward the guest; guest data still flows; retransmitted FIN is re-ACKed', () => {
    useFakeTimers();
    const { env, table } = make();
    const { flow, sock, iss } = open(env, table, { mss: 1000 }, 65535);
    sock.emit('data', bytes(100));
    sock.emit('end');
    expect(env.take().map((o) => [o.flags, o.seq - iss, o.data.length])).toEqual([[ACK | PSH, 1, 100], [FIN | ACK, 101, 0]]);
    expect(flow.stateName).toBe('FIN_WAIT_1');
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 102), flags: ACK }));
    expect(flow.stateName).toBe('FIN_WAIT_2');
    const up = bytes(500);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 102), flags: ACK | PSH, data: up }));
    table.flushAcks();
    expect(sock.bytes).toEqual(up);
    expect(env.take().map((o) => [o.flags, o.seq - iss, o.ack])).toEqual([[ACK, 102, ISN + 501]]);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 501, ack: u32(iss + 102), flags: ACK | FIN }));
    table.flushAcks();
    expect(env.take().map((o) => [o.flags, o.ack])).toEqual([[ACK, ISN + 502]]);
    // Our FIN went first: the flow is done, its 4-tuple stays in TIME-WAIT.
    expect(flow.stateName).toBe('CLOSED');
    expect(env.closedFlows).toEqual([flow]);
    expect(table.active).toBe(0);
    expect(table.timeWaiting).toBe(1);
    // Our ACK was lost: the guest repeats its FIN and hears the same ACK; the wait restarts.
    vi.advanceTimersByTime(1000);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 501, ack: u32(iss + 102), flags: ACK | FIN }));
    table.flushAcks();
    expect(env.take().map((o) => [o.flags, o.seq - iss, o.ack])).toEqual([[ACK, 102, ISN + 502]]);
    // A bare ACK draws nothing.
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 502, ack: u32(iss + 102), flags: ACK }));
    expect(env.out).toEqual([]);
    vi.advanceTimersByTime(1999);
    expect(table.timeWaiting).toBe(1);
    vi.advanceTimersByTime(1);
    expect(table.timeWaiting).toBe(0);
    // Gone: a late segment for the 4-tuple is answered like any unknown one.
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 501, ack: u32(iss + 102), flags: ACK | FIN }));
    expect(env.take().map((o) => o.flags)).toEqual([RST]);
  });

  it('TIME-WAIT: a RST ends it, a new SYN beyond it opens a new flow, an old SYN is re-ACKed', () => {
    useFakeTimers();
    const { env, table } = make();
    const closeFromHost = (): number => {
      const { sock, iss } = open(env, table, { mss: 1000 }, 65535);
      sock.emit('end');
      expect(env.take().map((o) => o.flags)).toEqual([FIN | ACK]);
      table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 2), flags: ACK | FIN }));
      table.flushAcks();
      expect(env.take().map((o) => [o.flags, o.ack])).toEqual([[ACK, ISN + 2]]);
      expect(table.timeWaiting).toBe(1);
      return iss;
    };
    const iss = closeFromHost();
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 2, ack: u32(iss + 2), flags: RST }));
    expect(table.timeWaiting).toBe(0);
    expect(env.out).toEqual([]);
    const iss2 = closeFromHost();
    // The same SYN again (old): re-ACKed from TIME-WAIT, no new flow.
    table.input(4, GUEST, REMOTE, seg({ seq: ISN, flags: SYN, mss: 1000 }));
    expect(env.take().map((o) => [o.flags, o.seq, o.ack])).toEqual([[ACK, u32(iss2 + 2), ISN + 2]]);
    expect(table.active).toBe(0);
    // A SYN beyond the old sequence space: a new incarnation.
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 100000, flags: SYN, mss: 1000 }));
    expect(table.timeWaiting).toBe(0);
    expect(table.active).toBe(1);
  });

  it('sends the FIN on the last data segment when the host has already ended', () => {
    useFakeTimers();
    const { env, table } = make();
    const { flow, sock, iss } = open(env, table, { mss: 1460 }, 0); // guest window closed
    sock.emit('data', bytes(100));
    sock.emit('end');
    expect(env.take()).toEqual([]);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 1), flags: ACK, window: 65535 }));
    expect(env.take().map((o) => [o.flags, o.seq - iss, o.data.length])).toEqual([[ACK | PSH | FIN, 1, 100]]);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 102), flags: ACK, window: 65535 }));
    expect(flow.stateName).toBe('FIN_WAIT_2');
    expect(env.take()).toEqual([]);
  });

  it('retransmits an unacknowledged FIN', () => {
    useFakeTimers();
    const { env, table } = make();
    const { sock, iss } = open(env, table, { mss: 1000 }, 65535);
    sock.emit('end');
    expect(env.take().map((o) => [o.flags, o.seq - iss])).toEqual([[FIN | ACK, 1]]);
    vi.advanceTimersByTime(200);
    expect(env.take().map((o) => [o.flags, o.seq - iss])).toEqual([[FIN | ACK, 1]]);
    vi.advanceTimersByTime(400);
    expect(env.take().map((o) => [o.flags, o.seq - iss])).toEqual([[FIN | ACK, 1]]);
    expect(table.counters.retransmits).toBe(2);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 2), flags: ACK }));
    vi.advanceTimersByTime(10_000);
    expect(env.take()).toEqual([]);
  });

  it('resets a flow whose retransmissions are never acknowledged', () => {
    useFakeTimers();
    const { env, table } = make({ maxRetransmits: 3 });
    const { sock, iss } = open(env, table, { mss: 1000 }, 65535);
    sock.emit('data', bytes(10));
    env.take();
    vi.advanceTimersByTime(200 + 400 + 800);
    expect(env.take()).toHaveLength(3);
    vi.advanceTimersByTime(1600);
    expect(env.take().map((o) => [o.flags, o.seq - iss])).toEqual([[RST | ACK, 11]]);
    expect(sock.resetCalled).toBe(true);
    expect(table.counters.timeouts).toBe(1);
  });
});

describe('active open (inbound forward, tap mode)', () => {
  it('sends SYN, retransmits it, relays after the SYN-ACK', () => {
    useFakeTimers();
    const { env, table } = make();
    const sock = new FakeSocket();
    sock.connecting = false;
    const flow = table.openToGuest(4, GUEST, 80, REMOTE, 50000, sock as unknown as net.Socket)!;
    const [syn] = env.take();
    expect([syn.flags, syn.guestPort, syn.remotePort]).toEqual([SYN, 80, 50000]);
    expect(syn.synOpts).toEqual({ mss: 1460, wscale: windowShiftFor(4 << 20) });
    expect(sock.isPaused()).toBe(true);
    vi.advanceTimersByTime(200);
    expect(env.take().map((o) => [o.flags, o.seq])).toEqual([[SYN, syn.seq]]);
    sock.emit('data', Buffer.from('GET /'));
    expect(env.out).toEqual([]);
    table.input(4, GUEST, REMOTE, seg({ sport: 80, dport: 50000, seq: 7000, ack: u32(syn.seq + 1), flags: SYN | ACK, window: 29200, mss: 1400, wscale: 7 }));
    expect(flow.stateName).toBe('ESTABLISHED');
    expect(flow.sndWnd).toBe(29200);
    expect(env.take().map((o) => [o.flags, o.seq - syn.seq, o.ack, o.data.toString()])).toEqual([
      [ACK, 1, 7001, ''],
      [ACK | PSH, 1, 7001, 'GET /'],
    ]);
    expect(sock.isPaused()).toBe(false);
    table.input(4, GUEST, REMOTE, seg({ sport: 80, dport: 50000, seq: 7001, ack: u32(syn.seq + 6), flags: ACK | PSH, window: 229, data: Buffer.from('200') }));
    table.flushAcks();
    expect(sock.bytes.toString()).toBe('200');
    expect(flow.sndWnd).toBe(229 << 7);
  });

  it('guest RST to our SYN destroys the host socket', () => {
    const { env, table } = make();
    const sock = new FakeSocket();
    sock.connecting = false; // accepted sockets are connected
    table.openToGuest(4, GUEST, 80, REMOTE, 50000, sock as unknown as net.Socket);
    const [syn] = env.take();
    table.input(4, GUEST, REMOTE, seg({ sport: 80, dport: 50000, seq: 0, ack: u32(syn.seq + 1), flags: RST | ACK }));
    expect(sock.resetCalled).toBe(true);
    expect(table.active).toBe(0);
  });
});

describe('table', () => {
  it('bounds the number of flows', () => {
    const { env, table } = make({ maxFlows: 2 });
    env.connectImpl = () => new FakeSocket() as unknown as net.Socket;
    table.input(4, GUEST, REMOTE, seg({ sport: 1, seq: ISN, flags: SYN }));
    table.input(4, GUEST, REMOTE, seg({ sport: 2, seq: ISN, flags: SYN }));
    table.input(4, GUEST, REMOTE, seg({ sport: 3, seq: ISN, flags: SYN }));
    expect(env.connects).toHaveLength(2);
    expect(env.take().map((o) => [o.flags, o.seq, o.ack, o.guestPort])).toEqual([[RST | ACK, 0, ISN + 1, 3]]);
    expect(table.counters.rejectedFull).toBe(1);
    expect(table.stats().active).toBe(2);
  });

  it('answers segments for unknown flows per RFC 9293', () => {
    const { env, table } = make();
    table.input(4, GUEST, REMOTE, seg({ seq: 5, ack: 777, flags: ACK, data: bytes(10) }));
    table.input(4, GUEST, REMOTE, seg({ seq: 5, flags: FIN, data: bytes(10) }));
    table.input(4, GUEST, REMOTE, seg({ seq: 5, ack: 777, flags: RST | ACK }));
    expect(env.take().map((o) => [o.flags, o.seq, o.ack])).toEqual([[RST, 777, 0], [RST | ACK, 0, 16]]);
    expect(table.active).toBe(0);
  });

  it('keeps IPv4 and IPv6 flows apart', () => {
    const { env, table } = make();
    env.connectImpl = () => new FakeSocket() as unknown as net.Socket;
    table.input(4, GUEST, REMOTE, seg({ seq: ISN, flags: SYN }));
    table.input(6, 'fd00::100', 'fd00::2', seg({ seq: ISN, flags: SYN }));
    expect(env.connects).toHaveLength(2);
    expect(table.lookup(4, GUEST, GPORT, REMOTE, RPORT)!.family).toBe(4);
    expect(table.lookup(6, 'fd00::100', GPORT, 'fd00::2', RPORT)!.family).toBe(6);
    table.closeAll();
    expect(table.active).toBe(0);
  });
});

describe('SendQueue', () => {
  it('locates positions across chunks and drops acknowledged bytes', () => {
    const q = new SendQueue();
    q.push(Buffer.from('abc'));
    q.push(Buffer.from('defg'));
    q.push(Buffer.from('hi'));
    q.locate(4);
    expect(q.locBuf.toString('latin1', q.locOff, q.locOff + q.locLen)).toBe('efg');
    q.drop(2);
    q.locate(0);
    expect(q.locBuf.toString('latin1', q.locOff, q.locOff + q.locLen)).toBe('c');
    q.locate(5);
    expect(q.locBuf.toString('latin1', q.locOff, q.locOff + q.locLen)).toBe('hi');
    q.locate(1);
    expect(q.locBuf.toString('latin1', q.locOff, q.locOff + q.locLen)).toBe('defg');
    q.drop(5);
    expect(q.bytes).toBe(2);
    q.locate(1);
    expect(q.locBuf.toString('latin1', q.locOff, q.locOff + q.locLen)).toBe('i');
  });

  it('hands back each chunk once it is wholly acknowledged, never a partly acknowledged one', () => {
    const q = new SendQueue();
    const back: string[] = [];
    q.recycle = (b) => back.push(b.toString('latin1'));
    for (const c of ['abc', 'defg', 'hi', 'jk']) q.push(Buffer.from(c));
    q.drop(2);
    expect(back).toEqual([]);
    q.drop(1);
    expect(back).toEqual(['abc']);
    q.drop(5); // defg and h
    expect(back).toEqual(['abc', 'defg']);
    q.drop(3); // i and jk: the queue is empty
    expect(back).toEqual(['abc', 'defg', 'hi', 'jk']);
    expect(q.bytes).toBe(0);
  });
});

describe('express lane hand-over (the JS side of native/express.c)', () => {
  /** An env whose lane is an Int32Array the test moves by hand, as the native lane would. */
  function withLane(): { env: FakeEnv; table: TcpFlowTable; lane: { st: Int32Array | null; sent: Buffer; detached: number } } {
    const { env, table } = make();
    const lane = { st: null as Int32Array | null, sent: Buffer.alloc(0), detached: 0 };
    (env as TcpFlowEnv).express = () => {
      lane.st = new Int32Array(EXPRESS_STATE_LEN);
      return { state: lane.st, unacked: () => Buffer.from(lane.sent), detach: () => lane.detached++ };
    };
    return { env, table, lane };
  }

  /** Two request/response exchanges through JS: the flow goes on the lane at the second. */
  async function twoExchanges(env: FakeEnv, table: TcpFlowTable, sock: FakeSocket, iss: number): Promise<void> {
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 1, ack: u32(iss + 1), flags: ACK | PSH, data: Buffer.from('a') }));
    table.flushAcks();
    sock.push(Buffer.from('A'));
    await ticks();
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 2, ack: u32(iss + 2), flags: ACK | PSH, data: Buffer.from('b') }));
    table.flushAcks();
  }

  it('publishes an idle flow after its second request and takes back what the lane owes', async () => {
    useFakeTimers();
    const { env, table, lane } = withLane();
    const { flow, sock, iss } = open(env, table);
    await twoExchanges(env, table, sock, iss);
    await ticks();
    expect(env.take().map((o) => [o.flags, o.data.toString()])).toEqual([[ACK | PSH, 'A']]);
    const st = lane.st!;
    expect(st[X_FLAGS]).toBe(XF_RX | XF_TX);
    expect(st[X_RCV_NXT]).toBe(ISN + 3);
    expect(st[X_SND_NXT] >>> 0).toBe(u32(iss + 2));
    expect(st[X_OWED]).toBe(2); // JS owes the ACK of 'b' (its deadline covers it); the lane's reply may carry it
    expect(st[X_ACK_DELAY]).toBe(table.config.pushAckDelayMs);

    // The lane sends reply 'B' (with the ACK), then takes request 'c' and writes it to the host.
    lane.sent = Buffer.from('B');
    st[X_SND_NXT] = u32(iss + 3);
    st[X_INFLIGHT] = 1;
    st[X_TXLEN] = 1;
    st[X_OWED] = 0;
    st[X_RCV_NXT] = ISN + 4;
    st[X_OWED] = 1;
    st[X_EVENTS] = XE_TX | XE_RX;
    st[X_TX_SEGS] = 1;
    st[X_RX_SEGS] = 1;
    // JS's own delayed ACK for 'b' fires: the lane's reply carried it; the lane goes on.
    vi.advanceTimersByTime(table.config.pushAckDelayMs);
    expect(env.take()).toEqual([]);
    expect(st[X_FLAGS]).toBe(XF_RX | XF_TX);

    // The guest's FIN: JS takes the flow back (RCV.NXT and SND.NXT from the lane, 'B' into its
    // send queue to retransmit) and acknowledges the FIN at once, after 'c'.
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 4, ack: u32(iss + 2), flags: ACK | FIN }));
    expect(st[X_FLAGS]).toBe(0);
    expect(flow.rcvNxt).toBe(ISN + 5);
    expect(flow.sndNxt).toBe(u32(iss + 3));
    expect(flow.queue.bytes).toBe(1); // 'B' is JS's to retransmit now
    expect(table.counters.expressOut).toBe(1);
    expect(table.counters.expressIn).toBe(1);
    table.flushAcks();
    expect(env.take().map((o) => [o.flags, o.seq >>> 0, o.ack])).toEqual([[ACK, u32(iss + 3), ISN + 5]]);
    expect(st[X_FLAGS]).toBe(0); // the guest's FIN: not for the lane any more
    // 'B' was never acknowledged: the RTO resends it from SND.UNA.
    vi.advanceTimersByTime(250);
    const rtx = env.take().filter((o) => o.data.length > 0);
    expect(rtx.map((o) => [o.seq >>> 0, o.data.toString()])).toEqual([[u32(iss + 2), 'B']]);
    expect(Buffer.concat(sock.written).toString()).toBe('ab'); // 'c' went to the host natively
    flow.abort(false, false);
    expect(lane.detached).toBe(1);
  });

  /**
   * Two exchanges and a third answered by JS put the flow on the lane; the lane takes request 'c'
   * and no reply comes within the push-ACK delay: JS sends the ACK alone. Returns the lane state.
   */
  async function laneRequestAnsweredLate(env: FakeEnv, table: TcpFlowTable, sock: FakeSocket, iss: number, lane: { st: Int32Array | null }): Promise<Int32Array> {
    await twoExchanges(env, table, sock, iss);
    await ticks();
    sock.push(Buffer.from('B')); // JS answers 'b': taken back from the lane, 'B' in flight
    await ticks();
    const st = lane.st!;
    expect(st[X_FLAGS]).toBe(0);
    // the guest acknowledges 'B' (through JS): idle again, published again
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 3, ack: u32(iss + 3), flags: ACK }));
    table.flushAcks();
    expect(env.take().map((o) => o.data.toString())).toEqual(['A', 'B']); // 'B' carried the ACK of 'b'
    expect(st[X_FLAGS]).toBe(XF_RX | XF_TX);
    expect(st[X_SND_UNA] >>> 0).toBe(u32(iss + 3));
    // The lane takes request 'c'; no reply comes in time.
    st[X_RCV_NXT] = ISN + 4;
    st[X_OWED] = 1;
    st[X_EVENTS] = XE_RX;
    st[X_DUE] = 1;
    table.expressTimer();
    expect(env.take().map((o) => [o.flags, o.ack])).toEqual([[ACK, ISN + 4]]);
    expect(st[X_OWED]).toBe(0);
    // Not published until the next event says why the reply was late (JS sees the order).
    expect(st[X_FLAGS]).toBe(0);
    return st;
  }

  it('sends the ACK of a request the lane held past the delay, and asks the lane for the quick delay after', async () => {
    useFakeTimers();
    const { env, table, lane } = withLane();
    const { sock, iss } = open(env, table);
    const st = await laneRequestAnsweredLate(env, table, sock, iss, lane);
    // More from the guest (a Nagle sender's held-back rest): published again with the quick delay.
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 4, ack: u32(iss + 3), flags: ACK | PSH, data: Buffer.from('d') }));
    table.flushAcks();
    expect(Buffer.concat(sock.written).toString()).toBe('abd'); // ('c' went to the host natively)
    expect(st[X_FLAGS]).toBe(XF_RX | XF_TX);
    expect(st[X_ACK_DELAY]).toBe(table.config.pushAckQuickMs);
  });

  it('after a late reply to a request the lane held, publishes the flow again with the 5 ms delay', async () => {
    useFakeTimers();
    const { env, table, lane } = withLane();
    const { sock, iss } = open(env, table);
    const st = await laneRequestAnsweredLate(env, table, sock, iss, lane);
    // The reply comes (through JS), then the guest's ACK of it: published, with the 5 ms delay.
    sock.push(Buffer.from('C'));
    await ticks();
    expect(env.take().map((o) => o.data.toString())).toEqual(['C']);
    table.input(4, GUEST, REMOTE, seg({ seq: ISN + 4, ack: u32(iss + 4), flags: ACK }));
    table.flushAcks();
    expect(st[X_FLAGS]).toBe(XF_RX | XF_TX);
    expect(st[X_ACK_DELAY]).toBe(table.config.pushAckDelayMs);
  });
});
