/**
 * NeighbourTable: the guest-side MACs we have seen, by IPv4 address. There is normally one
 * guest behind the tap, so an unknown address falls back to the last MAC the guest used;
 * the table is bounded so a guest spraying source addresses cannot grow it.
 */

import { formatIpv4 } from '../wire/ipv4.js';

export class NeighbourTable {
  private readonly byAddr = new Map<number, Uint8Array>();
  /** The most recently seen guest MAC. */
  last: Uint8Array | null = null;

  constructor(private readonly limit = 256) {}

  /** Record that `addr` is at `mac` (mac bytes are copied when new). */
  learn(addr: number, buf: Uint8Array, off: number): void {
    const known = this.byAddr.get(addr);
    if (known && sameMac(known, buf, off)) {
      this.last = known;
      return;
    }
    if (!known && this.byAddr.size >= this.limit) {
      const oldest = this.byAddr.keys().next().value as number;
      this.byAddr.delete(oldest);
    }
    const mac = buf.slice(off, off + 6);
    this.byAddr.set(addr, mac);
    this.last = mac;
  }

  /** Record the guest MAC without an address (e.g. from a DHCP DISCOVER). */
  learnMac(buf: Uint8Array, off: number): void {
    if (this.last && sameMac(this.last, buf, off)) return;
    this.last = buf.slice(off, off + 6);
  }

  lookup(addr: number): Uint8Array | null {
    return this.byAddr.get(addr) ?? this.last;
  }

  entries(): { address: string; mac: string }[] {
    return [...this.byAddr].map(([a, m]) => ({
      address: formatIpv4(a),
      mac: [...m].map((b) => b.toString(16).padStart(2, '0')).join(':'),
    }));
  }
}

function sameMac(a: Uint8Array, buf: Uint8Array, off: number): boolean {
  for (let i = 0; i < 6; i++) if (a[i] !== buf[off + i]) return false;
  return true;
}
