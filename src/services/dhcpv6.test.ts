import { describe, expect, it } from 'vitest';
import {
  Dhcpv6Server, MSG_ADVERTISE, MSG_INFORMATION_REQUEST, MSG_REPLY, MSG_REQUEST, MSG_SOLICIT, OPT_CLIENTID, OPT_DNS_SERVERS,
  OPT_DOMAIN_LIST, OPT_IA_NA, OPT_SERVERID, OPT_STATUS_CODE, STATUS_NO_ADDRS_AVAIL, encodeNames,
} from './dhcpv6.js';
import { formatIpv6 } from '../wire/ipv6.js';

const MAC = new Uint8Array([0x52, 0x55, 0x0a, 0, 2, 2]);
const CLIENT_DUID = [0, 1, 0, 1, 1, 2, 3, 4, 2, 0, 0, 0, 0, 1];

function msg(type: number, opts: [number, number[]][]): Uint8Array {
  const out = [type, 0xab, 0xcd, 0xef];
  for (const [code, body] of opts) out.push(code >> 8, code & 0xff, body.length >> 8, body.length & 0xff, ...body);
  return Uint8Array.from(out);
}

function options(m: Uint8Array): Map<number, Uint8Array> {
  const r = new Map<number, Uint8Array>();
  for (let o = 4; o < m.length; ) {
    const code = (m[o] << 8) | m[o + 1];
    const len = (m[o + 2] << 8) | m[o + 3];
    r.set(code, m.subarray(o + 4, o + 4 + len));
    o += 4 + len;
  }
  return r;
}

describe('Dhcpv6Server (stateless)', () => {
  const server = new Dhcpv6Server({ mac: MAC, dns: ['fd00::3'], search: ['example.test'] });

  it('answers INFORMATION-REQUEST with DNS servers and the search list', () => {
    const r = server.handle(msg(MSG_INFORMATION_REQUEST, [[OPT_CLIENTID, CLIENT_DUID], [6, [0, 23, 0, 24]]]))!;
    expect(r[0]).toBe(MSG_REPLY);
    expect([...r.subarray(1, 4)]).toEqual([0xab, 0xcd, 0xef]);
    const o = options(r);
    expect([...o.get(OPT_SERVERID)!]).toEqual([0, 3, 0, 1, ...MAC]);
    expect([...o.get(OPT_CLIENTID)!]).toEqual(CLIENT_DUID);
    expect(formatIpv6(o.get(OPT_DNS_SERVERS)!)).toBe('fd00::3');
    expect([...o.get(OPT_DOMAIN_LIST)!]).toEqual([...encodeNames(['example.test'])]);
  });

  it('advertises no addresses to SOLICIT (NoAddrsAvail in the IA) but still gives DNS', () => {
    const r = server.handle(msg(MSG_SOLICIT, [[OPT_CLIENTID, CLIENT_DUID], [OPT_IA_NA, [0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0]]]))!;
    expect(r[0]).toBe(MSG_ADVERTISE);
    const o = options(r);
    const ia = o.get(OPT_IA_NA)!;
    expect([...ia.subarray(0, 4)]).toEqual([0, 0, 0, 9]);
    expect((ia[12] << 8) | ia[13]).toBe(OPT_STATUS_CODE);
    expect((ia[16] << 8) | ia[17]).toBe(STATUS_NO_ADDRS_AVAIL);
    expect(o.has(OPT_DNS_SERVERS)).toBe(true);
  });

  it('ignores messages for another server and malformed ones', () => {
    expect(server.handle(msg(MSG_REQUEST, [[OPT_CLIENTID, CLIENT_DUID], [OPT_SERVERID, [0, 3, 0, 1, 9, 9, 9, 9, 9, 9]]]))).toBeNull();
    expect(server.handle(Uint8Array.from([MSG_INFORMATION_REQUEST, 1, 2, 3, 0, 1, 0, 50, 1]))).toBeNull();
    expect(server.handle(Uint8Array.from([1, 2]))).toBeNull();
    expect(server.handle(msg(MSG_SOLICIT, []))).toBeNull(); // SOLICIT needs a client id
    expect(server.counters.malformed).toBe(2);
  });

  it('never throws on random input', () => {
    let seed = 3;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) & 0xff;
    for (let i = 0; i < 3000; i++) server.handle(Uint8Array.from({ length: rnd() % 80 }, rnd));
  });
});
