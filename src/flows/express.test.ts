// The express lane (native/express.c) on its own: a Tap over a SEQPACKET socketpair standing in for
// the tap fd (12-byte vnet header), a native HostSocket connected to a local server, and frames
// written and read on the socketpair's other end as the guest kernel would.
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentChannel, csum, socketpair, Tap } from '../native.js';
import { FrameSink } from '../link/sink.js';
import { HostSocket } from './hostSocket.js';
import {
  type ExpressBinding, X_ACK_DELAY, X_ADV_EDGE, X_DUE, X_EVENTS, X_FLAGS, X_INFLIGHT, X_LIMIT, X_OWED, X_RCV_MSS,
  X_RCV_NXT, X_SND_MSS, X_SND_NXT, X_SND_UNA, X_SND_WND, X_WL1, XE_RX, XF_RX, XF_TX,
} from './express.js';

const GUEST_MAC = Uint8Array.from([0x02, 0, 0, 0, 0, 0x64]);
const OUR_MAC = Uint8Array.from([0x52, 0x55, 0x0a, 0, 2, 2]);
const GUEST = 0x0a000264; // 10.0.2.100
const REMOTE = 0x0a000202; // 10.0.2.2
const GUEST6 = Buffer.from('fd000000000000000000000000000100', 'hex'); // fd00::100
const REMOTE6 = Buffer.from('20010db8000000000000000000000009', 'hex'); // 2001:db8::9
const GPORT = 40000;
const RPORT = 8080;
const ACK = 0x10;
const PSH = 0x08;
const FIN = 0x01;

const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
async function until(pred: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('timed out');
    await wait(2);
  }
}

/** A guest frame: vnet header (checksum partial, as the guest kernel sends TCP), Ethernet, IPv4, TCP. */
function guestFrame(seq: number, ack: number, flags: number, payload: string, window = 1000): Buffer {
  const p = Buffer.from(payload);
  const f = Buffer.alloc(12 + 54 + p.length);
  f[0] = 1; // VIRTIO_NET_HDR_F_NEEDS_CSUM
  const e = f.subarray(12);
  e.set(OUR_MAC, 0);
  e.set(GUEST_MAC, 6);
  e.writeUInt16BE(0x0800, 12);
  const ip = e.subarray(14);
  ip[0] = 0x45;
  ip.writeUInt16BE(40 + p.length, 2);
  ip.writeUInt16BE(0x4000, 6);
  ip[8] = 64;
  ip[9] = 6;
  ip.writeUInt32BE(GUEST, 12);
  ip.writeUInt32BE(REMOTE, 16);
  ip.writeUInt16BE(~csum(ip, 0, 20, 0) & 0xffff, 10);
  writeTcp(ip.subarray(20), seq, ack, flags, window, p);
  return f;
}

/** A guest segment's TCP header (no options) and payload at `tcp`; the checksum is the guest kernel's to finish. */
function writeTcp(tcp: Buffer, seq: number, ack: number, flags: number, window: number, p: Buffer): void {
  tcp.writeUInt16BE(GPORT, 0);
  tcp.writeUInt16BE(RPORT, 2);
  tcp.writeUInt32BE(seq >>> 0, 4);
  tcp.writeUInt32BE(ack >>> 0, 8);
  tcp[12] = 0x50;
  tcp[13] = flags;
  tcp.writeUInt16BE(window, 14);
  p.copy(tcp, 20);
}

/** The same over IPv6 (TCP right after the 40-byte header). */
function guestFrame6(seq: number, ack: number, flags: number, payload: string): Buffer {
  const p = Buffer.from(payload);
  const f = Buffer.alloc(12 + 74 + p.length);
  f[0] = 1;
  const e = f.subarray(12);
  e.set(OUR_MAC, 0);
  e.set(GUEST_MAC, 6);
  e.writeUInt16BE(0x86dd, 12);
  const ip = e.subarray(14);
  ip.writeUInt32BE(0x60000000, 0);
  ip.writeUInt16BE(20 + p.length, 4);
  ip[6] = 6;
  ip[7] = 64;
  GUEST6.copy(ip, 8);
  REMOTE6.copy(ip, 24);
  writeTcp(ip.subarray(40), seq, ack, flags, 1000, p);
  return f;
}

interface Rig {
  tap: Tap;
  peer: AgentChannel;
  sock: HostSocket;
  server: net.Socket;
  fromHost: Buffer[];
  /** Frames the lane left to JS (the Tap's onFrames). */
  toJs: Buffer[];
  /** Frames written to the "guest". */
  toGuest: Buffer[];
  timerCalls: number;
  xb: ExpressBinding;
  st: Int32Array;
  close(): void;
}

let rig: Rig | null = null;
afterEach(() => {
  rig?.close();
  rig = null;
});

async function makeRig(family: 4 | 6 = 4): Promise<Rig> {
  let server!: net.Socket;
  const fromHost: Buffer[] = [];
  const srv = net.createServer();
  const accepted = new Promise<void>((r) => {
    srv.once('connection', (c) => {
      server = c;
      c.on('data', (b) => fromHost.push(b));
      r();
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const sock = new HostSocket(4, '127.0.0.1', (srv.address() as net.AddressInfo).port, null);
  await new Promise<void>((r) => sock.on('connect', r));
  await accepted;
  const [dev, peerFd] = socketpair();
  const toJs: Buffer[] = [];
  const toGuest: Buffer[] = [];
  const tap: Tap = new Tap(dev, 2048, 4, (n) => {
    for (let i = 0; i < n; i++) toJs.push(Buffer.from(tap.ring.subarray(i * 2048, i * 2048 + tap.lengths[i]!)));
  }, 12);
  const peer = new AgentChannel(peerFd, (m) => toGuest.push(Buffer.from(m)), () => {});
  const r: Partial<Rig> = { tap, peer, sock, server, fromHost, toJs, toGuest, timerCalls: 0 };
  tap.expressStart(() => r.timerCalls!++, 5);
  const sink = new FrameSink({ write: () => true, writev: () => true }, OUR_MAC, () => GUEST_MAC, () => GUEST_MAC);
  const hdr = new Uint8Array(family === 4 ? 54 : 74);
  if (family === 4) expect(sink.tcp4Template(hdr, REMOTE, GUEST, RPORT, GPORT)).toBe(true);
  else expect(sink.tcp6Template(hdr, REMOTE6, GUEST6, RPORT, GPORT)).toBe(true);
  const xb = sock.express(tap, hdr)!;
  expect(xb).not.toBeNull();
  const st = xb.state;
  st[X_RCV_NXT] = 1000;
  st[X_SND_UNA] = st[X_SND_NXT] = 0xfffffff0 | 0; // the guest's ACKs wrap past 2^32
  st[X_SND_WND] = 65535;
  st[X_WL1] = 999;
  st[X_ADV_EDGE] = 1000 + 65535;
  st[X_LIMIT] = 1 << 20;
  st[X_RCV_MSS] = 1460;
  st[X_SND_MSS] = 1460;
  st[X_ACK_DELAY] = 5;
  st[X_FLAGS] = XF_RX | XF_TX;
  return Object.assign(r, {
    xb,
    st,
    close: () => {
      sock.destroy();
      server.destroy();
      srv.close();
      tap.close();
      peer.close();
    },
  }) as Rig;
}

describe('express lane (native/express.c)', () => {
  it('takes a lone request at RCV.NXT to the host socket and sends the reply as one checksum-offloaded frame', async () => {
    const r = (rig = await makeRig());
    const st = r.st;
    r.peer.send(guestFrame(1000, 0xfffffff0, ACK | PSH, 'hello'));
    await until(() => r.fromHost.length > 0);
    expect(Buffer.concat(r.fromHost).toString()).toBe('hello');
    expect(r.toJs).toEqual([]);
    expect(st[X_RCV_NXT]).toBe(1005);
    expect(st[X_OWED]).toBe(1);
    expect(st[X_EVENTS] & XE_RX).toBe(XE_RX);

    r.server.write('world!');
    await until(() => r.toGuest.length > 0);
    const f = r.toGuest[0]!;
    // vnet header: NEEDS_CSUM, no GSO, csum_start 34, csum_offset 16 (little-endian)
    expect(f[0]).toBe(1);
    expect(f[1]).toBe(0);
    expect(f.readUInt16LE(6)).toBe(34);
    expect(f.readUInt16LE(8)).toBe(16);
    const e = f.subarray(12);
    expect(Buffer.from(e.subarray(0, 6))).toEqual(Buffer.from(GUEST_MAC));
    expect(Buffer.from(e.subarray(6, 12))).toEqual(Buffer.from(OUR_MAC));
    const ip = e.subarray(14);
    expect(ip.readUInt16BE(2)).toBe(46);
    expect(csum(ip, 0, 20, 0)).toBe(0xffff); // header checksum valid
    expect(ip.readUInt32BE(12)).toBe(REMOTE);
    expect(ip.readUInt32BE(16)).toBe(GUEST);
    const tcp = ip.subarray(20);
    expect([tcp.readUInt16BE(0), tcp.readUInt16BE(2)]).toEqual([RPORT, GPORT]);
    expect(tcp.readUInt32BE(4)).toBe(0xfffffff0);
    expect(tcp.readUInt32BE(8)).toBe(1005); // carries the request's ACK
    expect(tcp[13]).toBe(ACK | PSH);
    expect(tcp.readUInt16BE(14)).toBe(0xffff);
    // the field holds the pseudo-header sum; adding the segment's own sum completes it
    const pseudo = ((REMOTE >>> 16) + (REMOTE & 0xffff) + (GUEST >>> 16) + (GUEST & 0xffff) + 6 + 26) % 0xffff;
    expect(tcp.readUInt16BE(16)).toBe(pseudo);
    expect(tcp.subarray(20).toString()).toBe('world!');
    expect(st[X_OWED]).toBe(0);
    expect(st[X_INFLIGHT]).toBe(6);
    expect(st[X_SND_NXT] >>> 0).toBe((0xfffffff0 + 6) >>> 0);
    expect(r.xb.unacked().toString()).toBe('world!');

    // The guest's ACK (past 2^32) of the reply, then a second exchange.
    r.peer.send(guestFrame(1005, 0xfffffff6, ACK | PSH, 'again'));
    await until(() => Buffer.concat(r.fromHost).length === 10);
    expect(st[X_INFLIGHT]).toBe(0);
    expect(st[X_SND_UNA] >>> 0).toBe(0xfffffff6);
    expect(r.xb.unacked().length).toBe(0);
    const ts = r.tap.stats();
    expect(ts.expressRx).toBe(2);
    expect(ts.expressTx).toBe(1);
    expect(ts.expressFlows).toBe(1);
    expect(ts.txFrames).toBe(1); // the lane's frame is counted with the tap's own
    expect(r.toJs).toEqual([]);
  });

  it('does the same over IPv6: a request to the host, the reply as one IPv6 frame', async () => {
    const r = (rig = await makeRig(6));
    const st = r.st;
    // an IPv4 frame with the same ports is not this flow's
    r.peer.send(guestFrame(1000, 0xfffffff0, ACK | PSH, 'v4'));
    await until(() => r.toJs.length === 1);
    expect(st[X_FLAGS]).toBe(XF_RX | XF_TX);
    r.peer.send(guestFrame6(1000, 0xfffffff0, ACK | PSH, 'hello6'));
    await until(() => r.fromHost.length > 0);
    expect(Buffer.concat(r.fromHost).toString()).toBe('hello6');
    expect(st[X_RCV_NXT]).toBe(1006);
    r.server.write('reply6');
    await until(() => r.toGuest.length > 0);
    const f = r.toGuest[0]!;
    expect(f.readUInt16LE(6)).toBe(54); // csum_start: the TCP header after 14 + 40 bytes
    expect(f.readUInt16LE(8)).toBe(16);
    const e = f.subarray(12);
    expect(e.readUInt16BE(12)).toBe(0x86dd);
    const ip = e.subarray(14);
    expect(ip.readUInt16BE(4)).toBe(26);
    expect(ip[6]).toBe(6);
    expect(Buffer.from(ip.subarray(8, 24))).toEqual(REMOTE6);
    expect(Buffer.from(ip.subarray(24, 40))).toEqual(GUEST6);
    const tcp = ip.subarray(40);
    expect(tcp.readUInt32BE(8)).toBe(1006);
    let ps = 6 + 26;
    for (let i = 0; i < 32; i += 2) ps += ip.readUInt16BE(8 + i);
    while (ps > 0xffff) ps = (ps & 0xffff) + (ps >>> 16);
    expect(tcp.readUInt16BE(16)).toBe(ps);
    expect(tcp.subarray(20).toString()).toBe('reply6');
    expect(r.xb.unacked().toString()).toBe('reply6');
  });

  it('hands JS a segment it does not take (out of order, FIN, bad IP checksum) and stops for that flow', async () => {
    const r = (rig = await makeRig());
    const st = r.st;
    const ooo = guestFrame(1500, 0xfffffff0, ACK | PSH, 'later');
    r.peer.send(ooo);
    await until(() => r.toJs.length === 1);
    expect(r.toJs[0]).toEqual(ooo.subarray(12));
    expect(st[X_FLAGS]).toBe(0);
    expect(st[X_RCV_NXT]).toBe(1000);
    expect(r.tap.stats().expressHanded).toBe(1);
    // stopped: even an in-order request now goes to JS, until JS publishes again
    r.peer.send(guestFrame(1000, 0xfffffff0, ACK | PSH, 'x'));
    await until(() => r.toJs.length === 2);
    st[X_FLAGS] = XF_RX | XF_TX;
    r.peer.send(guestFrame(1000, 0xfffffff0, ACK | PSH | FIN, 'bye'));
    await until(() => r.toJs.length === 3);
    st[X_FLAGS] = XF_RX | XF_TX;
    const bad = guestFrame(1000, 0xfffffff0, ACK | PSH, 'bad');
    bad[12 + 14 + 10] ^= 0xff;
    r.peer.send(bad);
    await until(() => r.toJs.length === 4);
    st[X_FLAGS] = XF_RX | XF_TX;
    // an ACK beyond what was sent is JS's to answer
    r.peer.send(guestFrame(1000, 0x10, ACK, ''));
    await until(() => r.toJs.length === 5);
    expect(r.fromHost).toEqual([]);
    expect(r.tap.stats().expressRx ?? 0).toBe(0);
  });

  it('calls the timer once a request has waited the ACK delay with no reply', async () => {
    const r = (rig = await makeRig());
    r.peer.send(guestFrame(1000, 0xfffffff0, ACK | PSH, 'slow'));
    await until(() => r.fromHost.length > 0);
    expect(r.timerCalls).toBe(0);
    expect(r.st[X_DUE]).toBe(0);
    await until(() => r.timerCalls > 0, 500);
    expect(r.st[X_DUE]).toBe(1);
    expect(r.st[X_OWED]).toBe(1);
  });

  it('forgets the flow when its host socket closes: its frames go to JS', async () => {
    const r = (rig = await makeRig());
    r.sock.destroy();
    expect(r.tap.stats().expressFlows).toBe(0);
    expect(r.st[X_FLAGS]).toBe(0);
    r.st[X_FLAGS] = XF_RX | XF_TX;
    r.peer.send(guestFrame(1000, 0xfffffff0, ACK | PSH, 'late'));
    await until(() => r.toJs.length === 1);
    r.xb.detach(); // after close: harmless
  });
});
