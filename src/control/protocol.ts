/**
 * The control API protocol, compatible with slirp4netns' api.c: one JSON request per connection
 * (under 4096 bytes), one JSON object back. Errors are `{"error":{"desc":"..."}}` with
 * slirp4netns' own desc strings. Replies are compact JSON, as slirp4netns writes them.
 *
 *   {"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"0.0.0.0","host_port":8080,
 *     "guest_addr":"10.0.2.100","guest_port":80}}            → {"return":{"id":1}}
 *   {"execute":"list_hostfwd"}  → {"return":{"entries":[…]},"entries":[…]}
 *   {"execute":"remove_hostfwd","arguments":{"id":1}}        → {"return":{}}
 * Extensions (slipway only): {"execute":"get_stats"} → {"return":{…counters…}},
 *   {"execute":"list_flows"} → {"return":{"flows":[…]}}.
 *
 * list_hostfwd: slirp4netns answers `{"entries":[…]}` without "return", unlike its other
 * commands; we send the entries under both keys so clients written for either shape work.
 */

import net from 'node:net';

export const MAX_REQUEST_BYTES = 4096;

export interface HostfwdEntry {
  id: number;
  proto: 'tcp' | 'udp';
  host_addr?: string;
  host_addr6?: string;
  host_port: number;
  guest_addr?: string;
  guest_addr6?: string;
  guest_port: number;
}

export interface AddHostfwd {
  proto: 'tcp' | 'udp';
  /** Family restriction from tcp4/tcp6/udp4/udp6. */
  family: 4 | 6 | null;
  /** "0.0.0.0" (also "::"/"::0") = any address. */
  hostAddr: string;
  hostPort: number;
  /** null: the configured address. */
  guestAddr: string | null;
  guestPort: number;
}

/** What the API drives. */
export interface ApiBackend {
  /** Whether IPv6 is on (IPv6 host/guest addresses are refused otherwise, like slirp4netns). */
  readonly ipv6: boolean;
  /** Resolves with the new id; rejects with an Error whose message says why (e.g. port in use). */
  addHostfwd(req: AddHostfwd): Promise<number>;
  listHostfwd(): HostfwdEntry[];
  removeHostfwd(id: number): boolean;
  stats(): object;
  flows(): object[];
}

export type ApiReply = { return: object; [k: string]: unknown } | { error: { desc: string } };

const err = (desc: string): ApiReply => ({ error: { desc } });

export const DESC = {
  tooLarge: 'bad request: too large message',
  parse: 'bad request: cannot parse JSON',
  notObject: 'bad request: json_object() failed',
  noExecute: 'bad request: no execute found',
  unknown: 'bad request: unknown execute',
  proto: 'bad request: add_hostfwd: bad arguments.proto',
  hostAddr: 'bad request: add_hostfwd: bad arguments.host_addr',
  hostPort: 'bad request: add_hostfwd: bad arguments.host_port',
  guestAddr: 'bad request: add_hostfwd: bad arguments.guest_addr',
  guestPort: 'bad request: add_hostfwd: bad arguments.guest_port',
  removeId: 'bad request: remove_hostfwd: bad arguments.id',
} as const;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** slirp4netns reads numbers with (int)json_number: non-numbers are 0. We also refuse fractions and out-of-range. */
function port(v: unknown): number | null {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) return null;
  return v;
}

/** Validate add_hostfwd's arguments; an error reply or the request. */
export function parseAddHostfwd(args: unknown, ipv6: boolean): AddHostfwd | ApiReply {
  const a = isObject(args) ? args : {};
  const p = a['proto'];
  const m = typeof p === 'string' ? /^(tcp|udp)([46]?)$/.exec(p) : null;
  if (!m) return err(DESC.proto);
  const family = m[2] === '4' ? 4 : m[2] === '6' ? 6 : null;
  if (family === 6 && !ipv6) return err(DESC.proto);
  const h = a['host_addr'];
  if (h !== undefined && h !== null && typeof h !== 'string') return err(DESC.hostAddr);
  let hostAddr: string = h ? h : '0.0.0.0';
  if (!net.isIP(hostAddr)) return err(DESC.hostAddr);
  if (hostAddr === '::' || hostAddr === '::0') hostAddr = '0.0.0.0';
  if (net.isIPv6(hostAddr) && !ipv6) return err(DESC.hostAddr);
  if (hostAddr !== '0.0.0.0' && family !== null && (family === 6) !== net.isIPv6(hostAddr)) return err(DESC.hostAddr);
  const hostPort = port(a['host_port']);
  if (hostPort === null) return err(DESC.hostPort);
  let guestAddr = a['guest_addr'];
  if (guestAddr === undefined || guestAddr === null || guestAddr === '') guestAddr = null;
  else if (typeof guestAddr !== 'string' || !net.isIP(guestAddr) || (net.isIPv6(guestAddr) && !ipv6)) return err(DESC.guestAddr);
  const guestPort = port(a['guest_port']);
  if (guestPort === null) return err(DESC.guestPort);
  return { proto: m[1] as 'tcp' | 'udp', family, hostAddr, hostPort, guestAddr: guestAddr as string | null, guestPort };
}

/** Answer one request (the raw bytes the client sent). Never throws. */
export async function handleRequest(raw: Buffer, backend: ApiBackend): Promise<ApiReply> {
  if (raw.length >= MAX_REQUEST_BYTES) return err(DESC.tooLarge);
  let req: unknown;
  try {
    req = JSON.parse(raw.toString('utf8'));
  } catch {
    return err(DESC.parse);
  }
  if (!isObject(req)) return err(DESC.notObject);
  const execute = req['execute'];
  if (typeof execute !== 'string') return err(DESC.noExecute);
  const args = req['arguments'];
  switch (execute) {
    case 'add_hostfwd': {
      const r = parseAddHostfwd(args, backend.ipv6);
      if ('error' in r || 'return' in r) return r;
      try {
        const id = await backend.addHostfwd(r);
        return { return: { id } };
      } catch (e) {
        return err(`add_hostfwd: ${(e as Error).message}`);
      }
    }
    case 'list_hostfwd': {
      const entries = backend.listHostfwd();
      return { return: { entries }, entries };
    }
    case 'remove_hostfwd': {
      const id = isObject(args) ? args['id'] : undefined;
      if (typeof id !== 'number' || !Number.isInteger(id) || !backend.removeHostfwd(id)) return err(DESC.removeId);
      return { return: {} };
    }
    case 'get_stats':
      return { return: backend.stats() };
    case 'list_flows':
      return { return: { flows: backend.flows() } };
    default:
      return err(DESC.unknown);
  }
}
