// Internal errors in host-side callbacks: counted, logged (throttled), never raised to the event
// loop; the component keeps working. UdpNat over a real loopback socket, PingRelay with a fake one.
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { catchInternal, guarded, reportInternalError } from './internalError.js';
import { UdpNat } from './flows/udp.js';
import { PingRelay, type PingSocketLike } from './ip/icmpEcho.js';
import { parseIpv4 } from './wire/ipv4.js';
import { silentLogger } from './log.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length) cleanups.pop()!();
});

function recordingLog(): { error(obj: object, msg?: string): void; lines: { obj: Record<string, unknown>; msg?: string }[] } {
  const lines: { obj: Record<string, unknown>; msg?: string }[] = [];
  return { lines, error: (obj, msg) => lines.push({ obj: obj as Record<string, unknown>, msg }) };
}

describe('reportInternalError', () => {
  it('counts every error and logs the first ten, then at powers of two, with the stack', () => {
    const log = recordingLog();
    const c = { internalErrors: 0 };
    for (let i = 0; i < 100; i++) reportInternalError(log, c, 'a test event', new Error(`bug ${i}`), { flow: 'f' });
    expect(c.internalErrors).toBe(100);
    expect(log.lines.map((l) => l.obj.count)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 32, 64]);
    expect(log.lines[0].msg).toBe('internal error while handling a test event (dropped; please report)');
    expect(log.lines[0].obj).toMatchObject({ flow: 'f', err: 'bug 0' });
    expect(String(log.lines[0].obj.stack)).toContain('internalError.test');
  });

  it('guarded() and catchInternal() report instead of throwing or rejecting', async () => {
    const log = recordingLog();
    const c = { internalErrors: 0 };
    const f = guarded(log, c, 'a callback', (n: number) => {
      if (n > 1) throw new Error('too big');
    });
    expect(() => f(1)).not.toThrow();
    expect(() => f(2)).not.toThrow();
    catchInternal(log, c, 'a step', Promise.reject(new Error('rejected')));
    await new Promise((r) => setImmediate(r));
    expect(c.internalErrors).toBe(2);
    expect(log.lines.map((l) => l.obj.err)).toEqual(['too big', 'rejected']);
  });
});

describe('UdpNat host side', () => {
  it('a throw while delivering a host datagram is counted, and the next one is delivered', async () => {
    const echo = dgram.createSocket('udp4');
    echo.on('message', (m, r) => echo.send(m, r.port, r.address));
    await new Promise<void>((r) => echo.bind(0, '127.0.0.1', r));
    cleanups.push(() => echo.close());
    const port = echo.address().port;
    const got: string[] = [];
    let calls = 0;
    const nat = new UdpNat({
      toGuest: (_src, _dst, _sp, _dp, buf, off, len) => {
        if (calls++ === 0) throw new Error('boom (a bug while building the frame)');
        got.push(Buffer.from(buf.subarray(off, off + len)).toString());
      },
      route: () => '127.0.0.1',
      unroute: () => parseIpv4('10.0.2.2'),
      unreachable: () => {},
      log: silentLogger(),
    });
    cleanups.push(() => nat.closeAll());
    const guest = parseIpv4('10.0.2.100');
    const send = (text: string): void => {
      const b = Buffer.from(text);
      nat.input(guest, parseIpv4('10.0.2.2'), 40000, port, b, 0, b.length);
    };
    send('first');
    await until(() => nat.counters.internalErrors === 1);
    send('second');
    await until(() => got.length === 1);
    expect(got).toEqual(['second']);
    expect(nat.counters.internalErrors).toBe(1);
  });
});

describe('PingRelay host side', () => {
  it('a throw while delivering an echo reply is counted, not raised to the socket', () => {
    let onReply: ((data: Buffer, from: string) => void) | null = null;
    const sock: PingSocketLike = { send: () => {}, close: () => {} };
    const relay = new PingRelay(
      (_family, cb) => {
        onReply = cb;
        return sock;
      },
      () => {
        throw new Error('boom (a bug while building the reply)');
      },
      silentLogger(),
    );
    cleanups.push(() => relay.closeAll());
    const req = new Uint8Array([8, 0, 0, 0, 0x12, 0x34, 0, 1, 1, 2, 3, 4]);
    relay.request(parseIpv4('10.0.2.100'), parseIpv4('192.0.2.9'), req, 0, req.length, 0x1234);
    const reply = Buffer.from([0, 0, 0, 0, 0x99, 0x99, 0, 1, 1, 2, 3, 4]);
    expect(() => onReply!(reply, '192.0.2.9')).not.toThrow();
    expect(relay.counters.internalErrors).toBe(1);
  });
});

async function until(cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}
