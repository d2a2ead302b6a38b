import { describe, expect, it } from 'vitest';
import { FrameSink, type FrameWriter } from './sink.js';
import { GUEST_MAC, GW_MAC, RecordingWriter } from '../testing/frames.js';
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

describe('FrameSink with a writer that has sendOffload (the native Tap)', () => {
  /** Records both calls as the frame they describe; `direct` counts sendOffload calls. */
  class DirectWriter extends OffloadWriter {
    direct = 0;
    sendOffload(hdr: Uint8Array, hdrLen: number, payload: Uint8Array | null, off: number, len: number, gsoType: number, gsoSize: number, csumStart: number, csumOffset: number): boolean {
      this.direct++;
      const parts = [hdr.subarray(0, hdrLen), ...(payload ? [payload.subarray(off, off + len)] : [])];
      if (!payload) expect([off, len]).toEqual([0, 0]);
      return super.writevOffload(parts, gsoType, gsoSize, csumStart, csumOffset, hdrLen);
    }
  }
  const traffic = (sink: FrameSink): void => {
    const payload = new Uint8Array(40000).map((_, i) => i * 7);
    sink.tcp4(SRC, DST, 80, 40000, 1, 2, ACK, 1000, payload, 100, 30000, undefined, 1460); // GSO
    sink.tcp4(SRC, DST, 80, 40000, 30001, 2, ACK, 1000, payload, 5, 1, undefined, 1460); // one byte
    sink.tcp4(SRC, DST, 80, 40000, 30002, 2, ACK, 1000, null, 0, 0); // pure ACK
    sink.tcp4(SRC, DST, 80, 40000, 30002, 2, ACK, 1000, payload, 0, 0); // empty payload
    sink.udp4(SRC, DST, 53, 40000, payload, 0, 512, true); // checksum offload
    sink.udpRun(SRC, DST, 53, 40000, payload, 0, 3000, 1000); // GSO_UDP_L4 runs: writevOffload
  };

  it('sends the same frames and offload arguments as writevOffload, in one call each', () => {
    const viaParts = new OffloadWriter();
    traffic(new FrameSink(viaParts, GW_MAC, () => GUEST_MAC));
    const direct = new DirectWriter();
    traffic(new FrameSink(direct, GW_MAC, () => GUEST_MAC));
    expect(direct.direct).toBe(5);
    expect(direct.frames.length).toBe(6);
    expect(direct.frames.map((f) => ({ ...f, frame: Buffer.from(f.frame).toString('hex') })))
      .toEqual(viaParts.frames.map((f) => ({ ...f, frame: Buffer.from(f.frame).toString('hex') })));
  });

  it('counts a throwing sendOffload as a write error and goes on', () => {
    const w = new DirectWriter();
    w.sendOffload = () => {
      throw Object.assign(new Error('writev EIO'), { code: 'EIO' });
    };
    const sink = new FrameSink(w, GW_MAC, () => GUEST_MAC);
    expect(sink.tcp4(SRC, DST, 80, 40000, 1, 2, ACK, 1000, null, 0, 0)).toBe(false);
    expect([sink.dropped, sink.writeErrors, sink.lastWriteError]).toEqual([1, 1, 'EIO']);
  });
});

describe('FrameSink UDP runs (GSO_UDP_L4)', () => {
  class UdpWriter implements FrameWriter {
    frames: { frame: Uint8Array; gsoType: number; gsoSize: number; csumStart: number; csumOffset: number; hdrLen: number }[] = [];
    refuse: string | null = null;
    write(f: Uint8Array): boolean {
      return this.writev([f]);
    }
    writev(parts: Uint8Array[]): boolean {
      this.frames.push({ frame: Buffer.concat(parts), gsoType: -1, gsoSize: 0, csumStart: 0, csumOffset: 0, hdrLen: 0 });
      return true;
    }
    writevOffload(parts: Uint8Array[], gsoType: number, gsoSize: number, csumStart: number, csumOffset: number, hdrLen: number): boolean {
      if (this.refuse && gsoType === 5) throw Object.assign(new Error(`writev ${this.refuse}`), { code: this.refuse });
      this.frames.push({ frame: Buffer.concat(parts), gsoType, gsoSize, csumStart, csumOffset, hdrLen });
      return true;
    }
  }
  const parts = [new Uint8Array(1000).fill(1), new Uint8Array(1000).fill(2), new Uint8Array(600).fill(3)];

  it('writes datagrams of one sender as one GSO_UDP_L4 frame the kernel splits', () => {
    const w = new UdpWriter();
    const sink = new FrameSink(w, GW_MAC, () => GUEST_MAC);
    sink.udpParts(SRC, DST, 53, 40000, parts, 3, 1000, 2600);
    expect(w.frames.length).toBe(1);
    const f = w.frames[0];
    expect([f.gsoType, f.gsoSize, f.csumStart, f.csumOffset, f.hdrLen]).toEqual([5, 1000, 34, 6, 42]);
    const ip = new Ipv4Packet().wrap(f.frame, 14, f.frame.length - 14);
    expect(ip.check()).toBeNull();
    expect(ip.totalLength).toBe(20 + 8 + 2600);
    expect((f.frame[34 + 4] << 8) | f.frame[34 + 5]).toBe(8 + 2600); // UDP length: the whole run
    expect((f.frame[34 + 6] << 8) | f.frame[34 + 7]).toBe(pseudoSum4(SRC, DST, 17, 8 + 2600));
    expect(Buffer.from(f.frame.subarray(42)).equals(Buffer.concat(parts))).toBe(true);
    // One contiguous buffer of 1000-byte datagrams (a GRO read): the same frame.
    sink.udpRun(SRC, DST, 53, 40000, Buffer.concat(parts), 0, 2600, 1000);
    expect(w.frames.length).toBe(2);
    expect([w.frames[1].gsoType, w.frames[1].gsoSize, w.frames[1].hdrLen]).toEqual([5, 1000, 42]);
    expect(Buffer.from(w.frames[1].frame.subarray(34, 42)).equals(Buffer.from(f.frame.subarray(34, 42)))).toBe(true);
    expect(Buffer.from(w.frames[1].frame.subarray(42)).equals(Buffer.concat(parts))).toBe(true);
  });

  it('sends one frame a datagram when the tap has no offload, or the kernel refuses GSO_UDP_L4', () => {
    const plain = new RecordingWriter();
    new FrameSink(plain, GW_MAC, () => GUEST_MAC).udpParts(SRC, DST, 53, 40000, parts, 3, 1000, 2600);
    expect(plain.frames.map((f) => f.length - 42)).toEqual([1000, 1000, 600]);
    const old = new UdpWriter();
    old.refuse = 'EINVAL';
    const sink = new FrameSink(old, GW_MAC, () => GUEST_MAC);
    sink.udpRun(SRC, DST, 53, 40000, Buffer.concat(parts), 0, 2600, 1000);
    // Each datagram alone, its checksum still left to the kernel.
    expect(old.frames.map((f) => [f.gsoType, f.csumStart, f.csumOffset, f.frame.length - 42])).toEqual([[0, 34, 6, 1000], [0, 34, 6, 1000], [0, 34, 6, 600]]);
    sink.udpParts(SRC, DST, 53, 40000, parts, 3, 1000, 2600); // not tried again
    expect(old.frames.length).toBe(6);
    expect(sink.dropped).toBe(0);
  });
});
