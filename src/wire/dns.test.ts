import { describe, expect, it } from 'vitest';
import { DNS_ERROR_RESPONSE_MAX, DnsMessage, DnsRcode, dnsNamesEqual, writeDnsErrorResponse } from './dns.js';

/** A query: id, RD, one question for `name` (dotted), type, class IN. */
function buildQuery(id: number, name: string, qtype = 1): Uint8Array {
  const labels = name.split('.').filter(Boolean);
  const bytes = [id >> 8, id & 0xff, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
  for (const l of labels) bytes.push(l.length, ...Buffer.from(l));
  bytes.push(0, qtype >> 8, qtype & 0xff, 0, 1);
  return Uint8Array.from(bytes);
}

describe('DnsMessage', () => {
  it('reads header and question', () => {
    const q = buildQuery(0xbeef, 'www.Example.test', 28);
    const m = new DnsMessage();
    expect(m.wrap(q, 0, q.length)).toBe(true);
    expect(m.id).toBe(0xbeef);
    expect(m.qr).toBe(false);
    expect(m.opcode).toBe(0);
    expect(m.recursionDesired).toBe(true);
    expect(m.rcode).toBe(0);
    expect(m.qdcount).toBe(1);
    const name = new Uint8Array(255);
    expect(m.parseQuestion(name)).toBe(true);
    expect(m.qtype).toBe(28);
    expect(m.qclass).toBe(1);
    expect(m.questionEnd).toBe(q.length);
    expect(m.nameLen).toBe(18);
    expect(Buffer.from(name.subarray(0, m.nameLen)).toString('latin1')).toBe('\x03www\x07Example\x04test\x00');
    m.id = 0x1234;
    expect(q[0]).toBe(0x12);
    expect(q[1]).toBe(0x34);
  });

  it('rejects short messages and bad questions', () => {
    const m = new DnsMessage();
    expect(m.wrap(new Uint8Array(11), 0, 11)).toBe(false);
    const q = buildQuery(1, 'a.b');
    expect(m.wrap(q.subarray(0, q.length - 1), 0, q.length - 1)).toBe(true);
    expect(m.parseQuestion()).toBe(false); // class cut short
    const noQ = q.slice(0, 12);
    noQ[5] = 0;
    m.wrap(noQ, 0, 12);
    expect(m.parseQuestion()).toBe(false);
    const badLabel = q.slice();
    badLabel[12] = 0x40; // extended label type
    m.wrap(badLabel, 0, badLabel.length);
    expect(m.parseQuestion()).toBe(false);
    const longLabel = q.slice();
    longLabel[12] = 60; // runs past the end
    m.wrap(longLabel, 0, longLabel.length);
    expect(m.parseQuestion()).toBe(false);
  });

  it('follows backward compression pointers and refuses loops', () => {
    // Question at 12: "\x01a" then a pointer back to 12 — a loop.
    const loop = Uint8Array.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, 0xc0, 12, 0, 1, 0, 1]);
    const m = new DnsMessage();
    m.wrap(loop, 0, loop.length);
    expect(m.parseQuestion()).toBe(false);
    // Pointer to itself and forward pointers.
    const self = Uint8Array.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
    m.wrap(self, 0, self.length);
    expect(m.parseQuestion()).toBe(false);
    const fwd = Uint8Array.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 18, 0, 1, 0, 1, 0]);
    m.wrap(fwd, 0, fwd.length);
    expect(m.parseQuestion()).toBe(false);
    // Pointer into the header.
    const hdr = Uint8Array.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 2, 0, 1, 0, 1]);
    m.wrap(hdr, 0, hdr.length);
    expect(m.parseQuestion()).toBe(false);
  });

  it('compares names case-insensitively', () => {
    const a = Uint8Array.from([3, 0x57, 0x77, 0x57, 0]);
    const b = Uint8Array.from([3, 0x77, 0x77, 0x77, 0]);
    expect(dnsNamesEqual(a, 5, b, 5)).toBe(true);
    b[1] = 0x78;
    expect(dnsNamesEqual(a, 5, b, 5)).toBe(false);
    expect(dnsNamesEqual(a, 5, b, 4)).toBe(false);
  });

  it('builds SERVFAIL, REFUSED and FORMERR responses from a query', () => {
    const q = buildQuery(0x4242, 'MiXeD.example.test', 16);
    const m = new DnsMessage();
    m.wrap(q, 0, q.length);
    const out = new Uint8Array(DNS_ERROR_RESPONSE_MAX);
    for (const rcode of [DnsRcode.servFail, DnsRcode.refused]) {
      const len = writeDnsErrorResponse(m, rcode, out);
      expect(len).toBe(q.length);
      const r = new DnsMessage();
      expect(r.wrap(out, 0, len)).toBe(true);
      expect(r.id).toBe(0x4242);
      expect(r.qr).toBe(true);
      expect(r.recursionDesired).toBe(true);
      expect(r.rcode).toBe(rcode);
      expect(r.qdcount).toBe(1);
      expect(r.ancount + r.nscount + r.arcount).toBe(0);
      expect(Array.from(out.subarray(12, len))).toEqual(Array.from(q.subarray(12))); // case kept
    }
    const junk = q.slice(0, 14);
    m.wrap(junk, 0, junk.length);
    const len = writeDnsErrorResponse(m, DnsRcode.formErr, out);
    expect(len).toBe(12);
    const r = new DnsMessage();
    r.wrap(out, 0, len);
    expect(r.rcode).toBe(DnsRcode.formErr);
    expect(r.qdcount).toBe(0);
  });

  it('never throws on random bytes', () => {
    const m = new DnsMessage();
    const name = new Uint8Array(255);
    for (let i = 0; i < 5000; i++) {
      const b = new Uint8Array(12 + Math.floor(Math.random() * 60));
      for (let j = 0; j < b.length; j++) b[j] = Math.random() < 0.3 ? 0xc0 : Math.floor(Math.random() * 256);
      b[5] = 1;
      m.wrap(b, 0, b.length);
      if (m.parseQuestion(name)) expect(m.nameLen).toBeLessThanOrEqual(255);
    }
  });
});
