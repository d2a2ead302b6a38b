/**
 * DHCPv4 server for the guest (RFC 2131), pure logic: bytes in, reply bytes out.
 *
 * Theory of operation. The tap is a point-to-point Ethernet with (usually) one guest, and slipway
 * is the only server on it, so this server is *authoritative*: it never needs to coordinate with
 * another one. It hands out addresses from a small range (slirp4netns: .15–.30) and tells the
 * guest the router (.2), the DNS forwarder (.3), the MTU and optional domain/search list.
 *
 * * Leases are keyed by the client identifier (option 61) when the client sends one, else by the
 *   MAC the frame came from. A client gets the same address back on every DISCOVER, even after its
 *   lease expired, as long as nobody else took it meanwhile.
 * * Addresses come from the range only. A new client first gets a never-used address, then the
 *   one whose lease expired longest ago. Offered-but-not-requested addresses are held for
 *   `OFFER_HOLD_MS`. With nothing free, no OFFER is sent and `exhausted` is counted.
 * * Being authoritative, a REQUEST for an address we have no record of (INIT-REBOOT, RENEWING
 *   after slipway restarted and lost its table) is ACKed when the address is in the range and
 *   free, and NAKed otherwise so the client restarts discovery at once instead of waiting.
 * * Lease time: 86400 s, as slirp4netns. The link is private to one container, so nothing is
 *   gained by short leases; long ones keep renew chatter out of the logs. T1/T2 are the RFC's
 *   defaults (50 % / 87.5 %).
 * * Replies are unicast to the offered address and the client's MAC unless the client set the
 *   broadcast flag (busybox udhcpc does not) or the reply is a NAK; a client that already has an
 *   address (renewing, INFORM) is answered at `ciaddr`. The caller builds the IP/UDP/Ethernet
 *   frame from `dst` and `broadcast`.
 */

import { formatIpv4 } from '../wire/ipv4.js';
import { formatMac } from '../wire/ethernet.js';
import {
  DHCP_FLAG_BROADCAST,
  DHCP_SAFE_LEN,
  BOOTREQUEST,
  DhcpMessage,
  DhcpMessageType,
  DhcpOption,
  DhcpWriter,
  HTYPE_ETHERNET,
  encodeDomainSearch,
} from '../wire/dhcp.js';

/** slirp4netns' lease time. */
export const DHCP_DEFAULT_LEASE_SECONDS = 86400;
/** How long an OFFER reserves its address for the client it was made to. */
export const OFFER_HOLD_MS = 60_000;
/** How long an address a client DECLINEd (someone else answers ARP for it) is kept out of use. */
export const DECLINE_HOLD_MS = 600_000;

export interface DhcpServerOptions {
  /** Network address (uint32), e.g. 10.0.2.0. */
  network: number;
  prefixLength: number;
  /** The server identifier (option 54): the gateway, .2. */
  serverAddress: number;
  router: number;
  dns: number[];
  /** First and last address handed out (inclusive), e.g. .15 and .30. */
  rangeStart: number;
  rangeEnd: number;
  /** Lease time in seconds; defaults to `DHCP_DEFAULT_LEASE_SECONDS`. */
  leaseSeconds?: number;
  mtu: number;
  domainName?: string;
  searchDomains?: string[];
  /** Clock in milliseconds; tests inject one. */
  now?: () => number;
}

/** What to send back: the DHCP payload, and where (the caller adds UDP 67→68, IPv4, Ethernet). */
export interface DhcpReply {
  reply: Uint8Array;
  /** Send to 255.255.255.255 and ff:ff:ff:ff:ff:ff instead of unicast to the client's MAC. */
  broadcast: boolean;
  /** The address given to the client (0 for NAK and INFORM). */
  yiaddr: number;
  /** IPv4 destination: 255.255.255.255 when `broadcast`, else ciaddr or yiaddr. */
  dst: number;
}

export interface DhcpCounters {
  offers: number;
  acks: number;
  naks: number;
  informs: number;
  declines: number;
  releases: number;
  /** No free address in the range for a DISCOVER. */
  exhausted: number;
  /** Not a well-formed Ethernet BOOTREQUEST with a message type. */
  malformed: number;
  /** Well-formed but not for us (REQUEST to another server, unknown type, wrong server id). */
  ignored: number;
}

/** A lease as shown to the control API and logs. */
export interface DhcpLease {
  address: number;
  mac: string;
  clientId: string | null;
  state: 'offered' | 'bound';
  /** Milliseconds, same clock as `now`. */
  expiresAt: number;
}

interface Lease {
  key: string;
  address: number;
  mac: string;
  clientId: string | null;
  state: 'offered' | 'bound';
  expiresAt: number;
}

const BROADCAST = 0xffffffff;

export class DhcpServer {
  readonly counters: DhcpCounters = {
    offers: 0, acks: 0, naks: 0, informs: 0, declines: 0, releases: 0, exhausted: 0, malformed: 0, ignored: 0,
  };
  private readonly opts: Required<Omit<DhcpServerOptions, 'domainName' | 'searchDomains' | 'now'>>;
  private readonly mask: number;
  private readonly broadcastAddress: number;
  private readonly domainName: Uint8Array | null;
  private readonly searchList: Uint8Array | null;
  private readonly now: () => number;
  private readonly byKey = new Map<string, Lease>();
  private readonly byAddress = new Map<number, Lease>();
  private readonly declined = new Map<number, number>();
  private readonly msg = new DhcpMessage();
  private readonly writer = new DhcpWriter();
  private readonly scratch = new Uint8Array(1500);

  constructor(options: DhcpServerOptions) {
    const { network, prefixLength, serverAddress, router, dns, rangeStart, rangeEnd, mtu } = options;
    const leaseSeconds = options.leaseSeconds ?? DHCP_DEFAULT_LEASE_SECONDS;
    if (!Number.isInteger(prefixLength) || prefixLength < 1 || prefixLength > 30) {
      throw new Error(`DHCP: prefix length /${prefixLength} is not usable; use /1 to /30`);
    }
    this.mask = (0xffffffff << (32 - prefixLength)) >>> 0;
    const net = (network & this.mask) >>> 0;
    this.broadcastAddress = (net | ~this.mask) >>> 0;
    const inside = (a: number): boolean => ((a & this.mask) >>> 0) === net && a !== net && a !== this.broadcastAddress;
    const cidr = `${formatIpv4(net)}/${prefixLength}`;
    if (!inside(serverAddress)) throw new Error(`DHCP: server address ${formatIpv4(serverAddress)} is not a host of ${cidr}`);
    if (!inside(router)) throw new Error(`DHCP: router ${formatIpv4(router)} is not a host of ${cidr}`);
    if (!inside(rangeStart) || !inside(rangeEnd) || rangeStart > rangeEnd) {
      throw new Error(`DHCP: range ${formatIpv4(rangeStart)}–${formatIpv4(rangeEnd)} is not an ordered range of hosts in ${cidr}`);
    }
    if (serverAddress >= rangeStart && serverAddress <= rangeEnd) {
      throw new Error(`DHCP: server address ${formatIpv4(serverAddress)} lies inside the lease range`);
    }
    if (!Number.isInteger(leaseSeconds) || leaseSeconds < 60 || leaseSeconds > 0xfffffffe) {
      throw new Error(`DHCP: lease time ${leaseSeconds}s must be an integer of at least 60 seconds`);
    }
    if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) throw new Error(`DHCP: MTU ${mtu} must be within 68..65535`);
    this.opts = { network: net, prefixLength, serverAddress, router, dns: [...dns], rangeStart, rangeEnd, leaseSeconds, mtu };
    this.domainName = options.domainName ? new TextEncoder().encode(options.domainName.replace(/\.$/, '')) : null;
    this.searchList = options.searchDomains?.length ? encodeDomainSearch(options.searchDomains) : null;
    this.now = options.now ?? Date.now;
    // Every client must accept a 576-byte datagram; refuse configurations whose replies would not fit.
    const size = this.write(DhcpMessageType.ack, 0, 0, 0, new Uint8Array(6), null);
    if (size > DHCP_SAFE_LEN) {
      throw new Error(`DHCP: replies would be ${size} bytes (max ${DHCP_SAFE_LEN}); shorten the DNS list, domain or search domains`);
    }
  }

  /**
   * Handle one DHCP payload (UDP to port 67) from the guest whose Ethernet source is `clientMac`.
   * Returns the reply to send, or null when nothing is to be sent.
   */
  handle(payload: Uint8Array, clientMac: Uint8Array): DhcpReply | null {
    const m = this.msg;
    if (
      !m.wrap(payload, 0, payload.length) || m.op !== BOOTREQUEST || m.htype !== HTYPE_ETHERNET ||
      m.hlen !== 6 || !m.optionsWellFormed()
    ) {
      this.counters.malformed++;
      return null;
    }
    const type = m.messageType();
    if (type === 0) {
      this.counters.malformed++; // plain BOOTP is not served
      return null;
    }
    const now = this.now();
    this.expireDeclines(now);
    const idOff = m.findOption(DhcpOption.clientId);
    const clientId = idOff >= 0 && m.foundLen > 0 ? hex(payload, idOff, m.foundLen) : null;
    const mac = formatMac(clientMac);
    const key = clientId !== null ? `id:${clientId}` : `mac:${mac}`;

    switch (type) {
      case DhcpMessageType.discover: return this.discover(key, mac, clientId, now);
      case DhcpMessageType.request: return this.request(key, mac, clientId, now);
      case DhcpMessageType.decline: this.decline(key, now); return null;
      case DhcpMessageType.release: this.release(key, now); return null;
      case DhcpMessageType.inform: return this.inform();
      default:
        this.counters.ignored++;
        return null;
    }
  }

  /** Current leases, for the control API and logs. */
  leases(): DhcpLease[] {
    return [...this.byKey.values()].map(({ address, mac, clientId, state, expiresAt }) => ({ address, mac, clientId, state, expiresAt }));
  }

  private discover(key: string, mac: string, clientId: string | null, now: number): DhcpReply | null {
    let lease = this.byKey.get(key);
    if (!lease || this.byAddress.get(lease.address) !== lease) {
      // Honour option 50 when it is free (a client returning with its old address), else pick one.
      const wanted = this.msg.addressOption(DhcpOption.requestedAddress);
      const address = wanted !== null && this.isFree(wanted, now) ? wanted : this.pickFree(now);
      if (address === null) {
        this.counters.exhausted++;
        return null;
      }
      lease = this.bind(key, mac, clientId, address, 'offered', now + OFFER_HOLD_MS);
    } else if (lease.state === 'offered' || lease.expiresAt <= now) {
      lease.state = 'offered';
      lease.expiresAt = now + OFFER_HOLD_MS;
    }
    this.counters.offers++;
    return this.reply(DhcpMessageType.offer, lease.address);
  }

  private request(key: string, mac: string, clientId: string | null, now: number): DhcpReply | null {
    const m = this.msg;
    const serverId = m.addressOption(DhcpOption.serverId);
    const requested = m.addressOption(DhcpOption.requestedAddress);
    const ciaddr = m.ciaddr;
    const lease = this.byKey.get(key);
    const ours = lease !== undefined && this.byAddress.get(lease.address) === lease;

    let address: number;
    if (serverId !== null) {
      // SELECTING: the client answers an OFFER, possibly another server's.
      if (serverId !== this.opts.serverAddress) {
        if (ours && lease.state === 'offered') this.unbind(lease);
        this.counters.ignored++;
        return null;
      }
      address = requested ?? ciaddr;
      if (!ours || lease.address !== address) return this.nak();
    } else if (requested !== null) {
      // INIT-REBOOT: the client verifies an address it remembers.
      address = requested;
      if (!(ours && lease.address === address) && !this.isFree(address, now)) return this.nak();
    } else if (ciaddr !== 0) {
      // RENEWING / REBINDING.
      address = ciaddr;
      if (!(ours && lease.address === address) && !this.isFree(address, now)) return this.nak();
    } else {
      this.counters.malformed++;
      return null;
    }
    const bound = ours && lease.address === address
      ? lease
      : this.bind(key, mac, clientId, address, 'bound', 0);
    bound.state = 'bound';
    bound.expiresAt = now + this.opts.leaseSeconds * 1000;
    this.counters.acks++;
    return this.reply(DhcpMessageType.ack, address);
  }

  private decline(key: string, now: number): void {
    const lease = this.byKey.get(key);
    const address = this.msg.addressOption(DhcpOption.requestedAddress);
    const serverId = this.msg.addressOption(DhcpOption.serverId);
    if (!lease || address === null || lease.address !== address || (serverId !== null && serverId !== this.opts.serverAddress)) {
      this.counters.ignored++;
      return;
    }
    this.counters.declines++;
    this.unbind(lease);
    this.declined.set(address, now + DECLINE_HOLD_MS);
  }

  private release(key: string, now: number): void {
    const lease = this.byKey.get(key);
    if (!lease || lease.address !== this.msg.ciaddr || this.byAddress.get(lease.address) !== lease) {
      this.counters.ignored++;
      return;
    }
    this.counters.releases++;
    // Keep the binding so the client gets the same address back, but let others take it.
    lease.expiresAt = Math.min(lease.expiresAt, now);
  }

  private inform(): DhcpReply | null {
    if (this.msg.ciaddr === 0) {
      this.counters.malformed++;
      return null;
    }
    this.counters.informs++;
    return this.reply(DhcpMessageType.ack, 0);
  }

  private nak(): DhcpReply {
    this.counters.naks++;
    return this.reply(DhcpMessageType.nak, 0);
  }

  private reply(type: number, yiaddr: number): DhcpReply {
    const m = this.msg;
    const len = this.write(type, m.xid, m.flags & DHCP_FLAG_BROADCAST, yiaddr, m.buf, m);
    const ciaddr = type === DhcpMessageType.nak ? 0 : m.ciaddr;
    const broadcast = type === DhcpMessageType.nak || (m.giaddr === 0 && ciaddr === 0 && m.broadcast);
    const dst = broadcast ? BROADCAST : ciaddr !== 0 ? ciaddr : yiaddr;
    return { reply: this.scratch.slice(0, len), broadcast, yiaddr, dst };
  }

  /** Build a reply into `scratch`; `req` null when sizing the configuration. */
  private write(type: number, xid: number, flags: number, yiaddr: number, chaddrBuf: Uint8Array, req: DhcpMessage | null): number {
    const o = this.opts;
    const w = this.writer.begin(this.scratch, 0, this.scratch.length);
    w.xid(xid).flags(flags).yiaddr(yiaddr);
    if (req) {
      w.chaddr(chaddrBuf, req.chaddrOff, 6).giaddr(req.giaddr);
      if (type === DhcpMessageType.ack) w.ciaddr(req.ciaddr); // RFC 2131 table 3: ACK echoes ciaddr
    } else {
      w.chaddr(chaddrBuf, 0, 6);
    }
    w.optionU8(DhcpOption.messageType, type);
    w.optionU32(DhcpOption.serverId, o.serverAddress);
    if (type === DhcpMessageType.nak) {
      if (req) {
        // Echo the client id so clients that match on it accept the NAK.
        const id = req.findOption(DhcpOption.clientId);
        if (id >= 0) w.option(DhcpOption.clientId, req.buf.subarray(id, id + req.foundLen));
      }
      return w.finish();
    }
    if (yiaddr !== 0 || !req) {
      w.optionU32(DhcpOption.leaseTime, o.leaseSeconds);
      w.optionU32(DhcpOption.renewalTime, Math.floor(o.leaseSeconds / 2));
      w.optionU32(DhcpOption.rebindingTime, Math.floor((o.leaseSeconds * 7) / 8));
    }
    w.optionU32(DhcpOption.subnetMask, this.mask);
    w.optionAddresses(DhcpOption.router, [o.router]);
    w.optionAddresses(DhcpOption.dnsServers, o.dns);
    w.optionU32(DhcpOption.broadcastAddress, this.broadcastAddress);
    w.optionU16(DhcpOption.interfaceMtu, o.mtu);
    if (this.domainName) w.option(DhcpOption.domainName, this.domainName);
    if (this.searchList) w.option(DhcpOption.domainSearch, this.searchList);
    return w.finish();
  }

  private inRange(a: number): boolean {
    return a >= this.opts.rangeStart && a <= this.opts.rangeEnd;
  }

  /** In the range, not declined recently, and unheld or its holder's lease ran out. */
  private isFree(a: number, now: number): boolean {
    if (!this.inRange(a)) return false;
    const until = this.declined.get(a);
    if (until !== undefined && until > now) return false;
    const holder = this.byAddress.get(a);
    return holder === undefined || holder.expiresAt <= now;
  }

  /** A never-used address first, else the one expired longest ago; null when all are held. */
  private pickFree(now: number): number | null {
    let oldest: Lease | null = null;
    for (let a = this.opts.rangeStart; a <= this.opts.rangeEnd; a++) {
      const until = this.declined.get(a);
      if (until !== undefined && until > now) continue;
      const holder = this.byAddress.get(a);
      if (holder === undefined) return a;
      if (holder.expiresAt <= now && (oldest === null || holder.expiresAt < oldest.expiresAt)) oldest = holder;
    }
    return oldest ? oldest.address : null;
  }

  private bind(key: string, mac: string, clientId: string | null, address: number, state: Lease['state'], expiresAt: number): Lease {
    const old = this.byKey.get(key);
    if (old) this.unbind(old);
    const previous = this.byAddress.get(address);
    if (previous) this.unbind(previous);
    const lease: Lease = { key, address, mac, clientId, state, expiresAt };
    this.byKey.set(key, lease);
    this.byAddress.set(address, lease);
    return lease;
  }

  private unbind(lease: Lease): void {
    if (this.byKey.get(lease.key) === lease) this.byKey.delete(lease.key);
    if (this.byAddress.get(lease.address) === lease) this.byAddress.delete(lease.address);
  }

  private expireDeclines(now: number): void {
    for (const [a, until] of this.declined) if (until <= now) this.declined.delete(a);
  }
}

function hex(buf: Uint8Array, off: number, len: number): string {
  let s = '';
  for (let i = 0; i < len; i++) s += buf[off + i].toString(16).padStart(2, '0');
  return s;
}
