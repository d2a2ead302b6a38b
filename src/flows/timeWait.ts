/**
 * TIME-WAIT records (RFC 9293 3.10.7.4) kept by the TCP table for the 4-tuples of flows whose FIN
 * went first: the addresses and the sequence numbers of our last ACK, so a retransmitted guest
 * FIN is acknowledged again and an old SYN does not open a new flow.
 *
 * Every record lives the same time (`timeWaitMs`), so they form a queue in the order they are
 * due, and one timer serves them all. The records are slots of a ring of typed arrays, found by
 * 4-tuple through a TupleMap of slot numbers: no JS object per record. A connection-rate load
 * (the benchmark's CRR row: ~6,000 connections/s, ~12,000 records alive at a 2 s TIME-WAIT) made
 * one object per record, each surviving two scavenges, so V8 promoted them all and grew the young
 * generation (8 → 32 MB) and the old one (~1 MB/s, until a full GC) under that load alone.
 *
 * A retransmitted FIN queues the record again in a new slot (the index moves to it); the old
 * slot, when due, finds the index pointing elsewhere and lets it be. A slot is reused only after
 * it was due, when nothing points to it any more.
 */
import type { TcpEndpoints } from './tcp.js';
import { TupleMap, type TupleAddr } from './tupleMap.js';

const INITIAL_SLOTS = 256;

export class TimeWaitTable {
  private readonly index = new TupleMap<number>();
  /** Ring capacity (a power of two); positions count up, slot = position & (cap - 1). */
  private cap = 0;
  private head = 0;
  private tail = 0;
  private family = new Uint8Array(0);
  private guest4 = new Uint32Array(0);
  private remote4 = new Uint32Array(0);
  /** IPv6 addresses (text), only for family 6 slots. */
  private guest6: (string | undefined)[] = [];
  private remote6: (string | undefined)[] = [];
  private guestPort = new Uint16Array(0);
  private remotePort = new Uint16Array(0);
  private seqs = new Uint32Array(0);
  private acks = new Uint32Array(0);
  private windows = new Uint32Array(0);
  private due = new Float64Array(0);
  /** Filled by `endpoints` (reused: the caller uses it before the next call). */
  private readonly scratch: { -readonly [K in keyof TcpEndpoints]: TcpEndpoints[K] } = { family: 4, guestAddr: 0, guestPort: 0, remoteAddr: 0, remotePort: 0 };

  /** 4-tuples in TIME-WAIT. */
  get size(): number {
    return this.index.size;
  }

  /** Records queued, due or not (slots in use). */
  get queued(): number {
    return this.tail - this.head;
  }

  /** Keep a 4-tuple in TIME-WAIT until `due` (Date.now() ms); replaces a record it had. */
  enter(family: 4 | 6, guestAddr: TupleAddr, guestPort: number, remoteAddr: TupleAddr, remotePort: number, seq: number, ack: number, window: number, due: number): void {
    if (this.tail - this.head === this.cap) this.grow();
    const s = this.tail++ & (this.cap - 1);
    this.family[s] = family;
    if (family === 4) {
      this.guest4[s] = guestAddr as number;
      this.remote4[s] = remoteAddr as number;
      this.guest6[s] = this.remote6[s] = undefined;
    } else {
      this.guest6[s] = guestAddr as string;
      this.remote6[s] = remoteAddr as string;
    }
    this.guestPort[s] = guestPort;
    this.remotePort[s] = remotePort;
    this.seqs[s] = seq;
    this.acks[s] = ack;
    this.windows[s] = window;
    this.due[s] = due;
    this.index.set(family, guestAddr, guestPort, remoteAddr, remotePort, s);
  }

  /** The record's slot for a 4-tuple, or -1. */
  find(family: 4 | 6, guestAddr: TupleAddr, guestPort: number, remoteAddr: TupleAddr, remotePort: number): number {
    return this.index.get(family, guestAddr, guestPort, remoteAddr, remotePort) ?? -1;
  }

  /** SND.NXT after our FIN, RCV.NXT after the guest's FIN, and the window of our last ACK. */
  seq(slot: number): number {
    return this.seqs[slot];
  }

  ack(slot: number): number {
    return this.acks[slot];
  }

  window(slot: number): number {
    return this.windows[slot];
  }

  /** The record's addresses (a shared object, valid until the next call). */
  endpoints(slot: number): TcpEndpoints {
    const e = this.scratch;
    const v4 = this.family[slot] === 4;
    e.family = v4 ? 4 : 6;
    e.guestAddr = v4 ? this.guest4[slot] : this.guest6[slot]!;
    e.remoteAddr = v4 ? this.remote4[slot] : this.remote6[slot]!;
    e.guestPort = this.guestPort[slot];
    e.remotePort = this.remotePort[slot];
    return e;
  }

  /** The record ends now (a RST, or a new incarnation of the 4-tuple). */
  forget(slot: number): void {
    const e = this.endpoints(slot);
    this.index.delete(e.family, e.guestAddr, e.guestPort, e.remoteAddr, e.remotePort, slot);
  }

  /** A retransmitted FIN: the record starts its wait again, due at `due`. */
  restart(slot: number, due: number): void {
    const e = this.endpoints(slot);
    this.enter(e.family, e.guestAddr, e.guestPort, e.remoteAddr, e.remotePort, this.seqs[slot], this.acks[slot], this.windows[slot], due);
  }

  /** Forget the records due by `now`; returns when the next one is due, or -1 when none is left. */
  expire(now: number): number {
    const mask = this.cap - 1;
    while (this.head < this.tail) {
      const s = this.head & mask;
      if (this.due[s] > now) return this.due[s];
      this.forget(s); // only when the index still points here (not restarted, not forgotten)
      this.guest6[s] = this.remote6[s] = undefined;
      this.head++;
    }
    this.head = this.tail = 0;
    return -1;
  }

  clear(): void {
    this.index.clear();
    this.head = this.tail = 0;
    this.guest6.fill(undefined);
    this.remote6.fill(undefined);
  }

  /** Twice the slots, the queue kept in order; the index follows the records that moved. */
  private grow(): void {
    const old = this.cap;
    const cap = old === 0 ? INITIAL_SLOTS : old * 2;
    const from = { family: this.family, guest4: this.guest4, remote4: this.remote4, guest6: this.guest6, remote6: this.remote6, guestPort: this.guestPort, remotePort: this.remotePort, seqs: this.seqs, acks: this.acks, windows: this.windows, due: this.due };
    this.family = new Uint8Array(cap);
    this.guest4 = new Uint32Array(cap);
    this.remote4 = new Uint32Array(cap);
    this.guest6 = new Array<string | undefined>(cap).fill(undefined);
    this.remote6 = new Array<string | undefined>(cap).fill(undefined);
    this.guestPort = new Uint16Array(cap);
    this.remotePort = new Uint16Array(cap);
    this.seqs = new Uint32Array(cap);
    this.acks = new Uint32Array(cap);
    this.windows = new Uint32Array(cap);
    this.due = new Float64Array(cap);
    this.cap = cap;
    // Oldest first: of two records of one 4-tuple only the newer is indexed, and it moves after
    // the older one was looked at, so an old slot number never meets a new one.
    for (let p = this.head; p < this.tail; p++) {
      const a = p & (old - 1);
      const b = p & (cap - 1);
      this.family[b] = from.family[a];
      this.guest4[b] = from.guest4[a];
      this.remote4[b] = from.remote4[a];
      this.guest6[b] = from.guest6[a];
      this.remote6[b] = from.remote6[a];
      this.guestPort[b] = from.guestPort[a];
      this.remotePort[b] = from.remotePort[a];
      this.seqs[b] = from.seqs[a];
      this.acks[b] = from.acks[a];
      this.windows[b] = from.windows[a];
      this.due[b] = from.due[a];
      const e = this.endpoints(b);
      if (a !== b && this.index.get(e.family, e.guestAddr, e.guestPort, e.remoteAddr, e.remotePort) === a) {
        this.index.set(e.family, e.guestAddr, e.guestPort, e.remoteAddr, e.remotePort, b);
      }
    }
  }
}
