import { describe, expect, it } from 'vitest';
import { FaultInjector, parseFaultSpec, seededRandom, type FaultSpec } from './faults.js';
import type { FrameWriter } from './sink.js';
import type { FrameReceiver } from './frames.js';
import { arpRequestFrame, icmpEchoFrame } from '../testing/frames.js';
import { parseIpv4 } from '../wire/ipv4.js';
import { VNET_F_NEEDS_CSUM, VNET_HDR_LEN } from '../wire/vnet.js';

const GUEST = parseIpv4('10.0.2.100');
const GW = parseIpv4('10.0.2.2');
const SLOT = 128;

function spec(text: string): FaultSpec {
  return parseFaultSpec(text)!;
}

/** A ring of frames whose first data byte after the Ethernet header names them (IPv4 ICMP). */
function batch(ids: number[]): { ring: Uint8Array; lengths: Int32Array; vnet: Uint8Array } {
  const ring = new Uint8Array(ids.length * SLOT);
  const lengths = new Int32Array(ids.length);
  const vnet = new Uint8Array(ids.length * VNET_HDR_LEN);
  ids.forEach((id, i) => {
    const f = icmpEchoFrame(GUEST, GW, id, id, new Uint8Array(8).fill(id));
    ring.set(f, i * SLOT);
    lengths[i] = f.length;
    vnet[i * VNET_HDR_LEN] = VNET_F_NEEDS_CSUM;
  });
  return { ring, lengths, vnet };
}

/** A receiver that records the frames (by the ICMP id) and the vnet flags it was given. */
function recorder(): { seen: number[]; flags: number[]; frames: Uint8Array[]; receive: FrameReceiver } {
  const seen: number[] = [];
  const flags: number[] = [];
  const frames: Uint8Array[] = [];
  return {
    seen, flags, frames,
    receive: (ring, slotSize, lengths, n, vnet) => {
      for (let i = 0; i < n; i++) {
        const f = ring.slice(i * slotSize, i * slotSize + lengths[i]);
        frames.push(f);
        seen.push((f[38] << 8) | f[39]); // ICMP id
        flags.push(vnet ? vnet[i * VNET_HDR_LEN] : -1);
      }
    },
  };
}

class TapLike implements FrameWriter {
  frames: { bytes: Uint8Array; offload: boolean }[] = [];
  write(f: Uint8Array): boolean {
    this.frames.push({ bytes: f.slice(), offload: false });
    return true;
  }
  writev(p: Uint8Array[]): boolean {
    this.frames.push({ bytes: Buffer.concat(p), offload: false });
    return true;
  }
  writevOffload(p: Uint8Array[]): boolean {
    this.frames.push({ bytes: Buffer.concat(p), offload: true });
    return true;
  }
}

const ids = (t: TapLike): number[] => t.frames.map((f) => (f.bytes[38] << 8) | f.bytes[39]);
const ping = (id: number): Uint8Array => icmpEchoFrame(GW, GUEST, id, id, new Uint8Array(8));

describe('parseFaultSpec (SLIPWAY_FAULTS)', () => {
  it('reads rates per direction and the seed; unset or blank means off', () => {
    expect(parseFaultSpec('rx-drop=0.01,tx-drop=0.01,tx-dup=0.01,tx-reorder=0.01,rx-corrupt=0.001,seed=42')).toEqual({
      rx: { drop: 0.01, dup: 0, reorder: 0, corrupt: 0.001 },
      tx: { drop: 0.01, dup: 0.01, reorder: 0.01, corrupt: 0 },
      seed: 42,
    });
    expect(parseFaultSpec(undefined)).toBeNull();
    expect(parseFaultSpec('  ')).toBeNull();
    expect(parseFaultSpec('rx-drop=1', () => 7)!.seed).toBe(7);
  });

  it('names the bad key or value', () => {
    expect(() => parseFaultSpec('rx-lose=0.1')).toThrow(/SLIPWAY_FAULTS: unknown fault "rx-lose"/);
    expect(() => parseFaultSpec('tx-drop=2')).toThrow(/tx-drop must be a rate between 0 and 1, got "2"/);
    expect(() => parseFaultSpec('tx-drop=')).toThrow(/tx-drop must be a rate/);
    expect(() => parseFaultSpec('seed=-1')).toThrow(/seed must be a whole number/);
    expect(() => parseFaultSpec('drop')).toThrow(/"drop" is not key=value/);
  });

  it('has a seeded, repeatable PRNG', () => {
    const a = seededRandom(42);
    const b = seededRandom(42);
    const xs = Array.from({ length: 5 }, a);
    expect(Array.from({ length: 5 }, b)).toEqual(xs);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(new Set(xs).size).toBe(5);
  });
});

describe('FaultInjector, guest → stack (the tap ring)', () => {
  it('passes a batch through untouched (the same ring, one call) when no fault fires', () => {
    const f = new FaultInjector(spec('rx-drop=0,tx-drop=1,seed=1'));
    const b = batch([1, 2, 3]);
    const calls: Uint8Array[] = [];
    f.wrapReceiver((ring) => calls.push(ring))(b.ring, SLOT, b.lengths, 3, b.vnet);
    expect(calls).toEqual([b.ring]);
    expect(f.rx).toMatchObject({ frames: 3, dropped: 0 });
  });

  it('drops every frame at rate 1 and about 30% at rate 0.3, counting them', () => {
    const all = new FaultInjector(spec('rx-drop=1,seed=1'));
    const r = recorder();
    const b = batch([1, 2, 3]);
    all.wrapReceiver(r.receive)(b.ring, SLOT, b.lengths, 3, b.vnet);
    expect(r.seen).toEqual([]);
    expect(all.rx.dropped).toBe(3);

    const some = new FaultInjector(spec('rx-drop=0.3,seed=9'));
    const r2 = recorder();
    const idList = Array.from({ length: 1000 }, (_, i) => i);
    const big = batch(idList);
    some.wrapReceiver(r2.receive)(big.ring, SLOT, big.lengths, 1000, big.vnet);
    expect(some.rx.dropped).toBeGreaterThan(230);
    expect(some.rx.dropped).toBeLessThan(370);
    // The survivors arrive in order, each with its own vnet header.
    expect(r2.seen.length).toBe(1000 - some.rx.dropped);
    expect(r2.seen).toEqual([...r2.seen].sort((x, y) => x - y));
    expect(r2.flags.every((x) => x === VNET_F_NEEDS_CSUM)).toBe(true);
  });

  it('duplicates: each frame is handled twice, in order', () => {
    const f = new FaultInjector(spec('rx-dup=1,seed=1'));
    const r = recorder();
    const b = batch([1, 2]);
    f.wrapReceiver(r.receive)(b.ring, SLOT, b.lengths, 2, b.vnet);
    expect(r.seen).toEqual([1, 1, 2, 2]);
    expect(f.rx.duplicated).toBe(2);
  });

  it('reorders: a held frame (a copy) comes right after the next one, also across batches', () => {
    const f = new FaultInjector(spec('rx-reorder=1,seed=1'));
    const r = recorder();
    const receive = f.wrapReceiver(r.receive);
    const b = batch([1, 2, 3, 4, 5]);
    receive(b.ring, SLOT, b.lengths, 5, b.vnet);
    expect(r.seen).toEqual([2, 1, 4, 3]);
    // Frame 5 is held; the ring is reused by the next batch.
    const b2 = batch([6, 7]);
    b.ring.set(b2.ring.subarray(0, SLOT));
    receive(b2.ring, SLOT, b2.lengths, 2, b2.vnet);
    expect(r.seen).toEqual([2, 1, 4, 3, 6, 5]);
    expect(r.flags.every((x) => x === VNET_F_NEEDS_CSUM)).toBe(true);
    f.close();
  });

  it('releases a held frame after holdMs when no next frame comes', async () => {
    const f = new FaultInjector(spec('rx-reorder=1,seed=1'), 5);
    const r = recorder();
    const b = batch([1]);
    f.wrapReceiver(r.receive)(b.ring, SLOT, b.lengths, 1, b.vnet);
    expect(r.seen).toEqual([]);
    await new Promise((res) => setTimeout(res, 30));
    expect(r.seen).toEqual([1]);
  });

  it('corrupts one byte of the IP packet and clears the vnet checksum flags; ARP is left alone', () => {
    const f = new FaultInjector(spec('rx-corrupt=1,seed=3'));
    const r = recorder();
    const b = batch([1, 2, 3]);
    const original = b.ring.slice();
    f.wrapReceiver(r.receive)(b.ring, SLOT, b.lengths, 3, b.vnet);
    expect(f.rx.corrupted).toBe(3);
    for (let i = 0; i < 3; i++) {
      const diff = [...r.frames[i]].map((x, k) => (x !== original[i * SLOT + k] ? k : -1)).filter((k) => k >= 0);
      expect(diff.length).toBe(1);
      expect(diff[0]).toBeGreaterThanOrEqual(14);
    }
    expect(r.flags).toEqual([0, 0, 0]);

    const arp = arpRequestFrame(GUEST, GW);
    const ring = new Uint8Array(SLOT);
    ring.set(arp);
    let got: Uint8Array | null = null;
    f.wrapReceiver((rg, _s, l) => (got = rg.slice(0, l[0])))(ring, SLOT, new Int32Array([arp.length]), 1, null);
    expect(got).toEqual(arp);
    expect(f.rx.corruptSkipped).toBe(1);
  });
});

describe('FaultInjector, stack → guest (the writer)', () => {
  it('keeps the writer\'s offload ability, or its absence', () => {
    const f = new FaultInjector(spec('tx-drop=0.5'));
    expect(typeof f.wrapWriter(new TapLike()).writevOffload).toBe('function');
    expect(f.wrapWriter({ write: () => true, writev: () => true }).writevOffload).toBeUndefined();
  });

  it('drops (reporting success, as a wire would) and duplicates', () => {
    const tap = new TapLike();
    const drop = new FaultInjector(spec('tx-drop=1')).wrapWriter(tap);
    expect(drop.write(ping(1))).toBe(true);
    expect(tap.frames).toEqual([]);
    const f = new FaultInjector(spec('tx-dup=1'));
    const dup = f.wrapWriter(tap);
    dup.writev([ping(2).subarray(0, 14), ping(2).subarray(14)]);
    expect(ids(tap)).toEqual([2, 2]);
    expect(f.tx).toMatchObject({ frames: 1, duplicated: 1 });
  });

  it('reorders with a copy: the sender may reuse its buffers after the call', () => {
    const tap = new TapLike();
    const f = new FaultInjector(spec('tx-reorder=1'));
    const w = f.wrapWriter(tap);
    const scratch = ping(1);
    w.writev([scratch.subarray(0, 14), scratch.subarray(14)]);
    scratch.set(ping(2)); // the sink's header scratch is rewritten for the next frame
    w.writevOffload!([scratch], 1, 1460, 34, 16, 54);
    expect(ids(tap)).toEqual([2, 1]);
    expect(tap.frames.map((x) => x.offload)).toEqual([true, false]);
    f.close();
  });

  it('corrupts where the guest checks: the IP packet, only the IPv4 header when the kernel fills in the checksum', () => {
    const tap = new TapLike();
    const f = new FaultInjector(spec('tx-corrupt=1,seed=5'));
    const w = f.wrapWriter(tap);
    const frame = ping(1);
    const copy = frame.slice();
    for (let i = 0; i < 20; i++) w.write(frame);
    expect(frame).toEqual(copy); // the sender's buffer is never touched
    for (let i = 0; i < 20; i++) w.writevOffload!([frame], 1, 1460, 34, 16, 54);
    const where = tap.frames.map((x) => x.bytes.findIndex((b, k) => b !== copy[k]));
    expect(where.slice(0, 20).every((k) => k >= 14 && k < copy.length)).toBe(true);
    expect(where.slice(20).every((k) => k >= 14 && k < 34)).toBe(true);
    const v6 = ping(3);
    v6[12] = 0x86;
    v6[13] = 0xdd;
    w.writevOffload!([v6], 4, 1440, 54, 16, 74);
    w.write(arpRequestFrame(GUEST, GW));
    expect(f.tx).toMatchObject({ corrupted: 40, corruptSkipped: 2 });
  });
});
