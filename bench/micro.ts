// Micro-benchmarks of the per-frame hot functions (tinybench). Not part of `npm test`.
//
//   npm run bench                 all
//   npm run bench -- csum         only tasks whose name contains "csum"
//
// Everything is in-process: no sockets are opened (frames that reach the stack go to a TCP flow
// that does not exist, so the stack answers RST; the TcpFlow task uses a fake host socket).
import { EventEmitter } from 'node:events';
import { Bench } from 'tinybench';
import pino from 'pino';
import { csum } from '../src/native.js';
import { partialSum, pseudoSum4, setPartialSum, tsPartialSum } from '../src/wire/checksum.js';
import { EthernetFrame } from '../src/wire/ethernet.js';
import { Ipv4Packet, PROTO_TCP } from '../src/wire/ipv4.js';
import { ACK, TcpSegment, writeSynOptions, writeTcpHeader, SYN } from '../src/wire/tcp.js';
import { FrameSink } from '../src/link/sink.js';
import { Stack } from '../src/stack.js';
import { DEFAULT_GATEWAY_MAC, planIpv4, type StackConfig } from '../src/config.js';
import { TcpFlowTable, type TcpEndpoints, type TcpFlowEnv } from '../src/flows/tcp.js';
import { GUEST_MAC, tcpFrame } from '../src/testing/frames.js';

const filter = process.argv[2];
const GUEST = 0x0a000264; // 10.0.2.100
const GATEWAY = 0x0a000202; // 10.0.2.2 (host loopback side; never contacted here)

function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + (i >> 7)) & 0xff;
  return b;
}

const noopWriter = {
  write: (_f: Uint8Array): boolean => true,
  writev: (_p: Uint8Array[]): boolean => true,
};

const bench = new Bench({ time: 400, warmup: true, warmupTime: 100 });
const add = (name: string, fn: () => void): void => {
  if (!filter || name.includes(filter)) bench.add(name, fn);
};

// --- checksum ------------------------------------------------------------------------------
for (const size of [20, 60, 1500, 65536]) {
  const buf = pattern(size);
  let sink = 0;
  add(`csum native ${size} B`, () => {
    sink ^= csum(buf, 0, size, 0);
  });
  add(`csum TS tsPartialSum ${size} B`, () => {
    sink ^= tsPartialSum(buf, 0, size, 0);
  });
  void sink;
}

setPartialSum(csum); // as serve() does: everything below uses the native sum

// --- frame parse: the stack's classification of a guest TCP frame ----------------------------
for (const payload of [1460, 65480]) {
  const frame = tcpFrame(GUEST, GATEWAY, 40000, 9, 1000, 2000, ACK, 8192, pattern(payload));
  // tcpFrame addresses the frame to GW_MAC (the stack's default gateway MAC).
  const eth = new EthernetFrame();
  const ip = new Ipv4Packet();
  const seg = new TcpSegment();
  let ok = 0;
  add(`parse eth+ipv4(check)+tcp+csum verify, ${payload} B payload`, () => {
    eth.wrap(frame, 0, frame.length);
    ip.wrap(frame, eth.payloadOff, eth.payloadLen);
    if (ip.check()) throw new Error('bad ip');
    seg.wrap(frame, ip.payloadOff, ip.payloadLen);
    let s = pseudoSum4(ip.src, ip.dst, PROTO_TCP, ip.payloadLen);
    s = partialSum(frame, ip.payloadOff, ip.payloadLen, s);
    if (s === 0xffff) ok++;
  });
  const config: StackConfig = {
    ipv4: planIpv4('10.0.2.0/24'),
    ipv6: null,
    ipv4Enabled: true,
    mtu: 65520,
    guestMac: null,
    gatewayMac: DEFAULT_GATEWAY_MAC,
    disableHostLoopback: false,
    dnsUpstreams: [],
    disableDns: true,
  };
  const stack = new Stack({ config, writer: noopWriter, log: pino({ level: 'silent' }), pingFactory: null, dns: null });
  stack.input(frame, 0, frame.length); // learn the guest's MAC
  add(`Stack.input TCP ACK+data to unknown flow → RST, ${payload} B payload`, () => {
    stack.input(frame, 0, frame.length);
  });
}

// --- segment build toward the guest ---------------------------------------------------------
{
  const sink = new FrameSink(noopWriter, DEFAULT_GATEWAY_MAC, () => GUEST_MAC);
  for (const payload of [1460, 65480]) {
    const data = pattern(payload);
    add(`FrameSink.tcp4 (headers + checksum), ${payload} B payload`, () => {
      sink.tcp4(GATEWAY, GUEST, 9, 40000, 1, 2, ACK, 512, data, 0, payload);
    });
  }
}

// --- TcpFlow host → guest: one 64 KiB host read cut into segments and acknowledged ----------
class FakeSocket extends EventEmitter {
  connecting = true;
  destroyed = false;
  writable = true;
  writableLength = 0;
  allowHalfOpen = false;
  setNoDelay(): this { return this; }
  setKeepAlive(): this { return this; }
  cork(): void {}
  uncork(): void {}
  pause(): this { return this; }
  resume(): this { return this; }
  write(_b: Uint8Array, cb?: () => void): boolean { cb?.(); return true; }
  end(): this { return this; }
  destroy(): this { this.destroyed = true; return this; }
  resetAndDestroy(): this { this.destroyed = true; return this; }
}

function ackSeg(seq: number, ack: number, window: number, syn = false): TcpSegment {
  const buf = new Uint8Array(syn ? 28 : 20);
  writeTcpHeader(buf, 0, 40000, 9, seq, ack, syn ? SYN : ACK, window, syn ? 8 : 0);
  if (syn) writeSynOptions(buf, 20, 65495, 7);
  const v = new TcpSegment();
  v.wrap(buf, 0, buf.length);
  return v;
}

for (const mtu of [1500, 65520]) {
  const sink = new FrameSink(noopWriter, DEFAULT_GATEWAY_MAC, () => GUEST_MAC);
  let sndNxt = 0;
  let segs = 0;
  const sock = new FakeSocket();
  const env: TcpFlowEnv = {
    emit(f: TcpEndpoints, flags, seq, ack, window, payload, off, len, synOpts) {
      if (len > 0) {
        sndNxt = (seq + len) >>> 0;
        segs++;
      } else if (flags & SYN) sndNxt = (seq + 1) >>> 0;
      sink.tcp4(f.remoteAddr as number, f.guestAddr as number, f.remotePort, f.guestPort, seq, ack, flags, window, payload, off, len, synOpts);
    },
    connect: () => sock as unknown as import('node:net').Socket,
    unreachable: () => {},
    closed: () => {},
    log: { debug() {}, info() {}, warn() {}, error() {} },
  };
  const table = new TcpFlowTable(env, { mtu });
  const guestIsn = 1000;
  table.input(4, GUEST, GATEWAY, ackSeg(guestIsn, 0, 65535, true));
  sock.connecting = false;
  sock.emit('connect');
  table.input(4, GUEST, GATEWAY, ackSeg(guestIsn + 1, sndNxt, 65535));
  table.flushAcks();
  const chunk = pattern(65536);
  add(`TcpFlow host→guest 64 KiB read → segments (MTU ${mtu}) + guest ACK`, () => {
    sock.emit('data', chunk);
    table.input(4, GUEST, GATEWAY, ackSeg(guestIsn + 1, sndNxt, 65535));
    table.flushAcks();
  });
  process.on('exit', () => {
    if (segs === 0) console.error(`warning: TcpFlow MTU ${mtu} task emitted no data segments (flow not established?)`);
  });
}

await bench.run();

const rows = bench.tasks.map((t) => {
  const r = t.result as { state?: string; latency?: { mean: number; rme?: number }; throughput?: { mean: number }; error?: unknown } | undefined;
  if (!r || r.state === 'errored' || !r.latency) return { task: t.name, 'ops/s': 'error', 'ns/op': String(r?.error ?? '').slice(0, 60), '±%': '' };
  const ns = r.latency.mean * 1e6;
  return {
    task: t.name,
    'ops/s': Math.round(1e9 / ns).toLocaleString('en-US'),
    'ns/op': ns < 100 ? ns.toFixed(1) : Math.round(ns).toLocaleString('en-US'),
    '±%': r.latency.rme !== undefined ? r.latency.rme.toFixed(1) : '',
  };
});
const w = ['task', 'ops/s', 'ns/op', '±%'].map((k) => Math.max(k.length, ...rows.map((r) => String(r[k as keyof typeof r]).length)));
const line = (c: string[]): string => c.map((x, i) => (i === 0 ? x.padEnd(w[i]!) : x.padStart(w[i]!))).join('  ');
console.log(`node ${process.version}; each task ~0.4 s; numbers swing on a shared machine`);
console.log(line(['task', 'ops/s', 'ns/op', '±%']));
for (const r of rows) console.log(line([r.task, r['ops/s'], r['ns/op'], r['±%']]));
process.exit(0);
