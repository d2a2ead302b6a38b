/**
 * ArpResponder: answers ARP requests for slipway's virtual hosts (gateway, DNS) — and only
 * those, like slirp4netns — and learns guest MACs from every ARP packet it sees.
 */

import { ARP_LEN, ARP_REPLY, ARP_REQUEST, ArpPacket, writeArp } from '../wire/arp.js';
import { ETH_HEADER_LEN, ETHERTYPE_ARP, writeEthernetHeader } from '../wire/ethernet.js';
import type { FrameSink } from './sink.js';
import type { NeighbourTable } from './neighbours.js';

export class ArpResponder {
  private readonly pkt = new ArpPacket();
  replies = 0;
  malformed = 0;

  constructor(
    private readonly sink: FrameSink,
    private readonly neighbours: NeighbourTable,
    /** Whether we answer for this address. */
    private readonly isVirtualHost: (addr: number) => boolean,
  ) {}

  /** Handle an ARP packet at buf[off, off+len). */
  input(buf: Uint8Array, off: number, len: number): void {
    const p = this.pkt;
    if (!p.wrap(buf, off, len)) {
      this.malformed++;
      return;
    }
    const sender = p.senderIp;
    // A DAD probe (sender 0.0.0.0) tells us the MAC but not an address.
    if (sender !== 0) this.neighbours.learn(sender, buf, off + 8);
    if (p.oper !== ARP_REQUEST) return;
    const target = p.targetIp;
    if (!this.isVirtualHost(target) || target === sender) return;
    const frame = new Uint8Array(ETH_HEADER_LEN + ARP_LEN);
    const senderMac = p.senderMac();
    writeEthernetHeader(frame, 0, senderMac, this.sink.ourMac, ETHERTYPE_ARP);
    writeArp(frame, ETH_HEADER_LEN, ARP_REPLY, this.sink.ourMac, target, senderMac, sender);
    this.sink.raw(frame);
    this.replies++;
  }
}
