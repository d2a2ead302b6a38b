/**
 * Host-side listening for port forwards: which addresses a rule listens on, and errors a user can
 * act on when a port cannot be bound (in use, address not local, privileged).
 */

import fs from 'node:fs';
import net from 'node:net';
import dgram from 'node:dgram';
import { hostPort } from '../ip/endpoint.js';

/** One host socket address a forward listens on. */
export interface ListenAddress {
  address: string;
  /** true: IPv6 socket limited to IPv6 (so a separate IPv4 socket can share the port). */
  ipv6Only: boolean;
}

/** `tcp 127.0.0.1:8080`, `udp [::1]:53`. */
export function describeEndpoint(proto: 'tcp' | 'udp', address: string, port: number): string {
  return `${proto} ${hostPort(address, port)}`;
}

/** net.ipv4.ip_unprivileged_port_start of the current netns (1024 when unreadable). */
export function unprivilegedPortStart(): number {
  try {
    const v = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8').trim());
    return Number.isInteger(v) ? v : 1024;
  } catch {
    return 1024;
  }
}

/** An error from binding a forward's host socket, with a message naming the address and port. */
export class ListenError extends Error {
  readonly code: string;
  constructor(message: string, code: string) {
    super(message);
    this.name = 'ListenError';
    this.code = code;
  }
}

/** Turn a bind/listen error into a ListenError that says what to do. */
export function listenError(proto: 'tcp' | 'udp', address: string, port: number, err: NodeJS.ErrnoException): ListenError {
  const where = `cannot listen on ${describeEndpoint(proto, address, port)}`;
  const code = err.code ?? 'EIO';
  switch (code) {
    case 'EADDRINUSE':
      return new ListenError(`${where}: the port is already in use (EADDRINUSE); pick another host port or stop what holds it`, code);
    case 'EADDRNOTAVAIL':
      return new ListenError(`${where}: ${address} is not an address of this host (EADDRNOTAVAIL)`, code);
    case 'EACCES':
    case 'EPERM': {
      const start = unprivilegedPortStart();
      if (port < start) {
        return new ListenError(
          `${where}: ports below ${start} are privileged (net.ipv4.ip_unprivileged_port_start=${start}); ` +
            `use a host port >= ${start}, or lower that sysctl (${code})`,
          code,
        );
      }
      return new ListenError(`${where}: permission denied (${code})`, code);
    }
    case 'EAFNOSUPPORT':
      return new ListenError(`${where}: this host has no IPv${address.includes(':') ? 6 : 4} (EAFNOSUPPORT)`, code);
    default:
      return new ListenError(`${where}: ${err.message}`, code);
  }
}

/**
 * The sockets to open for a rule. `null` = every address of both families: one dual-stack `::`
 * socket (IPv4 arrives as ::ffff:a.b.c.d), falling back to 0.0.0.0 where the host has no IPv6.
 * `0.0.0.0` with `alsoIpv6` (the API's slirp4netns semantics when IPv6 is on) adds `::` v6-only.
 */
export function listenAddresses(hostAddress: string | null, alsoIpv6 = false): ListenAddress[] {
  if (hostAddress === null) return [{ address: '::', ipv6Only: false }];
  if (hostAddress === '0.0.0.0' && alsoIpv6) return [{ address: '0.0.0.0', ipv6Only: false }, { address: '::', ipv6Only: true }];
  return [{ address: hostAddress, ipv6Only: net.isIPv6(hostAddress) }];
}

/** Listen a TCP server; rejects with a ListenError. */
export function listenTcp(server: net.Server, proto: 'tcp', la: ListenAddress, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException): void => reject(listenError(proto, la.address, port, e));
    server.once('error', onError);
    server.listen({ host: la.address, port, ipv6Only: la.ipv6Only, exclusive: true, backlog: 1024 }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** Bind a UDP socket; rejects with a ListenError. */
export function bindUdp(la: ListenAddress, port: number): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket({ type: net.isIPv6(la.address) ? 'udp6' : 'udp4', ipv6Only: la.ipv6Only });
    const onError = (e: NodeJS.ErrnoException): void => {
      s.close();
      reject(listenError('udp', la.address, port, e));
    };
    s.once('error', onError);
    s.bind({ address: la.address, port, exclusive: true }, () => {
      s.off('error', onError);
      resolve(s);
    });
  });
}

/** True when a `::` listen failed only because the host has no IPv6 (fall back to 0.0.0.0). */
export function noIpv6(e: unknown): boolean {
  return e instanceof ListenError && (e.code === 'EAFNOSUPPORT' || e.code === 'EADDRNOTAVAIL');
}
