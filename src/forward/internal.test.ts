// A bug while handling a forwarded connection or datagram must not end the process: the event is
// counted (internalErrors) and logged, the host client is reset, and the forward keeps serving.
import dgram from 'node:dgram';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../log.js';
import type { NetnsSockets } from './netnsSockets.js';
import { newForwardCounters, type ForwardRule } from './rule.js';
import { TcpForward } from './tcp.js';
import { UdpForward } from './udp.js';

function rule(proto: 'tcp' | 'udp'): ForwardRule {
  return { proto, hostAddress: '127.0.0.1', hostPort: 0, guestAddress: '10.0.2.100', guestAddressExplicit: false, guestPort: 80, text: 'test' };
}

function portOf(addresses: string[]): number {
  return Number(addresses[0].split(':').at(-1));
}

describe('forward internal errors', () => {
  it('TCP: a throw while handling an accepted connection resets that client; the next one is served', async () => {
    const counters = newForwardCounters();
    let calls = 0;
    const fwd = new TcpForward(rule('tcp'), {
      sockets: {} as NetnsSockets,
      mode: 'tap',
      tap: {
        openToGuest: (_a, _p, sock) => {
          if (calls++ === 0) throw new Error('boom (a bug in the tap opener)');
          sock.end('served');
          return true;
        },
      },
      log: silentLogger(),
      counters,
    });
    await fwd.start();
    try {
      const port = portOf(fwd.addresses());
      const first = await talk(port);
      expect(first.error).toBe('ECONNRESET');
      expect(counters.internalErrors).toBe(1);
      const second = await talk(port);
      expect(second).toEqual({ data: 'served', error: null });
      expect(counters.internalErrors).toBe(1);
    } finally {
      fwd.close(true);
    }
  });

  it('UDP: a throw while handling a host datagram is counted; the next datagram is handled', async () => {
    const counters = newForwardCounters();
    const opened: unknown[] = [];
    let calls = 0;
    const fwd = new UdpForward(rule('udp'), {
      sockets: {
        open: (o: unknown) => {
          opened.push(o);
          return new Promise(() => {}); // the container socket never comes: the peer stays pending
        },
      } as unknown as NetnsSockets,
      log: silentLogger(),
      counters,
      // Read while a new peer is set up: the bug injected here is the first datagram's.
      get maxPeers(): number {
        if (calls++ === 0) throw new Error('boom (a bug while setting up a peer)');
        return 16;
      },
    });
    await fwd.start();
    const c = dgram.createSocket('udp4');
    try {
      const port = portOf(fwd.addresses());
      await new Promise<void>((r) => c.send('x', port, '127.0.0.1', () => r()));
      await until(() => counters.internalErrors === 1);
      expect(opened.length).toBe(0);
      await new Promise<void>((r) => c.send('y', port, '127.0.0.1', () => r()));
      await until(() => opened.length === 1);
      expect(counters.internalErrors).toBe(1);
    } finally {
      c.close();
      fwd.close();
    }
  });
});

async function until(cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

function talk(port: number): Promise<{ data: string; error: string | null }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let data = '';
    let error: string | null = null;
    s.on('data', (b) => (data += b.toString()));
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    s.on('close', () => resolve({ data, error }));
  });
}
