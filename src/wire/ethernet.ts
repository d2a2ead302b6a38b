/** Ethernet II frame view (no VLAN tags: the tap never carries them). */

export const ETH_HEADER_LEN = 14;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV6 = 0x86dd;

const field = { dst: 0, src: 6, ethertype: 12 } as const;

/** A zero-copy view over an Ethernet frame; reuse one instance with `wrap`. */
export class EthernetFrame {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  len = 0;

  /** Point the view at a frame; false when too short to hold a header. */
  wrap(buf: Uint8Array, off: number, len: number): boolean {
    this.buf = buf;
    this.off = off;
    this.len = len;
    return len >= ETH_HEADER_LEN;
  }

  get ethertype(): number {
    return (this.buf[this.off + field.ethertype] << 8) | this.buf[this.off + field.ethertype + 1];
  }
  /** Offset of the payload in `buf`. */
  get payloadOff(): number {
    return this.off + ETH_HEADER_LEN;
  }
  get payloadLen(): number {
    return this.len - ETH_HEADER_LEN;
  }
  /** True when the destination is broadcast or multicast. */
  get isGroupDst(): boolean {
    return (this.buf[this.off + field.dst] & 1) === 1;
  }
  /** Whether the destination MAC equals `mac`. */
  dstIs(mac: Uint8Array): boolean {
    return macEquals(this.buf, this.off + field.dst, mac);
  }
  /** Copy the source MAC into `out`. */
  copySrc(out: Uint8Array): void {
    out.set(this.buf.subarray(this.off + field.src, this.off + field.src + 6));
  }
}

/** Write an Ethernet header at `off`. */
export function writeEthernetHeader(
  buf: Uint8Array,
  off: number,
  dst: Uint8Array,
  src: Uint8Array,
  ethertype: number,
): void {
  buf.set(dst, off + field.dst);
  buf.set(src, off + field.src);
  buf[off + field.ethertype] = ethertype >>> 8;
  buf[off + field.ethertype + 1] = ethertype & 0xff;
}

export function macEquals(buf: Uint8Array, off: number, mac: Uint8Array): boolean {
  for (let i = 0; i < 6; i++) if (buf[off + i] !== mac[i]) return false;
  return true;
}

/** Parse "aa:bb:cc:dd:ee:ff"; throws with a clear message on bad input. */
export function parseMac(text: string): Uint8Array {
  const m = /^([0-9a-f]{2})(?::([0-9a-f]{2})){5}$/i.test(text);
  if (!m) throw new Error(`invalid MAC address "${text}": expected six hex pairs like 52:54:00:12:34:56`);
  const bytes = Uint8Array.from(text.split(':').map((h) => parseInt(h, 16)));
  if (bytes[0] & 1) throw new Error(`invalid MAC address "${text}": it is a multicast address`);
  return bytes;
}

export function formatMac(mac: Uint8Array, off = 0): string {
  const parts: string[] = [];
  for (let i = 0; i < 6; i++) parts.push(mac[off + i].toString(16).padStart(2, '0'));
  return parts.join(':');
}

export const BROADCAST_MAC = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
