/**
 * NeighbourDiscovery: the NDP side of slipway's virtual router (RFC 4861). It answers neighbour
 * solicitations for the virtual hosts (gateway ::2, DNS ::3, the router's link-local address) —
 * and only those, like the ARP responder — learns guest MACs from solicitations and
 * advertisements, and hands router solicitations to the RouterAdvertiser. Every message is
 * validated as §6.1/§7.1 ask (hop limit 255, code 0, length, options) before it is believed;
 * invalid ones are counted and dropped.
 */

import type { Ipv6Packet } from '../wire/ipv6.js';
import { isUnspecified, parseIpv6 } from '../wire/ipv6.js';
import {
  NDP_NEIGHBOUR_ADVERT, NDP_NEIGHBOUR_SOLICIT, NDP_ROUTER_ADVERT, NDP_ROUTER_SOLICIT, NDP_REDIRECT,
} from '../wire/icmpv6.js';
import {
  NA_FIXED_LEN, NA_FLAG_OVERRIDE, NA_FLAG_ROUTER, NA_FLAG_SOLICITED, ND_TARGET_OFF, NDP_OPT_SOURCE_LLADDR,
  NDP_OPT_TARGET_LLADDR, NS_FIXED_LEN, NdpOptionCursor, RS_FIXED_LEN, buildNeighbourAdvertisement,
} from '../wire/ndp.js';
import type { FrameSink } from './sink.js';
import type { NeighbourTable } from './neighbours.js';

const ALL_NODES = parseIpv6('ff02::1');

export class NeighbourDiscovery {
  private readonly opts = new NdpOptionCursor();
  readonly counters = { solicitations: 0, advertisements: 0, routerSolicitations: 0, invalid: 0, ignored: 0 };

  constructor(
    private readonly sink: FrameSink,
    private readonly neighbours: NeighbourTable,
    /** Whether we answer for the 16-byte address at addr[off]. */
    private readonly isVirtualHost: (addr: Uint8Array, off: number) => boolean,
    /** A guest asked for a router advertisement. */
    private readonly onRouterSolicit: () => void,
  ) {}

  /** Handle an NDP message (ICMPv6 type 133–137) at buf[off, off+len) inside `ip`. */
  input(ip: Ipv6Packet, off: number, len: number, srcMacOff: number): void {
    const b = ip.buf;
    const type = b[off];
    if (ip.hopLimit !== 255 || b[off + 1] !== 0) {
      this.counters.invalid++;
      return;
    }
    const srcUnspec = isUnspecified(b, ip.srcOff);
    switch (type) {
      case NDP_NEIGHBOUR_SOLICIT: {
        if (len < NS_FIXED_LEN || b[off + ND_TARGET_OFF] === 0xff) break;
        const lla = this.opts.reset(b, off + NS_FIXED_LEN, len - NS_FIXED_LEN).findLinkLayer(NDP_OPT_SOURCE_LLADDR);
        if (lla === -2 || (srcUnspec && (lla >= 0 || !ip.dstIsMulticast))) break;
        this.counters.solicitations++;
        if (!srcUnspec) this.neighbours.learn6(b, ip.srcOff, b, lla >= 0 ? lla : srcMacOff);
        const target = off + ND_TARGET_OFF;
        if (!this.isVirtualHost(b, target)) {
          this.counters.ignored++;
          return;
        }
        const flags = NA_FLAG_ROUTER | NA_FLAG_OVERRIDE | (srcUnspec ? 0 : NA_FLAG_SOLICITED);
        const na = buildNeighbourAdvertisement(b, target, this.sink.ourMac, flags);
        // A DAD probe for one of our addresses is defended to all nodes (§7.2.4).
        const dst = srcUnspec ? ALL_NODES : b.slice(ip.srcOff, ip.srcOff + 16);
        this.sink.icmp6(na, ND_TARGET_OFF, dst, 0, na, na, 8, na.length - 8, 255);
        this.counters.advertisements++;
        return;
      }
      case NDP_NEIGHBOUR_ADVERT: {
        if (len < NA_FIXED_LEN || b[off + ND_TARGET_OFF] === 0xff) break;
        const lla = this.opts.reset(b, off + NA_FIXED_LEN, len - NA_FIXED_LEN).findLinkLayer(NDP_OPT_TARGET_LLADDR);
        if (lla === -2) break;
        // Unsolicited NAs (e.g. after the guest's DAD) tell us where its new address lives.
        if (lla >= 0) this.neighbours.learn6(b, off + ND_TARGET_OFF, b, lla);
        return;
      }
      case NDP_ROUTER_SOLICIT: {
        if (len < RS_FIXED_LEN) break;
        const lla = this.opts.reset(b, off + RS_FIXED_LEN, len - RS_FIXED_LEN).findLinkLayer(NDP_OPT_SOURCE_LLADDR);
        if (lla === -2 || (srcUnspec && lla >= 0)) break;
        if (!srcUnspec) this.neighbours.learn6(b, ip.srcOff, b, lla >= 0 ? lla : srcMacOff);
        this.counters.routerSolicitations++;
        this.onRouterSolicit();
        return;
      }
      case NDP_ROUTER_ADVERT:
      case NDP_REDIRECT:
        // There is no other router on this link, and we do not take redirects from the guest.
        this.counters.ignored++;
        return;
      default:
        this.counters.ignored++;
        return;
    }
    this.counters.invalid++;
  }
}
