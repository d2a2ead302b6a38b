import { describe, expect, it } from 'vitest';
import { FrameSink, type FrameWriter } from './sink.js';
import { GUEST_MAC, GW_MAC } from '../testing/frames.js';
import { parseIpv4, Ipv4Packet, PROTO_TCP } from '../wire/ipv4.js';
import { ACK, TCP_CHECKSUM_OFFSET } from '../wire/tcp.js';
import { finish, partialSum, pseudoSum4 } from '../wire/checksum.js';
import { VNET_GSO_TCPV4 } from '../wire/vnet.js';

const SRC = parseIpv4('203.0.113.10');
const DST = parseIpv4('10.0.2.100');

class OffloadWriter implements FrameWriter {
  frames: { frame: Uint8Array; gsoType: number; gsoSize: number; csumStart: number; csumOffset: number; hdrLen: number }[] = [];
  write(): boolean { throw new Error('plain write used'); }
  writev(): boolean { throw new Error('plain writev used'); }
  writevOffload(parts: Uint8Array[], gsoType: number, gsoSize: number, csumStart: number, csumOffset: number, hdrLen: number): boolean {
    this.frames.push({ frame: Buffer.concat(parts), gsoType, gsoSize, csumStart, csumOffset, hdrLen });
    return true;
  }
}

describe('FrameSink with checksum/GSO offload', () => {
  it('leaves the TCP checksum to the kernel and marks super-frames as GSO', () => {
    const w = new OffloadWriter();
    const sink = new FrameSink(w, GW_MAC, () => GUEST_MAC);
    expect(sink.offload).toBe(true);
    const payload = new Uint8Array(40000).fill(7);
    sink.tcp4(SRC, DST, 80, 40000, 1, 2, ACK, 1000, payload, 0, payload.length, undefined, 1460);
    sink.tcp4(SRC, DST, 80, 40000, 40001, 2, ACK, 1000, payload, 0, 1000, undefined, 1460);
    const [big, small] = w.frames;
    expect([big.gsoType, big.gsoSize, big.csumStart, big.csumOffset, big.hdrLen]).toEqual([VNET_GSO_TCPV4, 1460, 34, TCP_CHECKSUM_OFFSET, 54]);
    expect([small.gsoType, small.gsoSize]).toEqual([0, 0]);
    const ip = new Ipv4Packet().wrap(big.frame, 14, big.frame.length - 14);
    expect(ip.check()).toBeNull();
    expect(ip.totalLength).toBe(20 + 20 + 40000);
    // The checksum field holds the folded pseudo-header sum; completing it over the segment
    // (as the kernel does) gives a valid checksum.
    const tcpLen = 20 + 40000;
    const field = (big.frame[34 + 16] << 8) | big.frame[34 + 17];
    expect(field).toBe(pseudoSum4(SRC, DST, PROTO_TCP, tcpLen));
    const completed = finish(partialSum(big.frame, 34, tcpLen, 0));
    big.frame[34 + 16] = completed >> 8;
    big.frame[34 + 17] = completed & 0xff;
    expect(finish(partialSum(big.frame, 34, tcpLen, pseudoSum4(SRC, DST, PROTO_TCP, tcpLen)))).toBe(0);
  });
});
