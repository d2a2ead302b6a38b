/**
 * RouterAdvertiser: slipway's router advertisements (RFC 4861 §6.2), which are how a guest
 * configures IPv6: the /64 prefix with the on-link and autonomous flags (SLAAC), the MTU, the DNS
 * address (RDNSS, RFC 8106) and search list (DNSSL), and the O flag (more from stateless
 * DHCPv6). The message never changes, so it is built once. It goes to all nodes from the router's
 * link-local address: once at start, in answer to router solicitations (at most one per
 * `minSolicitedGapMs`: a guest cannot make us flood), and every `intervalMs` so lifetimes never
 * run out.
 */

import type { FrameSink } from '../link/sink.js';
import { parseIpv6 } from '../wire/ipv6.js';
import { buildRouterAdvertisement } from '../wire/ndp.js';

export interface RouterAdvertiserOptions {
  sink: FrameSink;
  /** Our link-local address (the guest's default router). */
  routerAddress: Uint8Array;
  /** The /64 prefix, as text ("fd00::"). */
  prefix: string;
  mtu: number;
  /** RDNSS addresses (text); empty: none. */
  dns: string[];
  search?: string[];
  routerLifetime?: number;
  validLifetime?: number;
  preferredLifetime?: number;
  intervalMs?: number;
  minSolicitedGapMs?: number;
  now?: () => number;
}

const ALL_NODES = parseIpv6('ff02::1');

export class RouterAdvertiser {
  readonly message: Uint8Array;
  readonly counters = { sent: 0, solicited: 0, rateLimited: 0 };
  private timer: NodeJS.Timeout | null = null;
  private lastSolicited = -Infinity;
  private readonly sink: FrameSink;
  private readonly router: Uint8Array;
  private readonly intervalMs: number;
  private readonly minGap: number;
  private readonly now: () => number;

  constructor(o: RouterAdvertiserOptions) {
    this.sink = o.sink;
    this.router = o.routerAddress;
    this.intervalMs = o.intervalMs ?? 300_000;
    this.minGap = o.minSolicitedGapMs ?? 200;
    this.now = o.now ?? Date.now;
    this.message = buildRouterAdvertisement({
      routerLifetime: o.routerLifetime ?? 1800,
      prefix: parseIpv6(o.prefix),
      validLifetime: o.validLifetime ?? 86400,
      preferredLifetime: o.preferredLifetime ?? 14400,
      mtu: o.mtu,
      mac: o.sink.ourMac,
      dns: o.dns.map(parseIpv6),
      dnsLifetime: 1800,
      search: o.search ?? [],
      otherConfig: true,
    });
  }

  /** Send one now and start the periodic ones. */
  start(): void {
    this.send();
    if (this.timer) return;
    this.timer = setInterval(() => this.send(), this.intervalMs);
    this.timer.unref();
  }

  /** A router solicitation arrived. */
  solicited(): void {
    const t = this.now();
    if (t - this.lastSolicited < this.minGap) {
      this.counters.rateLimited++;
      return;
    }
    this.lastSolicited = t;
    this.counters.solicited++;
    this.send();
  }

  send(): void {
    const m = this.message;
    if (this.sink.icmp6(this.router, 0, ALL_NODES, 0, m, m, 8, m.length - 8, 255)) this.counters.sent++;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
