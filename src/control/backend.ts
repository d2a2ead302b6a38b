/** The control API's backend: the PortForwarder plus the stack's counters. */

import net from 'node:net';
import type { PortForwarder } from '../forward/PortForwarder.js';
import type { AddHostfwd, ApiBackend, HostfwdEntry } from './protocol.js';

export interface BackendDeps {
  forwarder: PortForwarder;
  /** The configured guest address (default guest_addr). */
  guestAddress: string;
  ipv6: boolean;
  /** Live counters of everything else (stack, tap). */
  stats: () => object;
  /** Flows of the stack itself (guest-initiated). */
  stackFlows?: () => object[];
}

export function forwarderBackend(d: BackendDeps): ApiBackend {
  return {
    ipv6: d.ipv6,
    async addHostfwd(req: AddHostfwd): Promise<number> {
      const any = req.hostAddr === '0.0.0.0';
      const hostAddress = any && req.family === 6 ? '::' : req.hostAddr;
      const entry = await d.forwarder.add(
        {
          proto: req.proto,
          hostAddress,
          hostPort: req.hostPort,
          guestAddress: req.guestAddr ?? d.guestAddress,
          guestAddressExplicit: req.guestAddr !== null,
          guestPort: req.guestPort,
          text: `api ${req.proto} ${hostAddress}:${req.hostPort} → ${req.guestAddr ?? d.guestAddress}:${req.guestPort}`,
        },
        any && req.family === null,
      );
      return entry.id;
    },
    listHostfwd(): HostfwdEntry[] {
      return d.forwarder.list().map(({ id, rule, listening }) => {
        const v6Listen = listening.some((l) => l.includes('['));
        const host = rule.hostAddress;
        const out = { id, proto: rule.proto } as HostfwdEntry;
        if (host === null || host === '0.0.0.0' || net.isIPv4(host)) out.host_addr = host === null ? '0.0.0.0' : host;
        if (net.isIPv6(host ?? '') || ((host === null || host === '0.0.0.0') && v6Listen)) out.host_addr6 = host !== null && net.isIPv6(host) ? host : '::';
        out.host_port = rule.hostPort;
        if (net.isIPv6(rule.guestAddress)) out.guest_addr6 = rule.guestAddress;
        else out.guest_addr = rule.guestAddress;
        out.guest_port = rule.guestPort;
        return out;
      });
    },
    removeHostfwd: (id) => d.forwarder.remove(id),
    stats: () => ({ ...d.stats(), forwards: d.forwarder.stats() }),
    flows: () => [...d.forwarder.flows(), ...(d.stackFlows?.() ?? [])],
  };
}
