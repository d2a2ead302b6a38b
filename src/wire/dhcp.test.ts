import { describe, expect, it } from 'vitest';
import {
  BOOTREPLY,
  BOOTREQUEST,
  DHCP_MIN_LEN,
  DhcpMessage,
  DhcpOption,
  DhcpOptionCursor,
  DhcpWriter,
  encodeDomainSearch,
} from './dhcp.js';

function request(build: (w: DhcpWriter) => void): Uint8Array {
  const buf = new Uint8Array(600);
  const w = new DhcpWriter().begin(buf, 0, buf.length, BOOTREQUEST);
  w.xid(0xdeadbeef).flags(0x8000).ciaddr(0x0a00020f);
  w.chaddr(Uint8Array.from([0x52, 0x54, 0, 0x12, 0x34, 0x56]), 0);
  build(w);
  return buf.slice(0, w.finish());
}

describe('DhcpMessage', () => {
  it('reads the fixed header', () => {
    const b = request((w) => w.optionU8(DhcpOption.messageType, 1));
    const m = new DhcpMessage();
    expect(m.wrap(b, 0, b.length)).toBe(true);
    expect(m.op).toBe(BOOTREQUEST);
    expect(m.htype).toBe(1);
    expect(m.hlen).toBe(6);
    expect(m.xid).toBe(0xdeadbeef);
    expect(m.broadcast).toBe(true);
    expect(m.ciaddr).toBe(0x0a00020f);
    expect(m.yiaddr).toBe(0);
    expect(Array.from(b.subarray(m.chaddrOff, m.chaddrOff + 6))).toEqual([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    expect(m.messageType()).toBe(1);
    expect(b.length).toBe(300); // padded to the BOOTP minimum
  });

  it('rejects short messages and a wrong cookie', () => {
    const m = new DhcpMessage();
    expect(m.wrap(new Uint8Array(DHCP_MIN_LEN - 1), 0, DHCP_MIN_LEN - 1)).toBe(false);
    const b = request(() => {});
    b[236] = 0;
    expect(m.wrap(b, 0, b.length)).toBe(false);
    // len beyond the buffer
    expect(m.wrap(new Uint8Array(250), 0, 400)).toBe(false);
  });

  it('walks options, skipping pad and stopping at end', () => {
    const b = request((w) => {
      w.optionU8(DhcpOption.messageType, 3);
      w.optionU32(DhcpOption.requestedAddress, 0x0a00020f);
    });
    // insert pads: rebuild by hand
    const raw = new Uint8Array(DHCP_MIN_LEN + 12);
    raw.set(b.subarray(0, DHCP_MIN_LEN));
    raw.set([0, 0, 53, 1, 3, 0, 12, 2, 0x68, 0x69, 255, 53], DHCP_MIN_LEN);
    const m = new DhcpMessage();
    expect(m.wrap(raw, 0, raw.length)).toBe(true);
    const c = m.options(new DhcpOptionCursor());
    const seen: number[] = [];
    while (c.next()) seen.push(c.code);
    expect(seen).toEqual([53, 12]);
    expect(c.malformed).toBe(false);
    expect(m.messageType()).toBe(3);
    expect(m.findOption(12)).toBe(DHCP_MIN_LEN + 8);
    expect(m.foundLen).toBe(2);
    expect(m.findOption(50)).toBe(-1);
  });

  it('stops on an option running past the end', () => {
    const raw = new Uint8Array(DHCP_MIN_LEN + 5);
    raw.set(request(() => {}).subarray(0, DHCP_MIN_LEN));
    raw.set([53, 1, 1, 50, 4], DHCP_MIN_LEN); // 50 claims 4 bytes, none present
    const m = new DhcpMessage();
    expect(m.wrap(raw, 0, raw.length)).toBe(true);
    expect(m.messageType()).toBe(1);
    expect(m.addressOption(50)).toBeNull();
    expect(m.optionsWellFormed()).toBe(false);
    const trunc = raw.slice(0, DHCP_MIN_LEN + 4);
    trunc[DHCP_MIN_LEN + 3] = 50; // code with no length byte
    expect(m.wrap(trunc, 0, trunc.length)).toBe(true);
    expect(m.optionsWellFormed()).toBe(false);
  });

  it('accepts options that end without an END option', () => {
    const raw = new Uint8Array(DHCP_MIN_LEN + 3);
    raw.set(request(() => {}).subarray(0, DHCP_MIN_LEN));
    raw.set([53, 1, 1], DHCP_MIN_LEN);
    const m = new DhcpMessage();
    expect(m.wrap(raw, 0, raw.length)).toBe(true);
    expect(m.optionsWellFormed()).toBe(true);
    expect(m.messageType()).toBe(1);
  });
});

describe('DhcpWriter', () => {
  it('splits long options (RFC 3396) and throws on overflow', () => {
    const buf = new Uint8Array(900);
    const w = new DhcpWriter().begin(buf, 0, buf.length);
    w.option(DhcpOption.domainSearch, new Uint8Array(300).fill(7));
    const len = w.finish();
    const m = new DhcpMessage();
    expect(m.wrap(buf, 0, len)).toBe(true);
    expect(m.op).toBe(BOOTREPLY);
    const c = m.options(new DhcpOptionCursor());
    const lens: number[] = [];
    while (c.next()) lens.push(c.dataLen);
    expect(lens).toEqual([255, 45]);
    const small = new DhcpWriter().begin(new Uint8Array(250), 0, 250);
    expect(() => small.optionAddresses(6, [1, 2, 3])).toThrow(RangeError);
  });

  it('encodes domain search lists', () => {
    expect(Array.from(encodeDomainSearch(['a.bc', 'x.']))).toEqual([1, 97, 2, 98, 99, 0, 1, 120, 0]);
    expect(() => encodeDomainSearch(['a..b'])).toThrow(/labels/);
  });
});
