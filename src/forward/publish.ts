/**
 * Port-forward specifications in Docker/Podman syntax:
 * `[HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/tcp|/udp]`, HOST_IP IPv4 or [IPv6].
 */

import ipaddr from 'ipaddr.js';

export interface PortForwardSpec {
  proto: 'tcp' | 'udp';
  /** Host address to listen on; null = all addresses (both families). */
  hostAddress: string | null;
  hostPort: number;
  containerPort: number;
  /** The text it came from, for messages. */
  text: string;
}

function port(text: string, what: string, spec: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw new Error(`--publish "${spec}": ${what} "${text}" is not a port (1-65535)`);
  }
  return Number(text);
}

function range(text: string, what: string, spec: string): [number, number] {
  const m = /^([^-]+)(?:-(.+))?$/.exec(text);
  if (!m) throw new Error(`--publish "${spec}": bad ${what} "${text}"`);
  const a = port(m[1], what, spec);
  const b = m[2] === undefined ? a : port(m[2], what, spec);
  if (b < a) throw new Error(`--publish "${spec}": ${what} range ${text} ends before it starts`);
  return [a, b];
}

/** Parse one --publish value into one spec per port. Throws with a message naming the problem. */
export function parsePublish(spec: string): PortForwardSpec[] {
  let rest = spec;
  let proto: 'tcp' | 'udp' = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash !== -1) {
    const p = rest.slice(slash + 1).toLowerCase();
    if (p !== 'tcp' && p !== 'udp') throw new Error(`--publish "${spec}": protocol "${p}" is not tcp or udp`);
    proto = p;
    rest = rest.slice(0, slash);
  }
  let hostAddress: string | null = null;
  const v6 = /^\[([^\]]*)\]:(.*)$/.exec(rest);
  if (v6) {
    if (!ipaddr.IPv6.isValid(v6[1])) throw new Error(`--publish "${spec}": "${v6[1]}" is not an IPv6 address`);
    hostAddress = ipaddr.IPv6.parse(v6[1]).toString();
    rest = v6[2];
  }
  const parts = rest.split(':');
  if (!v6 && parts.length === 3) {
    const a = parts.shift()!;
    if (a !== '') {
      if (!ipaddr.IPv4.isValidFourPartDecimal(a)) throw new Error(`--publish "${spec}": "${a}" is not an IPv4 address (write IPv6 as [ADDR])`);
      hostAddress = a;
    }
  }
  if (parts.length !== 2) {
    throw new Error(`--publish "${spec}": expected [HOST_IP:]HOST_PORT:CONTAINER_PORT[/tcp|/udp], e.g. 8080:80 or 127.0.0.1:8080:80/tcp`);
  }
  const [h0, h1] = range(parts[0], 'host port', spec);
  const [c0, c1] = range(parts[1], 'container port', spec);
  if (h1 - h0 !== c1 - c0) throw new Error(`--publish "${spec}": the host and container port ranges must have the same length`);
  const out: PortForwardSpec[] = [];
  for (let i = 0; i <= h1 - h0; i++) out.push({ proto, hostAddress, hostPort: h0 + i, containerPort: c0 + i, text: spec });
  return out;
}
