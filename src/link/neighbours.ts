/**
 * NeighbourTable: the guest-side MACs we have seen, by IPv4 and IPv6 address. There is normally
 * one guest behind the tap, so an unknown address falls back to the last MAC the guest used;
 * the tables are bounded so a guest spraying source addresses cannot grow them. IPv6 entries
 * are few (link-local, SLAAC, temporary addresses) and are found by a linear scan over the 16
 * bytes, so a lookup allocates nothing.
 */

import { formatIpv4 } from '../wire/ipv4.js';
import { formatIpv6 } from '../wire/ipv6.js';

interface Neighbour6 {
  addr: Uint8Array;
  mac: Uint8Array;
}

export class NeighbourTable {
  private readonly byAddr = new Map<number, Uint8Array>();
  /** The most recently seen guest MAC. */
  last: Uint8Array | null = null;

  /** IPv6 neighbours, most recently learned last. */
  private readonly v6: Neighbour6[] = [];

  constructor(private readonly limit = 256, private readonly limit6 = 32) {}

  /** Record that the IPv6 address at addr[aoff] is at the MAC at buf[off]. */
  learn6(addr: Uint8Array, aoff: number, buf: Uint8Array, off: number): void {
    const e = this.find6(addr, aoff);
    if (e) {
      if (!sameMac(e.mac, buf, off)) e.mac = buf.slice(off, off + 6);
      if (!this.last || !sameMac(this.last, buf, off)) this.last = e.mac;
      return;
    }
    if (this.v6.length >= this.limit6) this.v6.shift();
    const mac = this.last && sameMac(this.last, buf, off) ? this.last : buf.slice(off, off + 6);
    this.v6.push({ addr: addr.slice(aoff, aoff + 16), mac });
    this.last = mac;
  }

  /** The most recently learned IPv6 address (16 bytes) that `accept` likes, or null. */
  latest6(accept: (addr: Uint8Array) => boolean): Uint8Array | null {
    for (let i = this.v6.length - 1; i >= 0; i--) if (accept(this.v6[i].addr)) return this.v6[i].addr;
    return null;
  }

  lookup6(addr: Uint8Array, off: number): Uint8Array | null {
    return this.find6(addr, off)?.mac ?? this.last;
  }

  private find6(addr: Uint8Array, off: number): Neighbour6 | undefined {
    for (let i = this.v6.length - 1; i >= 0; i--) {
      const e = this.v6[i];
      let same = true;
      for (let j = 15; j >= 0; j--) {
        if (e.addr[j] !== addr[off + j]) {
          same = false;
          break;
        }
      }
      if (same) return e;
    }
    return undefined;
  }

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
    const hex = (m: Uint8Array): string => [...m].map((b) => b.toString(16).padStart(2, '0')).join(':');
    return [
      ...[...this.byAddr].map(([a, m]) => ({ address: formatIpv4(a), mac: hex(m) })),
      ...this.v6.map((e) => ({ address: formatIpv6(e.addr), mac: hex(e.mac) })),
    ];
  }
}

function sameMac(a: Uint8Array, buf: Uint8Array, off: number): boolean {
  for (let i = 0; i < 6; i++) if (a[i] !== buf[off + i]) return false;
  return true;
}
