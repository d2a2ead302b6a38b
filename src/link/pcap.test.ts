import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PCAP_SNAPLEN, PcapWriter } from './pcap.js';
import type { FrameWriter } from './sink.js';
import { arpRequestFrame, icmpEchoFrame } from '../testing/frames.js';
import { parseIpv4 } from '../wire/ipv4.js';

const GUEST = parseIpv4('10.0.2.100');
const GW = parseIpv4('10.0.2.2');

let dir = '';
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = '';
});
function tmpFile(): string {
  dir = mkdtempSync(join(tmpdir(), 'slipway-pcap-'));
  return join(dir, 'cap.pcap');
}

interface Rec { sec: number; usec: number; incl: number; orig: number; data: Buffer }

function readPcap(path: string): { snaplen: number; linktype: number; records: Rec[] } {
  const b = readFileSync(path);
  expect(b.readUInt32LE(0)).toBe(0xa1b2c3d4);
  expect([b.readUInt16LE(4), b.readUInt16LE(6)]).toEqual([2, 4]);
  const records: Rec[] = [];
  let o = 24;
  while (o < b.length) {
    const incl = b.readUInt32LE(o + 8);
    records.push({ sec: b.readUInt32LE(o), usec: b.readUInt32LE(o + 4), incl, orig: b.readUInt32LE(o + 12), data: b.subarray(o + 16, o + 16 + incl) });
    o += 16 + incl;
  }
  expect(o).toBe(b.length);
  return { snaplen: b.readUInt32LE(16), linktype: b.readUInt32LE(20), records };
}

function hasTcpdump(): boolean {
  try {
    execFileSync('tcpdump', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('PcapWriter', () => {
  it('writes a libpcap file (Ethernet, snaplen 65535) with every frame, timestamps in microseconds', () => {
    const path = tmpFile();
    const w = PcapWriter.open(path);
    const arp = arpRequestFrame(GUEST, GW);
    const ping = icmpEchoFrame(GUEST, GW, 7, 1, new Uint8Array(32).fill(0x61));
    const before = Date.now();
    w.frame(arp, 0, arp.length);
    w.frameParts([ping.subarray(0, 14), ping.subarray(14)]);
    w.close();
    const f = readPcap(path);
    expect([f.snaplen, f.linktype]).toEqual([PCAP_SNAPLEN, 1]);
    expect(f.records.map((r) => [r.incl, r.orig])).toEqual([[arp.length, arp.length], [ping.length, ping.length]]);
    expect(Buffer.compare(f.records[0].data, Buffer.from(arp))).toBe(0);
    expect(Buffer.compare(f.records[1].data, Buffer.from(ping))).toBe(0);
    const ms = f.records[0].sec * 1000 + f.records[0].usec / 1000;
    expect(f.records[0].usec).toBeLessThan(1e6);
    expect(Math.abs(ms - before)).toBeLessThan(5000);
    expect(w.stats()).toMatchObject({ frames: 2, dropped: 0, truncated: 0, bytesWritten: 24 + 32 + arp.length + ping.length });
  });

  it('cuts frames longer than the snaplen and records their real length', () => {
    const path = tmpFile();
    const w = PcapWriter.open(path);
    const big = new Uint8Array(70000).fill(1);
    w.frameParts([big.subarray(0, 54), big.subarray(54)]);
    w.frame(big, 0, 100);
    w.close();
    const f = readPcap(path);
    expect(f.records.map((r) => [r.incl, r.orig])).toEqual([[PCAP_SNAPLEN, 70000], [100, 100]]);
    expect(w.truncated).toBe(1);
  });

  it('bounds what waits in memory: beyond it whole frames are left out and counted, and the file stays valid', async () => {
    const path = tmpFile();
    // Two chunks of room at most; the loop below never yields, so no async write can finish.
    const w = PcapWriter.open(path, { chunkBytes: 70_000, maxBufferedBytes: 140_000 });
    const frame = new Uint8Array(9000).fill(2);
    for (let i = 0; i < 100; i++) w.frame(frame, 0, frame.length);
    expect(w.dropped).toBeGreaterThan(0);
    expect(w.frames + w.dropped).toBe(100);
    expect(w.frames).toBeLessThanOrEqual(Math.floor(140_000 / 9016));
    // Once the writes finish, there is room again.
    await new Promise((r) => setTimeout(r, 300));
    w.frame(frame, 0, frame.length);
    const kept = w.frames;
    w.close();
    expect(readPcap(path).records.length).toBe(kept);
  });

  it('writes in the background (a partly filled chunk after flushMs), in order', async () => {
    const path = tmpFile();
    const w = PcapWriter.open(path, { flushMs: 10 });
    for (let i = 0; i < 5; i++) w.frame(new Uint8Array([i, i, i]), 0, 3);
    await new Promise((r) => setTimeout(r, 100));
    expect(readPcap(path).records.map((r) => r.data[0])).toEqual([0, 1, 2, 3, 4]);
    w.frame(new Uint8Array([5]), 0, 1);
    w.close();
    w.frame(new Uint8Array([6]), 0, 1); // after close: ignored
    expect(readPcap(path).records.map((r) => r.data[0])).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('wraps a writer (recording what the tap took, keeping offload or its absence) and a receiver', () => {
    const path = tmpFile();
    const w = PcapWriter.open(path);
    const taken: number[] = [];
    let accept = true;
    const plain: FrameWriter = { write: (f) => (taken.push(f.length), accept), writev: (p) => (taken.push(p.length), accept) };
    const wrapped = w.wrapWriter(plain);
    expect(wrapped.writevOffload).toBeUndefined();
    const off = w.wrapWriter({ ...plain, writevOffload: () => true });
    expect(typeof off.writevOffload).toBe('function');
    expect(wrapped.write(new Uint8Array(60))).toBe(true);
    accept = false;
    expect(wrapped.writev([new Uint8Array(14), new Uint8Array(50)])).toBe(false); // not taken: not recorded
    expect(off.writevOffload!([new Uint8Array(14), new Uint8Array(40)], 1, 1460, 34, 16, 54)).toBe(true);

    const ring = new Uint8Array(3 * 100);
    ring.fill(9, 100, 200);
    const lengths = new Int32Array([10, 20, 30]);
    const seen: number[] = [];
    w.wrapReceiver((r, slot, l, n) => {
      expect(r).toBe(ring);
      for (let i = 0; i < n; i++) seen.push(l[i]);
      expect(slot).toBe(100);
    })(ring, 100, lengths, 3, null);
    w.close();
    expect(seen).toEqual([10, 20, 30]);
    const recs = readPcap(path).records;
    expect(recs.map((r) => r.orig)).toEqual([60, 54, 10, 20, 30]);
    expect(recs[3].data.every((b) => b === 9)).toBe(true);
  });

  it('says which path it cannot create', () => {
    expect(() => PcapWriter.open('/nonexistent-dir/x.pcap')).toThrow(/--pcap \/nonexistent-dir\/x\.pcap: cannot create/);
  });

  it.skipIf(!hasTcpdump())('makes files tcpdump reads: the ARP and ICMP exchange', () => {
    const path = tmpFile();
    const w = PcapWriter.open(path);
    const arp = arpRequestFrame(GUEST, GW);
    const ping = icmpEchoFrame(GUEST, GW, 7, 1, new Uint8Array(32));
    w.frame(arp, 0, arp.length);
    w.frame(ping, 0, ping.length);
    w.close();
    const out = execFileSync('tcpdump', ['-nn', '-r', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(out).toMatch(/ARP, Request who-has 10\.0\.2\.2 tell 10\.0\.2\.100/);
    expect(out).toMatch(/10\.0\.2\.100 > 10\.0\.2\.2: ICMP echo request, id 7, seq 1/);
  });
});
