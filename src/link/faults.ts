/**
 * Fault injection on the frame path, for tests and diagnosis only: `SLIPWAY_FAULTS` (e.g.
 * `rx-drop=0.01,tx-drop=0.01,tx-dup=0.01,tx-reorder=0.01,rx-corrupt=0.001,seed=42`) makes the
 * link between the guest and the stack lose, duplicate, reorder and corrupt frames at the given
 * rates, each direction on its own (rx: guest → stack, tx: stack → guest), from a seeded PRNG
 * per direction. What it did is counted (`stats()`, in get_stats as `faults`). serve.ts warns
 * loudly when it is on.
 *
 * Per frame, in this order: drop (gone); corrupt (one byte XORed with a random non-zero value);
 * reorder (held back, then delivered right after the next frame, or after `holdMs` when no next
 * frame comes; one frame held at a time per direction); duplicate (delivered twice).
 *
 * Corruption stands in for damage a link's CRC would miss, so it lands where the receiver's
 * checksums look: in the IP packet of IPv4/IPv6 frames, never in the Ethernet header or in ARP
 * (which nothing protects on a tap; those frames are counted as `corruptSkipped`). Toward the
 * stack, a corrupted frame loses its vnet "checksum partial / already valid" flags, so the stack
 * verifies it as if it came off a wire. Toward the guest, an offloaded TCP frame gets its
 * checksum from the guest's kernel, which would make any payload damage look valid: there only
 * the IPv4 header is hit (its checksum is always checked), and offloaded IPv6 frames are skipped.
 *
 * The rx side works on the tap ring in place: a batch is passed on in runs of untouched frames;
 * a dropped frame ends a run, a duplicated one is passed on again by itself, a held one is copied
 * (the ring is reused after the batch). Corruption flips the byte in the ring itself: that frame
 * is never used again.
 */

import { ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from '../wire/ethernet.js';
import { VNET_F_DATA_VALID, VNET_F_NEEDS_CSUM, VNET_HDR_LEN } from '../wire/vnet.js';
import type { FrameWriter } from './sink.js';
import type { FrameReceiver } from './frames.js';

/** Rates (0..1) of each fault in one direction. */
export interface FaultRates {
  drop: number;
  dup: number;
  reorder: number;
  corrupt: number;
}

/** A parsed SLIPWAY_FAULTS. */
export interface FaultSpec {
  rx: FaultRates;
  tx: FaultRates;
  seed: number;
}

/** What the injector did in one direction. */
export interface FaultCounters {
  frames: number;
  dropped: number;
  duplicated: number;
  reordered: number;
  corrupted: number;
  corruptSkipped: number;
}

const KINDS = ['drop', 'dup', 'reorder', 'corrupt'] as const;
const ETH_HLEN = 14;

/**
 * Parse `key=value,…` with keys rx-/tx-drop, -dup, -reorder, -corrupt (rates 0..1) and seed
 * (an integer; random when absent). Returns null for an unset or blank variable.
 */
export function parseFaultSpec(text: string | undefined, randomSeed: () => number = () => (Math.random() * 0x100000000) >>> 0): FaultSpec | null {
  if (text === undefined || text.trim() === '') return null;
  const zero = (): FaultRates => ({ drop: 0, dup: 0, reorder: 0, corrupt: 0 });
  const spec: FaultSpec = { rx: zero(), tx: zero(), seed: -1 };
  const known = `rx-/tx- followed by ${KINDS.join(', ')}; seed`;
  for (const item of text.split(',')) {
    const part = item.trim();
    if (part === '') continue;
    const m = /^([a-z-]+)=(.*)$/.exec(part);
    if (!m) throw new Error(`SLIPWAY_FAULTS: "${part}" is not key=value (keys: ${known})`);
    const [, key, value] = m;
    if (key === 'seed') {
      if (!/^\d+$/.test(value) || Number(value) > 0xffffffff) throw new Error(`SLIPWAY_FAULTS: seed must be a whole number below 2^32, got "${value}"`);
      spec.seed = Number(value);
      continue;
    }
    const k = /^(rx|tx)-(drop|dup|reorder|corrupt)$/.exec(key);
    if (!k) throw new Error(`SLIPWAY_FAULTS: unknown fault "${key}" (keys: ${known})`);
    const rate = Number(value);
    if (value.trim() === '' || !Number.isFinite(rate) || rate < 0 || rate > 1) {
      throw new Error(`SLIPWAY_FAULTS: ${key} must be a rate between 0 and 1, got "${value}"`);
    }
    spec[k[1] as 'rx' | 'tx'][k[2] as keyof FaultRates] = rate;
  }
  if (spec.seed < 0) spec.seed = randomSeed();
  return spec;
}

/** mulberry32: small, fast, seeded; good enough to pick which frames to hurt. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function zeroCounters(): FaultCounters {
  return { frames: 0, dropped: 0, duplicated: 0, reordered: 0, corrupted: 0, corruptSkipped: 0 };
}

/** Offload arguments of a writevOffload call. */
type OffloadArgs = [gsoType: number, gsoSize: number, csumStart: number, csumOffset: number, hdrLen: number];

/**
 * Where a byte may be flipped so that the receiver's checksums can notice: [start, end) of the
 * frame, or null when nothing in it is protected.
 */
function corruptibleRange(frame: Uint8Array, off: number, len: number, offloaded: boolean): [number, number] | null {
  if (len <= ETH_HLEN) return null;
  const type = (frame[off + 12] << 8) | frame[off + 13];
  if (type === ETHERTYPE_IPV4) {
    if (!offloaded) return [ETH_HLEN, len];
    const ihl = (frame[off + ETH_HLEN] & 0x0f) * 4;
    return ihl >= 20 && ETH_HLEN + ihl <= len ? [ETH_HLEN, ETH_HLEN + ihl] : null;
  }
  if (type === ETHERTYPE_IPV6 && !offloaded) return [ETH_HLEN, len];
  return null;
}

/** Drops, duplicates, reorders and corrupts frames both ways; see the top of this file. */
export class FaultInjector {
  readonly rx = zeroCounters();
  readonly tx = zeroCounters();
  private readonly rxRandom: () => number;
  private readonly txRandom: () => number;
  // rx: the frame held back for reordering (a copy; the ring is reused).
  private rxHold: Uint8Array | null = null;
  private readonly rxHoldLen = new Int32Array(1);
  private rxHoldVnet: Uint8Array | null = null;
  private rxHeld = false;
  private rxTimer: NodeJS.Timeout | null = null;
  private rxNext: FrameReceiver | null = null;
  // tx: the frame held back for reordering.
  private txHeld: { frame: Uint8Array; offload: OffloadArgs | null } | null = null;
  private txTimer: NodeJS.Timeout | null = null;
  private txInner: FrameWriter | null = null;
  private closed = false;

  constructor(
    readonly spec: FaultSpec,
    /** How long a held frame waits for a next frame before it is released anyway. */
    private readonly holdMs = 20,
  ) {
    this.rxRandom = seededRandom(spec.seed);
    this.txRandom = seededRandom((spec.seed ^ 0x9e3779b9) >>> 0);
  }

  /** The injector SLIPWAY_FAULTS asks for, or null when it is unset; throws on a bad value. */
  static fromEnv(text: string | undefined): FaultInjector | null {
    const spec = parseFaultSpec(text);
    return spec ? new FaultInjector(spec) : null;
  }

  // ---------------------------------------------------------------------------------------------
  // guest → stack

  /** Wrap the receiver that takes batches from the tap. */
  wrapReceiver(next: FrameReceiver): FrameReceiver {
    this.rxNext = next;
    return (ring, slotSize, lengths, count, vnet) => this.receive(next, ring, slotSize, lengths, count, vnet);
  }

  private receive(next: FrameReceiver, ring: Uint8Array, slotSize: number, lengths: Int32Array, count: number, vnet: Uint8Array | null): void {
    const r = this.spec.rx;
    const rand = this.rxRandom;
    const c = this.rx;
    const pass = (from: number, to: number): void => {
      if (to <= from) return;
      if (from === 0 && to === count) return next(ring, slotSize, lengths, count, vnet);
      next(ring.subarray(from * slotSize), slotSize, lengths.subarray(from), to - from, vnet ? vnet.subarray(from * VNET_HDR_LEN) : null);
    };
    let run = 0; // first frame of the run of frames not yet passed on
    for (let i = 0; i < count; i++) {
      c.frames++;
      const off = i * slotSize;
      const len = lengths[i];
      if (r.drop > 0 && rand() < r.drop) {
        c.dropped++;
        pass(run, i);
        run = i + 1;
        continue;
      }
      if (r.corrupt > 0 && rand() < r.corrupt) {
        const range = corruptibleRange(ring, off, len, false);
        if (range) {
          ring[off + pick(rand, range)] ^= 1 + Math.floor(rand() * 255);
          if (vnet) vnet[i * VNET_HDR_LEN] &= ~(VNET_F_NEEDS_CSUM | VNET_F_DATA_VALID);
          c.corrupted++;
        } else {
          c.corruptSkipped++;
        }
      }
      if (!this.rxHeld && r.reorder > 0 && rand() < r.reorder) {
        c.reordered++;
        pass(run, i);
        run = i + 1;
        this.holdRx(ring, off, len, slotSize, vnet, i);
        continue;
      }
      const dup = r.dup > 0 && rand() < r.dup;
      if (dup || this.rxHeld) {
        pass(run, i + 1);
        run = i + 1;
        if (dup) {
          c.duplicated++;
          pass(i, i + 1);
        }
        if (this.rxHeld) this.releaseRx();
      }
    }
    pass(run, count);
  }

  private holdRx(ring: Uint8Array, off: number, len: number, slotSize: number, vnet: Uint8Array | null, i: number): void {
    if (!this.rxHold || this.rxHold.length < slotSize) this.rxHold = new Uint8Array(slotSize);
    this.rxHold.set(ring.subarray(off, off + len));
    this.rxHoldLen[0] = len;
    if (vnet) {
      this.rxHoldVnet ??= new Uint8Array(VNET_HDR_LEN);
      this.rxHoldVnet.set(vnet.subarray(i * VNET_HDR_LEN, (i + 1) * VNET_HDR_LEN));
    }
    this.rxHeld = true;
    this.rxTimer = setTimeout(() => this.releaseRx(), this.holdMs);
    this.rxTimer.unref();
  }

  private releaseRx(): void {
    if (!this.rxHeld) return;
    this.rxHeld = false;
    if (this.rxTimer !== null) clearTimeout(this.rxTimer);
    this.rxTimer = null;
    if (this.closed) return;
    const hold = this.rxHold!;
    this.rxNext!(hold, hold.length, this.rxHoldLen, 1, this.rxHoldVnet);
  }

  // ---------------------------------------------------------------------------------------------
  // stack → guest

  /** Wrap the writer toward the tap (keeping its offload ability, or its lack of one). */
  wrapWriter(inner: FrameWriter): FrameWriter {
    this.txInner = inner;
    const w: FrameWriter = {
      write: (f) => this.send([f], null),
      writev: (p) => this.send(p, null),
    };
    if (inner.writevOffload) w.writevOffload = (p, gt, gs, cs, co, hl) => this.send(p, [gt, gs, cs, co, hl]);
    return w;
  }

  private send(parts: Uint8Array[], offload: OffloadArgs | null): boolean {
    const t = this.spec.tx;
    const rand = this.txRandom;
    const c = this.tx;
    c.frames++;
    if (t.drop > 0 && rand() < t.drop) {
      c.dropped++;
      return true; // lost on the wire: the sender cannot tell
    }
    let copied = false;
    if (t.corrupt > 0 && rand() < t.corrupt) {
      const frame = concat(parts);
      const range = corruptibleRange(frame, 0, frame.length, offload !== null);
      if (range) {
        frame[pick(rand, range)] ^= 1 + Math.floor(rand() * 255);
        parts = [frame];
        copied = true;
        c.corrupted++;
      } else {
        c.corruptSkipped++;
      }
    }
    if (this.txHeld === null && t.reorder > 0 && rand() < t.reorder) {
      c.reordered++;
      // The parts point into buffers the sender reuses (header scratch, send queue): keep a copy.
      this.txHeld = { frame: copied ? parts[0] : concat(parts), offload };
      this.txTimer = setTimeout(() => this.releaseTx(), this.holdMs);
      this.txTimer.unref();
      return true;
    }
    const ok = this.write(parts, offload);
    if (t.dup > 0 && rand() < t.dup) {
      c.duplicated++;
      this.write(parts, offload);
    }
    this.releaseTx();
    return ok;
  }

  private write(parts: Uint8Array[], offload: OffloadArgs | null): boolean {
    const inner = this.txInner!;
    if (offload) return inner.writevOffload!(parts, ...offload);
    return parts.length === 1 ? inner.write(parts[0]) : inner.writev(parts);
  }

  private releaseTx(): void {
    const h = this.txHeld;
    if (h === null) return;
    this.txHeld = null;
    if (this.txTimer !== null) clearTimeout(this.txTimer);
    this.txTimer = null;
    if (this.closed) return;
    try {
      this.write([h.frame], h.offload);
    } catch {
      /* the tap is gone (shutdown): the held frame is lost like any other */
    }
  }

  /** Stop: held frames are dropped, timers cleared. */
  close(): void {
    this.closed = true;
    if (this.rxTimer !== null) clearTimeout(this.rxTimer);
    if (this.txTimer !== null) clearTimeout(this.txTimer);
    this.rxTimer = this.txTimer = null;
    this.rxHeld = false;
    this.txHeld = null;
  }

  /** Counters for get_stats and the shutdown log. */
  stats(): { seed: number; rx: FaultCounters; tx: FaultCounters } {
    return { seed: this.spec.seed, rx: { ...this.rx }, tx: { ...this.tx } };
  }
}

/** A position in [range[0], range[1]). */
function pick(rand: () => number, range: [number, number]): number {
  return range[0] + Math.floor(rand() * (range[1] - range[0]));
}

function concat(parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
