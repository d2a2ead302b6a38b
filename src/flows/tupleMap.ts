/**
 * Values by a connection's 4-tuple as the guest sees it. IPv4 tuples are two levels of number keys
 * (remote addr·2¹⁶+port, then guest addr·2¹⁶+port: exact, and no string is built or hashed per
 * lookup); IPv6 tuples (addresses are text) a string key.
 */

/** A guest-visible address: uint32 for IPv4, text for IPv6. */
export type TupleAddr = number | string;

export class TupleMap<V> {
  private readonly v4 = new Map<number, Map<number, V>>();
  private readonly v6 = new Map<string, V>();
  private n4 = 0;

  /** The IPv6 (and display) key: family first, so the families never collide. */
  static keyOf(family: 4 | 6, guestAddr: TupleAddr, guestPort: number, remoteAddr: TupleAddr, remotePort: number): string {
    return `${family}/${guestAddr}/${guestPort}/${remoteAddr}/${remotePort}`;
  }

  get size(): number {
    return this.n4 + this.v6.size;
  }

  get(family: 4 | 6, guestAddr: TupleAddr, guestPort: number, remoteAddr: TupleAddr, remotePort: number): V | undefined {
    if (family === 4) return this.v4.get((remoteAddr as number) * 65536 + remotePort)?.get((guestAddr as number) * 65536 + guestPort);
    return this.v6.get(TupleMap.keyOf(6, guestAddr, guestPort, remoteAddr, remotePort));
  }

  set(family: 4 | 6, guestAddr: TupleAddr, guestPort: number, remoteAddr: TupleAddr, remotePort: number, value: V): void {
    if (family === 6) {
      this.v6.set(TupleMap.keyOf(6, guestAddr, guestPort, remoteAddr, remotePort), value);
      return;
    }
    const rk = (remoteAddr as number) * 65536 + remotePort;
    let m = this.v4.get(rk);
    if (m === undefined) {
      m = new Map();
      this.v4.set(rk, m);
    }
    const gk = (guestAddr as number) * 65536 + guestPort;
    if (!m.has(gk)) this.n4++;
    m.set(gk, value);
  }

  /** Remove the tuple's value; with `only`, only when that is the value stored. True if removed. */
  delete(family: 4 | 6, guestAddr: TupleAddr, guestPort: number, remoteAddr: TupleAddr, remotePort: number, only?: V): boolean {
    if (family === 6) {
      const k = TupleMap.keyOf(6, guestAddr, guestPort, remoteAddr, remotePort);
      if (only !== undefined && this.v6.get(k) !== only) return false;
      return this.v6.delete(k);
    }
    const rk = (remoteAddr as number) * 65536 + remotePort;
    const m = this.v4.get(rk);
    if (m === undefined) return false;
    const gk = (guestAddr as number) * 65536 + guestPort;
    if (only !== undefined ? m.get(gk) !== only : !m.has(gk)) return false;
    m.delete(gk);
    this.n4--;
    if (m.size === 0) this.v4.delete(rk);
    return true;
  }

  clear(): void {
    this.v4.clear();
    this.v6.clear();
    this.n4 = 0;
  }

  /** Every value (do not add or remove while iterating). */
  *values(): IterableIterator<V> {
    for (const m of this.v4.values()) yield* m.values();
    yield* this.v6.values();
  }
}
